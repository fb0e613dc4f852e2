"""Small-lesion removal, and the cross-validation decision to use it, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from autopipe.evaluate.postprocessing import choose_min_lesion_volume
from autopipe.predict.postprocess import components, remove_small_lesions

SHAPE = (12, 12, 12)
ISO = (1.0, 1.0, 1.0)


def cube_and_speck() -> tuple[np.ndarray, np.ndarray]:
    """A 3x3x3 lesion (27 mm^3 at 1 mm) and a 1-voxel speck far from it, as separate masks."""
    cube = np.zeros(SHAPE, dtype=bool)
    cube[2:5, 2:5, 2:5] = True
    speck = np.zeros(SHAPE, dtype=bool)
    speck[9, 9, 9] = True
    return cube, speck


def test_components_use_full_connectivity() -> None:
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 1] = mask[3, 3, 0] = True  # the first two touch by a corner only
    labels, n = components(mask)
    assert n == 2 and labels[0, 0, 0] == labels[1, 1, 1] != labels[3, 3, 0]


def test_remove_small_lesions_by_physical_volume() -> None:
    cube, speck = cube_and_speck()
    spacing = (1.0, 1.0, 2.0)  # 2 mm^3 voxels: cube 54 mm^3, speck 2 mm^3
    kept = remove_small_lesions(cube | speck, spacing, 10)
    assert kept.dtype == bool and np.array_equal(kept, cube)
    assert np.array_equal(remove_small_lesions(cube | speck, spacing, 54), cube)  # exactly the minimum: kept
    assert not remove_small_lesions(cube | speck, spacing, 55).any()
    assert np.array_equal(remove_small_lesions(cube | speck, spacing, 0), cube | speck)


def test_removing_a_spurious_speck_is_chosen() -> None:
    # Prediction = the lesion + a false speck. Without postprocessing: Dice 2*27/(28+27) = 54/55,
    # lesion F1 = 2 * 1/2 * 1 / (1/2 + 1) = 2/3. 10 and 20 mm^3 drop only the speck: Dice 1, F1 1.
    # 50 and 100 mm^3 also drop the 27 mm^3 lesion: Dice 0. The largest safe candidate is 20.
    cube, speck = cube_and_speck()
    decision = choose_min_lesion_volume([(cube | speck, cube, ISO)])
    assert decision["min_lesion_volume_mm3"] == 20
    scores = {c["min_lesion_volume_mm3"]: (c["dice"], c["lesion_f1"]) for c in decision["candidates"]}
    assert scores[0] == pytest.approx((54 / 55, 2 / 3))
    assert scores[10] == scores[20] == pytest.approx((1.0, 1.0))
    assert scores[50] == scores[100] == pytest.approx((0.0, 0.0))
    assert "20 mm^3" in decision["reason"] and "0.6667" in decision["reason"]


def test_removing_a_real_small_lesion_is_not_chosen() -> None:
    # The speck is a real lesion and predicted: any removal lowers Dice (1 -> 54/55) and F1 (1 -> 2/3).
    cube, speck = cube_and_speck()
    decision = choose_min_lesion_volume([(cube | speck, cube | speck, ISO)])
    assert decision["min_lesion_volume_mm3"] == 0
    assert "keeping every predicted lesion" in decision["reason"]


def test_gains_on_one_case_cancelled_by_another_are_not_chosen() -> None:
    # At 10 mm^3 case 1 gains (Dice 54/55 -> 1, F1 2/3 -> 1) and case 2 loses as much (1 -> 54/55,
    # 1 -> 2/3): the means do not move, so F1 does not rise by 0.01.
    cube, speck = cube_and_speck()
    cases = [(cube | speck, cube, ISO), (cube | speck, cube | speck, ISO)]
    decision = choose_min_lesion_volume(cases, candidates_mm3=(0, 10))
    assert [c["min_lesion_volume_mm3"] for c in decision["candidates"]] == [0, 10]
    assert decision["min_lesion_volume_mm3"] == 0


def test_rejects_no_cases_and_negative_candidates() -> None:
    cube, _ = cube_and_speck()
    with pytest.raises(ValueError):
        choose_min_lesion_volume([])
    with pytest.raises(ValueError):
        choose_min_lesion_volume([(cube, cube, ISO)], candidates_mm3=(0, -5))


def test_an_f1_gain_that_lowers_dice_is_not_chosen() -> None:
    # Case 1: lesion + 3 false specks; removal at 10 mm^3: Dice 54/57 -> 1, F1 0.4 -> 1.
    # Case 2: lesion + a real, predicted 2x2x2 lesion (8 mm^3); removal: Dice 1 -> 54/62, F1 1 -> 2/3.
    # Means: F1 0.7 -> 0.833 (a gain) but Dice 0.974 -> 0.935 (a loss): keep everything.
    cube, _ = cube_and_speck()
    specks = np.zeros(SHAPE, dtype=bool)
    specks[9, 9, 9] = specks[9, 2, 9] = specks[2, 9, 9] = True
    small = np.zeros(SHAPE, dtype=bool)
    small[8:10, 8:10, 8:10] = True
    decision = choose_min_lesion_volume([(cube | specks, cube, ISO), (cube | small, cube | small, ISO)], (0, 10))
    scores = {c["min_lesion_volume_mm3"]: (c["dice"], c["lesion_f1"]) for c in decision["candidates"]}
    assert scores[0] == pytest.approx(((54 / 57 + 1) / 2, 0.7))
    assert scores[10] == pytest.approx(((1 + 54 / 62) / 2, (1 + 2 / 3) / 2))
    assert decision["min_lesion_volume_mm3"] == 0
