"""Reconstruct and segment the slices of a prepared k-space file with every method of the comparison.

Methods: the classical reconstructions (zero_filled, cg_sense, cs: image only) and the approaches of the
plan (pretrained, sequential, end_to_end, joint, mtlrs: image and class probabilities). Images stay in
the prepared file's units (its `scale` attribute takes them back to the raw file's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autopipe.models.checkpoint import checkpoint_path
from autopipe.models.mtlrs import MultitaskOutput
from autopipe.models.slice_models import APPROACH_MODELS, load_trained
from autopipe.mri.baselines import cg_sense, l1_wavelet, zero_filled
from autopipe.preprocess.kspace_prep import kspace_slice_count
from autopipe.preprocess.kspace_slices import SliceRef, load_slice

CLASSICAL = ("zero_filled", "cg_sense", "cs")
CG_ITERATIONS = 10


@dataclass(frozen=True)
class CaseResult:
    """One case's slices by one method: complex image [S, H, W]; class probabilities [S, K, H, W] or None."""

    image: np.ndarray
    probabilities: np.ndarray | None


def class_map(probabilities: np.ndarray) -> np.ndarray:
    """[S, K, H, W] class probabilities -> [S, H, W] the most probable class index (uint8)."""
    return probabilities.argmax(1).astype(np.uint8)


def load_fold_models(model_dirs: dict[str, Path], device: torch.device, checkpoint: str = "final"
                     ) -> dict[str, nn.Module]:
    """model name -> trained network, from each model's fold folder."""
    return {name: load_trained(checkpoint_path(folder, checkpoint), device) for name, folder in model_dirs.items()}


def available_approaches(approaches: list[str] | tuple[str, ...], models: dict[str, nn.Module]) -> list[str]:
    """The approaches whose models are all trained."""
    return [a for a in approaches if all(m in models for m in APPROACH_MODELS[a])]


@torch.no_grad()
def run_approach(approach: str, models: dict[str, nn.Module], batch: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(complex image [B, H, W], class probabilities [B, K, H, W]) of one approach on a batch of slices."""
    if approach in ("pretrained", "sequential"):
        image = models["cirim"](batch["kspace"], batch["maps"], batch["mask"])[-1][-1]
        segmenter = models["segmentation_fully_sampled" if approach == "pretrained" else "segmentation_on_cirim"]
        logits = segmenter(image.abs()[:, None])
    else:
        output: MultitaskOutput = models[approach](batch["kspace"], batch["maps"], batch["mask"])
        image, logits = output.image, output.segmentation
    return image, logits.softmax(1)


@torch.no_grad()
def run_classical(method: str, batch: dict[str, torch.Tensor], cs_weight: float | None,
                  cs_iterations: int) -> torch.Tensor:
    if method == "zero_filled":
        return zero_filled(batch["kspace"], batch["maps"], batch["mask"])
    if method == "cg_sense":
        return cg_sense(batch["kspace"], batch["maps"], batch["mask"], iterations=CG_ITERATIONS)
    if method == "cs":
        if cs_weight is None:
            raise ValueError("the compressed-sensing weight is not chosen yet (autopipe train FOLD)")
        return l1_wavelet(batch["kspace"], batch["maps"], batch["mask"], weight=cs_weight, iterations=cs_iterations)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(CLASSICAL)}")


def process_case(folder: Path, case: str, methods: list[str], models: dict[str, nn.Module],
                 device: torch.device, *, cs_weight: float | None = None, cs_iterations: int = 50,
                 timings: dict[str, float] | None = None) -> dict[str, CaseResult]:
    """Every method on every slice of `case`; `timings` (if given) accumulates seconds per method."""
    import time

    count = kspace_slice_count(folder / f"{case}.h5")
    images: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    probabilities: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for index in range(count):
        batch = load_slice(folder, SliceRef(case, index), device)
        for method in methods:
            tick = time.perf_counter()
            if method in CLASSICAL:
                image, probability = run_classical(method, batch, cs_weight, cs_iterations), None
            else:
                image, probability = run_approach(method, models, batch)
            if timings is not None:
                timings[method] = timings.get(method, 0.0) + time.perf_counter() - tick
            images[method].append(image[0].cpu().numpy())
            if probability is not None:
                probabilities[method].append(probability[0].cpu().numpy())
    return {m: CaseResult(np.stack(images[m]), np.stack(probabilities[m]) if probabilities[m] else None)
            for m in methods}


def case_reference(folder: Path, case: str) -> dict:
    """The case's fully sampled target [S, H, W] and class-index slices [S, H, W] (where the file has them),
    its scale, class names and lesion classes (files prepared before classes were stored: background, lesion)."""
    import h5py

    with h5py.File(folder / f"{case}.h5", "r") as f:
        out = {name: f[name][()] for name in ("target", "segmentation") if name in f}
        out["scale"] = float(f.attrs["scale"])
        out["class_names"] = [str(n) for n in f.attrs.get("class_names", ["background", "lesion"])]
        out["lesion_classes"] = [int(k) for k in f.attrs.get("lesion_classes", [1])]
    return out
