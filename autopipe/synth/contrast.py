"""From tissue fractions to a scanner-like image: contrast, texture, bias field, phase and Rician noise.

    signal    m = gain * sum_t fraction_t * mean_t * (1 + texture)     (mean_t relative to white matter)
    complex   z = m * bias * exp(i phase)                               (the noise-free complex image)
    stored    |z + sigma (n_re + i n_im)|, n ~ N(0, 1)                  (Rician magnitude), rounded to int16

Images are stored as int16 (0..32767, no scaling), like scanner exports: white matter sits at `gain`
(a few hundred to ~1000 units, varying per subject) and the background holds Rician noise of level
sigma. FLAIR: CSF dark, grey matter brighter than white, lesions bright, bone dark, marrow and scalp fat
bright. T1: CSF dark, grey darker than white, lesions hypointense, fat bright. Tissue means vary a
few percent per subject; the bias field is exp of a smooth random field, +-`bias_amplitude` in log
units (~20-30%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autopipe.synth.fields import random_smooth_field
from autopipe.synth.tissues import Fractions

MEANS = {
    "FLAIR": {"csf": 0.12, "gm": 1.28, "wm": 1.0, "lesion": 1.65, "bone": 0.05, "marrow": 0.6, "scalp": 1.45},
    "T1": {"csf": 0.25, "gm": 0.64, "wm": 1.0, "lesion": 0.6, "bone": 0.06, "marrow": 0.95, "scalp": 1.15},
}
TISSUE_JITTER = 0.03  # relative SD of a subject's tissue means
TEXTURE_CONTROL_MM = 8.0
BIAS_CONTROL_MM = 70.0
PHASE_CONTROL_MM = 60.0
INT16_MAX = 32767


@dataclass(frozen=True)
class ChannelAppearance:
    """One channel of one subject: tissue means (x gain), texture and noise (sigma as a fraction of gain)."""

    channel: str
    means: dict[str, float]
    gain: float
    texture_amplitude: float
    texture_seed: int
    noise_fraction: float
    noise_seed: int


@dataclass(frozen=True)
class Acquisition:
    """What the scanner adds to every channel of a subject: a bias field and a smooth phase."""

    bias_amplitude: float
    bias_seed: int
    phase_amplitude: float
    phase_offset: float
    phase_seed: int


def sample_appearance(rng: np.random.Generator, channel: str) -> ChannelAppearance:
    """Tissue means jittered by TISSUE_JITTER, gain 400-1000, texture 2-4 %, noise sigma 1.5-3.5 % of WM."""
    if channel not in MEANS:
        raise ValueError(f"unknown channel {channel!r}; known: {', '.join(MEANS)}")
    means = {t: float(m * np.clip(1 + TISSUE_JITTER * rng.standard_normal(), 0.9, 1.1))
             for t, m in MEANS[channel].items()}
    return ChannelAppearance(channel, means, gain=float(rng.uniform(400, 1000)),
                             texture_amplitude=float(rng.uniform(0.02, 0.04)), texture_seed=int(rng.integers(2**31)),
                             noise_fraction=float(rng.uniform(0.015, 0.035)), noise_seed=int(rng.integers(2**31)))


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Bias +-0.18-0.28 (log units), phase varying by up to 0.5-1.5 rad over the head plus a global offset."""
    return Acquisition(bias_amplitude=float(rng.uniform(0.18, 0.28)), bias_seed=int(rng.integers(2**31)),
                       phase_amplitude=float(rng.uniform(0.5, 1.5)), phase_offset=float(rng.uniform(-np.pi, np.pi)),
                       phase_seed=int(rng.integers(2**31)))


def tissue_signal(fractions: Fractions, appearance: ChannelAppearance) -> np.ndarray:
    """Noise-free magnitude before texture and bias: gain * sum_t fraction_t * mean_t, float32."""
    signal = np.zeros(fractions.csf.shape, np.float32)
    for tissue, mean in appearance.means.items():
        signal += getattr(fractions, tissue) * np.float32(mean * appearance.gain)
    return signal


def bias_field(acquisition: Acquisition, shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """Smooth multiplicative field exp(a * f), f in [-1, 1] with ~70 mm control spacing: float32."""
    field = random_smooth_field(acquisition.bias_seed, shape, spacing, BIAS_CONTROL_MM)
    return np.exp(acquisition.bias_amplitude * field).astype(np.float32)


def phase_map(acquisition: Acquisition, shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """Smooth image phase in radians: offset + amplitude * f, float32."""
    field = random_smooth_field(acquisition.phase_seed, shape, spacing, PHASE_CONTROL_MM)
    return (acquisition.phase_offset + acquisition.phase_amplitude * field).astype(np.float32)


def complex_image(fractions: Fractions, appearance: ChannelAppearance, bias: np.ndarray, phase: np.ndarray,
                  spacing: tuple[float, ...]) -> np.ndarray:
    """The noise-free complex image z = signal * (1 + texture) * bias * exp(i phase): complex64, grid shape.

    bias, phase: float32 on the grid (bias_field, phase_map), shared by a subject's channels.
    """
    texture = random_smooth_field(appearance.texture_seed, bias.shape, spacing, TEXTURE_CONTROL_MM)
    magnitude = tissue_signal(fractions, appearance) * (1 + appearance.texture_amplitude * texture) * bias
    return (magnitude * np.exp(1j * phase)).astype(np.complex64)


def noise_sigma(appearance: ChannelAppearance) -> float:
    """Standard deviation of the complex noise per real/imaginary part, in stored units."""
    return appearance.noise_fraction * appearance.gain


def rician_magnitude(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """|z + sigma (n_re + i n_im)| with n from `seed`: the Rician magnitude a scanner stores, float32."""
    rng = np.random.default_rng(seed)
    real = image.real + sigma * rng.standard_normal(image.shape, np.float32)
    imag = image.imag + sigma * rng.standard_normal(image.shape, np.float32)
    return np.hypot(real, imag)


def to_int16(image: np.ndarray) -> np.ndarray:
    """Round and clip to the int16 range scanners export (0..32767)."""
    return np.clip(np.rint(image), 0, INT16_MAX).astype(np.int16)
