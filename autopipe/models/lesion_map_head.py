"""The joint model's hand-function head: a logistic regression on the lesion map the U-Net segments.

    logit = bias + sum_c weight_c load_c,   load_c = voxel mL x sum of P(lesion) over coarse cell c's voxels

load_c is the expected lesion volume in cell c of the template grid (autopipe.models.lesion_features' cells,
whose hard-mask version the two-stage logistic regression reads). The head therefore sees the whole brain and
where its lesions lie, with one weight per cell (log-odds per mL), and it is differentiable, so the
hand-function loss reaches the segmentation that feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class LesionMapHead(nn.Module):
    """P(lesion) on the full fine grid [B, *fine_shape] -> one logit per subject [B].

    `factor` fine voxels per cell along each axis (the border cells zero-padded, as lesion_features pools them),
    `cells` the flat indices of the coarse cells the weights belong to, `voxel_ml` one fine voxel's volume.
    """

    def __init__(self, fine_shape: Sequence[int], factor: Sequence[int], cells: Sequence[int],
                 voxel_ml: float) -> None:
        super().__init__()
        self.fine_shape = tuple(int(s) for s in fine_shape)
        self.factor = tuple(int(f) for f in factor)
        if len(self.fine_shape) != 3 or len(self.factor) != 3 or min(self.factor) < 1:
            raise ValueError(f"a 3D fine shape and factors >= 1 expected, got {self.fine_shape} and {self.factor}")
        self.coarse_shape = tuple(-(-n // f) for n, f in zip(self.fine_shape, self.factor, strict=True))
        index = np.asarray(cells, np.int64)
        if index.ndim != 1 or index.size == 0 or index.min() < 0 or index.max() >= math.prod(self.coarse_shape):
            raise ValueError(f"cells must be flat indices into the coarse grid {self.coarse_shape}")
        self.voxel_ml = float(voxel_ml)
        self.register_buffer("cells", torch.from_numpy(index), persistent=False)  # rebuilt from the kwargs
        self.weight = nn.Parameter(torch.zeros(index.size))
        self.bias = nn.Parameter(torch.zeros(()))

    def geometry(self) -> dict:
        """The constructor's arguments, as plain JSON values (a checkpoint's network_kwargs keep them)."""
        return {"fine_shape": list(self.fine_shape), "factor": list(self.factor),
                "cells": [int(c) for c in self.cells.tolist()], "voxel_ml": self.voxel_ml}

    def cell_loads(self, probability: torch.Tensor) -> torch.Tensor:
        """Expected lesion mL per cell [B, cells] of lesion probabilities [B, *fine_shape]."""
        if probability.ndim != 4 or tuple(probability.shape[1:]) != self.fine_shape:
            raise ValueError(f"lesion probabilities [B, {', '.join(map(str, self.fine_shape))}] expected, got "
                             f"{list(probability.shape)}")
        padded_shape = [c * f for c, f in zip(self.coarse_shape, self.factor, strict=True)]
        pads = [p for n, m in zip(reversed(self.fine_shape), reversed(padded_shape), strict=True) for p in (0, m - n)]
        padded = nn.functional.pad(probability, pads)
        (cx, cy, cz), (fx, fy, fz) = self.coarse_shape, self.factor
        sums = padded.reshape(-1, cx, fx, cy, fy, cz, fz).sum(dim=(2, 4, 6))
        return sums.flatten(1)[:, self.cells] * self.voxel_ml

    def forward(self, probability: torch.Tensor) -> torch.Tensor:
        with torch.autocast(probability.device.type, enabled=False):  # sums of many small values: float32
            loads = self.cell_loads(probability.float())
            return self.bias + loads @ self.weight

    @torch.no_grad()
    def set_classifier(self, weights: Sequence[float], intercept: float) -> None:
        """Take a fitted logistic regression's weights (log-odds per mL, one per cell, in `cells` order)."""
        values = torch.as_tensor(np.asarray(weights, np.float64), dtype=self.weight.dtype)
        if values.shape != self.weight.shape:
            raise ValueError(f"{values.numel()} weights for {self.weight.numel()} cells")
        self.weight.copy_(values)
        self.bias.fill_(float(intercept))
