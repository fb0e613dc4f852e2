"""Logistic regression of hand function (1 = impaired) on lesion features, its C (and the lesion maps' smoothing)
chosen by inner cross-validation.

Only the training subjects of a fold ever reach `fit_classifier`: the scaler, the inner folds and the final
fit all see them alone. Lesion-load summaries (mL, counts) are standardized with the training mean and SD;
lesion-map cells (mL of lesion per cell) keep their units, so a cell's coefficient reads "log-odds of
impairment per mL of lesion in this cell". The fitted model is stored back in the features' own units,
logit = intercept + weights . x, as plain JSON: readable, and loadable without pickles or scikit-learn.

Smoothing: with few subjects, lesions of different patients rarely share a 6 mm cell, so a weight learnt on
one cell says nothing about its neighbour. Blurring the lesion maps (a Gaussian over the cells) before the
fit lets nearby lesions inform each other: the prior that the effect of a lesion varies smoothly in space.
The blur is linear and symmetric, so the blurred model is stored as per-cell weights on the raw maps (the
weights blurred once more): prediction and the coefficient maps need not know about it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from autopipe.errors import AutopipeError
from autopipe.models.hand_predictor import LinearClassifier

INNER_SCORING = "neg_log_loss"  # a proper score: with few subjects accuracy ties across most C values


def inner_fold_count(labels: Sequence[int], planned: int) -> int:
    """The planned inner folds, at most the smaller class's count (each inner fold needs one of each)."""
    y = np.asarray(labels, int)
    return min(planned, int(min((y == 1).sum(), (y == 0).sum())))


@dataclass(frozen=True)
class Smoothing:
    """Which columns are lesion-map cells, the blur widths to try (mm; 0 = none) and the blur itself
    (rows of cell values, sigma_mm -> blurred rows; linear and symmetric, e.g. lesion_features.smooth_cells)."""

    columns: np.ndarray
    sigmas_mm: tuple[float, ...]
    blur: Callable[[np.ndarray, float], np.ndarray]


def fit_classifier(features: np.ndarray, labels: Sequence[int], names: Sequence[str], *, c_grid: Sequence[float],
                   class_weight: str, inner_folds: int, standardize: Sequence[bool], seed: int = 0,
                   where: str = "training subjects", smoothing: Smoothing | None = None) -> LinearClassifier:
    """L2 logistic regression; C from `c_grid` (and with `smoothing`, the blur from its sigmas) by stratified
    inner cross-validation (lowest log loss; the smallest C and then the smallest blur on ties); then refit
    on all of `features` with that choice.

    `standardize[j]` says whether column j is scaled by the training mean and SD inside each fit.
    """
    x, y = np.asarray(features, float), np.asarray(labels, int)
    if x.ndim != 2 or x.shape[0] != len(y) or x.shape[1] != len(names) or len(standardize) != len(names):
        raise ValueError(f"features {x.shape}, {len(y)} labels, {len(names)} names and {len(standardize)} "
                         "standardize flags disagree")
    counts = {"impaired": int((y == 1).sum()), "good": int((y == 0).sum())}
    folds = inner_fold_count(y, inner_folds)
    if folds < 2:
        raise AutopipeError(f"the {where} hold {counts['impaired']} impaired and {counts['good']} good: each class "
                            "needs at least 2 labelled subjects to choose the regularization by cross-validation",
                            fix="label more subjects of the smaller class in clinical.csv, or train on more cases")
    grid = sorted(float(c) for c in c_grid)
    sigmas = sorted(float(v) for v in smoothing.sigmas_mm) if smoothing else [0.0]
    searches = {sigma: _search(_blurred(x, smoothing, sigma), y, grid, standardize, class_weight, folds, seed)
                for sigma in sigmas}
    sigma = min(sigmas, key=lambda v: -searches[v].best_score_)  # the first of equally good: the least blur
    search = searches[sigma]
    scores = -search.cv_results_["mean_test_score"]
    best = float(search.best_params_["lr__C"])  # the first of equally good: the smallest C, the strongest penalty
    scaler, lr = search.best_estimator_.named_steps["scale"], search.best_estimator_.named_steps["lr"]
    weights = lr.coef_[0] / scaler.scale_
    intercept = float(lr.intercept_[0] - np.sum(lr.coef_[0] * scaler.mean_ / scaler.scale_))
    if smoothing is not None and sigma > 0:  # x_blur . w = x . blur(w): back to weights on the raw cells
        weights[smoothing.columns] = smoothing.blur(weights[smoothing.columns], sigma)
    return LinearClassifier(tuple(names), weights, intercept, best, class_weight,
                            {f"{c:g}": round(float(s), 6) for c, s in zip(grid, scores, strict=True)},
                            sigma, {f"{v:g}": round(float(-searches[v].best_score_), 6) for v in sigmas})


def _blurred(x: np.ndarray, smoothing: Smoothing | None, sigma: float) -> np.ndarray:
    if smoothing is None or sigma == 0:
        return x
    out = x.copy()
    out[:, smoothing.columns] = smoothing.blur(x[:, smoothing.columns], sigma)
    return out


def _search(x: np.ndarray, y: np.ndarray, grid: list[float], standardize: Sequence[bool], class_weight: str,
            folds: int, seed: int):
    """The fitted inner grid search over C (lowest mean log loss over `folds` stratified folds, then refit)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("scale", _ColumnScaler(np.asarray(standardize, bool))),
                         ("lr", LogisticRegression(class_weight=None if class_weight == "none" else class_weight,
                                                   max_iter=5000))])
    search = GridSearchCV(pipeline, {"lr__C": grid}, scoring=INNER_SCORING, refit=True,
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence chatter at the largest C on separable folds
        search.fit(x, y)
    return search


class _ColumnScaler:
    """StandardScaler on the flagged columns only (the others pass through unchanged); sklearn-compatible."""

    def __init__(self, columns: np.ndarray) -> None:
        self.columns = columns

    def get_params(self, deep: bool = True) -> dict:
        return {"columns": self.columns}

    def set_params(self, **params) -> _ColumnScaler:
        self.columns = params.get("columns", self.columns)
        return self

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> _ColumnScaler:
        x = np.asarray(x, float)
        self.mean_ = np.where(self.columns, x.mean(axis=0), 0.0)
        sd = x.std(axis=0)
        self.scale_ = np.where(self.columns & (sd > 0), sd, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, float) - self.mean_) / self.scale_

    def fit_transform(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self.fit(x, y).transform(x)
