"""The logistic regression: C by inner cross-validation, stored in the features' own units."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from autopipe.errors import AutopipeError
from autopipe.models.hand_predictor import LinearClassifier
from autopipe.train.hand_classifier import Smoothing, fit_classifier, inner_fold_count


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    load = rng.gamma(2.0, 2.0, n)  # mL: a scale the classifier standardizes
    cells = rng.random((n, 6)) * 0.2  # mL per cell: kept in its units
    y = (load + rng.normal(0, 1.5, n) > 4).astype(int)
    return np.c_[load, cells], y


def test_the_stored_model_equals_sklearn_on_standardized_features():
    x, y = _data()
    model = fit_classifier(x, y, ["load", *(f"cell_{i}" for i in range(6))], c_grid=(0.01, 0.1, 1.0, 10.0),
                           class_weight="balanced", inner_folds=5, standardize=[True] + [False] * 6)
    scaled = x.copy()
    scaled[:, 0] = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
    reference = LogisticRegression(C=model.c, class_weight="balanced", max_iter=5000).fit(scaled, y)
    assert np.allclose(model.probability(x), reference.predict_proba(scaled)[:, 1], atol=1e-9)
    assert np.isclose(model.weights[0], reference.coef_[0, 0] / x[:, 0].std())  # per mL, not per SD
    assert set(model.inner_log_loss) == {"0.01", "0.1", "1", "10"}
    assert model.c == min((float(c) for c, v in model.inner_log_loss.items()
                           if v == min(model.inner_log_loss.values())))


def test_json_round_trip_predicts_the_same():
    x, y = _data(seed=1)
    model = fit_classifier(x, y, [f"f{i}" for i in range(7)], c_grid=(1.0,), class_weight="none", inner_folds=3,
                           standardize=[True] * 7)
    again = LinearClassifier.from_json(model.to_json())
    assert np.array_equal(again.probability(x), model.probability(x)) and again.names == model.names
    with pytest.raises(ValueError, match="7 feature names but 6 weights"):
        LinearClassifier.from_json({**model.to_json(), "weights": model.to_json()["weights"][:6]})
    with pytest.raises(ValueError, match="3 features given"):
        model.probability(np.zeros((1, 3)))


def test_same_seed_same_model_and_inner_folds_bounded_by_the_smaller_class():
    x, y = _data(seed=2)
    kwargs = {"c_grid": (0.1, 1.0), "class_weight": "balanced", "inner_folds": 5, "standardize": [True] * 7,
              "seed": 3}
    names = [f"f{i}" for i in range(7)]
    assert fit_classifier(x, y, names, **kwargs).to_json() == fit_classifier(x, y, names, **kwargs).to_json()
    assert inner_fold_count([1, 1, 1, 0, 0, 0, 0], 5) == 3 and inner_fold_count([1, 0] * 10, 5) == 5


def test_too_few_of_a_class_is_a_clear_error():
    x, y = _data(seed=4)
    y[:] = 0
    y[0] = 1
    with pytest.raises(AutopipeError, match="1 impaired and 39 good"):
        fit_classifier(x, y, [f"f{i}" for i in range(7)], c_grid=(1.0,), class_weight="balanced", inner_folds=5,
                       standardize=[True] * 7, where="training subjects of fold 3")


def _chain_blur(rows: np.ndarray, sigma_mm: float) -> np.ndarray:
    """A symmetric Gaussian blur along a chain of 6 cells 6 mm apart (a stand-in for smooth_cells)."""
    d = np.subtract.outer(np.arange(6), np.arange(6)) * 6.0
    return np.asarray(rows) @ np.exp(-d ** 2 / (2 * sigma_mm ** 2))


def test_smoothing_is_chosen_by_inner_cv_and_folded_into_raw_cell_weights():
    x, y = _data(n=60, seed=3)
    names = ["load", *(f"cell_{i}" for i in range(6))]
    columns = np.array([False] + [True] * 6)
    smoothing = Smoothing(columns, (0.0, 6.0, 12.0), _chain_blur)
    model = fit_classifier(x, y, names, c_grid=(0.1, 1.0, 10.0), class_weight="none", inner_folds=5,
                           standardize=[True] + [False] * 6, smoothing=smoothing)
    assert set(model.smoothing_log_loss) == {"0", "6", "12"}
    assert model.smoothing_mm == min((float(s) for s, v in model.smoothing_log_loss.items()
                                      if v == min(model.smoothing_log_loss.values())))
    # the same choice refitted by hand on blurred maps predicts what the stored raw-cell weights predict
    fixed = fit_classifier(x, y, names, c_grid=(model.c,), class_weight="none", inner_folds=5,
                           standardize=[True] + [False] * 6,
                           smoothing=Smoothing(columns, (model.smoothing_mm,), _chain_blur))
    blurred = x.copy()
    if model.smoothing_mm:
        blurred[:, 1:] = _chain_blur(x[:, 1:], model.smoothing_mm)
    plain = fit_classifier(blurred, y, names, c_grid=(model.c,), class_weight="none", inner_folds=5,
                           standardize=[True] + [False] * 6)
    assert np.allclose(model.probability(x), fixed.probability(x), atol=1e-9)
    assert np.allclose(model.probability(x), plain.probability(blurred), atol=1e-9)
    again = LinearClassifier.from_json(model.to_json())
    assert again.smoothing_mm == model.smoothing_mm and again.smoothing_log_loss == model.smoothing_log_loss


def test_a_blur_that_helps_is_chosen():
    """Impairment driven by the load in cells 2-3, lesions in single cells: the blur shares evidence between them."""
    rng = np.random.default_rng(5)
    n = 80
    cells = np.zeros((n, 6))
    cells[np.arange(n), rng.integers(0, 6, n)] = rng.gamma(2.0, 0.5, n)
    y = ((cells[:, 2] + cells[:, 3]) + rng.normal(0, 0.2, n) > 0.5).astype(int)
    names = [f"cell_{i}" for i in range(6)]
    model = fit_classifier(cells, y, names, c_grid=(0.01, 0.1, 1.0, 10.0), class_weight="none", inner_folds=5,
                           standardize=[False] * 6,
                           smoothing=Smoothing(np.ones(6, bool), (0.0, 3.0), _chain_blur))
    assert model.smoothing_log_loss["3"] < model.smoothing_log_loss["0"] and model.smoothing_mm == 3.0
