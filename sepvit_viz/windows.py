"""Window geometry and pure tensor helpers: padding, partition into windows and back.

Axis letters used in shapes: B batch, H/W feature-map rows/cols, C channels, n windows
(= gh * gw, raster order), P pixels of one window (= wh * ww, raster order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "WindowGeometry",
    "add_windows_back",
    "pad_mask",
    "window_geometry",
    "window_partition",
    "window_reverse",
    "windows_with_tokens",
]


@dataclass(frozen=True)
class WindowGeometry:
    """How one block tiles one feature map into windows.

    Attributes:
        height, width: the unpadded feature map (rows, cols).
        window: (wh, ww) window size; for a global block the whole map (H, W).
        grid: (gh, gw) windows per column and per row; n = gh * gw, raster order.
        pad: (pad_h, pad_w) rows added at the bottom and columns added at the right.
        has_token: whether each window carries a window token at index 0.
        stride: input pixels per feature cell (4, 8, 16, 32 for stages 1-4).
    """

    height: int
    width: int
    window: tuple[int, int]
    grid: tuple[int, int]
    pad: tuple[int, int]
    has_token: bool
    stride: int = 1

    @property
    def num_windows(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def window_pixels(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.height + self.pad[0], self.width + self.pad[1]

    def window_of(self, row: int, col: int) -> tuple[int, int]:
        """Feature cell (row, col) -> (window index, pixel index inside the window)."""
        if not (0 <= row < self.height and 0 <= col < self.width):
            raise ValueError(f"cell ({row}, {col}) outside the {self.height}x{self.width} feature map")
        wr, pr = divmod(row, self.window[0])
        wc, pc = divmod(col, self.window[1])
        return wr * self.grid[1] + wc, pr * self.window[1] + pc


def window_geometry(height: int, width: int, window: int | None, has_token: bool, stride: int = 1) -> WindowGeometry:
    """Geometry of a ``window x window`` tiling of an ``height x width`` map (``window=None``: global)."""
    if window is None:
        return WindowGeometry(height, width, (height, width), (1, 1), (0, 0), False, stride)
    gh, gw = math.ceil(height / window), math.ceil(width / window)
    return WindowGeometry(
        height, width, (window, window), (gh, gw), (gh * window - height, gw * window - width), has_token, stride
    )


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
