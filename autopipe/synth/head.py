"""The head around the brain: subarachnoid CSF, skull (inner table, marrow, outer table) and scalp.

The ICBM template is skull-stripped, so the head is built from the distance d (mm) to the brain-mask
surface: concentric layers whose thicknesses are drawn per subject and vary smoothly over the head
(a random field scales every boundary by 1 +- `variation`). Layer fractions use a linear ramp one
voxel wide at each boundary, so edges show partial volume like a real scan's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYERS = ("rim_csf", "inner_table", "marrow", "outer_table", "scalp")


@dataclass(frozen=True)
class HeadParams:
    """Layer thicknesses in mm (outward from the brain), their relative spatial variation, and its field."""

    rim_csf_mm: float
    inner_table_mm: float
    marrow_mm: float
    outer_table_mm: float
    scalp_mm: float
    variation: float
    field_seed: int
    field_control_mm: float = 30.0

    @property
    def thicknesses(self) -> tuple[float, ...]:
        return (self.rim_csf_mm, self.inner_table_mm, self.marrow_mm, self.outer_table_mm, self.scalp_mm)

    @property
    def max_extent_mm(self) -> float:
        """The farthest the head reaches from the brain surface, in mm."""
        return float(sum(self.thicknesses) * (1 + self.variation))


def sample_head(rng: np.random.Generator) -> HeadParams:
    """Adult-like layers: CSF 1.5-3.5 mm, skull 5-9 mm (a third to half of it marrow), scalp 4-8 mm."""
    skull = rng.uniform(5.0, 9.0)
    marrow = skull * rng.uniform(0.3, 0.5)
    inner = (skull - marrow) * rng.uniform(0.4, 0.6)
    return HeadParams(rim_csf_mm=float(rng.uniform(1.5, 3.5)), inner_table_mm=float(inner), marrow_mm=float(marrow),
                      outer_table_mm=float(skull - marrow - inner), scalp_mm=float(rng.uniform(4.0, 8.0)),
                      variation=float(rng.uniform(0.15, 0.35)), field_seed=int(rng.integers(2**31)))


def soft_outside(distance_mm: np.ndarray, boundary_mm: np.ndarray | float, width_mm: float) -> np.ndarray:
    """Fraction of a voxel beyond `boundary_mm`: 0 well inside, 1 well outside, a ramp `width_mm` wide between."""
    return np.clip((distance_mm - boundary_mm) / width_mm + 0.5, 0.0, 1.0)


def head_fractions(distance_mm: np.ndarray, variation_field: np.ndarray, params: HeadParams,
                   width_mm: float) -> dict[str, np.ndarray]:
    """Fractions of brain and of each head layer per voxel, float32, summing to <= 1 (the rest is air).

    distance_mm: signed distance to the brain surface (negative inside) on the image grid.
    variation_field: smooth field in [-1, 1] on the same grid (scales the layer boundaries).
    width_mm: the partial-volume ramp, about one voxel.
    """
    stretch = 1.0 + params.variation * variation_field
    outside = soft_outside(distance_mm, 0.0, width_mm)
    fractions = {"brain": (1.0 - outside).astype(np.float32)}
    boundary = 0.0
    for name, thickness in zip(LAYERS, params.thicknesses, strict=True):
        boundary = boundary + thickness * stretch
        beyond = soft_outside(distance_mm, boundary, width_mm)
        fractions[name] = (outside - beyond).astype(np.float32)
        outside = beyond
    return fractions
