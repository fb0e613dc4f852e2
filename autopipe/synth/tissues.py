"""Tissue fractions per image voxel, and the ground-truth maps derived from them.

Inputs are on the image grid: the warped template GM and WM fractions, the lesion fraction and the
head layers (autopipe.synth.head). Inside the brain mask CSF is what GM and WM leave; lesions replace
white matter; outside it the head layers take over. Every intensity model (autopipe.synth.contrast)
is a weighted sum of these fractions, which is what makes partial volume realistic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

TISSUE_LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "lesion": 4, "skull": 5, "scalp": 6}
LESION_THRESHOLD = 0.5  # a voxel is labelled lesion when at least half of it is lesion


@dataclass(frozen=True)
class Fractions:
    """Per-voxel tissue fractions, float32 arrays on one grid; what they leave to 1 is air."""

    csf: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    lesion: np.ndarray
    bone: np.ndarray
    marrow: np.ndarray
    scalp: np.ndarray
    brain: np.ndarray  # the brain mask's fraction (GM + WM + lesion + CSF inside the mask)

    def items(self) -> list[tuple[str, np.ndarray]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def map(self, function) -> Fractions:
        """Apply an array -> array function (e.g. block averaging) to every fraction."""
        return Fractions(**{name: function(value) for name, value in self.items()})


def tissue_fractions(gm: np.ndarray, wm: np.ndarray, lesion: np.ndarray, head: dict[str, np.ndarray]) -> Fractions:
    """Combine warped template fractions, lesion fraction and head layers (see head.head_fractions)."""
    brain = head["brain"]
    total = gm + wm
    scale = np.where(total > brain, brain / np.maximum(total, 1e-6), 1.0).astype(np.float32)
    gm = gm * scale
    wm = wm * scale
    lesion = np.minimum(lesion, wm)
    csf = np.clip(brain - gm - wm, 0.0, 1.0) + head["rim_csf"]
    return Fractions(csf=csf, gm=gm, wm=wm - lesion, lesion=lesion, bone=head["inner_table"] + head["outer_table"],
                     marrow=head["marrow"], scalp=head["scalp"], brain=brain)


def tissue_labels(fractions: Fractions) -> np.ndarray:
    """uint8 label map (TISSUE_LABELS): the largest fraction per voxel (air wins as background);
    lesion wherever the lesion fraction reaches LESION_THRESHOLD, like the lesion label."""
    classes = [("csf", fractions.csf), ("gm", fractions.gm), ("wm", fractions.wm), ("lesion", fractions.lesion),
               ("skull", fractions.bone + fractions.marrow), ("scalp", fractions.scalp)]
    best = 1.0 - sum(value for _, value in classes)  # air
    labels = np.zeros(best.shape, np.uint8)
    for name, value in classes:
        better = value > best
        labels[better] = TISSUE_LABELS[name]
        best = np.where(better, value, best)
    labels[fractions.lesion >= LESION_THRESHOLD] = TISSUE_LABELS["lesion"]
    return labels


def lesion_label(fractions: Fractions) -> np.ndarray:
    """The binary lesion label (uint8 0/1): lesion fraction >= LESION_THRESHOLD."""
    return (fractions.lesion >= LESION_THRESHOLD).astype(np.uint8)


def brain_mask(fractions: Fractions) -> np.ndarray:
    """The brain mask (uint8 0/1): at least half of the voxel inside the template's brain mask."""
    return (fractions.brain >= 0.5).astype(np.uint8)
