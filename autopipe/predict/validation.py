"""Predict a fold's held-out cases from their preprocessed arrays and map them back onto their scans.

    results/DATASET/CONFIGURATION/fold_K/validation/CASE.nii.gz   lesion mask on the case's native grid,
                                                                   with its channel-0 file's header
        validation/template_space/CASE.nii.gz                      the same mask on the template grid (template-
                                                                   space plans only): hand-function features

Under torchrun the cases are shared among the ranks by size, so every rank does about the same work.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from autopipe.cohort.dataset import DatasetSpec
from autopipe.distributed import Ranks, barrier, share_work
from autopipe.layout import case_paths, template_space_prediction, validation_dir, validation_probability
from autopipe.models.checkpoint import checkpoint_path
from autopipe.predict.export import export_prediction, export_template_mask
from autopipe.predict.inference import predict_probability
from autopipe.predict.models import load_ensemble
from autopipe.preprocess.properties import read_properties
from autopipe.preprocess.storage import read_case
from autopipe.progress import track

log = logging.getLogger(__name__)


def prediction_name(spec: DatasetSpec, case_id: str) -> str:
    return f"{case_id}{spec.file_ending}"


def predict_validation(spec: DatasetSpec, fold_dir: Path, preprocessed: Path, cases: list[str], device: torch.device,
                       ranks: Ranks | None = None, mirror: bool = True, progress: bool = True) -> Path:
    """Write the native-space predictions of `cases` by the fold's final network into fold_dir/validation
    (cases already predicted by that network are kept)."""
    ranks = ranks or Ranks()
    out = validation_dir(fold_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(fold_dir, "final")
    models = load_ensemble([final], device)
    done = [c for c in cases if _newer(out / prediction_name(spec, c), final)  # by this network
            and _newer(validation_probability(fold_dir, c), final)
            and _newer_or_native(template_space_prediction(fold_dir, c), final, preprocessed, c)]
    todo = [c for c in cases if c not in done]
    costs = [_voxels(preprocessed, c) for c in todo]
    mine = [todo[i] for i in share_work(costs, ranks.world_size)[ranks.rank]]
    for case_id in track(mine, len(mine), f"validate {fold_dir.parent.name} {fold_dir.name}",
                         enabled=progress and ranks.is_main):
        arrays, properties_path = case_paths(preprocessed, case_id)
        properties = read_properties(properties_path)
        probability = predict_probability(models, read_case(arrays, ("image",))["image"], device, mirror=mirror)
        if properties.space == "template":
            export_template_mask(probability, properties, template_space_prediction(fold_dir, case_id))
        export_prediction(probability, properties, preprocessed, spec.image_path(case_id, 0),
                          out / prediction_name(spec, case_id),  # last: its time stamp marks the case done
                          probability_npz=validation_probability(fold_dir, case_id))
    barrier()
    return out


def _newer(path: Path, than: Path) -> bool:
    return path.is_file() and path.stat().st_mtime > than.stat().st_mtime


def _newer_or_native(path: Path, than: Path, preprocessed: Path, case_id: str) -> bool:
    """The template-space mask is there and current, or the case is not in template space (none is written)."""
    properties = read_properties(case_paths(preprocessed, case_id)[1])
    return properties is None or properties.space != "template" or _newer(path, than)


def _voxels(preprocessed: Path, case_id: str) -> float:
    properties = read_properties(case_paths(preprocessed, case_id)[1])
    return 1.0 if properties is None else float(np.prod(properties.grid.shape))
