"""The anatomical template every synthetic subject is warped from: ICBM152 2009 (nilearn, offline), 1 mm.

From nilearn's grey-matter, white-matter and brain-mask maps (197 x 233 x 189 voxels, RAS, 1 mm) this
module derives what the generator needs, once per process (`load_template` is cached):

    csf                  brain mask - GM - WM, clipped to [0, 1] (ICBM ships no CSF map)
    signed_distance      mm to the brain-mask surface, negative inside (the head is built from it)
    ventricles           lateral (and third) ventricles: CSF > 0.5, more than 15 mm deep in the brain,
                         large components near the midline above the tentorium
    ventricle_distance   signed mm to the ventricle wall (negative inside)
    periventricular      white matter within 10 mm of the ventricles: where most lesions start
    deep_white_matter    white matter 10-30 mm from the ventricles and 10 mm from the brain surface
    motor                corona radiata / corticospinal tract beside the bodies of the lateral ventricles,
                         both hemispheres: where lesion load drives the hand-function label

All arrays are in template voxel order (i, j, k) = (R, A, S) with `affine` mapping indices to RAS mm.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

VENTRICLE_CSF = 0.5
VENTRICLE_DEPTH_MM = 15.0
VENTRICLE_MIN_VOXELS = 3000  # each lateral ventricle holds ~7000; cisterns and the 4th ventricle < 2200
VENTRICLE_MIDLINE_MM = 2.5  # the midline band cut before labelling (interhemispheric fissure, septum)
VENTRICLE_MIN_Z_MM = -15.0  # supratentorial: lesion candidates lie above this
PERIVENTRICULAR_MM = 10.0
DEEP_WM_MM = (10.0, 30.0)
WM_THRESHOLD = 0.5
# The motor region: a box in MNI mm (|x|, y, z) intersected with white matter, edges smoothed.
MOTOR_ABS_X_MM = (16.0, 34.0)
MOTOR_Y_MM = (-36.0, -2.0)
MOTOR_Z_MM = (10.0, 42.0)


@dataclass(frozen=True)
class Template:
    """Template maps, float32 fractions or bool masks [197, 233, 189], and the RAS affine (1 mm)."""

    affine: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    signed_distance: np.ndarray
    ventricles: np.ndarray
    ventricle_distance: np.ndarray
    periventricular: np.ndarray
    deep_white_matter: np.ndarray
    motor: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.gm.shape)

    @functools.cached_property
    def brain_centre_mm(self) -> np.ndarray:
        """Centroid of the brain mask, RAS mm."""
        return self.world(np.argwhere(self.brain).mean(axis=0))

    @functools.cached_property
    def ventricle_centre_mm(self) -> np.ndarray:
        """Centroid of the lateral ventricles, RAS mm."""
        return self.world(np.argwhere(self.ventricles).mean(axis=0))

    @functools.cached_property
    def periventricular_voxels(self) -> np.ndarray:
        """Voxel indices [N, 3] of the periventricular zone (lesion centre candidates)."""
        return np.argwhere(self.periventricular)

    @functools.cached_property
    def deep_white_matter_voxels(self) -> np.ndarray:
        """Voxel indices [N, 3] of the deep white matter (deep lesion centre candidates)."""
        return np.argwhere(self.deep_white_matter)

    def world(self, index: np.ndarray) -> np.ndarray:
        """Voxel indices [..., 3] -> RAS mm [..., 3]."""
        return np.asarray(index, float) @ self.affine[:3, :3].T + self.affine[:3, 3]

    def index(self, world_mm: np.ndarray) -> np.ndarray:
        """RAS mm [..., 3] -> fractional voxel indices [..., 3]."""
        return (np.asarray(world_mm, float) - self.affine[:3, 3]) @ np.linalg.inv(self.affine[:3, :3]).T


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """Load and derive every template map (about 5 s, once per process; nothing is downloaded)."""
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    affine = np.asarray(gm_img.affine, float)
    gm = np.asarray(gm_img.get_fdata(), np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata()) > 0.5
    csf = np.clip(brain.astype(np.float32) - gm - wm, 0.0, 1.0)
    depth = ndimage.distance_transform_edt(brain).astype(np.float32)
    signed_distance = ndimage.distance_transform_edt(~brain).astype(np.float32) - depth
    coords = _world_axes(affine, gm.shape)
    ventricles = find_ventricles(csf, depth, coords)
    ventricle_distance = (ndimage.distance_transform_edt(~ventricles)
                          - ndimage.distance_transform_edt(ventricles)).astype(np.float32)
    supratentorial = coords[2][None, None, :] > VENTRICLE_MIN_Z_MM
    white = (wm > WM_THRESHOLD) & supratentorial
    periventricular = white & (ventricle_distance > 0) & (ventricle_distance <= PERIVENTRICULAR_MM)
    deep = (white & (wm > 0.8) & (ventricle_distance > DEEP_WM_MM[0]) & (ventricle_distance <= DEEP_WM_MM[1])
            & (depth > 10.0))
    log.debug("template: ventricles %.1f mL, periventricular WM %.1f mL", ventricles.sum() / 1e3,
              periventricular.sum() / 1e3)
    template = Template(affine, gm, wm, csf, brain, signed_distance, ventricles, ventricle_distance,
                        periventricular, deep, motor_region(wm, coords))
    for name in ("brain_centre_mm", "ventricle_centre_mm", "periventricular_voxels", "deep_white_matter_voxels"):
        getattr(template, name)  # computed once here, before any worker process forks
    return template


def find_ventricles(csf: np.ndarray, depth_mm: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    """The lateral ventricles: the two large components of deep CSF once the midline band is cut.

    Deep CSF (CSF > 0.5, more than 15 mm inside the brain mask) also holds the interhemispheric
    fissure, the cisterns and the fourth ventricle. Cutting the midline band and a morphological
    opening separate them; only the two lateral ventricles are large. The band is then given back
    where it touches them (the septal walls, the third ventricle's top).
    """
    deep_csf = (csf > VENTRICLE_CSF) & (depth_mm > VENTRICLE_DEPTH_MM)
    off_midline = (np.abs(coords[0]) > VENTRICLE_MIDLINE_MM)[:, None, None]
    opened = ndimage.binary_opening(deep_csf & off_midline)
    labels, count = ndimage.label(opened)
    sizes = ndimage.sum_labels(opened, labels, np.arange(1, count + 1))
    lateral = np.isin(labels, 1 + np.flatnonzero(sizes >= VENTRICLE_MIN_VOXELS))
    return ndimage.binary_dilation(lateral, iterations=3, mask=deep_csf & ~off_midline)


def motor_region(wm: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    """White matter of the corona radiata lateral to the ventricle bodies, both hemispheres (bool).

    The box (MOTOR_*_MM, symmetric in x) holds the descending corticospinal fibres between the
    motor cortex and the internal capsule; its edges are rounded by a 3 mm Gaussian.
    """
    x, y, z = (np.asarray(c) for c in coords)
    in_x = (np.abs(x) >= MOTOR_ABS_X_MM[0]) & (np.abs(x) <= MOTOR_ABS_X_MM[1])
    in_y = (y >= MOTOR_Y_MM[0]) & (y <= MOTOR_Y_MM[1])
    in_z = (z >= MOTOR_Z_MM[0]) & (z <= MOTOR_Z_MM[1])
    box = in_x[:, None, None] & in_y[None, :, None] & in_z[None, None, :]
    rounded = ndimage.gaussian_filter(box.astype(np.float32), 3.0) > 0.5
    return rounded & (wm > WM_THRESHOLD)


def _world_axes(affine: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """RAS mm coordinates along each template axis (the template affine is diagonal)."""
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("the template affine must be axis-aligned")
    return [affine[a, a] * np.arange(n) + affine[a, 3] for a, n in enumerate(shape)]
