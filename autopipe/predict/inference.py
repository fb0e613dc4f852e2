"""A preprocessed case through an ensemble: sliding windows per model, logits averaged, a lesion probability."""

from __future__ import annotations

import numpy as np
import torch

from autopipe.predict.models import TrainedModel
from autopipe.predict.sliding_window import predict_volume_logits


def predict_probability(models: list[TrainedModel], image: np.ndarray, device: torch.device, *, mirror: bool = True,
                        step: float = 0.5) -> np.ndarray:
    """Lesion probability [X, Y, Z] (float32, storage axes) of a preprocessed image [C, X, Y, Z].

    Each model sees the image in its network axis order (transpose_forward) and is tiled with overlapping
    Gaussian-weighted windows; with `mirror`, every flip of the patch axes is averaged too (8 passes in 3D,
    4 in 2D). Logits are averaged over models (nnU-Net's fold ensemble), then softmax gives class 1.
    """
    if image.ndim != 4:
        raise ValueError(f"image [C, X, Y, Z] expected, got shape {image.shape}")
    total = None
    for model in models:
        if image.shape[0] != model.in_channels:
            raise ValueError(f"{model.source} expects {model.in_channels} channel(s), the image has {image.shape[0]}")
        order = model.transpose_forward
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(0, *(a + 1 for a in order))))
        logits = predict_volume_logits(model.network, tensor, model.patch_size, num_classes=model.num_classes,
                                       step=step, mirror_axes=tuple(range(len(model.patch_size))) if mirror else (),
                                       device=device)
        total = logits if total is None else total + logits
    probability = torch.softmax(total / len(models), dim=0)[1].numpy()
    return np.ascontiguousarray(probability.transpose(np.argsort(models[0].transpose_forward))).astype(np.float32)
