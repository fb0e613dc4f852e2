"""Metrics of a binary hand-function classifier (1 = impaired, the positive class; 0 = good), with bootstrap
confidence intervals, calibration bins and a reliability diagram.

The math is plain numpy so every number can be traced to the definition in `METRIC_DEFINITIONS`, which reports
cite; the tests check each metric against scikit-learn. Inputs are 1-D 0/1 labels and probabilities (or, for
`roc_auc`, any real scores) as lists or arrays; anything else raises ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autopipe.files import save_png

Labels = Sequence[int] | np.ndarray
Scores = Sequence[float] | np.ndarray

METRICS = ("accuracy", "f1", "balanced_accuracy", "roc_auc", "log_loss")

METRIC_DEFINITIONS: dict[str, str] = {
    "accuracy": "(TP + TN) / N at threshold 0.5 (predicted impaired when probability >= 0.5)",
    "f1": "2 TP / (2 TP + FP + FN), impaired = positive; undefined when there are no impaired subjects and none "
          "is predicted impaired",
    "balanced_accuracy": "(sensitivity + specificity) / 2, sensitivity = TP / (TP + FN), specificity = "
                         "TN / (TN + FP); the recall of the one class present when only one is",
    "roc_auc": "probability that a random impaired subject scores above a random good one (ties count 1/2; "
               "Mann-Whitney U / (n1 n0)); undefined when only one class is present",
    "log_loss": "-mean(y ln p + (1 - y) ln(1 - p)) in nats, p clipped to [1e-15, 1 - 1e-15]: a proper score, lower "
                "is better; ln 2 = 0.693 for a constant 1/2",
    "paired": "two models scored on the same subjects: the difference a - b of accuracy and of log loss, the ratio "
              "of accuracies a / b, each with a paired percentile bootstrap interval (both models' predictions of a "
              "resampled subject stay together); McNemar's exact test on the subjects exactly one of the two "
              "classifies correctly (two-sided binomial p with 1/2, scipy.stats.binomtest)",
    "ci": "percentile bootstrap over subjects: resample subjects with replacement (2000 times unless stated), "
          "recompute the metric, take the 2.5th and 97.5th percentiles of the resampled values (95% level), "
          "leaving out resamples where the metric is undefined",
}


def confusion(y_true: Labels, y_pred: Labels) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) with 1 = impaired as the positive class."""
    y, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _same_length(y, p, "y_pred")
    return (int(np.sum(y & p)), int(np.sum(~y & p)), int(np.sum(y & ~p)), int(np.sum(~y & ~p)))


def accuracy(y_true: Labels, y_pred: Labels) -> float:
    """(TP + TN) / N."""
    tp, fp, fn, tn = confusion(y_true, y_pred)
    return (tp + tn) / (tp + fp + fn + tn)


def f1_score(y_true: Labels, y_pred: Labels) -> float:
    """2 TP / (2 TP + FP + FN); nan when that is 0/0 (no impaired subjects, none predicted)."""
    tp, fp, fn, _ = confusion(y_true, y_pred)
    return float(_f1(np.array([tp]), np.array([fp]), np.array([fn]))[0])


def balanced_accuracy(y_true: Labels, y_pred: Labels) -> float:
    """Mean of sensitivity and specificity over the classes present in `y_true` (as scikit-learn: with one class,
    that class's recall)."""
    tp, fp, fn, tn = confusion(y_true, y_pred)
    return float(_balanced(*(np.array([v]) for v in (tp, fp, fn, tn)))[0])


def roc_auc(y_true: Labels, score: Scores) -> float:
    """Area under the ROC curve as Mann-Whitney U / (n1 n0), ties counting 1/2 (the rank-sum statistic with
    average ranks); nan when only one class is present. `score` may be any finite real, higher = more impaired."""
    y = _labels(y_true, "y_true")
    s = _finite(score, "score")
    _same_length(y, s, "score")
    _, inverse = np.unique(s, return_inverse=True)
    return float(_auc(np.where(y, 1.0, 0.0)[None], np.where(y, 0.0, 1.0)[None], inverse)[0])


def log_loss(y_true: Labels, probability: Scores) -> float:
    """Mean negative log-likelihood of the labels under the probabilities (nats), as METRIC_DEFINITIONS says."""
    y, p = _pair(y_true, probability)
    return float(np.mean(_losses(y, p)))


def classification_metrics(y_true: Labels, probability: Scores,
                           threshold: float = 0.5) -> dict[str, float]:
    """n, positives (impaired subjects) and every metric in METRICS; impaired predicted when probability >=
    threshold, AUC from the probabilities themselves."""
    y, p = _pair(y_true, probability)
    pred = (p >= threshold).astype(int)
    return {"n": int(y.size), "positives": int(y.sum()), "accuracy": accuracy(y, pred), "f1": f1_score(y, pred),
            "balanced_accuracy": balanced_accuracy(y, pred), "roc_auc": roc_auc(y, p), "log_loss": log_loss(y, p)}


def bootstrap_intervals(y_true: Labels, probability: Scores, *,
                        resamples: int = 2000, level: float = 0.95, seed: int = 0,
                        threshold: float = 0.5) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each metric in METRICS: `resamples` resamples of the subjects with
    replacement (numpy Generator(seed), so deterministic), the (1 - level)/2 and 1 - (1 - level)/2 percentiles
    of the metric over the resamples where it is defined; (nan, nan) with fewer than 2 such resamples."""
    y, p = _pair(y_true, probability)
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    n, resamples = y.size, int(resamples)
    index = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    offsets = (np.arange(resamples)[:, None] * n + index).ravel()
    counts = np.bincount(offsets, minlength=resamples * n).reshape(resamples, n).astype(float)
    pred = p >= threshold
    tp, fp, fn, tn = (counts @ (a & b).astype(float) for a, b in ((y, pred), (~y, pred), (y, ~pred), (~y, ~pred)))
    _, inverse = np.unique(p, return_inverse=True)
    values = {"accuracy": (tp + tn) / n, "f1": _f1(tp, fp, fn), "balanced_accuracy": _balanced(tp, fp, fn, tn),
              "roc_auc": _auc(counts * y, counts * ~y, inverse), "log_loss": counts @ _losses(y, p) / n}
    return {name: _percentile_interval(values[name], level) for name in METRICS}


def paired_comparison(y_true: Labels, probability_a: Scores, probability_b: Scores, *, resamples: int = 2000,
                      level: float = 0.95, seed: int = 0, threshold: float = 0.5) -> dict:
    """Model a against model b on the same subjects, as METRIC_DEFINITIONS["paired"] says: accuracy difference
    and ratio, log-loss difference (each with its interval), and McNemar's counts and exact p-value."""
    from scipy.stats import binomtest

    y, a = _pair(y_true, probability_a)
    _, b = _pair(y_true, probability_b)
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")
    right_a, right_b = (a >= threshold) == y, (b >= threshold) == y
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    index = np.random.default_rng(seed).integers(0, y.size, size=(int(resamples), y.size))
    acc_a, acc_b = right_a[index].mean(1), right_b[index].mean(1)
    loss_a, loss_b = _losses(y, a), _losses(y, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(acc_b > 0, acc_a / acc_b, np.nan)

    def interval(values: np.ndarray) -> list[float]:
        return list(_percentile_interval(values, level))

    accuracy_a, accuracy_b = float(right_a.mean()), float(right_b.mean())
    return {"n": int(y.size),
            "accuracy_difference": accuracy_a - accuracy_b, "accuracy_difference_ci": interval(acc_a - acc_b),
            "accuracy_ratio": accuracy_a / accuracy_b if accuracy_b > 0 else math.nan,
            "accuracy_ratio_ci": interval(ratios),
            "log_loss_difference": float(np.mean(loss_a - loss_b)),
            "log_loss_difference_ci": interval((loss_a - loss_b)[index].mean(1)),
            "only_a_right": only_a, "only_b_right": only_b,
            "mcnemar_p": float(binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0}


def calibration_bins(y_true: Labels, probability: Scores,
                     bins: int = 5) -> list[dict]:
    """Equal-width bins over [0, 1] ([low, high), the last closed); for each non-empty bin its edges, count,
    mean predicted probability and observed fraction impaired."""
    y, p = _pair(y_true, probability)
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    bins = int(bins)
    edges = np.arange(bins + 1) / bins
    which = np.minimum(np.searchsorted(edges, p, side="right") - 1, bins - 1)
    rows = []
    for i in range(bins):
        inside = which == i
        if inside.any():
            rows.append({"low": float(edges[i]), "high": float(edges[i + 1]), "count": int(inside.sum()),
                         "mean_predicted": float(p[inside].mean()), "observed": float(y[inside].mean())})
    return rows


def plot_calibration(path: Path, curves: dict[str, tuple[Sequence[int], Sequence[float]]], title: str,
                     bins: int = 5) -> Path:
    """Reliability diagram PNG: observed fraction impaired against mean predicted probability per bin for each
    named (labels, probabilities) curve, the diagonal of perfect calibration, and below it a histogram of each
    curve's predicted probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    binned = {name: calibration_bins(y, p, bins) for name, (y, p) in curves.items()}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ":", color="gray", label="perfectly calibrated")
    for name, rows in binned.items():
        top.plot([r["mean_predicted"] for r in rows], [r["observed"] for r in rows], "o-", label=name)
    for name, (_, p) in curves.items():
        bottom.hist(np.asarray(p, dtype=float), bins=np.arange(bins + 1) / bins, histtype="step", linewidth=1.5,
                    label=name)
    top.set_ylabel("observed fraction impaired")
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("predicted probability of impaired (upper panel: mean per bin)")
    bottom.set_ylabel("subjects")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)


def format_metrics(rows: dict[str, dict], intervals: dict[str, dict] | None = None) -> str:
    """Plain-text table, one row per name: n, accuracy, F1, balanced accuracy, ROC AUC, log loss, each as "0.812" or
    "0.812 [0.700, 0.900]" where `intervals[name][metric]` is given; "n/a" for undefined values."""
    header = ["", "n", "accuracy", "F1", "balanced accuracy", "ROC AUC", "log loss"]
    table = [header]
    for name, row in rows.items():
        bounds = (intervals or {}).get(name, {})
        n = row.get("n")
        table.append([name, "n/a" if n is None else str(int(n))]
                     + [_with_interval(row.get(metric, math.nan), bounds.get(metric)) for metric in METRICS])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for name, *cells in table:
        padded = [cell.rjust(width) for cell, width in zip(cells, widths[1:], strict=True)]
        lines.append("  ".join([name.ljust(widths[0]), *padded]).rstrip())
    return "\n".join(lines)


def _with_interval(value: float, bounds: tuple[float, float] | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if bounds is None or not all(math.isfinite(b) for b in bounds):
        return f"{value:.3f}"
    return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The (1 - level)/2 and 1 - (1 - level)/2 percentiles of the finite resampled values; nan with fewer than 2."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return (math.nan, math.nan)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return (float(low), float(high))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def _balanced(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    positives, negatives = tp + fn, tn + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity, specificity = tp / positives, tn / negatives
    return np.where(positives == 0, specificity, np.where(negatives == 0, sensitivity,
                                                          (sensitivity + specificity) / 2))


def _losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each subject's negative log-likelihood (nats), p clipped to [1e-15, 1 - 1e-15]."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -np.where(y, np.log(p), np.log1p(-p))


def _auc(positive: np.ndarray, negative: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC per row from per-subject weights (rows x subjects) of impaired and good subjects;
    `inverse` maps subjects to the rank of their distinct score."""
    rows, levels = positive.shape[0], int(inverse.max()) + 1
    offsets = (np.arange(rows)[:, None] * levels + inverse[None]).ravel()

    def per_level(weights: np.ndarray) -> np.ndarray:
        return np.bincount(offsets, weights=weights.ravel(), minlength=rows * levels).reshape(rows, levels)

    pos, neg = per_level(positive), per_level(negative)
    below = np.cumsum(neg, axis=1) - neg
    u = np.sum(pos * (below + neg / 2), axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, u / pairs, np.nan)


def _labels(values: Labels, name: str) -> np.ndarray:
    array = _vector(values, name)
    if array.dtype != bool and not (np.issubdtype(array.dtype, np.number) and np.isin(array, (0, 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1 labels, got values {np.unique(array)[:5].tolist()}")
    return array.astype(bool)


def _finite(values: Scores, name: str) -> np.ndarray:
    array = _vector(values, name)
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numbers, got dtype {array.dtype}")
    array = array.astype(float)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got nan or inf")
    return array


def _pair(y_true: Labels, probability: Scores) -> tuple[np.ndarray, np.ndarray]:
    y, p = _labels(y_true, "y_true"), _finite(probability, "probability")
    _same_length(y, p, "probability")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"probability must lie within [0, 1], got values from {p.min():g} to {p.max():g}")
    return y, p


def _vector(values: Scores, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def _same_length(y: np.ndarray, other: np.ndarray, name: str) -> None:
    if y.size != other.size:
        raise ValueError(f"y_true has {y.size} values but {name} has {other.size}")
