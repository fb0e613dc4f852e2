"""The learning-rate schedule: polynomial decay per epoch, as nnU-Net trains."""

from __future__ import annotations


def poly_lr(initial: float, epoch: int, epochs: int, exponent: float = 0.9) -> float:
    """initial * (1 - epoch / epochs) ** exponent: `initial` at epoch 0, approaching 0 at the last epoch."""
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch {epoch} outside 0..{epochs - 1}")
    return initial * (1 - epoch / epochs) ** exponent
