"""Metrics on hand-made masks whose values are computed by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autopipe.evaluate.metrics import (
    METRIC_DEFINITIONS,
    absolute_volume_difference,
    aggregate,
    case_metrics,
    dice,
    hausdorff95,
    lesion_components,
    lesion_detection,
    volumetric_overlap_error,
)

ISO = (1.0, 1.0, 1.0)


def box(shape: tuple[int, ...], *slices: slice) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[slices] = True
    return mask


def test_identical_masks_are_perfect() -> None:
    mask = box((6, 6, 6), slice(1, 4), slice(1, 4), slice(2, 5))
    assert dice(mask, mask) == 1.0
    assert volumetric_overlap_error(mask, mask) == 0.0
    assert hausdorff95(mask, mask, ISO) == 0.0
    assert absolute_volume_difference(mask, mask, ISO) == 0.0


def test_disjoint_masks() -> None:
    a = box((6, 6, 6), slice(0, 2), slice(0, 2), slice(0, 2))
    b = box((6, 6, 6), slice(4, 6), slice(4, 6), slice(4, 6))
    assert dice(a, b) == 0.0
    assert volumetric_overlap_error(a, b) == 1.0


def test_half_overlapping_cubes() -> None:
    # 2x2x2 cubes shifted by one voxel: |P| = |R| = 8, |P∩R| = 4, |P∪R| = 12.
    pred = box((4, 4, 4), slice(0, 2), slice(0, 2), slice(0, 2))
    ref = box((4, 4, 4), slice(1, 3), slice(0, 2), slice(0, 2))
    assert dice(pred, ref) == pytest.approx(2 * 4 / 16)
    assert volumetric_overlap_error(pred, ref) == pytest.approx(1 - 4 / 12)


def test_empty_prediction() -> None:
    ref = box((4, 4, 4), slice(0, 2), slice(0, 2), slice(0, 1))  # 4 voxels of 8 mm^3
    empty = np.zeros_like(ref)
    assert dice(empty, ref) == 0.0
    assert volumetric_overlap_error(empty, ref) == 1.0
    assert math.isnan(hausdorff95(empty, ref, (2.0, 2.0, 2.0)))
    assert absolute_volume_difference(empty, ref, (2.0, 2.0, 2.0)) == pytest.approx(0.032)


def test_empty_reference() -> None:
    pred = box((4, 4, 4), slice(0, 1), slice(0, 1), slice(0, 1))
    empty = np.zeros_like(pred)
    assert dice(pred, empty) == 0.0
    assert volumetric_overlap_error(pred, empty) == 1.0
    assert math.isnan(hausdorff95(pred, empty, ISO))


def test_both_empty() -> None:
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert dice(empty, empty) == 1.0
    assert volumetric_overlap_error(empty, empty) == 0.0
    assert hausdorff95(empty, empty, ISO) == 0.0
    assert absolute_volume_difference(empty, empty, ISO) == 0.0


def test_avd_uses_spacing() -> None:
    # 10 and 4 voxels of 2 x 2 x 2.5 = 10 mm^3: 100 vs 40 mm^3, |0.1 - 0.04| ml.
    pred = box((5, 5, 5), slice(0, 5), slice(0, 2), slice(0, 1))
    ref = box((5, 5, 5), slice(0, 2), slice(0, 2), slice(0, 1))
    assert absolute_volume_difference(pred, ref, (2.0, 2.0, 2.5)) == pytest.approx(0.06)


def test_hd95_between_parallel_planes_with_anisotropic_spacing() -> None:
    # Two one-voxel-thick lines two rows apart; rows are 2 mm apart, so every distance is 4 mm.
    pred = box((5, 6), slice(0, 1), slice(None))
    ref = box((5, 6), slice(2, 3), slice(None))
    assert hausdorff95(pred, ref, (2.0, 1.0)) == pytest.approx(4.0)


def test_hd95_of_cube_shifted_along_a_3mm_axis() -> None:
    # 4^3 cube shifted one voxel along axis 0 (3 mm): the 16 voxels of each outer face are 3 mm from
    # the other surface (16/56 surface voxels > 5%), the inner face voxels 1 mm, the rest 0.
    pred = box((9, 8, 8), slice(2, 6), slice(2, 6), slice(2, 6))
    ref = box((9, 8, 8), slice(3, 7), slice(2, 6), slice(2, 6))
    assert hausdorff95(pred, ref, (3.0, 1.0, 1.0)) == pytest.approx(3.0)


def test_hd95_is_max_of_directed_percentiles() -> None:
    # P = a 10-voxel line plus one voxel 5 mm away; R = the line. P->R: ten 0s and one 5, whose linear
    # 95th percentile (rank 9.5 of 0..10) is 2.5; R->P: all 0. Pooling both directions would give 0.
    ref = box((6, 10), slice(0, 1), slice(None))
    pred = ref.copy()
    pred[5, 0] = True
    assert hausdorff95(pred, ref, (1.0, 1.0)) == pytest.approx(2.5)
    assert hausdorff95(ref, pred, (1.0, 1.0)) == pytest.approx(2.5)


def test_hd95_counts_array_border_voxels_as_surface() -> None:
    # P fills the 3x3 array: its 8 border voxels are surface, 4 at 1 mm and 4 at sqrt(2) mm from R's
    # centre voxel; 95th percentile of [1,1,1,1,√2,√2,√2,√2] is √2. R->P: 1 mm.
    pred = np.ones((3, 3), dtype=bool)
    ref = box((3, 3), slice(1, 2), slice(1, 2))
    assert hausdorff95(pred, ref, (1.0, 1.0)) == pytest.approx(math.sqrt(2))


def test_diagonal_voxels_are_one_lesion() -> None:
    mask3d = np.zeros((3, 3, 3), dtype=bool)
    mask3d[0, 0, 0] = mask3d[1, 1, 1] = True
    mask2d = np.eye(3, dtype=bool)
    assert lesion_components(mask3d)[1] == 1
    assert lesion_components(mask2d)[1] == 1
    labels, n = lesion_components(box((3, 5), slice(0, 1), slice(0, 1)) | box((3, 5), slice(0, 1), slice(2, 3)))
    assert n == 2 and labels[0, 0] != labels[0, 2]


def test_one_of_two_lesions_found_plus_a_false_positive() -> None:
    ref = box((10, 10, 10), slice(1, 3), slice(1, 3), slice(1, 3)) | box((10, 10, 10), *[slice(6, 8)] * 3)
    pred = box((10, 10, 10), slice(1, 3), slice(1, 3), slice(1, 2))  # half of lesion A (4 voxels)
    pred[8, 1, 8] = True  # a blob touching no lesion
    result = lesion_detection(pred, ref, ISO)
    assert (result["ref_lesions"], result["pred_lesions"]) == (2, 2)
    assert (result["detected"], result["true_positive_predictions"]) == (1, 1)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(0.5)
    # A: 2*4/(8+4) = 2/3; B missed: 0; mean 1/3.
    assert result["per_lesion_dice"] == pytest.approx(1 / 3)


def test_per_lesion_dice_takes_the_union_of_overlapping_predictions() -> None:
    # Reference lesion: row 0, columns 0-5 (6 voxels). Predictions: {(0,0),(0,1)} and
    # {(0,4),(0,5),(1,5),(2,5)}; union 6 voxels, 4 inside the lesion: Dice 2*4/(6+6) = 2/3.
    ref = box((4, 8), slice(0, 1), slice(0, 6))
    pred = np.zeros((4, 8), dtype=bool)
    pred[0, 0:2] = True
    pred[0, 4:6] = pred[1:3, 5] = True
    result = lesion_detection(pred, ref, (1.0, 1.0))
    assert (result["pred_lesions"], result["true_positive_predictions"], result["detected"]) == (2, 2, 1)
    assert result["per_lesion_dice"] == pytest.approx(2 / 3)
    assert result["precision"] == result["recall"] == result["f1"] == 1.0


def test_min_overlap_voxels_sets_the_matching_rule() -> None:
    ref = box((4, 8), slice(0, 1), slice(0, 6))
    pred = box((4, 8), slice(0, 3), slice(0, 1))  # 3 voxels, 1 inside the lesion
    assert lesion_detection(pred, ref, (1.0, 1.0))["recall"] == 1.0
    strict = lesion_detection(pred, ref, (1.0, 1.0), min_overlap_voxels=2)
    assert (strict["recall"], strict["precision"], strict["per_lesion_dice"]) == (0.0, 0.0, 0.0)


def test_lesion_conventions_for_empty_masks() -> None:
    empty = np.zeros((4, 4), dtype=bool)
    blob = box((4, 4), slice(0, 1), slice(0, 1))
    neither = lesion_detection(empty, empty, (1.0, 1.0))
    assert (neither["precision"], neither["recall"], neither["f1"]) == (1.0, 1.0, 1.0)
    assert math.isnan(neither["per_lesion_dice"])
    only_pred = lesion_detection(blob, empty, (1.0, 1.0))
    assert (only_pred["precision"], only_pred["f1"]) == (0.0, 0.0) and math.isnan(only_pred["recall"])
    only_ref = lesion_detection(empty, blob, (1.0, 1.0))
    assert (only_ref["recall"], only_ref["f1"], only_ref["per_lesion_dice"]) == (0.0, 0.0, 0.0)
    assert math.isnan(only_ref["precision"])


def test_case_metrics_keys_and_values() -> None:
    pred = box((4, 4, 4), slice(0, 2), slice(0, 2), slice(0, 2))
    ref = box((4, 4, 4), slice(1, 3), slice(0, 2), slice(0, 2))
    metrics = case_metrics(pred, ref, (1.0, 1.0, 2.0))
    assert list(metrics) == list(METRIC_DEFINITIONS)
    assert metrics["dice"] == pytest.approx(0.5)
    assert metrics["pred_volume_ml"] == metrics["ref_volume_ml"] == pytest.approx(0.016)  # 8 voxels of 2 mm^3
    assert (metrics["ref_lesions"], metrics["pred_lesions"], metrics["lesion_f1"]) == (1, 1, 1.0)


def test_case_metrics_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(4, 4, 4\).*\(4, 4, 5\)"):
        case_metrics(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool), ISO)
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (1.0, 1.0))


def test_aggregate_ignores_nan_and_counts_it() -> None:
    rows = [{"dice": 0.5, "hd95_mm": 2.0}, {"dice": float("nan"), "hd95_mm": 4.0}, {"dice": 1.0, "hd95_mm": 9.0}]
    summary = aggregate(rows)
    assert summary["dice"] == {"mean": 0.75, "std": 0.25, "median": 0.75, "n": 2, "n_undefined": 1}
    assert summary["hd95_mm"]["median"] == 4.0 and summary["hd95_mm"]["mean"] == pytest.approx(5.0)
    assert math.isnan(aggregate([{"dice": float("nan")}])["dice"]["mean"])
