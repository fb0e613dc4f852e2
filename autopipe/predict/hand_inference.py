"""A preprocessed case through joint models: the probability that the subject's hand function is impaired;
and a trained joint fold's held-out subjects scored that way (results/DATASET/joint_*/fold_K/hand_function.json).

The head reads the whole brain's lesion map, as in training: the case passes each model's U-Net as patch-sized
tiles, the lesion probabilities go back on the full template grid, and the head gives one logit
(autopipe.models.joint_unet).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from autopipe.files import write_json
from autopipe.layout import case_paths, joint_result
from autopipe.models.checkpoint import checkpoint_path
from autopipe.models.joint_unet import Brain, JointUNet
from autopipe.predict.models import TrainedModel, load_model
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.properties import read_properties
from autopipe.preprocess.storage import read_case
from autopipe.progress import track


def predict_hand_probability(models: list[TrainedModel], image: np.ndarray, crop_box: Sequence[Sequence[int]],
                             device: torch.device) -> float:
    """P(impaired) of a preprocessed image [C, X, Y, Z] whose grid is `crop_box` of the full template grid: the
    mean over models of the sigmoid of each model's whole-brain logit."""
    device = torch.device(device)
    if not models:
        raise ValueError("no model to predict the hand function with")
    if image.ndim != 4:
        raise ValueError(f"image [C, X, Y, Z] expected, got shape {image.shape}")
    brain = Brain(torch.from_numpy(np.ascontiguousarray(image, np.float32)).to(device),
                  tuple((int(lo), int(hi)) for lo, hi in crop_box))
    probabilities = [_probability(model, brain, device) for model in models]
    return math.fsum(probabilities) / len(probabilities)  # exactly rounded: the models' order does not matter


def _probability(model: TrainedModel, brain: Brain, device: torch.device) -> float:
    network = model.network
    if not isinstance(network, JointUNet):
        raise ValueError(f"{model.source} is a segmentation model without a hand-function head")
    if brain.image.shape[0] != model.in_channels:
        raise ValueError(f"{model.source} expects {model.in_channels} channel(s), the image has "
                         f"{brain.image.shape[0]}")
    with torch.inference_mode(), torch.autocast("cuda") if device.type == "cuda" else contextlib.nullcontext():
        logit = network.brain_logits([brain]).double().cpu()
    return float(torch.sigmoid(logit)[0])


def predict_joint_validation(fold_folder: Path, r: float, fold: Fold, labels: dict[str, int | None],
                             device: torch.device, progress: bool = True) -> dict:
    """P(impaired) of each held-out case of `fold` by the final joint model in `fold_folder` (trained with weight
    r), with its label (None if unknown), written to the folder's hand_function.json and returned."""
    name = fold_folder.parent.name
    model = load_model(checkpoint_path(fold_folder, "final"), device)
    cases: dict[str, dict] = {}
    for case in track(fold.val_cases, len(fold.val_cases), f"hand function {name} fold {fold.name}",
                      enabled=progress):
        arrays, properties = case_paths(fold.preprocessed, case)
        image = read_case(arrays, ("image",))["image"]
        label = labels.get(case)
        cases[case] = {"probability": predict_hand_probability([model], image, read_properties(properties).crop_box,
                                                               device),
                       "label": None if label is None else int(label)}
    result = {"model": name, "r": r, "fold": fold.name, "cases": cases}
    write_json(joint_result(fold_folder), result)
    return result
