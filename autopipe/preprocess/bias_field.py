"""N4 bias-field correction (SimpleITK), fitted on a shrunken copy inside a mask and applied at full resolution.

Shrink 4 and a foreground mask make N4 ~13 s on a 1 mm head instead of ~30 s; shrink 2 costs ~250 s for
no visible gain (measured, see offline-toolchain.md). The field is smooth, so fitting it at a quarter of
the resolution loses nothing; it is evaluated on the full grid and divided out.

N4 runs on one thread: its sums depend on how ITK splits the image between threads, so with 2 threads the
corrected image moved by up to 0.08 (of ~1000) against 1 thread, and the template registration after it
by up to 4 normalized units. One thread makes a case's result the same under -j 1, -j N and a Dask cluster,
for ~0.2 s more per case at 3 mm (0.46 -> 0.64 s).
"""

from __future__ import annotations

import numpy as np

N4_THREADS = 1  # results independent of the worker's threads (see above)


def n4_correct(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], *, shrink: int = 4,
               iterations: tuple[int, ...] = (50, 50, 50, 50),
               tolerance: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(corrected image, multiplicative bias field), both float32 with `image`'s shape.

    image: 3D intensities (negative values are clipped to 0: N4 works on log intensities);
    mask: where the field is fitted (the brain); spacing in mm per array axis.
    """
    import SimpleITK as sitk

    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must have the same shape")
    if not mask.any():
        raise ValueError("the N4 mask is empty")
    positive = np.clip(np.asarray(image, np.float32), 0, None)
    floor = max(float(np.percentile(positive[mask > 0], 1)) * 1e-3, 1e-6)
    full = _itk(positive + floor, spacing)
    full_mask = _itk(np.asarray(mask > 0, np.uint8), spacing)
    small = sitk.Shrink(full, [shrink] * 3)
    small_mask = sitk.Shrink(full_mask, [shrink] * 3)
    if not sitk.GetArrayViewFromImage(small_mask).any():  # a tiny mask can vanish when shrunk
        small_mask = sitk.Cast(sitk.BinaryDilate(small_mask, [1, 1, 1]), sitk.sitkUInt8)
        small_mask = small_mask if sitk.GetArrayViewFromImage(small_mask).any() else None
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
    corrector.SetConvergenceThreshold(float(tolerance))
    saved = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(N4_THREADS)  # N4's inner filters read the global count
    try:
        corrector.Execute(*([small] if small_mask is None else [small, small_mask]))
        log_field = corrector.GetLogBiasFieldAsImage(full)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(saved)
    field = np.exp(sitk.GetArrayFromImage(log_field).transpose(2, 1, 0)).astype(np.float32)
    return (positive / field).astype(np.float32), field


def _itk(array: np.ndarray, spacing: tuple[float, ...]):
    """A SimpleITK image from an (i, j, k) array; only spacing matters to N4, so origin and direction stay default."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image
