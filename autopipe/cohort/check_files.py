"""Checks on how a scan is stored, before its voxels are trusted: gzip integrity, header geometry, value type.

A .nii.gz whose bytes were damaged in the middle can still decompress into an image of garbage; only
gzip's own check (a CRC-32 and the length in its trailer) tells. A header's affine can be NaN,
degenerate (a zero spacing), sheared (axes that are not perpendicular: resampling in world space
then distorts the anatomy), or disagree with the file's other affine (NIfTI keeps a qform and an
sform; autopipe, like nibabel, uses the sform). Each is said with what to do.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from autopipe.cohort.problem import Problem, error, warning

CHUNK_BYTES = 1 << 20
MIN_SPACING_MM = 1e-3
SHEAR_TOLERANCE = 1e-3  # |cos| between axes; 0.06 degrees
QFORM_TOLERANCE_MM = 0.1
REEXPORT = "copy or export the file again from the scanner or converter"


def gzip_problems(path: Path, case: str | None, file: str) -> list[Problem]:
    """A .gz file must decompress to its end with gzip's CRC and length intact."""
    if not str(path).lower().endswith(".gz"):
        return []
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(CHUNK_BYTES):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return [error(case, file, f"cannot be read: the file is damaged, its gzip integrity check fails ({exc})",
                      REEXPORT)]
    return []


def affine_problems(affine: np.ndarray, case: str | None, file: str) -> list[Problem]:
    """NaN, degenerate or sheared voxel-to-world affines. An error stops the checks that need the geometry."""
    affine = np.asarray(affine, float)
    if not np.isfinite(affine).all():
        return [error(case, file, "the header's voxel-to-world affine holds NaN or infinite values",
                      "fix the header (pixdim, qform/sform) or " + REEXPORT)]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if (spacing < MIN_SPACING_MM).any():
        return [error(case, file, f"the header gives a voxel spacing of {', '.join(f'{s:g}' for s in spacing)} mm: "
                                  "a spacing of zero", "fix the header's voxel size (pixdim) or " + REEXPORT)]
    directions = affine[:3, :3] / spacing
    cosines = np.abs(directions.T @ directions - np.eye(3))
    if cosines.max() > SHEAR_TOLERANCE:
        angle = np.degrees(np.arcsin(min(1.0, float(cosines.max()))))
        return [warning(case, file, f"the voxel axes are sheared (not perpendicular: {angle:.1f} degrees off); "
                                    "resampling in world space will follow the shear",
                        "check the converter's output; re-export with an orthogonal (qform-style) orientation")]
    return []


def qform_problems(path: Path, case: str | None, file: str) -> list[Problem]:
    """NIfTI's two affines, when both are set, must agree: autopipe (like nibabel) uses the sform."""
    if not str(path).lower().endswith((".nii", ".nii.gz")):
        return []
    import nibabel as nib

    header = nib.load(str(path)).header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if qform is None or sform is None or not qcode or not scode:
        return []
    corners = np.array([[i, j, k, 1] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float).T
    shape = (tuple(header.get_data_shape()) + (1, 1, 1))[:3]
    corners[:3] *= np.asarray(shape, float)[:, None]
    moved = float(np.abs((qform - sform) @ corners).max())
    if moved <= QFORM_TOLERANCE_MM:
        return []
    return [warning(case, file, f"its qform and sform disagree (the field of view's corners lie up to {moved:.1f} mm "
                                "apart); autopipe uses the sform, as nibabel does, but other tools may use the qform",
                    "check which one is right and make the other agree (e.g. nibabel set_qform(img.get_sform()))")]


def complex_problems(data: np.ndarray, case: str | None, file: str) -> list[Problem]:
    if np.iscomplexobj(data):
        return [error(case, file, f"holds complex values ({data.dtype}); a magnitude image is expected",
                      "save the magnitude (abs) of the image; k-space goes into the kspace/ folder")]
    return []


def outside_problems(root: Path, paths: dict[str, Path]) -> list[Problem]:
    """A warning for every file the cohort makes autopipe read outside its folder (links, '../', absolute)."""
    inside = root.resolve()
    problems = []
    for what, path in paths.items():
        target = Path(path).resolve()
        if not target.is_relative_to(inside):
            problems.append(warning(None, what, f"is read from outside the cohort folder ({target})",
                                    "keep every file of the cohort inside its folder, so it travels and is archived "
                                    "as one; copy the file in rather than linking to it"))
    return problems
