"""Quality-control pictures of preprocessing: one PNG per case, and a montage to scan a cohort in a minute.

Volumes are 3D arrays in RAS voxel order (axis 0 left -> right, axis 1 posterior -> anterior, axis 2
inferior -> superior) with a voxel size in mm per axis. `case_views` cuts three orthogonal slices through
one voxel and turns them into display order (row 0 at the top of the picture), in neurological
convention: the patient's left on the left of axial and coronal views, anterior up in axial views,
superior up in coronal and sagittal views, and anterior on the left of sagittal views. Every panel is
labelled L/R (or A/P) so nobody has to guess. Pixels are drawn with their mm aspect.

A `CaseViews` is small (three slices, float16 and uint8) and is saved as .npz by the preprocessing
workers; `write_montage` draws the cohort from those files at the end. Matplotlib is imported only when
drawing, and only its Agg canvas is used: no pyplot state, safe in worker processes.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autopipe.cohort.image_io import bounding_box
from autopipe.cohort.problem import dims
from autopipe.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

VIEWS = ("axial", "coronal", "sagittal")
"""The three views, in the order CaseViews holds them."""
SLICE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
"""The volume axis each view cuts across: its slice position is centre[SLICE_AXIS[view]]."""
MARKERS = {"axial": ("L", "R"), "coronal": ("L", "R"), "sagittal": ("A", "P")}
"""What lies at the left and right edge of each view."""

BRAIN_COLOUR = "#ffa500"
LESION_COLOUR = "#00e5ff"
LESION_ALPHA = 0.45
FLAG_COLOUR = "#ff0000"
TEXT_COLOUR = "#f0f0f0"
BACKGROUND = "black"
WINDOW_PERCENTILES = (0.5, 99.5)
"""Grey window: these percentiles of the slice's non-zero pixels."""

CASE_DPI = 90
CASE_PANEL_IN = 3.0
MONTAGE_DPI = 80
MONTAGE_TILE_IN = 1.8
MONTAGE_MAX_COLUMNS = 10
_VIEWS_FORMAT = 1


@dataclass(frozen=True, eq=False)
class CaseViews:
    """Three orthogonal slices of a case in display order, with the same slices of its masks.

    `image[v]`, `brain[v]`, `lesions[v]` belong to view VIEWS[v]. Image slices are float16 scaled by
    1 / `scale` (so large intensities cannot overflow; multiply by `scale` for the original values);
    masks are uint8 0/1, or None when the case had no such mask. `centre` is the voxel (i, j, k) all
    three slices pass through, `shape` and `spacing` those of the volume they were cut from.
    """

    image: tuple[np.ndarray, np.ndarray, np.ndarray]
    brain: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    lesions: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    centre: tuple[int, int, int]
    scale: float = 1.0

    def __post_init__(self) -> None:
        if len(self.image) != 3:
            raise ValueError(f"CaseViews needs 3 image slices ({', '.join(VIEWS)}), got {len(self.image)}")
        expected = [display_shape(self.shape, view) for view in VIEWS]
        for name in ("image", "brain", "lesions"):
            slices = getattr(self, name)
            if slices is None:
                continue
            if len(slices) != 3:
                raise ValueError(f"CaseViews {name} needs 3 slices ({', '.join(VIEWS)}), got {len(slices)}")
            for view, array, want in zip(VIEWS, slices, expected, strict=True):
                if np.shape(array) != want:
                    raise ValueError(f"CaseViews {name} {view} slice has shape {dims(np.shape(array))}, expected "
                                     f"{dims(want)} for a {dims(self.shape)} volume")

    @property
    def aspect(self) -> tuple[float, float, float]:
        """Height / width of one pixel in mm, per view (what imshow's `aspect` takes)."""
        sx, sy, sz = self.spacing
        return sy / sx, sz / sx, sz / sy

    @property
    def positions(self) -> dict[str, int]:
        """Slice index of each view along the axis it cuts across."""
        return {view: int(self.centre[SLICE_AXIS[view]]) for view in VIEWS}

    def view(self, name: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float]:
        """(image, brain, lesions, aspect) of one view; the image slice in float32 original intensities."""
        v = _view_index(name)
        image = self.image[v].astype(np.float32) * np.float32(self.scale)
        brain = None if self.brain is None else self.brain[v]
        lesions = None if self.lesions is None else self.lesions[v]
        return image, brain, lesions, self.aspect[v]


def display_shape(shape: tuple[int, ...], view: str) -> tuple[int, int]:
    """(rows, columns) of a view's slice of a volume of `shape`."""
    nx, ny, nz = shape
    return {"axial": (ny, nx), "coronal": (nz, nx), "sagittal": (nz, ny)}[view]


def orient(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """One slice of a RAS volume in display order: row 0 at the top of the picture.

    axial (rows anterior -> posterior, columns left -> right), coronal (superior -> inferior,
    left -> right), sagittal (superior -> inferior, anterior -> posterior).
    """
    if view == "axial":
        return volume[:, ::-1, index].T
    if view == "coronal":
        return volume[:, index, ::-1].T
    if view == "sagittal":
        return volume[index, ::-1, ::-1].T
    raise ValueError(f"unknown view {view!r}; one of {', '.join(VIEWS)}")


def case_views(image: np.ndarray, spacing: tuple[float, float, float], brain_mask: np.ndarray | None = None,
               lesions: np.ndarray | None = None, centre: tuple[int, int, int] | None = None) -> CaseViews:
    """The axial, coronal and sagittal slices of `image` (and its masks) through `centre`.

    Masks count as inside where > 0.5 (booleans, labels and probabilities alike). Without `centre`,
    the slices go through the lesion voxel nearest the lesions' centre of mass (so they cut a lesion
    even when the centre of mass falls between two), else the centre of the brain mask's bounding box,
    else the middle of the image. Non-finite image values are shown as 0.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be 3D, got shape {dims(image.shape)} ({image.ndim}D)")
    shape = tuple(int(n) for n in image.shape)
    if min(shape) < 1:
        raise ValueError(f"image has an empty axis: shape {dims(shape)}")
    spacing = _check_spacing(spacing)
    brain = _check_mask(brain_mask, "brain_mask", shape)
    lesion = _check_mask(lesions, "lesions", shape)
    centre = _default_centre(shape, spacing, brain, lesion) if centre is None else _check_centre(centre, shape)

    def cut(volume: np.ndarray) -> list[np.ndarray]:
        return [np.ascontiguousarray(orient(volume, view, centre[SLICE_AXIS[view]])) for view in VIEWS]

    pixels = [np.nan_to_num(s.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0) for s in cut(image)]
    peak = max(float(np.abs(p).max()) for p in pixels)
    scale = peak if peak > 0 else 1.0
    image_slices = tuple((p / np.float32(scale)).astype(np.float16) for p in pixels)
    return CaseViews(image=image_slices,
                     brain=None if brain is None else tuple(s.astype(np.uint8) for s in cut(brain)),
                     lesions=None if lesion is None else tuple(s.astype(np.uint8) for s in cut(lesion)),
                     shape=shape, spacing=spacing, centre=centre, scale=scale)


def save_views(path: Path | str, views: CaseViews) -> Path:
    """Write `views` as a compressed .npz (a few tens of kB), atomically; returns the path."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(_VIEWS_FORMAT), "shape": np.array(views.shape, np.int64),
        "spacing": np.array(views.spacing, np.float64), "centre": np.array(views.centre, np.int64),
        "scale": np.array(views.scale, np.float64),
    }
    for name in ("image", "brain", "lesions"):
        slices = getattr(views, name)
        if slices is not None:
            arrays.update({f"{name}_{view}": array for view, array in zip(VIEWS, slices, strict=True)})
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, **arrays)
    return Path(path)


def load_views(path: Path | str) -> CaseViews:
    """Read a file written by `save_views`."""
    with np.load(Path(path), allow_pickle=False) as data:
        keys = set(data.files)
        needed = {"format", "shape", "spacing", "centre", "scale"} | {f"image_{view}" for view in VIEWS}
        if not needed <= keys:
            raise ValueError(f"{path}: not a case-views file (missing {', '.join(sorted(needed - keys))})")
        if int(data["format"]) != _VIEWS_FORMAT:
            raise ValueError(f"{path}: case-views format {int(data['format'])}, this version reads {_VIEWS_FORMAT}")

        def slices(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
            found = [f"{name}_{view}" in keys for view in VIEWS]
            if not any(found):
                return None
            if not all(found):
                raise ValueError(f"{path}: {name} slices incomplete")
            return tuple(data[f"{name}_{view}"] for view in VIEWS)

        return CaseViews(image=slices("image"), brain=slices("brain"), lesions=slices("lesions"),
                         shape=tuple(int(n) for n in data["shape"]),
                         spacing=tuple(float(s) for s in data["spacing"]),
                         centre=tuple(int(c) for c in data["centre"]), scale=float(data["scale"]))


def write_case_qc(path: Path, case_id: str, rows: list[tuple[str, CaseViews]], note: str = "") -> Path:
    """One PNG for one case: a row per (title, views) stage, columns axial, coronal, sagittal.

    Grey image with a robust window, brain mask as an orange outline, lesions filled in cyan with a thin
    outline. About 9 x 3*rows inches at 90 dpi (a few hundred kB). Written atomically; returns the path.
    """
    if not rows:
        raise ValueError(f"write_case_qc({case_id!r}): no rows to draw")
    for title, views in rows:
        if not isinstance(views, CaseViews):
            raise ValueError(f"write_case_qc({case_id!r}): row {title!r} holds a {type(views).__name__}, "
                             "not CaseViews")
    panel, header, title_band = CASE_PANEL_IN, 0.25, 0.45
    width, height = 3 * panel, title_band + len(rows) * panel
    fig = _figure(width, height)
    heading = f"{case_id}  —  {note}" if note else case_id
    fig.text(0.5, 1 - 0.08 / height, heading, ha="center", va="top", fontsize=12, color=TEXT_COLOUR,
             fontweight="bold")
    for r, (title, views) in enumerate(rows):
        top = title_band + r * panel
        fig.text(0.01, 1 - (top + 0.03) / height, title, ha="left", va="top", fontsize=10, color=TEXT_COLOUR)
        for c, view in enumerate(VIEWS):
            rect = ((c * panel + 0.05) / width, 1 - (top + panel - 0.05) / height,
                    (panel - 0.1) / width, (panel - header - 0.05) / height)
            ax = fig.add_axes(rect)
            axis = "ijk"[SLICE_AXIS[view]]
            _draw_view(ax, views, view, caption=f"{view} {axis}={views.positions[view]}", font=7, line=1.0)
    return _save(fig, path, CASE_DPI)


def write_montage(path: Path, tiles: list[tuple[str, CaseViews, str | None]], columns: int | None = None,
                  view: str = "axial") -> Path:
    """A grid of one view per case, labelled with the case id; flagged tiles get a red frame and red text.

    `tiles` are (case id, views, flag text or None). Columns default to ceil(sqrt(n)), at most 10. Each
    tile is scaled into its cell keeping its mm aspect. Written atomically; returns the path.
    """
    _view_index(view)
    if not tiles:
        raise ValueError("write_montage: no tiles to draw")
    for case_id, views, _ in tiles:
        if not isinstance(views, CaseViews):
            raise ValueError(f"write_montage: tile {case_id!r} holds a {type(views).__name__}, not CaseViews")
    n = len(tiles)
    if columns is None:
        columns = min(MONTAGE_MAX_COLUMNS, math.ceil(math.sqrt(n)))
    if columns < 1:
        raise ValueError(f"write_montage: columns must be >= 1, got {columns}")
    columns = min(columns, n)
    grid_rows = math.ceil(n / columns)
    flagged = sum(1 for *_, flag in tiles if flag)
    tile, label, flag_band, header = MONTAGE_TILE_IN, 0.22, (0.32 if flagged else 0.05), 0.35
    tile_h = tile * min(1.0, max(_tallness(views, view) for _, views, _ in tiles))  # no empty bands if all wide
    cell_w, cell_h = tile + 0.1, label + tile_h + flag_band
    width, height = columns * cell_w, header + grid_rows * cell_h
    fig = _figure(width, height)
    summary = f"{view} view, {n} case{'s' if n != 1 else ''}"
    if flagged:
        summary += f", {flagged} flagged"
    fig.text(0.5, 1 - 0.06 / height, summary, ha="center", va="top", fontsize=9 if columns > 1 else 7,
             color=FLAG_COLOUR if flagged else TEXT_COLOUR)
    for t, (case_id, views, flag) in enumerate(tiles):
        r, c = divmod(t, columns)
        left, top = c * cell_w + 0.05, header + r * cell_h
        w, h = _fit(views, view, tile, tile_h)  # top-aligned under its label, centred across the cell
        ax = fig.add_axes(((left + (tile - w) / 2) / width, 1 - (top + label + h) / height, w / width, h / height))
        _draw_view(ax, views, view, caption=None, font=6, line=0.6)
        colour = FLAG_COLOUR if flag else TEXT_COLOUR
        fig.text((left + tile / 2) / width, 1 - (top + 0.03) / height, _shorten(case_id, 28), ha="center",
                 va="top", fontsize=7.5, color=colour, fontweight="bold" if flag else "normal")
        if flag:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_edgecolor(FLAG_COLOUR)
                spine.set_linewidth(2.5)
            lines = textwrap.wrap(flag, 32)
            text = "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")
            fig.text((left + tile / 2) / width, 1 - (top + label + h + 0.04) / height, text, ha="center",
                     va="top", fontsize=6.5, color=FLAG_COLOUR, linespacing=1.0)
    return _save(fig, path, MONTAGE_DPI)


def window(pixels: np.ndarray) -> tuple[float, float]:
    """(low, high) grey levels: WINDOW_PERCENTILES of the non-zero pixels; (0, 1) for a blank slice."""
    values = np.asarray(pixels, np.float32)
    values = values[(values != 0) & np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, WINDOW_PERCENTILES))
    if high <= low:
        low, high = min(low, 0.0), max(high, 0.0)
    if high <= low:
        high = low + 1.0
    return low, high


def _draw_view(ax: Axes, views: CaseViews, view: str, caption: str | None, font: float, line: float) -> None:
    """Image, lesion fill and outline, brain outline and orientation markers of one view on `ax`."""
    image, brain, lesions, aspect = views.view(view)
    rows, cols = image.shape
    low, high = window(image)
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="antialiased")
    if lesions is not None and lesions.any():
        overlay = np.zeros((rows, cols, 4), np.float32)
        overlay[lesions > 0] = (*_rgb(LESION_COLOUR), LESION_ALPHA)
        ax.imshow(overlay, aspect=aspect, interpolation="nearest")
        ax.contour(lesions, levels=[0.5], colors=[LESION_COLOUR], linewidths=0.6 * line)
    if brain is not None and brain.any() and not brain.all():
        ax.contour(brain, levels=[0.5], colors=[BRAIN_COLOUR], linewidths=line)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor(BACKGROUND)
    for spine in ax.spines.values():
        spine.set_visible(False)
    left, right = MARKERS[view]
    for x, text, align in ((0.015, left, "left"), (0.985, right, "right")):
        ax.text(x, 0.5, text, transform=ax.transAxes, ha=align, va="center", fontsize=font, color=TEXT_COLOUR,
                fontweight="bold")
    if caption:
        ax.text(0.015, 0.015, caption, transform=ax.transAxes, ha="left", va="bottom", fontsize=font,
                color="#b0b0b0")


def _tallness(views: CaseViews, view: str) -> float:
    """Height / width of a view's picture in mm."""
    rows, cols = views.image[_view_index(view)].shape
    return rows * views.aspect[_view_index(view)] / cols


def _fit(views: CaseViews, view: str, width: float, height: float) -> tuple[float, float]:
    """(width, height) in inches of a view scaled into a width x height box, keeping its mm aspect."""
    tall = _tallness(views, view)
    return (height / tall, height) if tall >= height / width else (width, width * tall)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), facecolor=BACKGROUND)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path | str, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor=BACKGROUND)
    return Path(path)


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _view_index(name: str) -> int:
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; one of {', '.join(VIEWS)}")
    return VIEWS.index(name)


def _check_spacing(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    values = np.asarray(spacing, np.float64).ravel()
    if values.size != 3 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be 3 positive voxel sizes in mm, got {spacing}")
    return tuple(float(v) for v in values)


def _check_mask(mask: np.ndarray | None, name: str, shape: tuple[int, int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{name} shape {dims(mask.shape)} does not match image shape {dims(shape)}")
    return mask > 0.5


def _check_centre(centre: tuple[int, int, int], shape: tuple[int, int, int]) -> tuple[int, int, int]:
    values = np.asarray(centre).ravel()
    if values.size != 3 or not all(0 <= int(v) < n for v, n in zip(values, shape, strict=True)):
        raise ValueError(f"centre {tuple(np.asarray(centre).tolist())} is not a voxel of the image "
                         f"(shape {dims(shape)})")
    return tuple(int(v) for v in values)


def _default_centre(shape: tuple[int, int, int], spacing: tuple[float, float, float], brain: np.ndarray | None,
                    lesions: np.ndarray | None) -> tuple[int, int, int]:
    if lesions is not None and lesions.any():
        voxels = np.argwhere(lesions)
        mass = voxels.mean(axis=0)
        nearest = np.argmin((((voxels - mass) * np.asarray(spacing)) ** 2).sum(axis=1))
        return tuple(int(v) for v in voxels[nearest])
    box = None if brain is None else bounding_box(brain)
    if box is not None:
        return tuple((lo + hi - 1) // 2 for lo, hi in box)
    return tuple(n // 2 for n in shape)
