"""A trained hand-function predictor as predict and evaluate read it back: a linear classifier on lesion features,
stored as plain JSON in the features' own units (fitted by autopipe.train.hand_classifier).

    results/DATASET/hand_function/fold_K/predictor.json   one classifier per variant, the coarse grid, its cells
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopipe.errors import AutopipeError
from autopipe.files import read_json
from autopipe.models.lesion_features import CoarseGrid

VARIANTS = {
    "predicted": "lesion map + load from out-of-fold predicted segmentations (no leakage)",
    "oracle": "lesion map + load from the ground-truth masks",
    "baseline": "total lesion volume of the predicted segmentations only",
}
"""The predictors every fold fits on the same subjects: the PVL model, its oracle and a one-number baseline."""


@dataclass(frozen=True)
class LinearClassifier:
    """p(impaired) = sigmoid(intercept + weights . x), with x in the units of `names`."""

    names: tuple[str, ...]
    weights: np.ndarray
    intercept: float
    c: float
    class_weight: str
    inner_log_loss: dict[str, float]  # mean inner-CV log loss per C tried (at the chosen smoothing)
    smoothing_mm: float = 0.0  # the Gaussian blur of the lesion maps it was fitted on (folded into the weights)
    smoothing_log_loss: dict[str, float] | None = None  # best inner-CV log loss per blur tried (mm)

    def probability(self, features: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(features, float))
        if x.shape[1] != len(self.names):
            raise ValueError(f"{x.shape[1]} features given, the classifier has {len(self.names)}")
        return 1.0 / (1.0 + np.exp(-(x @ self.weights + self.intercept)))

    def to_json(self) -> dict:
        return {"model": "p(impaired) = sigmoid(intercept + sum(weights * features))", "names": list(self.names),
                "weights": [float(w) for w in self.weights], "intercept": float(self.intercept), "C": self.c,
                "class_weight": self.class_weight, "inner_cv_log_loss": self.inner_log_loss,
                "smoothing_mm": self.smoothing_mm, "smoothing_cv_log_loss": self.smoothing_log_loss or {}}

    @classmethod
    def from_json(cls, value: dict) -> LinearClassifier:
        names, weights = tuple(value["names"]), np.asarray(value["weights"], float)
        if len(names) != len(weights):
            raise ValueError(f"{len(names)} feature names but {len(weights)} weights")
        return cls(names, weights, float(value["intercept"]), float(value["C"]), str(value["class_weight"]),
                   {str(k): float(v) for k, v in value.get("inner_cv_log_loss", {}).items()},
                   float(value.get("smoothing_mm", 0.0)),
                   {str(k): float(v) for k, v in value.get("smoothing_cv_log_loss", {}).items()})


def load_classifier(path: Path, variant: str = "predicted") -> tuple[LinearClassifier, CoarseGrid, np.ndarray, dict]:
    """A fold's classifier of `variant` from its predictor.json: (classifier, grid, cells, predictor)."""
    try:
        predictor = read_json(path)
        return (LinearClassifier.from_json(predictor["classifiers"][variant]), CoarseGrid.from_json(predictor["grid"]),
                np.asarray(predictor["cells"], int), predictor)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AutopipeError(f"the hand-function predictor cannot be read ({exc})", where=str(path),
                            fix="train it again: `autopipe train FOLD -c hand_function --force`") from None
