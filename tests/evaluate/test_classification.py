"""Classifier metrics on hand cases (values worked out in the comments) and against scikit-learn on random data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from autopipe.evaluate.classification import (
    METRIC_DEFINITIONS,
    METRICS,
    accuracy,
    balanced_accuracy,
    bootstrap_intervals,
    calibration_bins,
    classification_metrics,
    confusion,
    f1_score,
    format_metrics,
    log_loss,
    paired_comparison,
    plot_calibration,
    roc_auc,
)

# predicted impaired (p >= 0.5): [1, 0, 1, 0, 0] -> TP subject 0, FN subject 1, FP subject 2, TN subjects 3 and 4
Y = [1, 1, 0, 0, 0]
P = [0.9, 0.4, 0.6, 0.2, 0.1]
PRED = [1, 0, 1, 0, 0]


def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative probabilities rounded to 0.05, so scores tie."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1).round(2)
    return y, np.round(p * 20) / 20


def test_definitions_cover_every_metric_the_interval_and_the_paired_test() -> None:
    assert set(METRIC_DEFINITIONS) == {*METRICS, "ci", "paired"}


def test_hand_case() -> None:
    assert confusion(Y, PRED) == (1, 1, 1, 2)
    assert accuracy(Y, PRED) == pytest.approx(0.6)
    assert f1_score(Y, PRED) == pytest.approx(0.5)  # 2 / (2 + 1 + 1)
    assert balanced_accuracy(Y, PRED) == pytest.approx((1 / 2 + 2 / 3) / 2)  # sensitivity 1/2, specificity 2/3
    # impaired 0.9 beats all three good subjects, 0.4 beats 0.2 and 0.1: 5 of 6 pairs
    assert roc_auc(Y, P) == pytest.approx(5 / 6)
    row = classification_metrics(Y, P)
    # -(ln 0.9 + ln 0.4 + ln 0.4 + ln 0.8 + ln 0.9) / 5
    expected_loss = -(2 * math.log(0.9) + 2 * math.log(0.4) + math.log(0.8)) / 5
    assert log_loss(Y, P) == pytest.approx(expected_loss)
    assert row == pytest.approx({"n": 5, "positives": 2, "accuracy": 0.6, "f1": 0.5,
                                 "balanced_accuracy": 7 / 12, "roc_auc": 5 / 6, "log_loss": expected_loss})
    assert isinstance(row["n"], int) and isinstance(row["positives"], int)


def test_threshold_is_inclusive_and_movable() -> None:
    assert classification_metrics([1, 0], [0.5, 0.49])["accuracy"] == 1.0
    # at 0.3 subject 1 (p 0.4) turns TP: TP 2, FP 1, FN 0, TN 2
    assert classification_metrics(Y, P, threshold=0.3)["f1"] == pytest.approx(4 / 5)


def test_auc_ties_count_half() -> None:
    # pairs (impaired, good): (0.5, 0.5) tie 1/2, (0.5, 0.2) 1, (0.8, 0.5) 1, (0.8, 0.2) 1 -> 3.5 / 4
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.8, 0.2]) == pytest.approx(0.875)
    assert roc_auc([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    assert roc_auc([0, 1], [2.0, -7.5]) == 0.0  # any real score, not only probabilities


def test_undefined_cases() -> None:
    assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(roc_auc([0, 0], [0.2, 0.5]))
    assert math.isnan(f1_score([0, 0, 0], [0, 0, 0]))
    assert f1_score([0, 0, 0], [0, 1, 0]) == 0.0
    assert balanced_accuracy([0, 0, 0, 0], [0, 1, 0, 0]) == pytest.approx(0.75)  # specificity only
    assert balanced_accuracy([1, 1], [1, 0]) == pytest.approx(0.5)  # sensitivity only


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_agrees_with_sklearn(seed: int) -> None:
    y, p = sample(37 + 11 * seed, seed)
    pred = (p >= 0.5).astype(int)
    assert accuracy(y, pred) == pytest.approx(sk.accuracy_score(y, pred))
    assert f1_score(y, pred) == pytest.approx(sk.f1_score(y, pred))
    assert balanced_accuracy(y, pred) == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p))
    assert log_loss(y, p) == pytest.approx(sk.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    score = np.random.default_rng(seed).normal(size=y.size)
    assert roc_auc(y.tolist(), score.tolist()) == pytest.approx(sk.roc_auc_score(y, score))


@pytest.mark.parametrize(("y", "pred"), [([0, 0, 0], [0, 1, 0]), ([1, 1, 1], [1, 0, 1]), ([0, 0], [0, 0])])
def test_balanced_accuracy_with_one_class_matches_sklearn(y: list[int], pred: list[int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sk.balanced_accuracy_score(y, pred)
    assert balanced_accuracy(y, pred) == pytest.approx(expected)


def test_bootstrap_is_deterministic_and_contains_the_point_estimate() -> None:
    y, p = sample(100, 7)
    first = bootstrap_intervals(y, p, seed=3)
    assert first == bootstrap_intervals(list(y), list(p), seed=3)
    assert first != bootstrap_intervals(y, p, seed=4)
    point = classification_metrics(y, p)
    for name in METRICS:
        low, high = first[name]
        assert low < point[name] < high, name
        if name != "log_loss":  # nats, unbounded above
            assert low >= 0 and high <= 1, name


def test_bootstrap_matches_a_plain_loop_over_the_same_resamples() -> None:
    y, p = sample(30, 5)
    intervals = bootstrap_intervals(y, p, resamples=200, level=0.9, seed=11)
    index = np.random.default_rng(11).integers(0, y.size, size=(200, y.size))
    values = {name: [] for name in METRICS}
    for rows in index:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = classification_metrics(y[rows], p[rows])
        for name in METRICS:
            values[name].append(row[name])
    for name in METRICS:
        finite = [v for v in values[name] if math.isfinite(v)]
        assert intervals[name] == pytest.approx(tuple(np.percentile(finite, [5, 95]))), name


def test_bootstrap_interval_narrows_with_more_subjects() -> None:
    # probabilities kept off 0 and 1: one confident miss (34.5 nats) would dominate the log loss of a sample
    small, large = (bootstrap_intervals(y, np.clip(p, 0.05, 0.95), resamples=500)
                    for y, p in (sample(n, 2) for n in (40, 400)))
    for name in METRICS:
        assert large[name][1] - large[name][0] < small[name][1] - small[name][0], name


def test_bootstrap_skips_undefined_resamples() -> None:
    one_class = bootstrap_intervals([1, 1, 1, 1], [0.9, 0.8, 0.3, 0.6], resamples=100)
    assert all(math.isnan(v) for v in one_class["roc_auc"])
    assert one_class["accuracy"][0] <= 0.75 <= one_class["accuracy"][1]
    tiny = bootstrap_intervals([1, 0], [0.8, 0.3], resamples=100)  # half the resamples hold one class
    assert tiny["roc_auc"] == (1.0, 1.0)


def test_paired_comparison_hand_case() -> None:
    # labels [1, 1, 0, 0, 0, 1]; a right on subjects 0, 1, 2, 3, 4 (wrong on 5); b right on 0, 3, 5
    y = [1, 1, 0, 0, 0, 1]
    a = [0.9, 0.6, 0.4, 0.1, 0.2, 0.3]
    b = [0.8, 0.4, 0.7, 0.3, 0.5, 0.6]
    result = paired_comparison(y, a, b, resamples=500, seed=3)
    assert result["n"] == 6
    assert result["accuracy_difference"] == pytest.approx(5 / 6 - 3 / 6)
    assert result["accuracy_ratio"] == pytest.approx(5 / 3)
    assert (result["only_a_right"], result["only_b_right"]) == (3, 1)
    assert result["mcnemar_p"] == pytest.approx(2 * (1 + 4) / 16)  # 2 P(X <= 1), X ~ Bin(4, 1/2)
    losses = -np.log([0.9, 0.6, 0.6, 0.9, 0.8, 0.3]) + np.log([0.8, 0.4, 0.3, 0.7, 0.5, 0.6])
    assert result["log_loss_difference"] == pytest.approx(losses.mean())
    low, high = result["accuracy_difference_ci"]
    assert low <= result["accuracy_difference"] <= high


def test_paired_comparison_of_a_model_with_itself_is_null() -> None:
    y = np.random.default_rng(0).integers(0, 2, 50)
    p = np.random.default_rng(1).random(50)
    result = paired_comparison(y, p, p)
    assert result["accuracy_difference"] == 0 and result["accuracy_difference_ci"] == [0.0, 0.0]
    assert result["accuracy_ratio"] == 1 and result["mcnemar_p"] == 1.0
    assert result["log_loss_difference_ci"] == [0.0, 0.0]


def test_paired_interval_is_narrower_than_unpaired_for_correlated_models() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    a = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, 300), 0, 1)
    b = np.clip(a + rng.normal(0, 0.05, 300), 0, 1)
    paired = paired_comparison(y, a, b, seed=0)
    unpaired = [bootstrap_intervals(y, p, seed=s)["accuracy"] for s, p in ((1, a), (2, b))]
    half_widths = [(high - low) / 2 for low, high in unpaired]
    low, high = paired["accuracy_difference_ci"]
    assert high - low < math.hypot(*half_widths) * 2


def test_calibration_bins_hand_case() -> None:
    y = [0, 1, 1, 1, 1, 0]
    p = [0.1, 0.15, 0.5, 0.55, 1.0, 0.2]
    expected = [
        {"low": 0.0, "high": 0.2, "count": 2, "mean_predicted": 0.125, "observed": 0.5},
        {"low": 0.2, "high": 0.4, "count": 1, "mean_predicted": 0.2, "observed": 0.0},  # 0.2 opens the 2nd bin
        {"low": 0.4, "high": 0.6, "count": 2, "mean_predicted": 0.525, "observed": 1.0},
        {"low": 0.8, "high": 1.0, "count": 1, "mean_predicted": 1.0, "observed": 1.0},  # last bin is closed
    ]
    bins = calibration_bins(y, p)
    assert len(bins) == len(expected)
    for got, want in zip(bins, expected, strict=True):
        assert got == pytest.approx(want)
    assert [b["count"] for b in calibration_bins(y, p, bins=2)] == [3, 3]


def test_plot_calibration_writes_a_png(tmp_path) -> None:
    y, p = sample(60, 1)
    curves = {"predicted segmentations": (y, p), "oracle (ground truth)": (list(y), np.clip(p + 0.1, 0, 1)),
              "baseline (total volume)": (y, np.full(y.size, 0.5))}
    path = plot_calibration(tmp_path / "figures" / "calibration.png", curves, "hand function: calibration")
    assert path == tmp_path / "figures" / "calibration.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in path.parent.iterdir()] == ["calibration.png"]


def test_format_metrics_shows_values_intervals_and_nan() -> None:
    rows = {"predicted": classification_metrics(Y, P), "baseline": classification_metrics([1, 1], [0.7, 0.2])}
    intervals = {"predicted": {"accuracy": (0.2, 1.0), "roc_auc": (0.5, 1.0)}}
    table = format_metrics(rows, intervals)
    lines = table.splitlines()
    assert len(lines) == 3
    assert all(word in lines[0] for word in ("n", "accuracy", "F1", "balanced accuracy", "ROC AUC"))
    assert lines[1].startswith("predicted") and "0.600 [0.200, 1.000]" in lines[1]
    assert "0.833 [0.500, 1.000]" in lines[1] and "0.500" in lines[1] and "0.583" in lines[1]
    assert lines[2].split()[:2] == ["baseline", "2"] and lines[2].split()[-2:] == ["n/a", "0.983"]  # one-class AUC
    assert "log loss" in lines[0]  # -(ln 0.7 + ln 0.2) / 2 = 0.983
    assert "[" not in format_metrics(rows)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: confusion([1, 0], [1]), "has 1"),
    (lambda: confusion([1, 2], [1, 0]), "only 0 and 1"),
    (lambda: accuracy(["a", "b"], [1, 0]), "only 0 and 1"),
    (lambda: f1_score([], []), "empty"),
    (lambda: roc_auc([1, 0], [0.2, float("nan")]), "finite"),
    (lambda: roc_auc([[1, 0]], [[0.2, 0.3]]), "one-dimensional"),
    (lambda: classification_metrics([1, 0], [1.5, 0.2]), r"within \[0, 1\]"),
    (lambda: classification_metrics([1, 0], [0.5, -0.1]), r"within \[0, 1\]"),
    (lambda: calibration_bins([1, 0], [0.5, 0.2], bins=0), "bins"),
    (lambda: bootstrap_intervals([1, 0], [0.5, 0.2], resamples=0), "resamples"),
    (lambda: bootstrap_intervals([1, 0], [0.5, 0.2], level=1.0), "level"),
])
def test_invalid_input_raises(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
