"""Learning-rate schedules: polynomial decay per epoch (nnU-Net), inverse square root with warm-up (MTLRS)."""

from __future__ import annotations


def poly_lr(initial: float, epoch: int, epochs: int, exponent: float = 0.9) -> float:
    """initial * (1 - epoch / epochs) ** exponent: `initial` at epoch 0, approaching 0 at the last epoch."""
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch {epoch} outside 0..{epochs - 1}")
    return initial * (1 - epoch / epochs) ** exponent


def inverse_sqrt_lr(initial: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up to `initial` over `warmup_steps`, then initial * sqrt(warmup / step) (MTLRS' schedule).

    step counts from 0; step 0 gets initial / warmup_steps, never 0, so the first update already moves.
    """
    if step < 0 or warmup_steps < 1:
        raise ValueError(f"step must be >= 0 and warmup_steps >= 1, got {step} and {warmup_steps}")
    t = step + 1
    return initial * min(t / warmup_steps, (warmup_steps / t) ** 0.5)
