"""The reconstruction + segmentation table: one subject's numbers, pooling over folds, Spearman, the text."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from autopipe.evaluate.approach_comparison import format_comparison, subject_metrics, summarize

NAN = math.nan


def test_identical_images_score_perfectly_whatever_their_phase():
    rng = np.random.default_rng(0)
    target = (rng.random((3, 8, 8)) + 0.5) * np.exp(1j * rng.uniform(-np.pi, np.pi, (3, 8, 8)))
    row = subject_metrics(target, None, target.copy(), None)
    assert row == {"ssim": pytest.approx(1.0), "psnr": math.inf, "nmse": 0.0}  # no Dice without a probability
    rotated = subject_metrics(target, None, np.abs(target) * np.exp(0.7j), None)  # magnitudes are compared
    assert rotated["ssim"] == pytest.approx(1.0) and rotated["nmse"] == pytest.approx(0.0, abs=1e-12)


def test_dice_and_per_lesion_dice_of_a_known_mask_pair():
    """Lesion A (8 voxels over slices 0-1) found whole, lesion B (4 voxels on slice 2) half found:
    Dice 2 * 10 / (10 + 12), per-lesion Dice (1 + 2 * 2 / (2 + 4)) / 2."""
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[0:2, 1:3, 1:3] = 1
    labels[2, 5:7, 5:7] = 1
    probability = np.full((3, 8, 8), 0.1)
    probability[0:2, 1:3, 1:3] = 0.9
    probability[2, 5, 5:7] = 0.8
    probability[1, 6, 0] = 0.5  # not above 0.5: not lesion
    target = np.ones((3, 8, 8))
    row = subject_metrics(target, labels, 0.5 * target, np.stack([1 - probability, probability], axis=1))
    assert row["dice"] == pytest.approx(20 / 22)
    assert row["per_lesion_dice"] == pytest.approx((1 + 4 / 6) / 2)
    assert row["nmse"] == pytest.approx(0.25)
    assert "dice_combined" not in row  # background and lesion alone: no tissue classes


def test_tissue_and_lesion_dice_per_class_and_combined():
    """Classes background, csf, wm, lesion (3): csf found exactly (Dice 1), half of wm's 8 pixels called
    csf (wm Dice 2 * 4 / (4 + 8) = 2/3; csf 2 * 4 / (4 + 8) = 2/3 with the extra 4), the lesion's 4 pixels
    found plus 4 false ones (Dice 2 * 4 / (8 + 4) = 2/3). Lesion metrics stay lesion-only."""
    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, 0:2, 0:2] = 1  # csf, 4 pixels
    labels[0, 4:6, 0:4] = 2  # wm, 8 pixels
    labels[0, 6:8, 6:8] = 3  # lesion, 4 pixels
    predicted = labels.copy()
    predicted[0, 4:6, 0:2] = 1  # 4 wm pixels called csf
    predicted[0, 6:8, 4:6] = 3  # 4 background pixels called lesion
    probabilities = np.moveaxis(np.eye(4)[predicted], -1, 1) * 0.7 + 0.075  # argmax = predicted
    row = subject_metrics(np.ones((1, 8, 8)), labels, np.ones((1, 8, 8)), probabilities,
                          ("background", "csf", "wm", "lesion"), (3,))
    assert row["dice_csf"] == pytest.approx(2 * 4 / (8 + 4))
    assert row["dice_wm"] == pytest.approx(2 * 4 / (4 + 8))
    assert row["dice_lesion"] == row["dice"] == pytest.approx(2 * 4 / (8 + 4))
    assert row["dice_combined"] == pytest.approx(np.mean([2 / 3, 2 / 3, 2 / 3]))
    assert row["per_lesion_dice"] == pytest.approx(2 / 3)  # one reference lesion, overlapped by one component


def test_paired_tests_against_mtlrs_are_scipys_wilcoxon_on_common_subjects():
    from scipy.stats import wilcoxon

    from autopipe.evaluate.approach_comparison import paired_tests

    mtlrs = {c: segmented(0.8, 0.7, v) for c, v in zip("abcde", [0.5, 0.6, 0.4, 0.7, 0.3], strict=True)}
    other = {c: segmented(0.8, 0.7, v) for c, v in zip("abcdf", [0.3, 0.65, 0.1, 0.5, 0.9], strict=True)}
    tests = paired_tests(other, mtlrs, ("per_lesion_dice", "ssim"))
    differences = [-0.2, 0.05, -0.3, -0.2]  # subjects a-d; e and f are in one only
    assert tests["per_lesion_dice"]["n"] == 4
    assert tests["per_lesion_dice"]["median_difference"] == pytest.approx(np.median(differences))
    assert tests["per_lesion_dice"]["p"] == pytest.approx(wilcoxon(differences).pvalue)
    assert math.isnan(tests["ssim"]["p"]) and tests["ssim"]["median_difference"] == 0  # no difference to test


def fold(name, per_subject, seconds):
    return {"fold": name, "methods": list(per_subject), "per_subject": per_subject, "seconds_per_slice": seconds}


def quality(ssim, nmse, psnr=30.0):
    return {"ssim": ssim, "psnr": psnr, "nmse": nmse}


def segmented(ssim, dice, per_lesion):
    return {**quality(ssim, 0.1), "dice": dice, "per_lesion_dice": per_lesion}


@pytest.fixture
def folds():
    """Two folds; mtlrs has 5 subjects (one without lesions), pretrained 2, end_to_end 3 tied ones."""
    first = fold("0", {
        "zero_filled": {"a": quality(0.5, 0.1), "b": quality(0.6, 0.2, math.inf)},
        "mtlrs": {"a": segmented(0.80, 0.7, 0.5), "b": segmented(0.85, 0.8, 0.6), "c": segmented(0.9, 1.0, NAN)},
        "pretrained": {"a": segmented(0.7, 0.5, 0.3), "b": segmented(0.75, 0.6, 0.4)},
    }, {"zero_filled": 0.01, "mtlrs": 0.2, "pretrained": 0.3})
    second = fold("1", {
        "zero_filled": {"d": quality(0.7, 0.3), "e": quality(0.8, 0.4)},
        "mtlrs": {"d": segmented(0.70, 0.6, 0.4), "e": segmented(0.95, 0.9, 0.7)},
        "end_to_end": {"d": segmented(0.6, 0.5, 0.5), "e": segmented(0.7, 0.5, 0.5), "f": segmented(0.8, 0.5, 0.5)},
    }, {"zero_filled": 0.03, "mtlrs": 0.4, "end_to_end": 0.5})
    return [first, second]


def test_summary_pools_every_subject_of_every_fold(folds):
    summary = summarize(folds)
    assert summary["folds"] == ["0", "1"]
    assert list(summary["methods"]) == ["zero_filled", "mtlrs", "pretrained", "end_to_end"]
    zero_filled = summary["methods"]["zero_filled"]
    assert zero_filled["subjects"] == 4
    assert zero_filled["nmse"] == pytest.approx({"mean": 0.25, "std": math.sqrt(0.0125)})
    assert zero_filled["psnr"] == pytest.approx({"mean": 30.0, "std": 0.0})  # the inf of identical images left out
    assert zero_filled["seconds_per_slice"] == pytest.approx(0.02)
    assert "dice" not in zero_filled and "spearman" not in zero_filled
    mtlrs = summary["methods"]["mtlrs"]
    assert mtlrs["subjects"] == 5
    assert mtlrs["ssim"] == pytest.approx({"mean": 0.84, "std": float(np.std([0.8, 0.85, 0.9, 0.7, 0.95]))})
    assert mtlrs["dice"]["mean"] == pytest.approx(0.8)
    assert mtlrs["per_lesion_dice"] == pytest.approx({"mean": 0.55, "std": float(np.std([0.5, 0.6, 0.4, 0.7]))})
    assert "wilcoxon_vs_mtlrs" not in mtlrs
    # end_to_end against mtlrs on subjects d and e: per-lesion Dice 0.5 - 0.4, 0.5 - 0.7
    assert summary["methods"]["end_to_end"]["wilcoxon_vs_mtlrs"]["per_lesion_dice"]["n"] == 2
    assert summary["methods"]["end_to_end"]["wilcoxon_vs_mtlrs"]["per_lesion_dice"]["median_difference"] == \
        pytest.approx(-0.05)


def test_spearman_between_ssim_and_per_lesion_dice_matches_scipy(folds):
    summary = summarize(folds)
    ssim, per_lesion = [0.80, 0.85, 0.70, 0.95], [0.5, 0.6, 0.4, 0.7]  # mtlrs, the subject without lesions left out
    rho, p = spearmanr(ssim, per_lesion)
    assert summary["methods"]["mtlrs"]["spearman"] == pytest.approx({"rho": rho, "p": p, "n": 4})
    # each subject once: its means over the approaches that segment it (a, b: mtlrs + pretrained; d, e: mtlrs +
    # end_to_end; f: end_to_end; c has no lesion)
    means_x = [(0.80 + 0.7) / 2, (0.85 + 0.75) / 2, (0.70 + 0.6) / 2, (0.95 + 0.7) / 2, 0.8]
    means_y = [(0.5 + 0.3) / 2, (0.6 + 0.4) / 2, (0.4 + 0.5) / 2, (0.7 + 0.5) / 2, 0.5]
    rho, p = spearmanr(means_x, means_y)
    assert summary["spearman_subject_means"] == pytest.approx({"rho": rho, "p": p, "n": 5})
    pretrained, tied = summary["methods"]["pretrained"]["spearman"], summary["methods"]["end_to_end"]["spearman"]
    assert math.isnan(pretrained["rho"]) and math.isnan(pretrained["p"]) and pretrained["n"] == 2  # < 3 subjects
    assert math.isnan(tied["rho"]) and tied["n"] == 3  # constant per-lesion Dice has no rank correlation


def test_format_comparison_has_a_row_per_method_and_only_defined_correlations(folds):
    text = format_comparison(summarize(folds))
    rows = {line.split()[0]: line for line in text.splitlines()[2:6]}
    assert list(rows) == ["zero_filled", "mtlrs", "pretrained", "end_to_end"]
    assert "0.840 ± 0.086" in rows["mtlrs"] and rows["zero_filled"].split()[-3:-1] == ["-", "-"]
    assert "5 subject(s), folds 0, 1" in text
    assert "Spearman SSIM vs per-lesion Dice, mtlrs: rho" in text
    assert "pretrained: rho" not in text and "end_to_end: rho" not in text
    assert "all approaches, each subject once (its means over the approaches): rho" in text
    assert "end_to_end - mtlrs (median paired difference, Wilcoxon p, n): ssim -0.175" in text
