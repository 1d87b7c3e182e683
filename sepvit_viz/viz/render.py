"""Pictures of attention maps: arrays in, RGB uint8 arrays (or PNG bytes) out.

Two tiers, both pure functions of arrays:

* Fast tier (numpy + Pillow text, a few milliseconds): :func:`overlay`, :func:`compose_view`
  (overlay + window/group lines + box + marker + title + colour bar with its value range) and
  :func:`matrix_view` (the PWA matrix with labelled axes). The app's live views use these, so a
  change of head, block, colormap, opacity or point re-renders well inside a frame budget.
* Figure tier (matplotlib's ``Figure`` API on the Agg canvas; no module of ours imports pyplot
  (Captum's ``captum.attr`` does, but no figure goes through it), so no figure enters its global registry): :func:`overlay_figure`, :func:`pwa_matrix_figure`,
  :func:`head_gallery`, :func:`side_by_side_figure`. Each builds, draws and clears its own figure.

Colours come from matplotlib colormaps (any name in ``matplotlib.colormaps``). Images are
(H, W, 3) uint8; heat maps are (H, W) floats of the same size (see :mod:`sepvit_viz.viz.maps`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "colorbar_strip",
    "colorize",
    "compose_view",
    "draw_box",
    "draw_lines",
    "draw_marker",
    "export_npz",
    "figure_to_rgb",
    "head_gallery",
    "head_gallery_figure",
    "matrix_view",
    "overlay",
    "overlay_figure",
    "pair_bands",
    "pwa_matrix_figure",
    "side_by_side_figure",
    "title_band",
    "to_png",
]

Box = tuple[int, int, int, int]
Lines = tuple[np.ndarray, np.ndarray]
WHITE = (255, 255, 255)
#: Height in pixels of the title band :func:`compose_view` puts above a picture when given a title.
TITLE_HEIGHT = 18
INK = (30, 30, 30)


# ----------------------------------------------------------------------------- colours
@lru_cache(maxsize=32)
def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap."""
    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colormap {cmap!r}") from None
    return (cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def _range(heat: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    lo = float(np.nanmin(heat)) if vmin is None else float(vmin)
    hi = float(np.nanmax(heat)) if vmax is None else float(vmax)
    return lo, hi


def colorize(
    heat: np.ndarray, cmap: str = "inferno", vmin: float | None = None, vmax: float | None = None
) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 colours, linearly between vmin and vmax (default: data range)."""
    lo, hi = _range(heat, vmin, vmax)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    t = (np.asarray(heat, np.float32) - np.float32(lo)) * np.float32(scale)
    if np.isnan(t).any():  # NaN (e.g. "no data") takes the lowest colour
        t = np.nan_to_num(t, nan=0.0)
    np.clip(t, 0, 255, out=t)
    return _lut(cmap)[t.astype(np.uint8)]


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Blend a heat map over an RGB image: (H, W, 3) uint8 + (H, W) -> (H, W, 3) uint8."""
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape[:2]} and heat map {heat.shape} differ in size")
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    # integer blend in 1/256 steps: exact at alpha 0 and 1, within one level elsewhere
    a = round(alpha * 256)
    col = colorize(heat, cmap, vmin, vmax).astype(np.uint16)
    out = image[..., :3].astype(np.uint16) * (256 - a) + col * a + 128
    return (out >> 8).astype(np.uint8)


# ----------------------------------------------------------------------------- drawing on arrays
@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def draw_lines(
    rgb: np.ndarray, lines: Lines, color: tuple[int, int, int] = WHITE, width: int = 1, opacity: float = 0.8
) -> np.ndarray:
    """Draw full-height/width lines on ``rgb`` (H, W, 3) uint8 at ``lines`` = (rows, cols) pixel
    positions (positions outside the picture are skipped); returns an (H, W, 3) uint8 copy."""
    out = rgb.copy()
    h, w = out.shape[:2]
    mask = np.zeros((h, w), dtype=bool)
    for off in range(-(width // 2), width - width // 2):
        ys = np.asarray(lines[0], int) + off
        xs = np.asarray(lines[1], int) + off
        mask[ys[(ys >= 0) & (ys < h)], :] = True
        mask[:, xs[(xs >= 0) & (xs < w)]] = True
    px = out[mask].astype(np.float32)
    out[mask] = ((1 - opacity) * px + opacity * np.asarray(color, np.float32) + 0.5).astype(np.uint8)
    return out


def draw_box(rgb: np.ndarray, box: Box, color: tuple[int, int, int] = (0, 230, 255), width: int = 2) -> np.ndarray:
    """Outline box (y0, x0, y1, x1), end exclusive, clipped to ``rgb`` (H, W, 3) uint8; returns an
    (H, W, 3) uint8 copy."""
    out = rgb.copy()
    h, w = out.shape[:2]
    y0, x0, y1, x1 = (int(v) for v in box)
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if y1 <= y0 or x1 <= x0:
        return out
    out[y0 : min(y0 + width, y1), x0:x1] = color
    out[max(y1 - width, y0) : y1, x0:x1] = color
    out[y0:y1, x0 : min(x0 + width, x1)] = color
    out[y0:y1, max(x1 - width, x0) : x1] = color
    return out


def draw_marker(
    rgb: np.ndarray, point: tuple[float, float], color: tuple[int, int, int] = (0, 230, 255), size: int = 5
) -> np.ndarray:
    """A small cross at image point (y, x) of ``rgb`` (H, W, 3) uint8; returns an (H, W, 3) uint8 copy."""
    out = rgb.copy()
    h, w = out.shape[:2]
    y, x = int(point[0]), int(point[1])
    out[max(y - 1, 0) : min(y + 2, h), max(x - size, 0) : min(x + size + 1, w)] = color
    out[max(y - size, 0) : min(y + size + 1, h), max(x - 1, 0) : min(x + 2, w)] = color
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def colorbar_strip(height: int, cmap: str, vmin: float, vmax: float, width: int = 54) -> np.ndarray:
    """A vertical colour bar with its value range written beside it: (height, width, 3) uint8."""
    return _colorbar(height, cmap, _fmt(vmax), _fmt((vmin + vmax) / 2), _fmt(vmin), width)


# text rendering costs about a millisecond per label: re-renders reuse identical strips and bands
@lru_cache(maxsize=256)
def _colorbar(height: int, cmap: str, top: str, mid: str, bottom: str, width: int) -> np.ndarray:
    bar_w, pad = 12, 4
    img = Image.new("RGB", (width, height), WHITE)
    grad = _lut(cmap)[np.linspace(255, 0, max(height - 2 * pad, 2)).astype(np.uint8)]  # top = vmax
    img.paste(Image.fromarray(np.repeat(grad[:, None, :], bar_w, axis=1)), (2, pad))
    d = ImageDraw.Draw(img)
    font = _font(10)
    x = bar_w + 5
    d.text((x, pad), top, fill=INK, font=font, anchor="lt")
    d.text((x, height // 2), mid, fill=INK, font=font, anchor="lm")
    d.text((x, height - pad), bottom, fill=INK, font=font, anchor="lb")
    out = np.asarray(img)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=256)
def _band(width: int, title: str, height: int) -> np.ndarray:
    # a narrow picture (a portrait photo kept at its aspect) gets a smaller font, then an ellipsis
    size = 11
    while size > 8 and _font(size).getlength(title) > width - 8:
        size -= 1
    font = _font(size)
    if font.getlength(title) > width - 8:
        while len(title) > 1 and font.getlength(title + "…") > width - 8:
            title = title[:-1]
        title = title.rstrip() + "…"
    band = Image.new("RGB", (width, height), WHITE)
    ImageDraw.Draw(band).text((4, height // 2), title, fill=INK, font=font, anchor="lm")
    out = np.asarray(band)
    out.flags.writeable = False
    return out


def title_band(rgb: np.ndarray, title: str, height: int = TITLE_HEIGHT) -> np.ndarray:
    """Stack a white band with ``title`` above ``rgb`` (H, W, 3) uint8: (H + height, W, 3) uint8."""
    return np.concatenate([_band(rgb.shape[1], title, height), rgb], axis=0)


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy word wrap of ``text`` to lines no wider than ``width`` pixels (a long word stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def pair_bands(width: int, left: Sequence[str], right: Sequence[str], size: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Label bands for two pictures of one width shown as a swipe pair: (band of the left picture,
    band of the right picture), both (h, width, 3) uint8 of one height.

    The left picture's lines are written left-aligned inside its LEFT half only, the right picture's
    right-aligned inside its RIGHT half only, each line wrapped to fit: a swipe that shows the left
    part of one picture and the right part of the other never splices their labels.
    """
    font = _font(size)
    half = width / 2 - 8
    wrapped = [[w for line in lines for w in _wrap(line, font, half)] for lines in (left, right)]
    step = size + 3
    height = 6 + step * max(len(wrapped[0]), len(wrapped[1]), 1)
    out = []
    for lines, anchor, x in ((wrapped[0], "la", 4), (wrapped[1], "ra", width - 4)):
        band = Image.new("RGB", (width, height), WHITE)
        d = ImageDraw.Draw(band)
        for k, line in enumerate(lines):
            d.text((x, 4 + k * step), line, fill=INK, font=font, anchor=anchor)
        out.append(np.asarray(band))
    return out[0], out[1]


def compose_view(
    image: np.ndarray,
    heat: np.ndarray,
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    grid: Lines | None = None,
    subgrid: Lines | None = None,
    box: Box | None = None,
    marker: tuple[float, float] | None = None,
    title: str | None = None,
    colorbar: bool = True,
) -> np.ndarray:
    """The fast-tier picture of one map: overlay, window lines (and GSA sub-window lines), the query's
    window box and point, a title band and a colour bar labelled with the value range.

    ``image`` (H, W, 3) uint8 and ``heat`` (H, W); ``grid`` / ``subgrid`` (rows, cols) pixel positions,
    ``box`` (y0, x0, y1, x1), ``marker`` (y, x), all in ``image``'s pixels. Returns
    (H + TITLE_HEIGHT if ``title`` else H, W + 54 if ``colorbar`` else W, 3) uint8 (54 px:
    :func:`colorbar_strip`'s width), the photo's top-left at (TITLE_HEIGHT if ``title`` else 0, 0).
    Raises ``ValueError`` when ``heat`` and ``image`` differ in size, for ``alpha`` outside [0, 1] or
    an unknown ``cmap``.
    """
    lo, hi = _range(heat, vmin, vmax)
    out = overlay(image, heat, cmap, alpha, lo, hi)
    if subgrid is not None:
        out = draw_lines(out, subgrid, opacity=0.35)
    if grid is not None:
        out = draw_lines(out, grid, opacity=0.85)
    if box is not None:
        out = draw_box(out, box)
    if marker is not None:
        out = draw_marker(out, marker)
    if colorbar:
        out = np.concatenate([out, colorbar_strip(out.shape[0], cmap, lo, hi)], axis=1)
    if title:
        out = title_band(out, title)
    return out


def matrix_view(
    matrix: np.ndarray,
    *,
    cmap: str = "viridis",
    size: int = 224,
    highlight: int | None = None,
    title: str | None = None,
    row_label: str = "query window",
    col_label: str = "key window",
) -> np.ndarray:
    """Fast-tier picture of a square attention matrix (e.g. PWA, n x n) with labelled axes.

    Cells are nearest-upscaled to about ``size`` pixels; ticks are window indices (raster order);
    ``highlight`` outlines one query row; a colour bar gives the value range. ``matrix`` (n_r, n_c)
    -> (n_r * cell + 32 (+ TITLE_HEIGHT with a ``title``), n_c * cell + 92, 3) uint8 with
    ``cell = max(1, size // max(n_r, n_c))``: axis margins and the 54 px colour bar around the cells.
    """
    n_r, n_c = matrix.shape
    cell = max(1, size // max(n_r, n_c))
    body = np.repeat(np.repeat(colorize(matrix, cmap), cell, axis=0), cell, axis=1)
    if highlight is not None:
        body = draw_box(
            body,
            (highlight * cell, 0, (highlight + 1) * cell, n_c * cell),
            color=(255, 60, 60),
            width=max(1, min(2, cell // 2)),
        )
    left, top, bottom = 34, 16, 16
    canvas = Image.new("RGB", (left + body.shape[1] + 4, top + body.shape[0] + bottom), WHITE)
    canvas.paste(Image.fromarray(body), (left, top))
    d = ImageDraw.Draw(canvas)
    font = _font(9)
    ticks = sorted({0, (n_c - 1) // 2, n_c - 1}) if n_c > 1 else [0]
    for t in ticks:
        d.text((left + t * cell + cell // 2, top - 2), str(t), fill=INK, font=font, anchor="mb")
    ticks = sorted({0, (n_r - 1) // 2, n_r - 1}) if n_r > 1 else [0]
    for t in ticks:
        d.text((left - 3, top + t * cell + cell // 2), str(t), fill=INK, font=font, anchor="rm")
    d.text((left + body.shape[1] // 2, top + body.shape[0] + 2), col_label, fill=INK, font=font, anchor="mt")
    label = Image.new("RGB", (body.shape[0], 12), WHITE)
    ImageDraw.Draw(label).text((body.shape[0] // 2, 6), row_label, fill=INK, font=font, anchor="mm")
    canvas.paste(label.rotate(90, expand=True), (2, top))
    out = np.asarray(canvas)
    lo, hi = float(matrix.min()), float(matrix.max())
    out = np.concatenate([out, colorbar_strip(out.shape[0], cmap, lo, hi)], axis=1)
    return title_band(out, title) if title else out


# ----------------------------------------------------------------------------- figure tier
def figure_to_rgb(fig: Figure) -> np.ndarray:
    """Draw a Figure on its Agg canvas, return (H, W, 3) uint8 and clear the figure."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    fig.clear()  # break artist cycles now instead of waiting for the garbage collector
    return rgb


def _new_figure(width_in: float, height_in: float, dpi: int = 100, layout: str | None = None) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _fit_suptitle(fig: Figure, title: str, fontsize: float = 9, min_fontsize: float = 5) -> None:
    """``fig.suptitle(title)`` at ``fontsize``, smaller where its longest line would be wider than the
    figure (a long view title, a narrow one-panel gallery): the title is shown whole, never cut off."""
    text = fig.suptitle(title, fontsize=fontsize)
    room = fig.bbox.width - 8  # a few pixels clear of the edges
    for _ in range(3):  # text width is nearly proportional to the font size; check again after scaling
        width = text.get_window_extent(fig.canvas.get_renderer()).width
        if width <= room or text.get_fontsize() <= min_fontsize:
            return
        text.set_fontsize(max(min_fontsize, text.get_fontsize() * room / width * 0.98))


def _draw_map(
    ax: Axes,
    image: np.ndarray,
    heat: np.ndarray,
    cmap: str,
    alpha: float,
    lo: float,
    hi: float,
    grid: Lines | None,
    subgrid: Lines | None,
    box: Box | None,
) -> AxesImage:
    ax.imshow(image, interpolation="nearest")
    im = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=lo, vmax=hi, interpolation="nearest")
    h, w = heat.shape
    for lines, lw, a in ((subgrid, 0.6, 0.4), (grid, 1.0, 0.9)):
        if lines is None:
            continue
        for y in lines[0]:
            ax.axhline(y - 0.5, color="white", lw=lw, alpha=a)
        for x in lines[1]:
            ax.axvline(x - 0.5, color="white", lw=lw, alpha=a)
    if box is not None:
        y0, x0, y1, x1 = box
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1.5))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    return im


def overlay_figure(
    image: np.ndarray,
    heat: np.ndarray,
    *,
    title: str = "",
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    grid: Lines | None = None,
    subgrid: Lines | None = None,
    box: Box | None = None,
    point: tuple[int, int] | None = None,
    dpi: int = 100,
) -> np.ndarray:
    """Figure-tier overlay with a title and a colour bar: (H', W', 3) uint8. ``point`` (y, x), in
    ``heat``'s pixels, is marked with a cyan cross (the query pixel of a pixel view)."""
    lo, hi = _range(heat, vmin, vmax)
    fig = _new_figure(4.2, 3.6, dpi)
    ax = fig.add_axes((0.02, 0.03, 0.76, 0.86))
    im = _draw_map(ax, image, heat, cmap, alpha, lo, hi, grid, subgrid, box)
    if point is not None:
        ax.plot([point[1]], [point[0]], marker="+", color="cyan", markersize=11, markeredgewidth=2)
    im.set_alpha(1.0)  # the colour bar shows the colormap, not the blend
    fig.colorbar(im, cax=fig.add_axes((0.81, 0.06, 0.035, 0.8)))
    im.set_alpha(alpha)
    if title:
        _fit_suptitle(fig, title)
    return figure_to_rgb(fig)


def pwa_matrix_figure(
    matrix: np.ndarray,
    *,
    title: str = "PWA: window-to-window attention",
    cmap: str = "viridis",
    highlight: int | None = None,
    grid: tuple[int, int] | None = None,
    dpi: int = 100,
    unit: str = "window",
) -> np.ndarray:
    """Figure-tier PWA matrix: query window rows, key window columns, integer ticks, colour bar.

    ``matrix`` (n, n) -> (H', W', 3) uint8 (a 4.4 x 3.8 inch figure at ``dpi``).
    ``grid`` (gh, gw) adds faint separators between window rows of the grid (every gw windows).
    ``unit``: what the axes call a row and a column (``"group"`` for a GSA block's 14x14 groups).
    """
    n = matrix.shape[0]
    fig = _new_figure(4.4, 3.8, dpi)
    ax = fig.add_axes((0.14, 0.12, 0.66, 0.76))
    im = ax.imshow(matrix, cmap=cmap, interpolation="nearest")
    step = max(1, int(np.ceil(n / 8)))
    ax.set_xticks(range(0, n, step))
    ax.set_yticks(range(0, n, step))
    ax.tick_params(labelsize=7)
    ax.set_xlabel(f"key {unit} (raster order)", fontsize=8)
    ax.set_ylabel(f"query {unit}", fontsize=8)
    if grid is not None and grid[1] > 1:
        for k in range(grid[1], n, grid[1]):
            ax.axhline(k - 0.5, color="white", lw=0.5, alpha=0.5)
            ax.axvline(k - 0.5, color="white", lw=0.5, alpha=0.5)
    if highlight is not None:
        ax.add_patch(Rectangle((-0.5, highlight - 0.5), n, 1, fill=False, ec="red", lw=1.2))
    fig.colorbar(im, cax=fig.add_axes((0.83, 0.12, 0.035, 0.76))).ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    return figure_to_rgb(fig)


def head_gallery(image: np.ndarray, heats: Sequence[np.ndarray], **options: Any) -> np.ndarray:
    """One panel per head (or any list of maps), with a shared colour scale by default: (H', W', 3)
    uint8 of :func:`head_gallery_figure` (``options``: its keyword arguments)."""
    return figure_to_rgb(head_gallery_figure(image, heats, **options))


def head_gallery_figure(
    image: np.ndarray,
    heats: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    shared_scale: bool = True,
    ncols: int = 4,
    grid: Lines | None = None,
    suptitle: str = "",
    dpi: int = 80,
) -> Figure:
    """The figure behind :func:`head_gallery`: panels shaped like the photo, laid out (constrained
    layout) so that the title, the panel titles and the colour bar never overlap, portrait or landscape."""
    if not heats:
        raise ValueError("head_gallery needs at least one map")
    k = len(heats)
    ncols = max(1, min(ncols, k))
    nrows = -(-k // ncols)
    lo = min(float(h.min()) for h in heats) if shared_scale else None
    hi = max(float(h.max()) for h in heats) if shared_scale else None
    aspect = min(max(image.shape[0] / max(image.shape[1], 1), 0.25), 4.0)  # panel height / width
    fig = _new_figure(2.2 * ncols + 0.6, (2.0 * aspect + 0.3) * nrows + (0.3 if suptitle else 0), dpi, "constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_axis_off()
            continue
        h = heats[i]
        a, b = _range(h, lo, hi)
        im = _draw_map(ax, image, h, cmap, alpha, a, b, grid, None, None)
        ax.set_title(titles[i] if titles else f"head {i}", fontsize=8)
    if shared_scale and im is not None:
        im.set_alpha(1.0)  # the colour bar shows the colormap, not the blend
        fig.colorbar(im, ax=axes, fraction=0.03, pad=0.02)
        im.set_alpha(alpha)
    if suptitle:
        _fit_suptitle(fig, suptitle)
    return fig


def side_by_side_figure(
    image: np.ndarray,
    panels: Sequence[tuple[np.ndarray, str, Lines | None, Lines | None]],
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    suptitle: str = "",
    dpi: int = 90,
) -> np.ndarray:
    """Panels (heat, title, grid lines, sub-grid lines) side by side, each with its own colour bar
    (e.g. a DSSA block and the GSA block after it at the same stage).

    ``image`` (H, W, 3) uint8; each heat (H, W), its lines (rows, cols) pixel positions or None.
    Returns (H', W', 3) uint8 (a 3.4 k x 3.3 inch figure at ``dpi`` for k panels).
    """
    k = len(panels)
    fig = _new_figure(3.4 * k, 3.3, dpi)
    axes = fig.subplots(1, k, squeeze=False)[0]
    for ax, (heat, title, grid, subgrid) in zip(axes, panels):
        lo, hi = _range(heat, None, None)
        im = _draw_map(ax, image, heat, cmap, alpha, lo, hi, grid, subgrid, None)
        im.set_alpha(1.0)
        fig.colorbar(im, ax=ax, fraction=0.045, pad=0.02).ax.tick_params(labelsize=7)
        im.set_alpha(alpha)
        ax.set_title(title, fontsize=8)
    if suptitle:
        _fit_suptitle(fig, suptitle)
    return figure_to_rgb(fig)


# ----------------------------------------------------------------------------- output
def to_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., :3])).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def export_npz(arrays: Mapping[str, np.ndarray], path: str | Path | None = None) -> bytes | None:
    """Save raw arrays (compressed .npz). With ``path=None`` return the file's bytes instead."""
    clean = {k.replace("/", "_").replace(" ", "_"): np.asarray(v) for k, v in arrays.items()}
    if path is None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **clean)
        return buf.getvalue()
    np.savez_compressed(Path(path), **clean)
    return None
