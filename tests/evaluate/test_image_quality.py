"""Image-quality metrics on hand-made images (values worked out in the comments) and against fastMRI's evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from autopipe.evaluate.image_quality import IMAGE_QUALITY_DEFINITIONS, image_quality, nmse, psnr, ssim


def smooth_volume(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Non-negative smooth blobs, like a magnitude image."""
    rng = np.random.default_rng(seed)
    return np.abs(ndimage.gaussian_filter(rng.normal(size=shape), sigma=(0, 3, 3)[-len(shape):])) * 10


def test_identical_images_are_perfect() -> None:
    image = smooth_volume((2, 16, 20), seed=0)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert psnr(image, image) == math.inf
    assert nmse(image, image) == 0.0
    scores = image_quality(image, image)
    assert set(scores) == set(IMAGE_QUALITY_DEFINITIONS) == {"ssim", "psnr", "nmse"}
    assert scores["psnr"] == math.inf and scores["nmse"] == 0.0


def test_scaling_gives_closed_form_nmse() -> None:
    # prediction = a x target: ||t - a t||^2 / ||t||^2 = (1 - a)^2, whatever the image.
    target = smooth_volume((3, 12, 9), seed=1)
    assert nmse(target, 0.9 * target) == pytest.approx(0.01, rel=1e-12)
    assert nmse(target, 1.5 * target) == pytest.approx(0.25, rel=1e-12)


def test_offset_gives_closed_form_psnr() -> None:
    # prediction = target + c: MSE = c^2, PSNR = 10 log10(max^2 / c^2) = 20 log10(max / c).
    target = smooth_volume((2, 10, 11), seed=2)
    target *= 2.0 / target.max()  # volume max 2
    assert psnr(target, target + 0.02) == pytest.approx(40.0, abs=1e-9)  # 20 log10(100)
    assert psnr(target, target - 0.2) == pytest.approx(20.0, abs=1e-9)
    assert psnr(target, target + 0.2, data_range=20.0) == pytest.approx(40.0, abs=1e-9)


def test_constant_images() -> None:
    # target 2, prediction 1 everywhere: L = 2, C1 = (0.01 x 2)^2 = 4e-4, all (co)variances 0, so
    # SSIM = (2 x 2 x 1 + C1)(0 + C2) / ((4 + 1 + C1)(0 + C2)) = 4.0004 / 5.0004;
    # PSNR = 10 log10(4 / 1); NMSE = 1 / 4.
    target, prediction = np.full((2, 9, 8), 2.0), np.ones((2, 9, 8))
    assert ssim(target, prediction) == pytest.approx(4.0004 / 5.0004, abs=1e-12)
    assert psnr(target, prediction) == pytest.approx(10 * math.log10(4.0), abs=1e-12)
    assert nmse(target, prediction) == pytest.approx(0.25, abs=1e-15)
    assert ssim(target, target) == pytest.approx(1.0, abs=1e-12)


def test_slice_equals_one_slice_volume() -> None:
    target, prediction = smooth_volume((13, 15), seed=3), smooth_volume((13, 15), seed=4)
    assert image_quality(target, prediction) == image_quality(target[None], prediction[None])


def test_default_data_range_is_volume_max() -> None:
    # slice 0 has max ~1, slice 1 max ~0.1: the default L is the volume max, not each slice's own.
    target = np.stack([smooth_volume((20, 20), seed=5), smooth_volume((20, 20), seed=6)])
    target[0] /= target[0].max()
    target[1] *= 0.1 / target[1].max()
    rng = np.random.default_rng(7)
    prediction = target + rng.normal(scale=0.01, size=target.shape)
    volume_max = target.max()
    per_slice_volume_range = [ssim(t, p, data_range=volume_max) for t, p in zip(target, prediction, strict=True)]
    per_slice_own_range = [ssim(t, p) for t, p in zip(target, prediction, strict=True)]
    assert ssim(target, prediction) == pytest.approx(np.mean(per_slice_volume_range), abs=1e-12)
    assert ssim(target, prediction) == pytest.approx(ssim(target, prediction, data_range=volume_max), abs=1e-15)
    assert abs(ssim(target, prediction) - np.mean(per_slice_own_range)) > 0.02  # 0.971 vs 0.925
    assert psnr(target, prediction) == pytest.approx(psnr(target, prediction, data_range=volume_max), abs=1e-12)


def reference_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2024)
    cases = []
    for shape in [(3, 37, 41), (1, 7, 7), (2, 64, 48), (4, 20, 33)]:
        uniform_target = rng.uniform(size=shape)
        cases.append((f"random {shape}", uniform_target, uniform_target + rng.normal(scale=0.1, size=shape)))
        blobs = smooth_volume(shape, seed=int(rng.integers(1 << 30)))
        noisy = np.abs(blobs + rng.normal(scale=0.05 * blobs.max(), size=shape))
        cases.append((f"blobs+noise {shape}", blobs, noisy))
        cases.append((f"blobs scaled {shape}", blobs, 0.8 * blobs + 0.01))
    return cases


@pytest.mark.parametrize(("name", "target", "prediction"), reference_cases(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_agrees_with_fastmri(name: str, target: np.ndarray, prediction: np.ndarray) -> None:
    fastmri = pytest.importorskip("fastmri.evaluate", reason="reference: pip install --no-deps fastmri==0.3.0 runstats")
    assert abs(ssim(target, prediction) - fastmri.ssim(target, prediction).item()) < 1e-4, name
    assert abs(psnr(target, prediction) - fastmri.psnr(target, prediction).item()) < 1e-4, name
    assert abs(nmse(target, prediction) - fastmri.nmse(target, prediction).item()) < 1e-4, name
    float32 = target.astype(np.float32), prediction.astype(np.float32)
    assert abs(ssim(*float32) - fastmri.ssim(*float32).item()) < 1e-4, name
    assert abs(psnr(*float32) - fastmri.psnr(*float32).item()) < 1e-4, name
    assert abs(nmse(*float32) - fastmri.nmse(*float32).item()) < 1e-4, name


@pytest.mark.parametrize(
    ("target", "prediction", "message"),
    [
        (np.ones((2, 8, 8)), np.ones((2, 8, 9)), "differs from target shape"),
        (np.ones(8), np.ones(8), "2D slice"),
        (np.ones((1, 2, 8, 8)), np.ones((1, 2, 8, 8)), "2D slice"),
        (np.full((8, 8), np.nan), np.ones((8, 8)), "target has 64 non-finite"),
        (np.ones((8, 8)), np.full((8, 8), np.inf), "prediction has 64 non-finite"),
        (np.ones((8, 8), dtype=complex), np.ones((8, 8)), "complex"),
        (np.zeros((8, 8)), np.ones((8, 8)), "not positive"),
    ],
)
def test_bad_inputs(target: np.ndarray, prediction: np.ndarray, message: str) -> None:
    metrics = (ssim, psnr, image_quality) if message == "not positive" else (ssim, psnr, nmse, image_quality)
    for metric in metrics:
        with pytest.raises(ValueError, match=message):
            metric(target, prediction)


def test_bad_data_range_and_small_slices() -> None:
    image = np.ones((8, 8))
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="data_range must be finite and positive"):
            ssim(image, image, data_range=bad)
        with pytest.raises(ValueError, match="data_range must be finite and positive"):
            psnr(image, image, data_range=bad)
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(np.ones((2, 6, 30)), np.ones((2, 6, 30)))
    assert math.isnan(nmse(np.zeros((3, 3)), np.ones((3, 3))))  # undefined, not an error
