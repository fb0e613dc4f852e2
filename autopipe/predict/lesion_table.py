"""OUT/lesions.tsv: one row per predicted case with its lesion count, volume and where the lesions lie.

Lesions are the connected components of the 0/1 mask with 26-connectivity (voxels touching by a face, an edge
or a corner belong to one lesion), as lesion-wise metrics of white-matter lesions usually count them. Volumes
come from the voxel size of the scan's own grid (|det| of the affine), the centroid from its affine, so the
numbers describe the mask exactly as written (RAS+ world coordinates in mm, the NIfTI convention). A sidecar
lesions.json describes each column the BIDS way (column -> Description, Units), so the table reads on its own.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from autopipe.files import write_json, write_text_atomic

TABLE_FILE = "lesions.tsv"
SIDECAR_FILE = "lesions.json"

COLUMNS: dict[str, dict[str, str]] = {
    "case": {"Description": "case id of the input scans (CASE in CASE_0000.nii.gz)"},
    "lesion_count": {"Description": "number of lesions: connected components of the predicted mask, "
                                    "26-connectivity (voxels sharing a face, an edge or a corner are one lesion)"},
    "total_volume_ml": {"Description": "volume of all predicted lesion voxels on the scan's own grid",
                        "Units": "ml"},
    "largest_lesion_ml": {"Description": "volume of the largest lesion (0 when there is none)", "Units": "ml"},
    "centroid_x_mm": {"Description": "x (RAS+: grows towards the patient's Right) of the volume-weighted centroid "
                                     "of all lesion voxels in the scan's world coordinates (its NIfTI affine: "
                                     "scanner or aligned space, not a template); n/a without lesions",
                      "Units": "mm"},
    "centroid_y_mm": {"Description": "y (RAS+: grows to Anterior) of the volume-weighted lesion centroid in the "
                                     "scan's world coordinates; n/a without lesions", "Units": "mm"},
    "centroid_z_mm": {"Description": "z (RAS+: grows to Superior) of the volume-weighted lesion centroid in the "
                                     "scan's world coordinates; n/a without lesions", "Units": "mm"},
}


def lesion_table_row(mask: np.ndarray, affine: np.ndarray) -> dict:
    """The lesion summary of a 0/1 (or boolean) 3D mask on a grid with voxel -> RAS+ mm `affine`.

    Keys as COLUMNS without "case": lesion_count, total_volume_ml, largest_lesion_ml and the world centroid
    centroid_x/y/z_mm (NaN without lesions). Every voxel has the same volume, so the volume-weighted centroid
    is the mean of the voxel centres mapped through the affine.
    """
    mask = np.asarray(mask) > 0
    if mask.ndim != 3:
        raise ValueError(f"a lesion mask is 3D, not of shape {mask.shape}")
    affine = np.asarray(affine, float)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:] if count else np.zeros(0, int)
    centre = affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + affine[:3, 3] if count else np.full(3, math.nan)
    return {
        "lesion_count": int(count),
        "total_volume_ml": float(mask.sum()) * voxel_ml,
        "largest_lesion_ml": float(sizes.max()) * voxel_ml if count else 0.0,
        "centroid_x_mm": float(centre[0]),
        "centroid_y_mm": float(centre[1]),
        "centroid_z_mm": float(centre[2]),
    }


def write_lesion_table(folder: Path, rows: dict[str, dict]) -> list[Path]:
    """folder/lesions.tsv (case -> `lesion_table_row`, sorted by case; n/a for undefined values, as BIDS writes
    them) and its column sidecar folder/lesions.json, each atomically; returns both paths."""
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(list(COLUMNS))
    for case in sorted(rows):
        row = {"case": case, **rows[case]}
        writer.writerow([_cell(row[name]) for name in COLUMNS])
    return [write_text_atomic(folder / TABLE_FILE, text.getvalue()), write_json(folder / SIDECAR_FILE, COLUMNS)]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)
