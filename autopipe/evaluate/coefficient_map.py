"""The hand-function classifier's coefficients as a map in template space: NIfTI, a picture, and a check.

A coefficient per brain cell of the coarse grid (autopipe.models.lesion_features) reads as "log-odds of
impairment per mL of lesion in this cell". Here they are put back on the coarse grid, written as NIfTI in
MNI space, drawn over the template, and scored against a region known to matter (e.g. the corticospinal
tract): how much of the map's weight lies inside it, next to what a map spread evenly over the brain gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autopipe.cohort.image_io import spacing_of
from autopipe.files import atomic_path, save_png
from autopipe.models.lesion_features import CoarseGrid, sample_nearest

COLORBAR_LABEL = "log-odds of impairment per mL of lesion"
NIFTI_MNI_CODE = 4  # NIfTI xform code 4: coordinates aligned to MNI152


def cells_to_volume(values: np.ndarray, cells: np.ndarray, grid: CoarseGrid) -> np.ndarray:
    """A float32 volume of the coarse grid's shape holding values[n] at flat (C-order) cell cells[n], 0 elsewhere."""
    values = np.asarray(values, dtype=float).ravel()
    cells = np.asarray(cells, dtype=np.int64).ravel()
    size = int(np.prod(grid.shape))
    if values.shape != cells.shape:
        raise ValueError(f"{values.size} values for {cells.size} cells")
    if cells.size and (cells.min() < 0 or cells.max() >= size):
        raise ValueError(f"cell indices must lie in [0, {size}) for a coarse grid of shape {grid.shape}")
    volume = np.zeros(size, np.float32)
    volume[cells] = values
    return volume.reshape(grid.shape)


def write_map(path: Path, volume: np.ndarray, grid: CoarseGrid) -> Path:
    """Write a coarse-grid map as float32 NIfTI with the grid's affine (qform and sform code 4, MNI), atomically."""
    import nibabel as nib

    volume = np.asarray(volume)
    if volume.shape != grid.shape:
        raise ValueError(f"map of shape {volume.shape} is not on the coarse grid {grid.shape}")
    image = nib.Nifti1Image(volume.astype(np.float32), np.asarray(grid.affine, float))
    image.set_qform(grid.affine, code=NIFTI_MNI_CODE)
    image.set_sform(grid.affine, code=NIFTI_MNI_CODE)
    image.header.set_xyzt_units("mm")
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(image, str(tmp))
    return Path(path)


def region_weight_fraction(volume: np.ndarray, region_fraction: np.ndarray,
                           brain_fraction: np.ndarray | None = None) -> dict[str, float]:
    """How much of a map's weight w lies in a region given as a fraction r (0..1) of each cell.

    positive: sum(max(w, 0) r) / sum(max(w, 0)), the share of the harmful (impairment-raising) weight;
    absolute: sum(|w| r) / sum(|w|); chance: the mean of r over the brain cells (brain_fraction > 0, or all
    cells when not given), what a map spread evenly over the brain would score. nan when a denominator is 0.
    """
    w = np.asarray(volume, dtype=np.float64)
    r = np.asarray(region_fraction, dtype=np.float64)
    if r.shape != w.shape or (brain_fraction is not None and np.shape(brain_fraction) != w.shape):
        raise ValueError(f"map {w.shape}, region {r.shape} and brain "
                         f"{None if brain_fraction is None else np.shape(brain_fraction)} must share the coarse grid")

    def share(weight: np.ndarray) -> float:
        total = float(weight.sum())
        return float((weight * r).sum()) / total if total > 0 else float("nan")

    brain = np.ones(w.shape, bool) if brain_fraction is None else np.asarray(brain_fraction) > 0
    chance = float(r[brain].mean()) if brain.any() else float("nan")
    return {"positive": share(np.maximum(w, 0)), "absolute": share(np.abs(w)), "chance": chance}


def plot_map(path: Path, volume: np.ndarray, grid: CoarseGrid, template: str, title: str,
             region: np.ndarray | None = None) -> Path:
    """PNG of a coarse-grid map over the template T1: axial, coronal and sagittal slices through its peak.

    The slices pass through the cell with the largest |weight| (the grid's centre cell when the map is all
    zero). The map is taken to the template image by world coordinates (nearest cell) and drawn in a diverging
    colormap with symmetric limits, transparent where 0. `region` (optional) is a binary mask or a 0..1
    fraction on either the coarse grid (grid.shape) or the fine grid (grid.fine_shape), told apart by its
    shape; its outline (level 0.5) is drawn in green. Axial and coronal slices are in radiological convention
    (the subject's right on the viewer's left), sagittal with anterior on the left; the edges are lettered.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autopipe.templates import load_template, nearest_resolution

    volume = np.asarray(volume, dtype=np.float64)
    if volume.shape != grid.shape:
        raise ValueError(f"map of shape {volume.shape} is not on the coarse grid {grid.shape}")
    region_affine = None
    if region is not None:
        region = np.asarray(region, dtype=np.float64)
        region_affine = {grid.shape: grid.affine, grid.fine_shape: grid.fine_affine}.get(region.shape)
        if region_affine is None:
            raise ValueError(f"region of shape {region.shape} is on neither the coarse grid {grid.shape} "
                             f"nor the fine grid {grid.fine_shape}")
    t1, _ = load_template(template, nearest_resolution(min(spacing_of(grid.fine_affine))))
    if t1.axcodes != "RAS" or not np.allclose(t1.affine[:3, :3], np.diag(np.diag(t1.affine[:3, :3]))):
        raise ValueError(f"template {template!r} is not stored axis-aligned in RAS order ({t1.axcodes})")

    peak = (np.unravel_index(int(np.argmax(np.abs(volume))), volume.shape) if np.any(volume)
            else tuple(s // 2 for s in volume.shape))
    peak_world = grid.affine[:3, :3] @ np.array(peak, float) + grid.affine[:3, 3]
    peak_voxel = np.linalg.inv(t1.affine)[:3, :3] @ peak_world + np.linalg.inv(t1.affine)[:3, 3]
    cut = [int(np.clip(np.floor(v + 0.5), 0, n - 1)) for v, n in zip(peak_voxel, t1.shape, strict=True)]
    axes_world = [t1.affine[a, a] * np.arange(t1.shape[a]) + t1.affine[a, 3] for a in range(3)]
    limit = float(np.abs(volume).max()) or 1.0

    # (fixed axis, horizontal axis, vertical axis, name, letters left/right/top/bottom)
    views = [(2, 0, 1, "axial", "z", ("R", "L", "A", "P")),
             (1, 0, 2, "coronal", "y", ("R", "L", "S", "I")),
             (0, 1, 2, "sagittal", "x", ("A", "P", "S", "I"))]
    fig, panels = plt.subplots(1, 3, figsize=(13, 4.8), layout="constrained")
    image = None
    for ax, (fixed, h, v, name, letter, (left, right, top, bottom)) in zip(panels, views, strict=True):
        index = [slice(None)] * 3
        index[fixed] = cut[fixed]
        anatomy = t1.data[tuple(index)]  # 2D, axes (h, v) in increasing order
        hh, vv = np.meshgrid(axes_world[h], axes_world[v], indexing="ij")
        world = np.empty((3, *hh.shape))
        world[h], world[v], world[fixed] = hh, vv, axes_world[fixed][cut[fixed]]
        overlay = sample_nearest(volume, grid.affine, world)
        dh, dv = abs(t1.affine[h, h]) / 2, abs(t1.affine[v, v]) / 2
        extent = (axes_world[h][0] - dh, axes_world[h][-1] + dh, axes_world[v][0] - dv, axes_world[v][-1] + dv)
        ax.imshow(anatomy.T, cmap="gray", origin="lower", extent=extent, interpolation="nearest")
        image = ax.imshow(np.ma.masked_equal(overlay, 0).T, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower",
                          extent=extent, interpolation="nearest", alpha=0.85)
        if region is not None:
            outline = sample_nearest(region, region_affine, world)
            if outline.min() < 0.5 <= outline.max():
                ax.contour(hh, vv, outline, levels=[0.5], colors="lime", linewidths=1.0)
        ax.set_xlim(extent[1], extent[0])  # larger world coordinate (R, or A) on the viewer's left
        ax.set_ylim(extent[2], extent[3])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}, {letter} = {axes_world[fixed][cut[fixed]]:g} mm", fontsize=10)
        style = {"transform": ax.transAxes, "color": "white", "fontsize": 12, "fontweight": "bold"}
        ax.text(0.02, 0.5, left, ha="left", va="center", **style)
        ax.text(0.98, 0.5, right, ha="right", va="center", **style)
        ax.text(0.5, 0.98, top, ha="center", va="top", **style)
        ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    fig.colorbar(image, ax=panels, shrink=0.85, label=COLORBAR_LABEL)
    fig.suptitle(title)
    return save_png(fig, path)
