"""A preprocessed case through joint models: the probability that the subject's hand function is impaired;
and a trained joint fold's held-out subjects scored that way (results/DATASET/joint_*/fold_K/hand_function.json).

The head saw patches during training, so at inference a case is cut into the windows sliding-window inference
uses and the head's logits are averaged over them. Each window counts by its share of non-zero input voxels
(preprocessing sets everything outside the brain to 0): a window of background says nothing about the subject.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch

from autopipe.files import write_json
from autopipe.layout import case_paths, joint_result
from autopipe.models.checkpoint import checkpoint_path
from autopipe.models.joint_unet import JointUNet
from autopipe.predict.models import TrainedModel, load_model
from autopipe.predict.sliding_window import padded_windows
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.storage import read_case
from autopipe.progress import track


def predict_hand_probability(models: list[TrainedModel], image: np.ndarray, device: torch.device, *,
                             step: float = 0.5, batch_size: int = 4) -> float:
    """P(impaired) of a preprocessed image [C, X, Y, Z]: per model the sigmoid of its brain-weighted mean window
    logit, then the mean over models. A 2d model sees the windows of every slice along its network axis 0."""
    device = torch.device(device)
    if not models:
        raise ValueError("no model to predict the hand function with")
    if image.ndim != 4:
        raise ValueError(f"image [C, X, Y, Z] expected, got shape {image.shape}")
    probabilities = [torch.sigmoid(torch.tensor(_mean_logit(model, image, device, step, batch_size))).item()
                     for model in models]
    return math.fsum(probabilities) / len(probabilities)  # exactly rounded: the models' order does not matter


def _mean_logit(model: TrainedModel, image: np.ndarray, device: torch.device, step: float, batch_size: int) -> float:
    """The hand-function logit of one model, averaged over its windows weighted by their brain share."""
    network = model.network
    if not isinstance(network, JointUNet):
        raise ValueError(f"{model.source} is a segmentation model without a hand-function head")
    if image.shape[0] != model.in_channels:
        raise ValueError(f"{model.source} expects {model.in_channels} channel(s), the image has {image.shape[0]}")
    order = model.transpose_forward
    volume = torch.from_numpy(np.ascontiguousarray(image.transpose(0, *(a + 1 for a in order)), np.float32))
    images = volume[None] if len(model.patch_size) == 3 else volume.movedim(1, 0)  # 2d: [X, C, Y, Z]
    logit_sum, weight_sum, plain_sum, windows = 0.0, 0.0, 0.0, 0
    with torch.inference_mode():
        padded, tiles = padded_windows(images.to(device), model.patch_size, step)
        jobs = [(n, tile) for n in range(len(padded)) for tile in tiles]
        for begin in range(0, len(jobs), batch_size):
            batch = torch.stack([padded[(n, slice(None), *tile)] for n, tile in jobs[begin:begin + batch_size]])
            with torch.autocast("cuda") if device.type == "cuda" else contextlib.nullcontext():
                logits = network.hand_logits(batch).double().cpu()
            weights = (batch != 0).any(1).flatten(1).double().mean(1).cpu()
            logit_sum += float((weights * logits).sum())
            weight_sum += float(weights.sum())
            plain_sum += float(logits.sum())
            windows += len(batch)
    return logit_sum / weight_sum if weight_sum > 0 else plain_sum / windows  # an empty image: every window alike




def predict_joint_validation(fold_folder: Path, r: float, fold: Fold, labels: dict[str, int | None],
                             device: torch.device, progress: bool = True) -> dict:
    """P(impaired) of each held-out case of `fold` by the final joint model in `fold_folder` (trained with weight
    r), with its label (None if unknown), written to the folder's hand_function.json and returned."""
    name = fold_folder.parent.name
    model = load_model(checkpoint_path(fold_folder, "final"), device)
    cases: dict[str, dict] = {}
    for case in track(fold.val_cases, len(fold.val_cases), f"hand function {name} fold {fold.name}",
                      enabled=progress):
        image = read_case(case_paths(fold.preprocessed, case)[0], ("image",))["image"]
        label = labels.get(case)
        cases[case] = {"probability": predict_hand_probability([model], image, device),
                       "label": None if label is None else int(label)}
    result = {"model": name, "r": r, "fold": fold.name, "cases": cases}
    write_json(joint_result(fold_folder), result)
    return result
