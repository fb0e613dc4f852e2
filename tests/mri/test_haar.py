"""Haar wavelet: hand-computed coefficients, orthonormality, exact inverse, level helpers, shape checks."""

import numpy as np
import pytest
import torch

from autopipe.mri.haar import haar_forward, haar_inverse, max_levels, padded_size


def _complex(shape, seed):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.normal(size=shape) + 1j * rng.normal(size=shape))


def test_one_level_of_a_2x2_block():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    # [[a+b+c+d, a-b+c-d], [a+b-c-d, a-b-c+d]] / 2
    torch.testing.assert_close(haar_forward(x, 1), torch.tensor([[5.0, -1.0], [-2.0, 0.0]], dtype=torch.float64))


def test_one_and_two_levels_of_a_4x4_block():
    x = torch.tensor([[1.0, 3.0, 0.0, 2.0],
                      [5.0, 7.0, 4.0, 6.0],
                      [2.0, 2.0, 8.0, 0.0],
                      [2.0, 2.0, 0.0, 0.0]], dtype=torch.float64)
    # each 2x2 block -> (sum, W detail, H detail, diagonal) / 2, gathered into the four quadrants
    one = torch.tensor([[8.0, 6.0, -2.0, -2.0],
                        [4.0, 4.0, 0.0, 4.0],
                        [-4.0, -4.0, 0.0, 0.0],
                        [0.0, 4.0, 0.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(haar_forward(x, 1), one)
    two = one.clone()
    two[:2, :2] = torch.tensor([[11.0, 1.0], [3.0, 1.0]], dtype=torch.float64)  # level 1 of [[8, 6], [4, 4]]
    torch.testing.assert_close(haar_forward(x, 2), two)
    torch.testing.assert_close(haar_forward(x, 2)[0, 0], x.sum() / 4)  # two levels: the sum / 2**2


@pytest.mark.parametrize("levels", [0, 1, 2, 3])
def test_orthonormal_and_exactly_invertible(levels):
    x = _complex((2, 3, 8, 16), levels)
    c = haar_forward(x, levels)
    assert c.shape == x.shape
    torch.testing.assert_close(torch.linalg.vector_norm(c), torch.linalg.vector_norm(x))
    torch.testing.assert_close(haar_inverse(c, levels), x)
    torch.testing.assert_close(haar_forward(haar_inverse(x, levels), levels), x)
    y = _complex((2, 3, 8, 16), 10 + levels)  # inverse is the adjoint
    torch.testing.assert_close(torch.vdot(c.flatten(), y.flatten()),
                               torch.vdot(x.flatten(), haar_inverse(y, levels).flatten()))


def test_input_is_not_modified():
    x = _complex((8, 8), 0)
    before = x.clone()
    haar_forward(x, 2)
    haar_inverse(x, 2)
    torch.testing.assert_close(x, before)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels"):
        haar_forward(torch.zeros(8, 12), 3)
    with pytest.raises(ValueError, match="divisible"):
        haar_inverse(torch.zeros(6, 8), 2)
    with pytest.raises(ValueError, match="levels"):
        haar_forward(torch.zeros(8, 8), -1)
    with pytest.raises(ValueError, match="H, W"):
        haar_forward(torch.zeros(8), 1)


def test_level_helpers():
    assert max_levels((256, 320)) == 5  # 256 -> 8
    assert max_levels((32, 32)) == 2
    assert max_levels((15, 40)) == 1  # padded to 16 -> 8
    assert max_levels((7, 7)) == 0
    assert max_levels((64, 64), coarsest=16) == 2
    assert padded_size(15, 1) == 16 and padded_size(16, 2) == 16 and padded_size(17, 3) == 24
    assert padded_size(5, 0) == 5
