"""Undersampling masks for Cartesian k-space: which samples an accelerated acquisition keeps.

Every mask is boolean, centred like autopipe k-space (DC at index H//2, W//2), fully sampled in a central
calibration region (needed to estimate coil maps), and a pure function of its arguments: the same seed
gives the same mask. 2D masks are [H, W] (variable-density sampling of both phase-encode directions of a
3D acquisition); 1D masks are [W], one flag per phase-encode line, every row of that line sampled.
Acceleration is always counted the same way: samples in the matrix / samples in the mask (calibration
included), see `effective_acceleration`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

POISSON_SLOPE = 2.0
"""Default growth of the Poisson disc spacing r(k) = r0 (1 + slope |k|): density ~ 1 / r^2 falls 9x to the edge."""
GAUSSIAN_SIGMA = 0.35
"""Default width of the Gaussian sampling density, in units of the half matrix."""
POISSON_TOLERANCE = 0.01
"""Relative error of the Poisson disc sample count at which the search for r0 stops."""


def poisson_disc_mask(shape: tuple[int, int], acceleration: float, calibration_size: int, seed: int, *,
                      slope: float = POISSON_SLOPE, ellipse: bool = True, tolerance: float = POISSON_TOLERANCE,
                      max_iterations: int = 30) -> np.ndarray:
    """Variable-density Poisson disc mask, bool [H, W], at the requested effective acceleration.

    Samples keep a minimum distance that grows away from the centre (see poisson_disc_samples): even
    coverage without clumps or holes, denser where the image energy is. The spacing scale r0 is found by
    a secant search on log(count) vs log(r0), safeguarded by bisection, until the sample count is within
    `tolerance` of H*W / acceleration (it is the best mask seen if `max_iterations` runs out first).
    With `ellipse` (the default) samples lie in the ellipse inscribed in the matrix, as usual for
    Poisson disc scans: the corners hold little signal, and they still count in the acceleration.
    """
    H, W = shape
    _check_acceleration(acceleration)
    target = round(H * W / acceleration)
    calibration = calibration_region(shape, calibration_size)
    in_ellipse = normalized_radius(shape) <= 1 if ellipse else np.ones(shape, bool)
    available = int((calibration | in_ellipse).sum())
    if not calibration.sum() < target <= available:
        raise ValueError(f"acceleration {acceleration} of a {H}x{W} matrix asks for {target} samples; the "
                         f"{calibration_size}x{calibration_size} calibration region alone has {calibration.sum()}, "
                         f"and at most {available} fit{' in the ellipse' if ellipse else ''}")
    log_target = np.log(target)
    tried: list[tuple[float, float, np.ndarray]] = []  # (log r0, log count, mask)
    low, high = np.log(1e-2), np.log(max(H, W))  # bracket: count >= target at low, < target at high
    log_r0 = np.log(_initial_min_distance(shape, target - calibration.sum(), slope, ~calibration & in_ellipse))
    for _ in range(max_iterations):
        mask = poisson_disc_samples(shape, float(np.exp(log_r0)), calibration_size, seed, slope=slope,
                                    ellipse=ellipse)
        log_count = np.log(mask.sum())
        tried.append((log_r0, log_count, mask))
        if abs(np.expm1(log_count - log_target)) <= tolerance:
            break
        if log_count > log_target:
            low = max(low, log_r0)
        else:
            high = min(high, log_r0)
        log_r0 = _next_log_r0(tried, log_target, low, high)
    return min(tried, key=lambda t: abs(t[1] - log_target))[2]


def poisson_disc_samples(shape: tuple[int, int], min_distance: float, calibration_size: int, seed: int, *,
                         slope: float = POISSON_SLOPE, ellipse: bool = True) -> np.ndarray:
    """Poisson disc mask, bool [H, W], for a given spacing scale r0 = `min_distance` (pixels).

    Dart throwing over every candidate cell in random order: a cell q is taken unless it lies closer than
    r(p) to an earlier sample p, where r(k) = r0 (1 + slope |k|) and |k| is the elliptical k-space radius
    (1 on the inscribed ellipse). Hence any two samples p, q are at least min(r(p), r(q)) apart, and
    the result is maximal: no further cell could be added. The calibration square is sampled as a whole;
    a candidate must keep its own r(q) from it.
    """
    H, W = shape
    radius = poisson_disc_radius(shape, min_distance, slope)
    calibration = calibration_region(shape, calibration_size)
    allowed = _distance_to_calibration(shape, calibration_size) >= radius
    if ellipse:
        allowed &= normalized_radius(shape) <= 1
    candidates = np.flatnonzero(allowed)
    candidates = candidates[np.random.default_rng(seed).permutation(candidates.size)]

    pad = int(np.ceil(min(radius.max(), np.hypot(H, W))))  # no step need reach past the matrix diagonal
    steps, step_lengths = _steps_by_length(pad, W + 2 * pad)
    reach = np.searchsorted(step_lengths, radius.ravel()[candidates], side="left")  # steps shorter than r(q)
    cells = (candidates // W + pad) * (W + 2 * pad) + candidates % W + pad  # indices into the padded grid
    blocked = bytearray((H + 2 * pad) * (W + 2 * pad))
    taken = []
    for index, cell, n in zip(candidates.tolist(), cells.tolist(), reach.tolist(), strict=True):
        if blocked[cell]:
            continue
        taken.append(index)
        for step in steps[:n]:
            blocked[cell + step] = 1
    mask = calibration.ravel()
    mask[taken] = True
    return mask.reshape(shape)


def poisson_disc_radius(shape: tuple[int, int], min_distance: float, slope: float = POISSON_SLOPE) -> np.ndarray:
    """Minimum sample distance r(k) = r0 (1 + slope |k|), float [H, W] in pixels; |k| from normalized_radius."""
    return min_distance * (1.0 + slope * normalized_radius(shape))


def gaussian_mask(shape: tuple[int, int], acceleration: float, calibration_size: int, seed: int, *,
                  sigma: float = GAUSSIAN_SIGMA) -> np.ndarray:
    """2D Gaussian variable-density random mask, bool [H, W], with exactly round(H*W / acceleration) samples.

    Cells of the whole matrix outside the calibration square are drawn without replacement with weight
    exp(-|k|^2 / 2 sigma^2), |k| from normalized_radius: successive weighted sampling, done at once by
    keeping the cells with the smallest Exp(1) / weight keys (Efraimidis-Spirakis). Unlike Poisson disc,
    samples may clump.
    """
    H, W = shape
    _check_acceleration(acceleration)
    calibration = calibration_region(shape, calibration_size)
    needed = round(H * W / acceleration) - int(calibration.sum())
    if not 0 < needed <= (~calibration).sum():
        raise ValueError(f"acceleration {acceleration} of a {H}x{W} matrix does not fit a "
                         f"{calibration_size}x{calibration_size} calibration region")
    candidates = np.flatnonzero(~calibration)
    weight = np.exp(-normalized_radius(shape).ravel()[candidates] ** 2 / (2 * sigma**2))
    with np.errstate(divide="ignore"):
        keys = np.random.default_rng(seed).exponential(size=candidates.size) / weight
    mask = calibration.ravel()
    mask[candidates[np.argpartition(keys, needed - 1)[:needed]]] = True
    return mask.reshape(shape)


def equispaced_lines_mask(width: int, acceleration: float, center_fraction: float, seed: int) -> np.ndarray:
    """fastMRI-style 1D mask, bool [W]: round(W * center_fraction) centre lines plus equispaced lines.

    The outer lines are spread evenly, from a random offset, over the lines outside the centre block,
    their spacing chosen so that the total is exactly round(W / acceleration) lines.
    """
    center, needed = _line_budget(width, acceleration, center_fraction)
    outside = np.flatnonzero(~center)
    spacing = outside.size / needed if needed else 0.0
    offset = np.random.default_rng(seed).uniform(0.0, spacing)
    mask = center.copy()
    mask[outside[np.floor(offset + spacing * np.arange(needed)).astype(int)]] = True
    return mask


def random_lines_mask(width: int, acceleration: float, center_fraction: float, seed: int) -> np.ndarray:
    """1D mask, bool [W]: round(W * center_fraction) centre lines plus uniformly random outer lines.

    Exactly round(W / acceleration) lines in all, the outer ones drawn without replacement.
    """
    center, needed = _line_budget(width, acceleration, center_fraction)
    outside = np.flatnonzero(~center)
    mask = center.copy()
    mask[np.random.default_rng(seed).choice(outside, size=needed, replace=False)] = True
    return mask


def effective_acceleration(mask: np.ndarray, shape: tuple[int, ...] | None = None) -> float:
    """Samples in the matrix / samples in the mask, the one acceleration figure used throughout.

    `shape` broadcasts the mask first (a [W] mask onto (H, W) gives the same W / sum); without it the
    mask's own size is the matrix.
    """
    sampled = np.asarray(mask) != 0
    if shape is not None:
        sampled = np.broadcast_to(sampled, shape)
    count = int(sampled.sum())
    if count == 0:
        raise ValueError("the mask samples nothing")
    return sampled.size / count


MASK_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "poisson": poisson_disc_mask,
    "gaussian": gaussian_mask,
    "equispaced": equispaced_lines_mask,
    "random": random_lines_mask,
}
LINE_KINDS = frozenset({"equispaced", "random"})
"""Kinds that make a 1D [W] mask of phase-encode lines."""


def make_mask(kind: str, shape: tuple[int, int], acceleration: float, calibration_size: int,
              seed: int) -> np.ndarray:
    """A mask of the named kind for an (H, W) matrix: bool [H, W] for 2D kinds, [W] for LINE_KINDS.

    For the 1D kinds `calibration_size` is the number of fully sampled centre lines.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid kinds: {', '.join(sorted(MASK_KINDS))}")
    if kind in LINE_KINDS:
        width = shape[-1]
        return MASK_KINDS[kind](width, acceleration, calibration_size / width, seed)
    return MASK_KINDS[kind](shape, acceleration, calibration_size, seed)


def calibration_region(shape: tuple[int, int], size: int) -> np.ndarray:
    """The centred size x size calibration square, bool [H, W]; it holds DC (H//2, W//2)."""
    H, W = shape
    if not 0 <= size <= min(H, W):
        raise ValueError(f"calibration size {size} does not fit a {H}x{W} matrix")
    region = np.zeros(shape, bool)
    region[_centre_block(H, size), _centre_block(W, size)] = True
    return region


def normalized_radius(shape: tuple[int, int]) -> np.ndarray:
    """Elliptical k-space radius |k|, float [H, W]: 0 at DC (H//2, W//2), 1 on the ellipse inscribed in the matrix."""
    H, W = shape
    ky = (np.arange(H) - H // 2) / (H / 2)
    kx = (np.arange(W) - W // 2) / (W / 2)
    return np.hypot(ky[:, None], kx[None, :])


def _distance_to_calibration(shape: tuple[int, int], size: int) -> np.ndarray:
    """Distance in pixels from every cell to the nearest cell of the calibration square, float [H, W]."""
    if size == 0:
        return np.full(shape, np.inf)
    gaps = []
    for n in shape:
        block, index = _centre_block(n, size), np.arange(n)
        gaps.append(np.maximum(np.maximum(block.start - index, index - (block.stop - 1)), 0))
    return np.hypot(gaps[0][:, None], gaps[1][None, :])


def _centre_block(n: int, size: int) -> slice:
    """The `size` indices of an axis of length n centred on DC (n//2): calibration rows, columns or lines."""
    return slice(n // 2 - size // 2, n // 2 - size // 2 + size)


def _steps_by_length(pad: int, row_length: int) -> tuple[list[int], np.ndarray]:
    """Grid steps up to `pad` along each axis, shortest first: flat index steps in rows of `row_length`, lengths."""
    dy, dx = np.mgrid[-pad:pad + 1, -pad:pad + 1].reshape(2, -1)
    length = np.hypot(dy, dx)
    order = np.argsort(length, kind="stable")
    return (dy[order] * row_length + dx[order]).tolist(), length[order]


def _initial_min_distance(shape: tuple[int, int], count: int, slope: float, candidates: np.ndarray) -> float:
    """r0 from the density of random sequential packing, about 0.7 / r^2 samples per pixel."""
    spread = 1.0 + slope * normalized_radius(shape)[candidates]
    return float(np.sqrt(0.7 * (spread**-2).sum() / max(count, 1)))


def _next_log_r0(tried: list[tuple[float, float, np.ndarray]], log_target: float, low: float,
                 high: float) -> float:
    """The next log r0: a secant step on (log r0, log count), a power-law step (count ~ r0^-2) from the first
    point, or the bracket's midpoint when the step would leave it."""
    x1, y1, _ = tried[-1]
    slope = -2.0
    if len(tried) >= 2:
        x0, y0, _ = tried[-2]
        if x1 != x0 and (y1 - y0) / (x1 - x0) < 0:
            slope = (y1 - y0) / (x1 - x0)
    step = x1 + (log_target - y1) / slope
    return step if low < step < high else 0.5 * (low + high)


def _line_budget(width: int, acceleration: float, center_fraction: float) -> tuple[np.ndarray, int]:
    """The centre lines (bool [W]) and how many outer lines bring the total to round(W / acceleration)."""
    _check_acceleration(acceleration)
    num_center = round(width * center_fraction)
    if not 0 <= num_center <= width:
        raise ValueError(f"center_fraction {center_fraction} does not fit {width} lines")
    center = np.zeros(width, bool)
    center[_centre_block(width, num_center)] = True
    needed = max(round(width / acceleration), 1) - num_center
    if needed < 0:
        raise ValueError(f"{num_center} centre lines exceed the {round(width / acceleration)} lines that "
                         f"acceleration {acceleration} allows for width {width}")
    return center, needed


def _check_acceleration(acceleration: float) -> None:
    if not acceleration >= 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
