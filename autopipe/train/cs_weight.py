"""The compressed-sensing baseline's one free parameter, chosen like a network is trained: on the fold's
training slices only, by the lowest NMSE against the fully sampled image, from the plan's grid."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from autopipe.files import read_json, write_json
from autopipe.layout import CS, CS_FILE, kspace_dir, slice_model_dir
from autopipe.mri.baselines import l1_wavelet
from autopipe.paths import Workspace
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.kspace_slices import load_slice, slice_refs
from autopipe.progress import Progress
from autopipe.train.jobs import kspace_cases

log = logging.getLogger(__name__)

TUNING_SLICES = 8


def nmse(target: torch.Tensor, estimate: torch.Tensor) -> float:
    """||target - estimate||^2 / ||target||^2 on magnitudes (the evaluation's definition)."""
    target, estimate = target.abs(), estimate.abs()
    return float(((target - estimate) ** 2).sum() / (target**2).sum())


def choose_cs_weight(folder: Path, train_cases: list[str], weights: tuple[float, ...], iterations: int,
                     out_dir: Path, slices: int = TUNING_SLICES, progress: bool = True) -> dict:
    """Try every weight on `slices` training slices spread over the cases; write and return out_dir/cs.json:
    {"weight", "iterations", "nmse": {weight: mean}, "slices": [[case, index], ...]}."""
    refs = slice_refs(folder, train_cases, need_segmentation=False)
    chosen = [refs[int(i)] for i in np.unique(np.linspace(0, len(refs) - 1, min(slices, len(refs))).round())]
    scores: dict[float, list[float]] = {w: [] for w in weights}
    with Progress(len(chosen) * len(weights), "compressed-sensing weight", enabled=progress) as bar:
        for ref in chosen:
            batch = load_slice(folder, ref)
            for weight in weights:
                image = l1_wavelet(batch["kspace"], batch["maps"], batch["mask"], weight=weight, iterations=iterations)
                scores[weight].append(nmse(batch["target"], image))
                bar.advance()
    means = {w: float(np.mean(v)) for w, v in scores.items()}
    best = min(means, key=means.get)
    if best in (min(weights), max(weights)) and len(weights) > 1:
        log.warning("the compressed-sensing weight %g is at the edge of the plan's grid %s; widen "
                    "reconstruction.cs_weights in plans.json", best, list(weights))
    result = {"weight": best, "iterations": iterations, "nmse": {str(w): m for w, m in means.items()},
              "slices": [[r.case, r.index] for r in chosen]}
    write_json(out_dir / CS_FILE, result)
    log.info("compressed sensing: weight %g (NMSE %.4f on %d training slices)", best, means[best], len(chosen))
    return result


def tune_cs_weight(fold: Fold, workspace: Workspace, *, force: bool = False, progress: bool = True) -> dict | None:
    """Choose the compressed-sensing weight on the fold's training slices, once (again with force)."""
    recon = fold.plans.reconstruction
    if recon is None:
        return None
    out_dir = slice_model_dir(workspace, fold.spec.name, CS, fold.name)
    if (out_dir / CS_FILE).is_file() and not force:
        return read_json(out_dir / CS_FILE)
    train_cases, _ = kspace_cases(fold)
    return choose_cs_weight(kspace_dir(fold.preprocessed), train_cases, recon.cs_weights, recon.cs_iterations,
                            out_dir, progress=progress)
