"""Window geometry: how one block tiles one feature map into windows (no torch, no numpy).

The one home of this arithmetic: the model (:mod:`sepvit_viz.model.windows`, which re-exports it), the
capture records and the numpy maps (:mod:`sepvit_viz.viz.maps`) all use :class:`WindowGeometry`.
Axis letters: H/W feature-map rows/cols, n windows (= gh * gw, raster order), P pixels of one window
(= wh * ww, raster order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WindowGeometry", "block_label", "window_geometry"]


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

    @classmethod
    def tiled(cls, height: int, width: int, window: int | None, stride: int = 1) -> WindowGeometry:
        """A ``window x window`` tiling with window tokens (None: one global window, no token)."""
        return window_geometry(height, width, window, window is not None, stride)


def window_geometry(height: int, width: int, window: int | None, has_token: bool, stride: int = 1) -> WindowGeometry:
    """Geometry of a ``window x window`` tiling of an ``height x width`` map (``window=None``: global)."""
    if window is None:
        return WindowGeometry(height, width, (height, width), (1, 1), (0, 0), False, stride)
    gh, gw = math.ceil(height / window), math.ceil(width / window)
    return WindowGeometry(
        height, width, (window, window), (gh, gw), (gh * window - height, gw * window - width), has_token, stride
    )


def block_label(
    stage: int, index: int, kind: str, window_size: int, grid: tuple[int, int], feature_size: tuple[int, int]
) -> str:
    """The one human-readable block name, e.g. ``stage 2 · block 2 · GSA (w=14, 2x2 groups)`` or
    ``stage 4 · block 1 · GLOBAL (global attention, 7x7)`` (0-based ``stage`` and ``index`` in)."""
    if kind == "global":
        detail = f"global attention, {feature_size[0]}x{feature_size[1]}"
    else:
        unit = "groups" if kind == "gsa" else "windows"
        detail = f"w={window_size}, {grid[0]}x{grid[1]} {unit}"
    return f"stage {stage + 1} · block {index + 1} · {kind.upper()} ({detail})"
