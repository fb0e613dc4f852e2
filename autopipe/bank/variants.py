"""Deterministic variants of the bank's real heads, written the many ways real cohorts are written.

A `VariantSpec` names one variant; `make_variant` builds it in memory, exactly as it would be stored on
disk, with the reference brain mask carried onto the stored grid. Steps, in order:

1. on the source grid: FLAIR-like contrast (inside the head), skull stripping with the reference mask,
   defacing (blanked to 0), and a zero background outside the head (outside the brain when stripped);
2. geometry: a child-sized head (world scaled about the brain centre), resampling to the spacing by
   world position (linear for images, linear then > 0.5 for masks), noise in the background, cropping;
3. storage: axis order, oblique pose, a disagreeing qform, and the data type with its scaling.

Randomness (background noise) comes only from `spec.seed`, so a spec always gives the same bytes.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from autopipe.bank.sources import SOURCES, STRIPPED_SOURCES, RealHead, head_mask, load_source
from autopipe.cohort.image_io import Volume, spacing_of
from autopipe.files import atomic_path

BACKGROUNDS = ("zero", "noisy")
CROPS = (None, "neck", "slab", "hippocampus")
DTYPES = ("float32", "int16", "uint8", "int16_slope")
CONTRASTS = ("T1", "FLAIR")
STORED_MAX = {"int16": 32767.0, "uint8": 255.0, "int16_slope": 16000.0}  # the image maximum is stored as this
SLOPE, INTER = 0.5, 10.0  # scl_slope and scl_inter of "int16_slope"
NOISE_FRACTION = 0.03  # background noise sigma, as a fraction of the brain's median intensity
INNER_DEPTH_MM = 15.0  # without a brain mask, "brain" intensities are taken this deep inside the head
# FLAIR-like map: u = T1 / white-matter level -> FLAIR / white-matter level (np.interp, flat beyond the ends).
# CSF (u < 0.35) stays dark, grey matter (u 0.5-0.7) is the brightest tissue, white matter (u 0.85-1.0)
# is 0.65 of grey matter, fat and scalp (u > 1.1) bright-ish.
FLAIR_U = (0.0, 0.35, 0.5, 0.6, 0.7, 0.85, 1.0, 1.1, 1.4)
FLAIR_V = (0.0, 0.2, 0.95, 1.0, 0.95, 0.65, 0.65, 0.7, 0.9)
NECK_MARGIN_MM, TOP_MARGIN_MM = 10.0, 5.0  # "neck" keeps the brain's lowest point - 10 mm to the head top + 5 mm
SLAB_MM = 40.0
HIPPOCAMPUS_BOX_MM = (36.0, 50.0, 35.0)
HIPPOCAMPUS_OFFSET_MM = (-20.0, 0.0, -20.0)  # from the brain centre: 20 mm left and 20 mm inferior
QFORM_ROTATION_DEG, QFORM_SHIFT_MM = 20.0, (30.0, 0.0, 0.0)
DEFACE_MARGIN_MM = 3.0  # robex's geometric deface plane stays this far from the reference brain
TEST_SPACING = (2.5, 2.5, 2.5)
OBLIQUE = (12.0, -8.0, 20.0)


@dataclass(frozen=True)
class VariantSpec:
    """One variant of a bank source: how it is cut, posed and stored (see the module docstring)."""

    name: str
    source: str
    spacing: tuple[float, float, float] | None = None
    background: str = "zero"
    strip: bool = False
    deface: bool = False
    crop: str | None = None
    orientation: str = "RAS"
    oblique_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    qform_differs: bool = False
    dtype: str = "float32"
    contrast: str = "T1"
    scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [(self.source in SOURCES, f"source {self.source!r} not in {SOURCES}"),
                  (self.background in BACKGROUNDS, f"background {self.background!r} not in {BACKGROUNDS}"),
                  (self.crop in CROPS, f"crop {self.crop!r} not in {CROPS}"),
                  (self.dtype in DTYPES, f"dtype {self.dtype!r} not in {DTYPES}"),
                  (self.contrast in CONTRASTS, f"contrast {self.contrast!r} not in {CONTRASTS}"),
                  (_valid_axcodes(self.orientation), f"orientation {self.orientation!r} is not like 'RAS' or 'LPS'"),
                  (0 < self.scale <= 2, f"scale {self.scale} outside (0, 2]"),
                  (not (self.deface and self.source in STRIPPED_SOURCES), "a stripped source has no face to remove"),
                  (not (self.strip and self.source == "pydeface"), "pydeface ships no brain mask to strip with"),
                  (not (self.crop == "neck" and self.source == "pydeface"), "a neck crop needs a reference brain")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"variant {self.name!r}: {message}")

    @property
    def needs_strip(self) -> bool:
        """The expected decision: a head with its skull needs stripping, an already-stripped brain does not."""
        return not (self.source in STRIPPED_SOURCES or self.strip)

    @property
    def whole_brain(self) -> bool:
        """The expected decision: does the field of view hold the whole brain?"""
        return self.crop not in ("slab", "hippocampus")


@dataclass(frozen=True)
class Variant:
    """A built variant.

    `nifti` is the exact (uncompressed) file and `image` is read back from it, so `image.get_fdata()` is
    what a reader gets; write with `save` (nib.save(image) would re-choose int16_slope's scaling).
    `reference` (brain) and `head` (foreground) are uint8 masks on the stored grid: the image's shape and
    orientation, affine = its sform. `intensity_scale` maps float intensities to the stored (scaled) ones.
    """

    spec: VariantSpec
    image: nib.Nifti1Image = field(repr=False)
    reference: Volume | None = field(repr=False)
    brain_ml: float | None
    head: Volume = field(repr=False)
    intensity_scale: float = 1.0
    nifti: bytes = field(default=b"", repr=False)

    def save(self, path: Path | str) -> Path:
        """Write the file atomically, byte for byte (gzip-compressed when the name ends in .gz)."""
        path = Path(path)
        data = gzip.compress(self.nifti, compresslevel=4, mtime=0) if path.name.endswith(".gz") else self.nifti
        with atomic_path(path, suffix=".nii.gz" if path.name.endswith(".gz") else ".nii") as tmp:
            tmp.write_bytes(data)
        return path


def make_variant(spec: VariantSpec) -> Variant:
    """Build the variant `spec` from its source (deterministic: the same spec gives the same bytes)."""
    head = load_source(spec.source)
    if spec.strip and head.brain is None:
        raise ValueError(f"variant {spec.name!r}: {spec.source} ships no brain mask to strip with")
    image, foreground, blank, sigma = _on_source_grid(head, spec)
    brain = None if head.brain is None else head.brain.data.astype(bool)
    centre = brain_centre(head)

    # Geometry: scale about the brain centre, then resample the (scaled) field of view to the spacing.
    affine = head.image.affine.copy()
    if spec.scale != 1.0:
        affine = _about(centre, np.diag([spec.scale] * 3)) @ affine
    spacing = spec.spacing or spacing_of(head.image.affine)
    shape, grid = _resampled_grid(head.image.shape, affine, spacing)
    image = _resample(image, affine, shape, grid, order=1)
    foreground = _resample(foreground, affine, shape, grid) > 0.5
    blank = (_resample(blank, affine, shape, grid) > 0.5) & ~foreground
    brain = None if brain is None else _resample(brain, affine, shape, grid) > 0.5
    keep_own = spec.background == "noisy" and spec.source == "robex" and not spec.strip
    if not keep_own:
        image[~foreground] = 0
    if spec.background == "noisy" and not keep_own:
        outside = ~foreground & ~blank
        rng = np.random.default_rng(spec.seed)
        image[outside] = np.abs(rng.normal(0.0, sigma, int(outside.sum())))
    image[blank] = 0

    if spec.crop is not None:
        box = _crop_box(spec.crop, foreground, brain, centre, grid)
        image, foreground, brain = (None if a is None else a[tuple(slice(lo, hi) for lo, hi in box)]
                                    for a in (image, foreground, brain))
        grid = grid.copy()
        grid[:3, 3] = grid[:3, :3] @ np.array([lo for lo, _ in box], float) + grid[:3, 3]
    if not spec.whole_brain:
        brain = None

    # Storage: axis order, world pose, qform, data type.
    image, foreground, brain, grid = _reorient([image, foreground, brain], grid, spec.orientation)
    if any(spec.oblique_deg):
        grid = _about(_centre_of(grid, image.shape), _rotation(spec.oblique_deg)) @ grid
    qform = grid
    if spec.qform_differs:
        qform = _about(_centre_of(grid, image.shape), _rotation((0.0, 0.0, QFORM_ROTATION_DEG))) @ grid
        qform[:3, 3] += QFORM_SHIFT_MM
    stored, raw, scale = _encode(image, spec.dtype, grid, qform)
    reference = None if brain is None else Volume(brain.astype(np.uint8), grid)
    brain_ml = None if brain is None else float(brain.sum()) * float(np.prod(spacing_of(grid))) / 1000.0
    return Variant(spec, stored, reference, brain_ml, Volume(foreground.astype(np.uint8), grid), scale, raw)


def catalogue(kind: str = "test") -> list[VariantSpec]:
    """The bank's variants: "test" (16, all at 2.5 mm: fast) or "full" (source resolution plus 1 mm,
    1.5 mm and 1x1x3 mm versions). Properties are mixed across sources rather than fully crossed."""
    if kind == "test":
        return [VariantSpec(f"{name}_2p5mm", spacing=TEST_SPACING, seed=i, **options)
                for i, (name, options) in enumerate(_BASE)]
    if kind == "full":
        native = [VariantSpec(f"{name}_native", seed=i, **options) for i, (name, options) in enumerate(_BASE)]
        return native + [VariantSpec(name, seed=len(_BASE) + i, **options) for i, (name, options) in enumerate(_RES)]
    raise ValueError(f"catalogue kind must be 'test' or 'full', got {kind!r}")


_BASE: list[tuple[str, dict]] = [
    ("robex_noisy_t1", {"source": "robex", "background": "noisy"}),
    ("robex_zero_lps_int16", {"source": "robex", "orientation": "LPS", "dtype": "int16"}),
    ("robex_zero_oblique_qform_mismatch", {"source": "robex", "oblique_deg": OBLIQUE, "qform_differs": True}),
    ("robex_neck_crop_uint8", {"source": "robex", "crop": "neck", "dtype": "uint8"}),
    ("robex_defaced_zero", {"source": "robex", "deface": True}),
    ("robex_flair_noisy", {"source": "robex", "contrast": "FLAIR", "background": "noisy"}),
    ("robex_child_0p7_zero", {"source": "robex", "scale": 0.7}),
    ("robex_stripped_zero", {"source": "robex", "strip": True}),
    ("robex_stripped_noisy_lia", {"source": "robex", "strip": True, "background": "noisy", "orientation": "LIA"}),
    ("robex_slab_40mm", {"source": "robex", "crop": "slab"}),
    ("pydeface_zero_t1", {"source": "pydeface"}),
    ("pydeface_defaced_noisy_int16_slope", {"source": "pydeface", "deface": True, "background": "noisy",
                                            "dtype": "int16_slope"}),
    ("pydeface_flair_lps_oblique_qform_mismatch", {"source": "pydeface", "contrast": "FLAIR", "orientation": "LPS",
                                                   "oblique_deg": OBLIQUE, "qform_differs": True}),
    ("mni152_stripped_zero", {"source": "mni152"}),
    ("mni152_stripped_noisy_int16", {"source": "mni152", "background": "noisy", "dtype": "int16"}),
    ("mni152_hippocampus_box", {"source": "mni152", "crop": "hippocampus"}),
]
_RES: list[tuple[str, dict]] = [  # the extra resolutions of the "full" catalogue
    ("robex_zero_1mm", {"source": "robex", "spacing": (1.0, 1.0, 1.0)}),
    ("pydeface_noisy_1p5mm", {"source": "pydeface", "background": "noisy", "spacing": (1.5, 1.5, 1.5)}),
    ("pydeface_zero_int16_1x1x3mm", {"source": "pydeface", "dtype": "int16", "spacing": (1.0, 1.0, 3.0)}),
    ("mni152_stripped_zero_1x1x3mm", {"source": "mni152", "spacing": (1.0, 1.0, 3.0)}),
    ("mni152_stripped_noisy_1p5mm_lps", {"source": "mni152", "background": "noisy", "orientation": "LPS",
                                         "spacing": (1.5, 1.5, 1.5)}),
]


def flair_like(t1: np.ndarray, white_matter: float) -> np.ndarray:
    """A FLAIR-like image from a T1 (see FLAIR_U/FLAIR_V), on the T1's intensity scale."""
    u = t1 / white_matter
    return (np.interp(u, FLAIR_U, FLAIR_V) * white_matter).astype(np.float32)


def brain_region(name: str) -> np.ndarray:
    """The reference brain of a source, or (without one) the part of its head at least INNER_DEPTH_MM deep."""
    return _brain_region(name).copy()


def brain_centre(head: RealHead) -> np.ndarray:
    """World (RAS mm) centroid of the reference brain, or of the head mask when none ships."""
    mask = head.brain.data if head.brain is not None else head_mask(head.name)
    index = np.array(ndimage.center_of_mass(mask), float)
    return head.image.affine[:3, :3] @ index + head.image.affine[:3, 3]


def face_region(name: str) -> np.ndarray:
    """Voxels a defacer blanks: pydeface's face mask, or for a head with a brain mask the region anterior
    and inferior to a 45-degree plane DEFACE_MARGIN_MM in front of the brain (never touching it)."""
    return _face_region(name).copy()


@functools.lru_cache(maxsize=len(SOURCES))
def _brain_region(name: str) -> np.ndarray:
    head = load_source(name)
    if head.brain is not None:
        return head.brain.data.astype(bool)
    depth = ndimage.distance_transform_edt(head_mask(name), sampling=spacing_of(head.image.affine))
    return depth >= INNER_DEPTH_MM


@functools.lru_cache(maxsize=len(SOURCES))
def _face_region(name: str) -> np.ndarray:
    head = load_source(name)
    if head.face is not None:
        return head.face.data.astype(bool)
    if head.brain is None:
        raise ValueError(f"{name} has neither a face mask nor a brain mask to deface by")
    normal = np.array([0.0, 1.0, -1.0]) / np.sqrt(2.0)  # anterior-inferior
    along = np.tensordot(_world(head.image.shape, head.image.affine), normal, axes=([-1], [0]))
    return along > along[head.brain.data.astype(bool)].max() + DEFACE_MARGIN_MM


@functools.lru_cache(maxsize=2 * len(SOURCES))
def _levels(name: str, contrast: str) -> tuple[float, float]:
    """(white-matter level of the T1: 95th percentile in the brain region, median brain intensity in `contrast`)."""
    values = load_source(name).image.data[_brain_region(name)]
    white_matter = float(np.percentile(values, 95))
    if contrast == "FLAIR":
        values = flair_like(values, white_matter)
    return white_matter, float(np.median(values))


def _on_source_grid(head: RealHead, spec: VariantSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Contrast, stripping, defacing and a zero background on the source grid; also the noise sigma."""
    image = head.image.data.astype(np.float32, copy=True)
    foreground = head_mask(head.name)
    white_matter, median = _levels(head.name, spec.contrast)
    if spec.contrast == "FLAIR":
        image = np.where(foreground, flair_like(image, white_matter), image)
    if spec.strip:
        foreground = head.brain.data.astype(bool)
    blank = _face_region(head.name) if spec.deface else np.zeros(image.shape, bool)  # air before the face too
    foreground &= ~blank
    if spec.background == "zero" or spec.source != "robex" or spec.strip:
        image[~foreground] = 0
    image[blank] = 0
    return image, foreground, blank, NOISE_FRACTION * median


def _resampled_grid(shape: tuple[int, ...], affine: np.ndarray,
                    spacing: tuple[float, ...]) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine covering the same field of view (same outer corner, same axis directions) at `spacing`."""
    old, new = np.array(spacing_of(affine)), np.array(spacing, float)
    out_shape = tuple(max(1, int(round(n * o / s))) for n, o, s in zip(shape[:3], old, new, strict=True))
    directions = affine[:3, :3] / old
    out = np.eye(4)
    out[:3, :3] = directions * new
    out[:3, 3] = affine[:3, 3] - directions @ (old / 2) + directions @ (new / 2)
    return out_shape, out


def _resample(data: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], grid: np.ndarray,
              order: int = 1) -> np.ndarray:
    """`data` (voxels -> world by `affine`) sampled at the voxels of `grid` by world position."""
    matrix = np.linalg.inv(affine) @ grid
    if tuple(shape) == data.shape and np.allclose(matrix, np.eye(4), atol=1e-6):
        return data.astype(np.float32)  # the source grid itself (always a copy)
    return ndimage.affine_transform(data.astype(np.float32), matrix, output_shape=shape, order=order,
                                    mode="constant", cval=0.0)


def _crop_box(crop: str, head: np.ndarray, brain: np.ndarray | None, centre: np.ndarray,
              grid: np.ndarray) -> tuple[tuple[int, int], ...]:
    """[lo, hi) per axis of a crop on a near-RAS grid (axis 2 points superior)."""
    shape, spacing = head.shape, spacing_of(grid)
    box = [(0, n) for n in shape]
    centre_index = np.linalg.solve(grid[:3, :3], centre - grid[:3, 3])
    if crop == "neck":
        lowest = int(np.flatnonzero(brain.any(axis=(0, 1)))[0]) - int(round(NECK_MARGIN_MM / spacing[2]))
        top = int(np.flatnonzero(head.any(axis=(0, 1)))[-1]) + int(round(TOP_MARGIN_MM / spacing[2])) + 1
        box[2] = (max(0, lowest), min(shape[2], top))
    elif crop == "slab":
        box[2] = _window(centre_index[2], SLAB_MM / spacing[2], shape[2])
    else:
        index = np.linalg.solve(grid[:3, :3], centre + np.array(HIPPOCAMPUS_OFFSET_MM) - grid[:3, 3])
        box = [_window(index[a], HIPPOCAMPUS_BOX_MM[a] / spacing[a], shape[a]) for a in range(3)]
    return tuple(box)


def _window(centre: float, size: float, n: int) -> tuple[int, int]:
    """round(size) voxels centred on `centre`, shifted to lie inside [0, n)."""
    size = min(n, max(1, int(round(size))))
    lo = min(max(0, int(round(centre - size / 2))), n - size)
    return lo, lo + size


def _reorient(arrays: list[np.ndarray | None], affine: np.ndarray,
              axcodes: str) -> tuple[np.ndarray | None, ...]:
    """The arrays with axes reordered and flipped to `axcodes` (same world geometry), and the new affine."""
    shape = next(a for a in arrays if a is not None).shape
    transform = nib.orientations.ornt_transform(nib.io_orientation(affine),
                                                nib.orientations.axcodes2ornt(tuple(axcodes)))
    out = [None if a is None else np.ascontiguousarray(nib.apply_orientation(a, transform)) for a in arrays]
    return (*out, affine @ nib.orientations.inv_ornt_aff(transform, shape))


def _encode(image: np.ndarray, dtype: str, sform: np.ndarray,
            qform: np.ndarray) -> tuple[nib.Nifti1Image, bytes, float]:
    """The NIfTI file (read back, and its bytes) storing `image` as `dtype`, and the intensity scale used."""
    scale = 1.0
    if dtype == "float32":
        stored = image.astype(np.float32)
    else:
        top = float(image.max())
        scale = STORED_MAX[dtype] / top if top > 0 else 1.0
        intended = image.astype(np.float64) * scale
        if dtype == "int16_slope":
            intended = (intended - INTER) / SLOPE
        info = np.iinfo(np.uint8 if dtype == "uint8" else np.int16)
        stored = np.clip(np.rint(intended), info.min, info.max).astype(info.dtype)
    img = nib.Nifti1Image(stored, sform)
    img.header.set_data_dtype(stored.dtype)
    img.set_sform(sform, code=1)
    img.set_qform(qform, code=1)
    if dtype == "int16_slope":
        img.header.set_slope_inter(SLOPE, INTER)
    raw = img.to_bytes()
    return nib.Nifti1Image.from_bytes(raw), raw, scale


def _valid_axcodes(codes: str) -> bool:
    try:
        ornt = nib.orientations.axcodes2ornt(tuple(codes))
        return len(codes) == 3 and sorted(ornt[:, 0].tolist()) == [0, 1, 2]
    except Exception:  # nibabel raises ValueError for duplicate or unknown letters
        return False


def _rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    """Rotation about the world x, then y, then z axes by `degrees`."""
    x, y, z = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _about(point: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """The 4x4 world transform applying `linear` about `point`."""
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = point - linear @ point
    return out


def _centre_of(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return affine[:3, :3] @ ((np.array(shape[:3], float) - 1) / 2) + affine[:3, 3]


def _world(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World (RAS mm) coordinates of every voxel, shape (*shape, 3)."""
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape[:3]], indexing="ij"), axis=-1)
    return index @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)

