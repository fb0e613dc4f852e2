"""Image-quality metrics for accelerated-MRI reconstruction: SSIM, PSNR and NMSE, as fastMRI evaluates them.

Every function takes magnitude images, target (reference) first and prediction second, as one 2D slice
[H, W] or a volume [S, H, W] of slices; a 2D slice is scored as a one-slice volume. Inputs must be real,
finite and of one shape; anything else raises ValueError. Values are computed in float64.

Data range convention: unless given, the data range is the maximum of the whole target volume (not of
each slice), as in `fastmri.evaluate`. ATOMMIC instead normalizes each slice by its own maximum, so its
SSIM and PSNR are not comparable with these.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03

IMAGE_QUALITY_DEFINITIONS: dict[str, str] = {
    "ssim": "structural similarity as in fastMRI (skimage structural_similarity per slice): local means, sample "
            "(co)variances (N/(N-1), N = 49) over a 7x7 uniform window with reflected borders, "
            "C1 = (0.01 L)^2, C2 = (0.03 L)^2, the SSIM map averaged after cropping a 3-pixel border, then "
            "averaged over slices; L = max of the reference volume (not per slice; ATOMMIC normalizes each "
            "slice by its own max, so its numbers are not comparable); unitless, 1 for identical images",
    "psnr": "peak signal-to-noise ratio in dB = 10 log10(L^2 / MSE), MSE over the whole volume and L = max of "
            "the reference volume as in fastMRI (ATOMMIC normalizes each slice by its own max, so its numbers "
            "are not comparable); inf for identical images",
    "nmse": "normalized mean squared error = ||reference - prediction||^2 / ||reference||^2 over the whole "
            "volume (unitless, independent of any data range); 0 for identical images",
}


def ssim(target: np.ndarray, prediction: np.ndarray, data_range: float | None = None) -> float:
    """Mean SSIM over slices, exactly as `fastmri.evaluate.ssim` (skimage `structural_similarity` per slice).

    Per slice, with x = target and y = prediction: local means u, variances v and covariance v_xy over a
    7x7 uniform window (scipy `uniform_filter`, mode "reflect"), the variances scaled by N/(N-1), N = 49
    (sample covariance); SSIM map = (2 u_x u_y + C1)(2 v_xy + C2) / ((u_x^2 + u_y^2 + C1)(v_x + v_y + C2))
    with C1 = (0.01 L)^2, C2 = (0.03 L)^2; the map is averaged after cropping a (7-1)/2 = 3 pixel border,
    and the slice values are averaged. L = `data_range`, by default the maximum of the target volume.
    Slices must be at least 7x7; the data range must be positive.
    """
    target, prediction = _image_pair(target, prediction)
    if min(target.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs slices of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                         f"got {target.shape[1]}x{target.shape[2]}")
    L = _data_range(target, data_range)
    c1, c2 = (SSIM_K1 * L) ** 2, (SSIM_K2 * L) ** 2
    n = SSIM_WINDOW**2
    cov_norm = n / (n - 1)
    size = (1, SSIM_WINDOW, SSIM_WINDOW)  # filter within each slice only

    def local_mean(image: np.ndarray) -> np.ndarray:
        return uniform_filter(image, size=size, mode="reflect")

    ux, uy = local_mean(target), local_mean(prediction)
    vx = cov_norm * (local_mean(target * target) - ux * ux)
    vy = cov_norm * (local_mean(prediction * prediction) - uy * uy)
    vxy = cov_norm * (local_mean(target * prediction) - ux * uy)
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (SSIM_WINDOW - 1) // 2
    per_slice = ssim_map[:, pad:-pad, pad:-pad].mean(axis=(1, 2))
    return float(per_slice.mean())


def psnr(target: np.ndarray, prediction: np.ndarray, data_range: float | None = None) -> float:
    """PSNR in dB = 10 log10(L^2 / MSE), MSE over the whole volume, as `fastmri.evaluate.psnr`.

    L = `data_range`, by default the maximum of the target volume; it must be positive. inf when the
    images are identical.
    """
    target, prediction = _image_pair(target, prediction)
    L = _data_range(target, data_range)
    mse = float(np.mean((target - prediction) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(L**2 / mse))


def nmse(target: np.ndarray, prediction: np.ndarray) -> float:
    """NMSE = ||target - prediction||^2 / ||target||^2 over the whole volume, as `fastmri.evaluate.nmse`.

    nan (undefined) when the target is all zero.
    """
    target, prediction = _image_pair(target, prediction)
    denominator = float(np.sum(target**2))
    if denominator == 0.0:
        return float("nan")
    return float(np.sum((target - prediction) ** 2)) / denominator


def image_quality(target: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """SSIM, PSNR (dB) and NMSE of one slice or volume, keyed as IMAGE_QUALITY_DEFINITIONS, default data range."""
    target, prediction = _image_pair(target, prediction)
    return {
        "ssim": ssim(target, prediction),
        "psnr": psnr(target, prediction),
        "nmse": nmse(target, prediction),
    }


def _image_pair(target: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 volumes [S, H, W], checked for shape, dimensions, real dtype and finiteness."""
    arrays = []
    for name, image in (("target", target), ("prediction", prediction)):
        image = np.asarray(image)
        if np.iscomplexobj(image):
            raise ValueError(f"{name} is complex ({image.dtype}); pass magnitude images")
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
            raise ValueError(f"{name} must be numeric, got dtype {image.dtype}")
        arrays.append(image)
    target, prediction = arrays
    if target.shape != prediction.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    if target.ndim not in (2, 3):
        raise ValueError(f"images must be a 2D slice [H, W] or a volume [S, H, W], got shape {target.shape}")
    if target.size == 0:
        raise ValueError(f"images are empty, shape {target.shape}")
    target, prediction = (np.asarray(a, dtype=np.float64).reshape((-1, *a.shape[-2:])) for a in arrays)
    for name, image in (("target", target), ("prediction", prediction)):
        if not np.isfinite(image).all():
            raise ValueError(f"{name} has {int(np.count_nonzero(~np.isfinite(image)))} non-finite values (nan/inf)")
    return target, prediction


def _data_range(target: np.ndarray, data_range: float | None) -> float:
    """The given data range, or the maximum of the target volume; must be finite and positive."""
    if data_range is None:
        value = float(target.max())
        if value <= 0:
            raise ValueError(f"default data range = target maximum = {value} is not positive; pass data_range")
        return value
    value = float(data_range)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be finite and positive, got {data_range}")
    return value
