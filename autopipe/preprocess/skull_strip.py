"""The skull-stripping step: a brain mask per case, by the plan's method, with the evidence behind it.

    auto     per case, from evidence (autopipe.anatomy.head_evidence): deepbet for a head with skull,
             the scanned object for an already-stripped brain, the non-zero region for a crop that
             holds no whole brain
    deepbet  deepbet on every case (autopipe.anatomy.brain_extraction)
    none     the non-zero region on every case (the heads are stripped, or the scans are not heads)

Whatever the method, the evidence is gathered for every scan that holds a whole brain (deepbet runs
once), so the plausibility checks can tell a brain mask that is really a head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autopipe.anatomy.brain_extraction import extract_brain
from autopipe.anatomy.foreground import largest_component_filled
from autopipe.anatomy.head_evidence import HeadEvidence, head_evidence

SKULL_STRIP_METHODS = ("auto", "deepbet", "none")


@dataclass(frozen=True)
class StripResult:
    """The brain mask, what produced it ('deepbet' or 'none'), and the evidence about the scan."""

    brain: np.ndarray
    stripped_with: str
    evidence: HeadEvidence


def strip_skull(image: np.ndarray, affine: np.ndarray, method: str) -> StripResult:
    """Brain mask of a 3D image in RAS voxel order by `method` (see the module docstring)."""
    if method not in SKULL_STRIP_METHODS:
        raise ValueError(f"unknown skull-strip method {method!r}; choose one of {', '.join(SKULL_STRIP_METHODS)}")
    if method == "none":
        evidence, _, _ = head_evidence(image, affine, extract_brain)
        return StripResult(nonzero_mask(image), "none", evidence)
    if method == "deepbet":
        brain = extract_brain(image)
        evidence, _, _ = head_evidence(image, affine, lambda _: brain)
        return StripResult(brain, "deepbet", evidence)
    evidence, foreground, extracted = head_evidence(image, affine, extract_brain)
    if extracted is None:
        return StripResult(nonzero_mask(image), "none", evidence)
    if evidence.needs_strip:
        return StripResult(extracted, "deepbet", evidence)
    # already stripped: the given brain, with the extractor filling dark rims the threshold left out
    given = largest_component_filled((extracted | foreground) & (np.asarray(image) != 0))
    return StripResult(given, "none", evidence)


def brain_mask(image: np.ndarray, method: str) -> np.ndarray:
    """Brain mask (bool) of a 3D RAS image by 'deepbet' or 'none' (no evidence; for tools and tests)."""
    if method == "deepbet":
        return extract_brain(image)
    if method == "none":
        return nonzero_mask(image)
    raise ValueError(f"unknown skull-strip method {method!r}; choose one of deepbet, none")


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """The largest connected non-zero region with its holes filled: the brain of a stripped image."""
    return largest_component_filled(np.asarray(image) != 0)
