"""Reference images for attribution and faithfulness: black, grey, blurred and uniform noise.

All functions work on *normalised* model inputs (see :mod:`sepvit_viz.preprocess`, mean = std = 0.5,
so a pixel value v in [0, 1] becomes 2 v - 1). Blurring is linear, so blurring the normalised tensor
equals normalising the blurred photo.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sepvit_viz.preprocess import MEAN, STD

__all__ = ["BASELINES", "DEFAULT_BLUR_SIGMA", "gaussian_blur", "make_baseline"]

#: Names accepted by :func:`make_baseline`.
BASELINES: tuple[str, ...] = ("black", "gray", "blurred", "noise", "mean")

#: Blur strength in input pixels. At 224 px this wipes out texture and edges (the class evidence)
#: while keeping the colour layout, so a blurred photo is "the same photo without its details".
DEFAULT_BLUR_SIGMA: float = 10.0


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1], (B, 3, H, W) or broadcastable -> normalised model input."""
    mean = torch.tensor(MEAN, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels - mean) / std


def gaussian_blur(x: torch.Tensor, sigma: float = DEFAULT_BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) images; same shape out.

    Borders replicate the edge pixels, so a constant image stays exactly constant and any input size
    works (reflection would need the radius to be smaller than the image). ``sigma <= 0`` returns a copy.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W), got shape {tuple(x.shape)}")
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)  # along width
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)  # along height


def make_baseline(
    x: torch.Tensor, kind: str = "black", *, sigma: float = DEFAULT_BLUR_SIGMA, seed: int = 0
) -> torch.Tensor:
    """A reference image shaped like ``x`` (B, 3, H, W), in the normalised input space.

    kind: ``black`` (pixel 0), ``gray`` (pixel 0.5, i.e. normalised 0), ``blurred`` (Gaussian blur of
    ``x`` with ``sigma`` pixels), ``noise`` (uniform pixels in [0, 1], reproducible from ``seed``) or
    ``mean`` (every pixel the image's own mean colour, per image and channel).
    """
    if kind == "black":
        return _normalise(torch.zeros_like(x))
    if kind == "gray":
        return _normalise(torch.full_like(x, 0.5))
    if kind == "blurred":
        return gaussian_blur(x, sigma)
    if kind == "mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()
    if kind == "noise":
        gen = torch.Generator(device="cpu").manual_seed(seed)
        u = torch.rand(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        return _normalise(u)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
