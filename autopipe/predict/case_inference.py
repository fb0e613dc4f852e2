"""One preprocessed new case through the trained folds and back onto its scan: the task `predict` runs per case.

It runs in the command's own process, or, with `--scheduler` / `--cluster`, on a Dask worker: only paths and
small values travel, each process loads a set of checkpoints once and keeps it for the cases that follow
(autopipe.predict.models.shared_ensemble), and the outputs are written atomically beside the scan's others.
Rerunning a task rewrites the same files, so a task a cluster resubmits is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autopipe.device import choose_device
from autopipe.paths import Workspace
from autopipe.predict.export import export_prediction
from autopipe.predict.hand_function import hand_probability, load_hand_predictors
from autopipe.predict.inference import predict_probability
from autopipe.predict.models import shared_ensemble
from autopipe.preprocess.properties import CaseProperties
from autopipe.preprocess.storage import read_case


@dataclass(frozen=True)
class HandSource:
    """Where the hand-function predictors and the segmentation folds their features come from."""

    workspace: Workspace
    dataset: str
    configuration: str
    checkpoints: tuple[Path, ...]


@dataclass(frozen=True)
class InferenceJob:
    """Everything one case's inference needs (picklable: paths and small values)."""

    case_id: str
    arrays: Path  # the preprocessed case (CASE.h5) in predict's scratch folder
    properties: CaseProperties
    source: Path  # the scan whose grid and header the outputs take
    mask: Path
    probability: Path | None
    scratch: Path
    min_mm3: float
    checkpoints: dict[str, tuple[Path, ...]]  # configuration -> its folds; several configurations: an ensemble
    mirror: bool
    device: str | None  # None: the best this process has (a cluster worker's own GPU, if any)
    hand: HandSource | None = None


@dataclass(frozen=True)
class InferenceResult:
    """What one case's inference wrote, its P(impaired hand function) where predictors exist, or why it failed."""

    case_id: str
    written: tuple[Path, ...] = ()
    hand_score: float | None = None
    error: str | None = None


def predict_case(job: InferenceJob) -> InferenceResult:
    """The mean lesion probability of every fold (of every member), exported as a mask (and probability) on the
    scan; with hand-function predictors, the case's mean P(impaired) from the configuration they were trained on."""
    device = choose_device() if job.device is None else torch.device(job.device)
    image = read_case(job.arrays, ("image",))["image"]
    maps = {name: predict_probability(shared_ensemble(paths, device), image, device, mirror=job.mirror)
            for name, paths in job.checkpoints.items()}
    probability = next(iter(maps.values())) if len(maps) == 1 else np.mean(list(maps.values()), axis=0,
                                                                         dtype=np.float32)  # an ensemble: mean
    written = export_prediction(probability, job.properties, job.scratch, job.source, job.mask, job.min_mm3,
                                job.probability)
    score = None
    if job.hand is not None and job.properties.space == "template":
        hand_map = maps.get(job.hand.configuration)
        if hand_map is None:
            hand_map = predict_probability(shared_ensemble(job.hand.checkpoints, device), image, device,
                                           mirror=job.mirror)
        score = hand_probability(hand_map, job.properties, load_hand_predictors(job.hand.workspace, job.hand.dataset))
    return InferenceResult(job.case_id, tuple(written), score)


def lost_inference(job: InferenceJob, why: str) -> InferenceResult:
    """The result of a case whose cluster workers kept dying while predicting it."""
    return InferenceResult(job.case_id, error=f"not predicted: {why}")
