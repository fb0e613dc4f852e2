"""A new subject's probability of impaired hand function, from its predicted lesion mask in template space.

Every trained fold's `predicted` logistic regression (autopipe.train.hand_fold) scores the subject's lesion
features and the probabilities are averaged over the folds. The features come from the segmentation of the
configuration the regressions were trained on, so a subject is described exactly as the training subjects
were. `autopipe predict` writes the result to OUT/hand_function.csv.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopipe.errors import AutopipeError
from autopipe.files import write_text_atomic
from autopipe.layout import PREDICTOR_FILE, hand_dir
from autopipe.models.hand_predictor import LinearClassifier, load_classifier
from autopipe.models.lesion_features import CoarseGrid, feature_vector, on_full_grid
from autopipe.paths import Workspace
from autopipe.preprocess.properties import CaseProperties

CSV_FILE = "hand_function.csv"
THRESHOLD = 0.5


@dataclass(frozen=True)
class HandPredictor:
    """One fold's logistic regression on predicted segmentations, with the grid its features live on."""

    fold: str
    classifier: LinearClassifier
    grid: CoarseGrid
    cells: np.ndarray
    features: tuple[str, ...]
    configuration: str


def load_hand_predictors(workspace: Workspace, dataset: str) -> list[HandPredictor]:
    """Every finished fold's predictor (none when hand function was not trained), all on one configuration."""
    predictors = []
    for path in sorted(hand_dir(workspace, dataset).glob(f"fold_*/{PREDICTOR_FILE}")):
        classifier, grid, cells, predictor = load_classifier(path)
        predictors.append(HandPredictor(str(predictor["fold"]), classifier, grid, cells,
                                        tuple(predictor["features"]["predicted"]), str(predictor["configuration"])))
    if len({p.configuration for p in predictors}) > 1:
        raise AutopipeError("the hand-function folds were trained on segmentations of different configurations",
                            where=str(hand_dir(workspace, dataset)),
                            fix="retrain them with one plan: `autopipe train FOLD -c hand_function --force`")
    return predictors


def hand_probability(probability: np.ndarray, properties: CaseProperties, predictors: list[HandPredictor]) -> float:
    """Mean over the folds of p(impaired) for a lesion probability on a case's template-space training grid."""
    if properties.space != "template":
        raise ValueError(f"case {properties.case} is not in template space")
    mask = on_full_grid(probability >= THRESHOLD, properties)
    values = []
    for predictor in predictors:
        vector, names = feature_vector(mask, predictor.grid, predictor.cells, predictor.features)
        if tuple(names) != predictor.classifier.names:
            raise ValueError(f"fold {predictor.fold}: features {names[:3]}... do not match the classifier's")
        values.append(float(predictor.classifier.probability(vector)[0]))
    return float(np.mean(values))


def write_hand_csv(path: Path, rows: dict[str, float], folds: list[str], configuration: str) -> Path:
    """case_id, probability of impairment, the call at 0.5, and what produced it; one row per subject."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case_id", "probability_impaired", "prediction", "folds", "segmentation"])
    for case, p in sorted(rows.items()):
        writer.writerow([case, f"{p:.4f}", "impaired" if p >= THRESHOLD else "good", " ".join(folds), configuration])
    return write_text_atomic(path, buffer.getvalue())
