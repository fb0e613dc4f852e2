"""Registration with antspyx: computed on copies at a coarse spacing, applied to full-resolution images.

Transforms are physical-space maps, so one computed between 2 mm copies (Affine: ~2 s instead of
~35 s at 1 mm) applies unchanged to the 1 mm image. Transform files are ANTs' own (.mat for linear,
.nii.gz for SyN's warps), kept with the preprocessed case so any output can be mapped back.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopipe.cohort.image_io import Volume
from autopipe.files import temporary_prefix
from autopipe.preprocess.geometry import Grid, grid_image, resampled_grid, to_ants

TRANSFORMS = ("Rigid", "Affine", "SyN")
# ANTs' default linear schedule is (2100, 1200, 1200, 10) iterations at shrink (6, 4, 2, 1). Its last level,
# at full resolution of the 2 mm copies, cost ~3 of ~4.5 s and moved the registered brain's overlap with the
# template by < 0.001 Dice (measured on synthetic cases): skipped.
LINEAR_ITERATIONS = (1000, 500, 250, 0)
INTERPOLATORS = {3: "bSpline", 1: "linear", 0: "nearestNeighbor"}


@dataclass(frozen=True)
class Registration:
    """Transform files mapping moving -> fixed (`forward`, for apply_transforms onto the fixed grid)
    and fixed -> moving (`inverse`), in ANTs list order, with which of them to invert."""

    forward: tuple[str, ...]
    inverse: tuple[str, ...]
    invert_inverse: tuple[bool, ...]

    def relocated(self, folder: Path, prefix: str) -> Registration:
        """The transform files moved into `folder`, named `prefix` + their role; returns the new record.

        Moving (not copying) also clears ANTs' temporary files, which would otherwise pile up in /tmp.
        """
        folder.mkdir(parents=True, exist_ok=True)
        moved: dict[str, str] = {}
        for path in dict.fromkeys(self.forward + self.inverse):
            suffix = ".mat" if path.endswith(".mat") else ".nii.gz"
            role = "affine" if suffix == ".mat" else ("inverse_warp" if "Inverse" in path else "warp")
            target = folder / f"{prefix}_{role}{suffix}"
            tmp = target.with_name(temporary_prefix() + target.name)
            shutil.move(path, tmp)
            tmp.replace(target)
            moved[path] = target.name
        return Registration(tuple(moved[p] for p in self.forward), tuple(moved[p] for p in self.inverse),
                            self.invert_inverse)

    def to_plain(self) -> dict:
        return {"forward": list(self.forward), "inverse": list(self.inverse),
                "invert_inverse": list(self.invert_inverse)}

    @staticmethod
    def from_plain(value: dict) -> Registration:
        return Registration(tuple(value["forward"]), tuple(value["inverse"]), tuple(value["invert_inverse"]))


def register(fixed: Volume, moving: Volume, transform: str, spacing_mm: float, seed: int) -> Registration:
    """Mutual-information registration of `moving` onto `fixed`, both first resampled to `spacing_mm`.

    Mattes mutual information works across contrasts (FLAIR onto a T1 template). `seed` makes the
    metric's random sampling repeatable (with one ITK thread; see `_repeatable`). Transform files are
    written to a temporary folder; call `relocated` to keep them.
    """
    import ants

    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    fixed_small = _coarse(fixed, spacing_mm)
    moving_small = _coarse(moving, spacing_mm)
    with _repeatable(seed):
        result = ants.registration(fixed=fixed_small, moving=moving_small, type_of_transform=transform,
                                   aff_iterations=LINEAR_ITERATIONS, verbose=False)
    forward = tuple(result["fwdtransforms"])
    inverse = tuple(result["invtransforms"])
    return Registration(forward, inverse, tuple(p.endswith(".mat") for p in inverse))


def apply(moving: Volume, grid: Grid, transforms: tuple[str, ...], order: int, folder: Path | None = None,
          invert: tuple[bool, ...] | None = None) -> np.ndarray:
    """`moving` resampled onto `grid` through `transforms` (ANTs list order; empty: identity), float32.

    order 3 (cubic B-spline) for images, 1 (linear) for masks that are thresholded afterwards, 0 nearest.
    Relative transform paths are looked up in `folder`.
    """
    import ants

    paths = [str(folder / t) if folder is not None else t for t in transforms]
    out = ants.apply_transforms(grid_image(grid), to_ants(moving), transformlist=paths,
                                interpolator=INTERPOLATORS[order], whichtoinvert=list(invert) if invert else None)
    return out.numpy().astype(np.float32)


@contextmanager
def _repeatable(seed: int) -> Iterator[None]:
    """A fixed sampling seed for ANTs' metric. antspyx 0.6 ignores `random_seed=`; its module-level seed
    is honoured. Repeatable results also need one ITK thread (autopipe.runtime.set_threads sees to it)."""
    import ants.config

    saved = ants.config._random_seed
    ants.config._random_seed = int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = saved


def _coarse(volume: Volume, spacing_mm: float, order: int = 1):
    """The volume resampled (linear, or nearest for order 0) to isotropic `spacing_mm`, as an ANTsImage."""
    import ants

    grid = resampled_grid(Grid.of(volume), (spacing_mm,) * 3)
    return ants.apply_transforms(grid_image(grid), to_ants(volume), transformlist=[],
                                 interpolator=INTERPOLATORS[order])
