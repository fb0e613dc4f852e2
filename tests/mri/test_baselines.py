"""Classical baselines: CG-SENSE against dense least squares, l1-wavelet FISTA optimality and recovery."""

import numpy as np
import pytest
import torch

from autopipe.mri.baselines import cg_sense, cs_objective, l1_wavelet, zero_filled
from autopipe.mri.fft import ifft2c
from autopipe.mri.haar import haar_forward, haar_inverse
from autopipe.mri.masks import make_mask
from autopipe.mri.operators import adjoint, data_consistency_gradient, forward, normalize_maps, sense_combine

C, H, W = 3, 6, 6


def _complex(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _problem(seed, shape=(H, W), coils=C, density=0.5, noise=0.05):
    """Random normalized maps, a random 2D mask and noisy k-space of a random image: (kspace, maps, mask)."""
    maps = normalize_maps(_complex((coils, *shape), seed))
    mask = np.random.default_rng(seed + 1).random(shape) < density
    kspace = forward(_complex(shape, seed + 2), maps) + noise * _complex((coils, *shape), seed + 3)
    return kspace, maps, mask


def _dense(maps, mask):
    """The matrix of A = M F S, [C*H*W, H*W], one column per image basis vector."""
    shape = maps.shape[-2:]
    n = shape[0] * shape[1]
    return np.stack([forward(e.reshape(shape), maps, mask).ravel() for e in np.eye(n)], axis=1)


def _least_squares(kspace, maps, mask, l2=0.0):
    """(A^H A + l2 I)^-1 A^H y by a dense solve."""
    A = _dense(maps, mask)
    y = (kspace * np.broadcast_to(mask, kspace.shape)).ravel()
    x = np.linalg.solve(A.conj().T @ A + l2 * np.eye(A.shape[1]), A.conj().T @ y)
    return x.reshape(maps.shape[-2:])


def _prox_gradient_step(x, kspace, maps, mask, weight, levels):
    """x -> prox_{weight ||Psi .||_1}(x - grad): its fixed points are exactly the minimizers (step 1 <= 1/L)."""
    c = haar_forward(x - data_consistency_gradient(x, kspace, maps, mask), levels)
    magnitude = c.abs()
    return haar_inverse(c * (magnitude - weight).clamp(min=0) / magnitude, levels)


def test_zero_filled_is_the_adjoint():
    kspace, maps, mask = _problem(0)
    np.testing.assert_allclose(zero_filled(kspace, maps, mask), adjoint(kspace, maps, mask))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cg_sense_with_full_sampling_is_sense_combine_after_one_iteration(backend):
    kspace, maps, _ = _problem(1)
    if backend == "torch":
        kspace, maps = torch.as_tensor(kspace), torch.as_tensor(maps)
    x = cg_sense(kspace, maps, None, iterations=1)
    assert isinstance(x, torch.Tensor) == (backend == "torch")
    np.testing.assert_allclose(np.asarray(x), np.asarray(sense_combine(ifft2c(kspace), maps)), atol=1e-12)
    full = np.ones((H, W), bool)
    np.testing.assert_allclose(np.asarray(cg_sense(kspace, maps, full, iterations=5)), np.asarray(x), atol=1e-12)


def test_cg_sense_matches_dense_least_squares():
    kspace, maps, mask = _problem(2)
    A = _dense(maps, mask)
    assert np.linalg.matrix_rank(A) == H * W  # well posed: a unique least-squares image
    reference = np.linalg.lstsq(A, (kspace * mask).ravel(), rcond=None)[0].reshape(H, W)
    np.testing.assert_allclose(reference, _least_squares(kspace, maps, mask), atol=1e-10)
    x = cg_sense(kspace, maps, mask, iterations=200, tolerance=1e-12)
    np.testing.assert_allclose(x, reference, atol=1e-8)
    few = cg_sense(kspace, maps, mask, iterations=3)
    assert np.abs(few - reference).max() > 1e-3  # not converged after 3: the iteration count matters


def test_cg_sense_with_l2_matches_tikhonov():
    kspace, maps, mask = _problem(3, density=0.3)  # underdetermined without the l2 term
    reference = _least_squares(kspace, maps, mask, l2=0.1)
    np.testing.assert_allclose(cg_sense(kspace, maps, mask, iterations=200, l2=0.1, tolerance=1e-12), reference,
                               atol=1e-8)


def test_cg_sense_stops_at_the_tolerance():
    kspace, maps, mask = _problem(2)
    loose = cg_sense(kspace, maps, mask, iterations=200, tolerance=1e-2)
    assert np.array_equal(loose, cg_sense(kspace, maps, mask, iterations=400, tolerance=1e-2))
    b = adjoint(kspace, maps, mask)
    residual = np.linalg.norm(b - adjoint(forward(loose, maps, mask), maps, mask))
    assert 1e-4 * np.linalg.norm(b) < residual < 1e-2 * np.linalg.norm(b)


def test_cg_sense_batch_samples_are_independent():
    problems = [_problem(10), _problem(20, density=0.8), _problem(30)]
    problems[1] = (problems[1][0], problems[1][1], np.ones((H, W), bool))  # converges in 1 iteration, then stops
    problems[2] = (0 * problems[2][0], *problems[2][1:])  # no data: stays zero
    kspace, maps, mask = (np.stack(parts) for parts in zip(*problems, strict=True))
    batched = cg_sense(torch.as_tensor(kspace), torch.as_tensor(maps), torch.as_tensor(mask), iterations=8,
                       tolerance=1e-9)
    assert batched.shape == (3, H, W) and torch.isfinite(batched).all()
    for i, (k, s, m) in enumerate(problems):
        np.testing.assert_allclose(batched[i].numpy(), cg_sense(k, s, m, iterations=8, tolerance=1e-9), atol=1e-12)
    assert not batched[2].any()


def test_l1_wavelet_without_weight_converges_to_least_squares():
    kspace, maps, mask = _problem(4, shape=(8, 8), density=0.6)
    reference = _least_squares(kspace, maps, mask)
    x = l1_wavelet(kspace, maps, mask, weight=0.0, iterations=300)
    assert np.linalg.norm(x - reference) < 1e-6 * np.linalg.norm(reference)


def test_l1_wavelet_reaches_a_fixed_point_of_the_proximal_gradient_map():
    kspace, maps, mask = (torch.as_tensor(a) for a in _problem(5, shape=(8, 8), density=0.6))
    weight, levels = 0.1, 2
    x = l1_wavelet(kspace, maps, mask, weight=weight, iterations=500, levels=levels)
    step = _prox_gradient_step(x, kspace, maps, mask, weight, levels)
    assert torch.linalg.vector_norm(step - x) < 1e-9 * torch.linalg.vector_norm(x)
    assert (haar_forward(x, levels).abs() < 1e-12).any()  # the l1 term is active: some coefficients are zero
    zero = zero_filled(kspace, maps, mask)
    assert cs_objective(x, kspace, maps, mask, weight, levels) < cs_objective(zero, kspace, maps, mask, weight,
                                                                              levels)


def test_l1_wavelet_pads_odd_sizes():
    kspace, maps, mask = _problem(6, shape=(9, 10), density=0.5)
    weight = 0.05
    x = l1_wavelet(kspace, maps, mask, weight=weight, iterations=100, levels=2)  # padded to 12 x 12 inside
    assert x.shape == (9, 10)
    assert cs_objective(x, kspace, maps, mask, weight, 2) < cs_objective(zero_filled(kspace, maps, mask), kspace,
                                                                         maps, mask, weight, 2)


def _phantom(n=32):
    """Piecewise-constant squares, a smooth 4-coil array, and the fully sampled k-space."""
    truth = np.zeros((n, n), complex)
    truth[4:28, 4:28] = 0.5
    truth[8:16, 8:20] = 1.0
    truth[18:26, 10:16] = 0.2
    truth[12:24, 22:26] = 0.8j
    u = np.linspace(-1, 1, n)
    coords = np.stack(np.meshgrid(u, u, indexing="ij"))
    centres = [(-1.2, -1.2), (-1.2, 1.2), (1.2, -1.2), (1.2, 1.2)]
    maps = np.stack([np.exp(-((coords[0] - a) ** 2 + (coords[1] - b) ** 2) / 2 + 1j * (a * coords[0] + b * coords[1]))
                     for a, b in centres])
    maps = normalize_maps(maps)
    return truth, maps, forward(truth, maps)


def test_l1_wavelet_beats_zero_filled_on_a_piecewise_constant_phantom():
    truth, maps, kspace = _phantom()
    mask = make_mask("poisson", truth.shape, 4.0, 8, seed=0)
    zero = zero_filled(kspace, maps, mask)
    x = l1_wavelet(kspace, maps, mask, weight=0.01, iterations=100)
    error, zero_error = np.linalg.norm(x - truth), np.linalg.norm(zero - truth)
    assert error < 0.2 * zero_error  # about 0.03x here
    assert isinstance(x, np.ndarray) and x.shape == truth.shape


def test_batched_l1_wavelet_matches_each_sample():
    problems = [_problem(40, shape=(8, 8)), _problem(50, shape=(8, 8), density=0.3)]
    kspace, maps, mask = (torch.as_tensor(np.stack(parts)) for parts in zip(*problems, strict=True))
    kspace[1] *= 10  # different scale, different step and threshold balance
    batched = l1_wavelet(kspace, maps, mask, weight=0.1, iterations=20)
    for i in range(2):
        alone = l1_wavelet(kspace[i], maps[i], mask[i], weight=0.1, iterations=20)
        torch.testing.assert_close(batched[i], alone)


def test_numpy_in_numpy_out_and_torch_in_torch_out():
    kspace, maps, mask = _problem(7, shape=(8, 8))
    for method in (zero_filled, cg_sense, lambda *args: l1_wavelet(*args, weight=0.01, iterations=5)):
        out = method(kspace, maps, mask)
        assert isinstance(out, np.ndarray) and out.shape == (8, 8) and np.iscomplexobj(out)
        as_torch = method(torch.as_tensor(kspace), torch.as_tensor(maps), mask)
        assert isinstance(as_torch, torch.Tensor)
        np.testing.assert_allclose(as_torch.numpy(), out, atol=1e-12)
    objective = cs_objective(np.zeros((8, 8)), kspace, maps, mask, 0.1)
    np.testing.assert_allclose(objective, 0.5 * np.linalg.norm(kspace * mask) ** 2)


def test_shape_and_argument_errors():
    kspace, maps, mask = _problem(8)
    for method in (zero_filled, cg_sense, lambda *args: l1_wavelet(*args, weight=0.1)):
        with pytest.raises(ValueError, match="kspace"):
            method(kspace[:, :-1], maps, mask)
        with pytest.raises(ValueError, match="mask"):
            method(kspace, maps, mask[:, :-1])
        with pytest.raises(ValueError, match="maps must be"):
            method(kspace, maps[0], mask)
    with pytest.raises(ValueError, match="weight"):
        l1_wavelet(kspace, maps, mask, weight=-1.0)
    with pytest.raises(ValueError, match="levels"):
        l1_wavelet(kspace, maps, mask, weight=0.1, levels=-1)
    with pytest.raises(ValueError, match="l2"):
        cg_sense(kspace, maps, mask, l2=-1.0)


def test_the_fista_step_never_exceeds_one_over_the_norm_of_the_normal_operator():
    """lipschitz_bound >= ||A^H A|| (computed densely here), equal for a full mask, 1 for normalized maps and a 0/1
    mask: a power-iteration estimate approaches the norm from below, so 1/estimate could overshoot."""
    from autopipe.mri.baselines import lipschitz_bound
    from autopipe.mri.operators import adjoint, forward

    generator = torch.Generator().manual_seed(3)
    maps = torch.randn(4, 6, 6, generator=generator, dtype=torch.complex128)
    normalized = maps / maps.abs().pow(2).sum(0).sqrt()
    mask = (torch.rand(6, generator=generator) < 0.5).to(torch.float64)
    for m, full in ((maps, True), (maps, False), (normalized, False)):
        mk = None if full else mask
        columns = [adjoint(forward(e.reshape(6, 6), m, mk), m, mk).reshape(-1) for e in torch.eye(36, dtype=m.dtype)]
        norm = torch.linalg.matrix_norm(torch.stack(columns, 1), ord=2).item()
        bound = lipschitz_bound(m, mk).item()
        assert bound >= norm * (1 - 1e-9)
        if full:  # A^H A = S^H S, diagonal: its norm is the largest coil energy, the bound itself
            assert bound == pytest.approx(norm, rel=1e-9)
    assert lipschitz_bound(normalized, mask).item() == pytest.approx(1.0)
