"""lesions.tsv: lesion count (26-connectivity), volumes in ml and the world centroid of a hand-made mask."""

import csv
import json
import math

import numpy as np
import pytest

from autopipe.predict.lesion_table import COLUMNS, lesion_table_row, write_lesion_table

# 2 x 1 x 3 mm voxels (6 mm3), axes flipped and shifted: voxel (i, j, k) -> (-2 i + 100, j - 50, 3 k + 7) mm
AFFINE = np.array([[-2.0, 0, 0, 100], [0, 1, 0, -50], [0, 0, 3, 7], [0, 0, 0, 1]])


def hand_made_mask():
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[2:4, 2:4, 2:4] = 1  # lesion A: 8 voxels
    mask[4, 4, 4] = 1  # touches A only by a corner: the same lesion under 26-connectivity (9 voxels)
    mask[10:15, 10, 10] = 1  # lesion B: 5 voxels
    mask[18, 18, 18] = 1  # lesion C: 1 voxel
    return mask


def test_row_counts_corner_touching_voxels_as_one_lesion_and_measures_in_ml():
    row = lesion_table_row(hand_made_mask(), AFFINE)
    assert row["lesion_count"] == 3
    assert row["total_volume_ml"] == pytest.approx(15 * 6 / 1000)
    assert row["largest_lesion_ml"] == pytest.approx(9 * 6 / 1000)
    voxels = np.argwhere(hand_made_mask())
    expected = (AFFINE[:3, :3] @ voxels.T).T.mean(axis=0) + AFFINE[:3, 3]
    assert [row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]] == pytest.approx(list(expected))
    single = np.zeros((5, 5, 5), bool)
    single[1, 2, 3] = True
    assert lesion_table_row(single, AFFINE)["centroid_x_mm"] == pytest.approx(98.0)  # -2 * 1 + 100: RAS world x
    assert lesion_table_row(single, AFFINE)["centroid_z_mm"] == pytest.approx(16.0)


def test_an_empty_mask_has_no_lesions_and_no_centroid():
    row = lesion_table_row(np.zeros((4, 4, 4)), AFFINE)
    assert row["lesion_count"] == 0 and row["total_volume_ml"] == 0 and row["largest_lesion_ml"] == 0
    assert math.isnan(row["centroid_x_mm"])


def test_table_and_sidecar_describe_every_column(tmp_path):
    rows = {"b": lesion_table_row(np.zeros((4, 4, 4)), AFFINE), "a": lesion_table_row(hand_made_mask(), AFFINE)}
    table, sidecar = write_lesion_table(tmp_path, rows)
    with open(table, newline="") as handle:
        read = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["case"] for r in read] == ["a", "b"] and list(read[0]) == list(COLUMNS)
    assert read[0]["lesion_count"] == "3" and float(read[0]["total_volume_ml"]) == pytest.approx(0.09)
    assert read[1]["centroid_x_mm"] == "n/a"
    described = json.loads(sidecar.read_text())
    assert set(described) == set(COLUMNS) and all("Description" in v for v in described.values())
    assert described["total_volume_ml"]["Units"] == "ml"
    assert not list(tmp_path.glob(".tmp_*"))
