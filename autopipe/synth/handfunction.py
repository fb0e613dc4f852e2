"""The hand-function label: a logistic model of the lesion load in the motor white matter.

    L = lesion volume (mL) inside the motor region (template space: corona radiata / corticospinal
        tract beside the bodies of the lateral ventricles, both hemispheres; autopipe.synth.template)
    p(impaired) = sigmoid(SLOPE_PER_ML * (L - LOAD_AT_HALF_ML))
    label ~ Bernoulli(p), drawn from the subject's own random stream

Calibration (by simulation: the lesions of subjects 0-799 of cohort seed 0, autopipe.synth.lesions):
motor load percentiles 10/25/50/75/90 = 0.00/0.02/0.21/0.89/2.2 mL (total load median 2.1 mL, 90th
percentile 13 mL). Over the grid L0 in {0.3, 0.4, ..., 0.7} mL x slope in {3, 4, 5, 6, 8} per mL,
L0 = 0.5 mL and slope = 5 per mL give 41% impaired and an expected Bayes accuracy
mean(max(p, 1 - p)) of 0.87 (slope 4: 44% / 0.83; slope 6: 40% / 0.89; L0 0.4: 47% / 0.84). So a
perfect load measurement still misclassifies ~13%, the label noise any real clinical score has. A
lesion-free subject is impaired with p = 0.08.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SLOPE_PER_ML = 5.0
LOAD_AT_HALF_ML = 0.5
MODEL = "p(impaired) = sigmoid(slope_per_ml * (motor_lesion_load_ml - load_at_half_ml))"


@dataclass(frozen=True)
class HandFunction:
    """A subject's motor lesion load (mL), probability of impairment, the uniform draw and the label."""

    motor_load_ml: float
    probability: float
    draw: float
    impaired: bool

    @property
    def label(self) -> str:
        return "impaired" if self.impaired else "good"


def impairment_probability(motor_load_ml: float | np.ndarray, slope_per_ml: float = SLOPE_PER_ML,
                           load_at_half_ml: float = LOAD_AT_HALF_ML) -> float | np.ndarray:
    """sigmoid(slope * (L - L0))."""
    return 1.0 / (1.0 + np.exp(-slope_per_ml * (np.asarray(motor_load_ml) - load_at_half_ml)))


def hand_function(rng: np.random.Generator, motor_load_ml: float) -> HandFunction:
    """Draw the label: impaired when a uniform draw falls below p."""
    probability = float(impairment_probability(motor_load_ml))
    draw = float(rng.uniform())
    return HandFunction(float(motor_load_ml), probability, draw, draw < probability)


def bayes_accuracy(probabilities: list[float] | np.ndarray) -> float:
    """Expected accuracy of the best possible classifier, which knows p: mean(max(p, 1 - p))."""
    p = np.asarray(probabilities, float)
    return float(np.mean(np.maximum(p, 1 - p))) if p.size else float("nan")


def model_description() -> dict:
    """The model and its constants, for generator.json."""
    return {"model": MODEL, "slope_per_ml": SLOPE_PER_ML, "load_at_half_ml": LOAD_AT_HALF_ML,
            "load": "lesion volume (mL) inside groundtruth/motor_region_template.nii.gz, measured in template space"}
