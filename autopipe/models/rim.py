"""Recurrent inference machine (RIM) for multicoil MRI reconstruction, the building block of CIRIM and MTLRS.

A RIM block refines a complex image x over `time_steps` steps. At each step it sees [Re x, Im x, Re g, Im g]
with g = A^H(A x - y) the gradient of the data likelihood (autopipe.mri.operators.data_consistency_gradient),
and predicts an additive update x <- x + dx through conv -> recurrent cell -> dilated conv -> recurrent cell
-> conv. Data consistency enters only through g; there is no hard data-consistency step (as published).
Shapes: image [B, H, W] complex, kspace and maps [B, C, H, W] complex, mask [B, H, W] real (or [W]).
"""

from __future__ import annotations

import torch
from torch import nn

from autopipe.mri import operators


class IndRNNCell(nn.Module):
    """Independently recurrent cell: h' = ReLU(conv(x) + w * h), w a learned per-channel (element-wise) weight.

    The element-wise recurrence keeps the cell cheap and, with |w| < 1, the hidden state bounded.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.ih = nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=dilation * (kernel_size // 2),
                            dilation=dilation)
        # initial recurrent weights in [0, 1): memory without amplification (IndRNN paper's range)
        self.hh = nn.Parameter(torch.rand(1, hidden_channels, 1, 1))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.ih(x) + self.hh * h)


class ConvGRUCell(nn.Module):
    """Convolutional GRU: reset r, update z, candidate n = tanh(W x + r * (U h)), h' = (1 - z) n + z h.

    The input path uses the given kernel and dilation; the recurrent path is a 1x1 conv (as in the RIM literature).
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.ih = nn.Conv2d(in_channels, 3 * hidden_channels, kernel_size, padding=dilation * (kernel_size // 2),
                            dilation=dilation)
        self.hh = nn.Conv2d(hidden_channels, 3 * hidden_channels, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = self.ih(x).chunk(3, dim=1)
        hr, hz, hn = self.hh(h).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


RECURRENT_CELLS: dict[str, type[nn.Module]] = {"IndRNN": IndRNNCell, "ConvGRU": ConvGRUCell}


def complex_to_channels(image: torch.Tensor) -> torch.Tensor:
    """[B, H, W] complex -> [B, 2, H, W] real (real, imaginary)."""
    return torch.stack([image.real, image.imag], dim=1)


OUTPUT_INIT_SCALE = 0.1  # PyTorch's default init of the last conv, scaled: see RIMBlock


class RIMBlock(nn.Module):
    """One RIM: `time_steps` recurrent updates of a complex image driven by the data-likelihood gradient.

    forward(image, kspace, maps, mask, hidden=None) -> (estimates, hidden): the image after every step
    (a list of `time_steps` [B, H, W] complex tensors, all kept for a loss over intermediate steps) and the two
    hidden states [B, hidden_channels, H, W] after the last step (zeros when `hidden` is None), which CIRIM
    carries into its next cascade. The last conv starts at a tenth of PyTorch's default init: with the full
    init an untrained CIRIM(5, 8, 64) adds so much noise that its images are ~8x further from the target than
    the zero-filled input; scaled, it starts near the zero-filled image and still passes gradient everywhere.
    """

    def __init__(self, hidden_channels: int = 64, time_steps: int = 8, cell: str = "IndRNN") -> None:
        super().__init__()
        if cell not in RECURRENT_CELLS:
            raise ValueError(f"cell {cell!r}: one of {sorted(RECURRENT_CELLS)} expected")
        if time_steps < 1 or hidden_channels < 1:
            raise ValueError(f"time_steps and hidden_channels must be >= 1, got {time_steps} and {hidden_channels}")
        self.hidden_channels = hidden_channels
        self.time_steps = time_steps
        self.cell = cell
        h = hidden_channels
        self.conv_in = nn.Conv2d(4, h, 5, padding=2)
        self.cell1 = RECURRENT_CELLS[cell](h, h, kernel_size=1)
        self.conv_mid = nn.Conv2d(h, h, 3, padding=2, dilation=2)
        self.cell2 = RECURRENT_CELLS[cell](h, h, kernel_size=1)
        self.conv_out = nn.Conv2d(h, 2, 3, padding=1)
        with torch.no_grad():  # small first updates: an untrained block starts near its input, not at noise
            self.conv_out.weight.mul_(OUTPUT_INIT_SCALE)
            self.conv_out.bias.mul_(OUTPUT_INIT_SCALE)

    @staticmethod
    def inputs(image: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor | None
               ) -> torch.Tensor:
        """The network input at one step: [Re x, Im x, Re g, Im g] as [B, 4, H, W], g = A^H(A x - y)."""
        grad = operators.data_consistency_gradient(image, kspace, maps, mask)
        return torch.cat([complex_to_channels(image), complex_to_channels(grad)], dim=1)

    def initial_hidden(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Two zero hidden states [B, hidden_channels, H, W] on the image's device."""
        shape = (image.shape[0], self.hidden_channels, *image.shape[-2:])
        return [image.real.new_zeros(shape) for _ in range(2)]

    def forward(self, image: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor | None,
                hidden: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if image.ndim != 3 or not image.is_complex():
            raise ValueError(f"image must be complex [B, H, W], got {image.dtype} of shape {list(image.shape)}")
        h1, h2 = self.initial_hidden(image) if hidden is None else hidden
        x = image
        estimates = []
        for _ in range(self.time_steps):
            features = torch.relu(self.conv_in(self.inputs(x, kspace, maps, mask)))
            h1 = self.cell1(features, h1)
            h2 = self.cell2(torch.relu(self.conv_mid(h1)), h2)
            dx = self.conv_out(h2)
            x = x + torch.complex(dx[:, 0], dx[:, 1])
            estimates.append(x)
        return estimates, [h1, h2]
