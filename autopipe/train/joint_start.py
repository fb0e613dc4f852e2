"""What the joint model needs besides the U-Net: its head's grid, whole brains to read, and where it starts.

    JointSettings   the head's coarse template grid and cells (the two-stage predictor's), how often a training
                    step adds a whole brain, and the hand-function plan whose rules fit the head's start
    BrainSource     preprocessed cases as whole brains (image and crop box), read once and kept
    warm_start      the fold's trained plain U-Net, and a head fitted (autopipe.train.hand_classifier) on the
                    lesion maps that U-Net gives the training subjects: the joint model starts where the two-stage
                    pipeline stands, so a short run tunes the coupling instead of learning the head from nothing.
                    (Fitted on the ground-truth masks instead, the head met soft maps of about twice their volume
                    and started with a hand-function loss of 4.8 nats.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autopipe.errors import AutopipeError
from autopipe.layout import case_paths
from autopipe.models.checkpoint import load_checkpoint
from autopipe.models.joint_unet import Brain, JointUNet
from autopipe.models.lesion_features import CoarseGrid
from autopipe.plan.configs import HandFunctionPlan
from autopipe.preprocess.properties import read_properties
from autopipe.preprocess.storage import read_case
from autopipe.train.hand_classifier import fit_classifier
from autopipe.train.hand_fold import map_smoothing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JointSettings:
    """The joint model's head and schedule (see the module docstring)."""

    grid: CoarseGrid
    cells: tuple[int, ...]
    brain_every: int
    classifier: HandFunctionPlan

    def geometry(self) -> dict:
        """LesionMapHead's arguments, as plain JSON values."""
        return {"fine_shape": list(self.grid.fine_shape), "factor": list(self.grid.factor),
                "cells": list(self.cells), "voxel_ml": self.grid.fine_voxel_ml}


class BrainSource:
    """Whole preprocessed brains of one folder, read on first use and kept (a few MB each at 2 mm)."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        self.folder, self.device = folder, device
        self._brains: dict[str, Brain] = {}

    def __call__(self, case: str) -> Brain:
        if case not in self._brains:
            arrays, properties_file = case_paths(self.folder, case)
            image = read_case(arrays, ("image",))["image"]
            box = tuple((int(lo), int(hi)) for lo, hi in read_properties(properties_file).crop_box)
            self._brains[case] = Brain(torch.from_numpy(np.ascontiguousarray(image, np.float32)).to(self.device), box)
        return self._brains[case]


def warm_start(network: JointUNet, upstream: Path, brains: BrainSource, labels: dict[str, int],
               settings: JointSettings, seed: int) -> None:
    """Load the plain U-Net of `upstream` into `network` and fit its head on the expected lesion mL per cell that
    this U-Net gives each labelled case (its whole brain from `brains`)."""
    state = load_checkpoint(upstream, map_location="cpu")["network"]
    result = network.load_state_dict(state, strict=False)
    strays = [k for k in result.missing_keys if not k.startswith("hand_head.")] + list(result.unexpected_keys)
    if strays:
        raise AutopipeError(f"the trained U-Net does not match the joint model's ({', '.join(strays[:4])})",
                            where=str(upstream), fix="train the plain configuration again with the current plan")
    cases = sorted(labels)
    with torch.no_grad():
        loads = np.stack([network.hand_head.cell_loads(network.lesion_probability(brains(case))[None])[0]
                          .double().cpu().numpy() for case in cases])
    names = [f"cell_{c}" for c in settings.cells]
    plan = settings.classifier
    smoothing = map_smoothing(names, settings.grid, np.asarray(settings.cells, np.int64), tuple(plan.smoothing_mm))
    classifier = fit_classifier(loads, [labels[c] for c in cases], names, c_grid=plan.c_grid,
                                class_weight=plan.class_weight, inner_folds=plan.inner_folds,
                                standardize=[False] * len(names), seed=seed,
                                where="training subjects of the joint model", smoothing=smoothing)
    network.hand_head.set_classifier(classifier.weights, classifier.intercept)
    log.info("the joint model starts from the trained U-Net (%s) and a head fitted on the lesion maps it gives "
             "%d training subjects (C %g, blur %g mm)", upstream, len(cases), classifier.c, classifier.smoothing_mm)
