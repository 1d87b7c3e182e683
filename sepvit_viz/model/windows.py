"""Pure tensor helpers on window geometry: padding, partition into windows and back.

:class:`WindowGeometry` and :func:`window_geometry` live in the torch-free :mod:`sepvit_viz.viz.geometry`
(re-exported here).

Axis letters used in shapes: B batch, H/W feature-map rows/cols, C channels, n windows
(= gh * gw, raster order), P pixels of one window (= wh * ww, raster order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sepvit_viz.viz.geometry import WindowGeometry, window_geometry

__all__ = [
    "WindowGeometry",
    "add_windows_back",
    "pad_mask",
    "window_geometry",
    "window_partition",
    "window_reverse",
    "windows_with_tokens",
]


def _windowed_view(x: torch.Tensor, geom: WindowGeometry) -> torch.Tensor:
    """(B, H, W, C) -> (B, gh, gw, wh, ww, C): the map zero-padded to whole windows, seen window by
    window (a view of the padded map, no copy)."""
    B, C = x.shape[0], x.shape[-1]
    ph, pw = geom.pad
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    (gh, gw), (wh, ww) = geom.grid, geom.window
    return x.view(B, gh, wh, gw, ww, C).transpose(2, 3)


def window_partition(x: torch.Tensor, geom: WindowGeometry) -> torch.Tensor:
    """(B, H, W, C) -> (B, n, P, C), zero-padding the bottom/right to whole windows."""
    B, C = x.shape[0], x.shape[-1]
    return _windowed_view(x, geom).reshape(B, geom.num_windows, geom.window_pixels, C)


def window_reverse(x: torch.Tensor, geom: WindowGeometry) -> torch.Tensor:
    """(B, n, P, C) -> (B, H, W, C), dropping the padding."""
    B, _, _, C = x.shape
    (gh, gw), (wh, ww) = geom.grid, geom.window
    x = x.view(B, gh, gw, wh, ww, C).transpose(2, 3).reshape(B, gh * wh, gw * ww, C)
    if geom.pad[0] or geom.pad[1]:
        x = x[:, : geom.height, : geom.width]
    return x


def windows_with_tokens(x: torch.Tensor, tokens: torch.Tensor, geom: WindowGeometry) -> torch.Tensor:
    """(B, H, W, C) map and (B or 1, n, 1, C) tokens -> (B, n, 1 + P, C): each window's token, then its pixels.

    Equal to ``torch.cat([tokens, window_partition(x, geom)], dim=2)``, but the pixels are copied
    once, straight from the map into their slots (the partition's copy and the concatenation's
    second copy of every pixel are one pass here).
    """
    B, C = x.shape[0], x.shape[-1]
    out = x.new_empty(B, geom.num_windows, 1 + geom.window_pixels, C)
    out[:, :, :1] = tokens
    # (B, n, P, C) slots viewed as (B, gh, gw, wh, ww, C) <- the map viewed the same way
    out[:, :, 1:].unflatten(1, geom.grid).unflatten(3, geom.window).copy_(_windowed_view(x, geom))
    return out


def add_windows_back(x: torch.Tensor, windows: torch.Tensor, geom: WindowGeometry) -> torch.Tensor:
    """(B, H, W, C) map + (B, n, P, C) windows put back in place -> (B, H, W, C).

    Equal to ``x + window_reverse(windows, geom)``; without padding the addition reads the windows
    where they lie, so no reversed copy is made first.
    """
    if geom.pad[0] or geom.pad[1]:
        return x + window_reverse(windows, geom)
    B, H, W, C = x.shape
    (gh, gw), (wh, ww) = geom.grid, geom.window
    summed = x.view(B, gh, wh, gw, ww, C) + windows.view(B, gh, gw, wh, ww, C).transpose(2, 3)
    return summed.reshape(B, H, W, C)  # a view: the sum takes x's (contiguous) layout


def pad_mask(geom: WindowGeometry, device: torch.device | None = None) -> torch.Tensor | None:
    """Boolean (n, P) mask, True where a window's pixel is real (not padding); None without padding."""
    if not (geom.pad[0] or geom.pad[1]):
        return None
    real = torch.ones(1, geom.height, geom.width, 1, dtype=torch.float32, device=device)
    return window_partition(real, geom)[0, :, :, 0] > 0.5  # the zero padding becomes False
