"""The one view layer: (analysis, settings) -> :class:`View` (picture, caption, map), for the app and the CLI.

    from sepvit_viz.viz import views
    s = views.ViewSettings(block="stages.1.blocks.0", head="max", window=5)
    v = views.pwa_row(analysis, s)      # View: picture (Hp, Wp, 3) uint8, caption (Markdown), heat (H, W)
    v.to_model(x, y)                    # a click on the picture -> (y, x) model-input pixel, or None

Every function reads maps from a :class:`sepvit_viz.viz.pipeline.Analysis` (memoised there) and draws
them with :mod:`sepvit_viz.viz.render`; nothing here runs the model or keeps state. Pictures show the
model input upscaled by an integer factor (:func:`display_scale`, 2 at 224 px; ``ViewSettings.scale``
overrides it), so window borders stay exact. Every map view has a title band
(:data:`sepvit_viz.viz.render.TITLE_HEIGHT` pixels): the photo starts below it at the left edge
(``View.origin``), and :meth:`View.to_model` inverts the band and the scaling of a click. A view a block does not have (PWA of a global block) raises :class:`NoView`, whose message
is written for the person who asked.

Coordinates: points are ``(y, x)`` model-input pixels, windows raster indices into the block's window
grid (a click becomes a window index once, with :meth:`sepvit_viz.viz.pipeline.Analysis.window_at`, and
stays one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from sepvit_viz.limits import DEFAULT_OPACITY, DISPLAY_SIDE
from sepvit_viz.validation import SettingsError
from sepvit_viz.viz import maps, render
from sepvit_viz.viz.capture import AttentionRecord
from sepvit_viz.viz.pipeline import Analysis

if TYPE_CHECKING:
    from sepvit_viz.explain.faithfulness import Curves

__all__ = [
    "CLI_VIEWS",
    "NoView",
    "View",
    "ViewSettings",
    "attribution",
    "compare",
    "curves",
    "curves_figure",
    "display_scale",
    "figure",
    "gallery",
    "head_name",
    "notice",
    "pixel",
    "pwa_figure",
    "pwa_matrix",
    "pwa_row",
    "query_window",
    "rollout",
    "side_by_side",
    "tokens",
    "unit",
]

#: The per-block views the CLI writes (``s<stage>_b<block>_<kind>_<view>.png``), in order.
CLI_VIEWS = ("tokens", "pixel", "pwa_matrix", "pwa_map", "composed", "rollout", "pair")


class NoView(SettingsError):
    """The chosen block has no such view (e.g. PWA of a global block); the message says why."""


@dataclass(frozen=True)
class ViewSettings:
    """Everything a picture depends on besides the analysis.

    block: index or module name; head: index or ``"mean" | "max" | "min"`` (an index the block lacks
    falls back to the mean, and the picture says so); point: (y, x) model-input pixel, None = the
    centre; window: PWA query window (raster index), None = the window holding ``point``;
    through: the pixel view inside its window (``"dwa"``) or through the whole block (``"block"``);
    self_weight / residual: shortcut weights of the composed view and the rollout;
    scale: picture pixels per model pixel (None: :func:`display_scale`).
    """

    block: int | str = 0
    head: maps.HeadSelect = "mean"
    cmap: str = "inferno"
    alpha: float = DEFAULT_OPACITY
    point: tuple[int, int] | None = None
    window: int | None = None
    through: Literal["dwa", "block"] = "dwa"
    self_weight: float = 0.5
    residual: float = 0.5
    rollout_query: Literal["pooled", "point"] = "pooled"
    gsa_subwindows: bool = True
    scale: int | None = None

    def with_(self, **changes: Any) -> ViewSettings:
        return replace(self, **changes)


@dataclass(frozen=True)
class View:
    """A picture and its caption.

    picture: (Hp, Wp, 3) uint8; caption: Markdown; heat: the (H, W) map drawn, in model-input pixels
    (None for the matrix); origin: (top, left) of the photo inside the picture; scale: picture pixels
    per model pixel; size: (H, W) of the model input ((0, 0) for the matrix, so no click maps to the
    photo); vrange: (vmin, vmax) of the colour scale when the view fixes it (the compare pair's
    shared scale), else None (the map's own range).
    """

    picture: np.ndarray
    caption: str
    heat: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)
    scale: int = 1
    size: tuple[int, int] = (0, 0)
    vrange: tuple[float, float] | None = None

    def to_model(self, x: float, y: float) -> tuple[int, int] | None:
        """Picture pixel (x, y) (a click) -> model-input pixel (y, x); None off the photo (colour bar)."""
        my, mx = (int(y) - self.origin[0]) // self.scale, (int(x) - self.origin[1]) // self.scale
        if 0 <= my < self.size[0] and 0 <= mx < self.size[1]:
            return my, mx
        return None


def display_scale(size: int | Sequence[int]) -> int:
    """Integer factor from model-input pixels to picture pixels (1 when the input is already large)."""
    side = max(size) if isinstance(size, Sequence) else int(size)
    return max(1, DISPLAY_SIDE // max(int(side), 1))


def head_name(head: maps.HeadSelect) -> str:
    return f"head {head}" if isinstance(head, int) else f"{head} of heads"


def unit(rec: AttentionRecord) -> str:
    """What a block's windows are called: ``"group"`` for GSA, ``"window"`` otherwise (and its token:
    ``f"{unit(rec)} token"``, the group token of a GSA block)."""
    return "group" if rec.kind == "gsa" else "window"


# ------------------------------------------------------------------------------------ drawing
def _resolve(an: Analysis, s: ViewSettings) -> tuple[int, AttentionRecord, maps.HeadSelect, int]:
    """(block index, its record, the head it has, picture scale)."""
    try:
        i = an.block_index(s.block)
    except ValueError as e:
        raise SettingsError(f"{e}.") from None
    return i, an.records[i], an.head_for(i, s.head), s.scale or display_scale(an.size)


def _draw(
    an: Analysis,
    heat: np.ndarray,
    s: ViewSettings,
    k: int,
    *,
    block: int | None = None,
    box: tuple[int, int, int, int] | None = None,
    marker: tuple[int, int] | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """:func:`render.compose_view` on the photo upscaled k x k; everything given in model-input pixels
    (heat (H, W), box (y0, x0, y1, x1), marker (y, x)); ``block`` adds its window lines."""
    grid = sub = None
    if block is not None and an.records[block].has_token:
        grid, sub = an.grid_lines(block, s.gsa_subwindows)
    image = an.image
    if k > 1:
        h, w = image.shape[:2]
        image = np.asarray(Image.fromarray(image).resize((w * k, h * k), Image.Resampling.BICUBIC))
        heat = np.repeat(np.repeat(heat, k, axis=0), k, axis=1)
        grid = None if grid is None else (np.asarray(grid[0]) * k, np.asarray(grid[1]) * k)
        sub = None if sub is None else (np.asarray(sub[0]) * k, np.asarray(sub[1]) * k)
        box = None if box is None else (box[0] * k, box[1] * k, box[2] * k, box[3] * k)
        marker = None if marker is None else (marker[0] * k + k // 2, marker[1] * k + k // 2)
    return render.compose_view(
        image,
        heat,
        cmap=s.cmap,
        alpha=s.alpha,
        vmin=vmin,
        vmax=vmax,
        grid=grid,
        subgrid=sub,
        box=box,
        marker=marker,
        title=title,
    )


def notice(text: str, size: tuple[int, int]) -> np.ndarray:
    """A grey (H, W, 3) picture with ``text`` in the middle (a stand-in where a view does not exist)."""
    img = Image.new("RGB", (size[1], size[0]), (245, 245, 245))
    ImageDraw.Draw(img).multiline_text(
        (size[1] // 2, size[0] // 2), text, fill=(90, 90, 90), anchor="mm", align="center", font=render._font(11)
    )
    return np.asarray(img)


def _require_pwa(rec: AttentionRecord) -> None:
    if rec.pwa is None:
        raise NoView(
            f"{rec.label} has global attention: no window-to-window (PWA) attention. Choose a DSSA or GSA block."
        )


def query_window(an: Analysis, i: int, s: ViewSettings) -> int:
    """The PWA query window of block ``i`` that views drawn with ``s`` show: ``s.window`` (checked),
    else the window holding ``s.point``."""
    rec = an.records[i]
    if s.window is None:
        return an.window_at(i, s.point)
    n = rec.geometry.num_windows
    if not 0 <= int(s.window) < n:
        raise SettingsError(f"Window {s.window} does not exist: {rec.label} has {unit(rec)}s 0 to {n - 1}.")
    return int(s.window)


# ------------------------------------------------------------------------------------ views
def tokens(an: Analysis, s: ViewSettings) -> View:
    """Every window token's attention over its window (GSA: every group token's over its group),
    tiled over the photo, with the window grid (``s.point`` is marked when given). Global blocks: the
    mean attention each pixel receives."""
    i, rec, h, k = _resolve(an, s)
    heat = an.token_map(i, h)
    self_vals = an.token_self(i, h)
    u = unit(rec)
    if self_vals is not None:
        caption = (
            f"{rec.label}: each {u} token's attention over the pixels of its {u} ({head_name(h)}). "
            f"{u.capitalize()} tokens keep {float(np.mean(self_vals)):.1%} of their attention on themselves on "
            "average. Click the photo to pick a pixel."
        )
        title = f"{u} tokens over their {u}s · {rec.label} · {head_name(h)}"
    else:
        caption = (
            f"{rec.label}: this block has no window tokens (one global window); shown is the mean "
            f"attention each pixel receives ({head_name(h)}). Click the photo to pick a pixel."
        )
        title = f"attention each pixel receives · {rec.label} · {head_name(h)}"
    pic = _draw(an, heat, s, k, block=i, marker=s.point, title=title)
    return View(pic, caption, heat, (render.TITLE_HEIGHT, 0), k, an.size)


def pixel(an: Analysis, s: ViewSettings) -> View:
    """The pixel at ``s.point`` (None: the centre): its attention inside its window or group
    (``through="dwa"``, window outlined), or through the whole block, DWA then PWA with the shortcuts
    counted as attention to itself with weight ``s.self_weight`` (``through="block"``). The whole-block
    view shows what the block mixes in from other cells (``ComposedQuery.mixed``: the query's own cell,
    which the shortcuts make outshine everything else, left out and the rest rescaled to sum 1); the
    caption gives the own cell's share."""
    if s.through not in ("dwa", "block"):
        raise SettingsError(
            f"Unknown pixel view {s.through!r}; choose 'dwa' (inside its window) or 'block' (whole block)."
        )
    i, rec, h, k = _resolve(an, s)
    y, x = an._point(s.point)
    q = an.pixel_query(i, (y, x), h)
    if s.through == "dwa":
        where = f"its {unit(rec)}" if rec.has_token else "the global window"
        pic = _draw(
            an,
            q.heat,
            s,
            k,
            block=i,
            box=q.box,
            marker=(y, x),
            title=f"pixel (x={x}, y={y}) in {where} · {head_name(h)}",
        )
        tok = (
            ""
            if q.token_weight is None
            else f"; it gives {q.token_weight:.1%} of its attention to its {unit(rec)} token"
        )
        place = "the global window" if not rec.has_token else f"{unit(rec)} {q.window}"
        caption = f"Pixel (x={x}, y={y}) is feature cell (row {q.cell[0]}, col {q.cell[1]}) of {rec.label}, in {place} ({head_name(h)}){tok}."
        return View(pic, caption, q.heat, (render.TITLE_HEIGHT, 0), k, an.size)
    comp = an.composed(i, (y, x), h, s.self_weight)
    title = f"pixel (x={x}, y={y}) · whole block, own cell left out · {head_name(h)}"
    pic = _draw(an, comp.mixed, s, k, block=i, marker=(y, x), title=title)
    stride = rec.geometry.stride
    y0, x0, y1, x1 = maps.cell_box(rec.geometry, comp.cell, an.size)
    if rec.pwa is not None and rec.has_token:
        how = f"DWA inside its {unit(rec)}, then PWA across {unit(rec)}s, the shortcuts counted as attention to itself"
        shortcuts, tokens = "the shortcuts", f"; {comp.token_mass:.1%} of all its weight comes from {unit(rec)} tokens"
    else:  # a global block: one attention over every cell, one shortcut, no window tokens
        how = "its global attention over every cell (no windows, no PWA), the shortcut counted as attention to itself"
        shortcuts, tokens = "the shortcut", ""
    caption = (
        f"Pixel (x={x}, y={y}) through the whole block {rec.label} ({head_name(h)}): {how}. "
        f"Shown is what the block **mixes in from other cells**: its own cell (stride {stride}, the pixels "
        f"x {x0}-{x1 - 1}, y {y0}-{y1 - 1}, marked) is left out, "
        f"the rest rescaled to 100%. The own cell keeps {comp.self_share:.1%} of the weight on pixels "
        f"({shortcuts} and its attention to itself){tokens}."
    )
    return View(pic, caption, comp.mixed, (render.TITLE_HEIGHT, 0), k, an.size)


def pwa_row(an: Analysis, s: ViewSettings) -> View:
    """One window's PWA row (``s.window``; None: the window holding ``s.point``) as a heat map over
    the window grid, the window outlined."""
    i, rec, h, k = _resolve(an, s)
    _require_pwa(rec)
    w = query_window(an, i, s)
    heat = an.pwa_map(i, w, h)
    row = an.pwa_matrix(i, h)[w]
    n, u = rec.geometry.num_windows, unit(rec)
    caption = (
        f"{rec.label}: {u} {w} (outlined) attends most to {u} {int(np.argmax(row))} "
        f"({float(row.max()):.1%}) and {float(row[w]):.1%} to itself ({head_name(h)}). "
        f"Matrix: rows = query {u}s, columns = key {u}s ({n} x {n}, raster order). "
        f"Click the photo to pick another {u}."
    )
    title = f"PWA: {u} {w} over all {u}s · {rec.label} · {head_name(h)}"
    pic = _draw(an, heat, s, k, block=i, box=an.window_box(i, w), title=title)
    return View(pic, caption, heat, (render.TITLE_HEIGHT, 0), k, an.size)


def pwa_matrix(an: Analysis, s: ViewSettings) -> View:
    """The block's n x n PWA matrix (rows = query windows), the chosen window's row outlined."""
    i, rec, h, k = _resolve(an, s)
    _require_pwa(rec)
    w = query_window(an, i, s)
    mat = an.pwa_matrix(i, h)
    n, u = mat.shape[0], unit(rec)
    pic = render.matrix_view(
        mat,
        cmap=s.cmap,
        size=max(an.size) * k,  # as wide as the photo views beside it, portrait or landscape
        highlight=w,
        title=f"PWA {n}x{n} · {rec.label} · {head_name(h)}",
        row_label=f"query {u}",
        col_label=f"key {u}",
    )
    caption = f"{rec.label}: window-to-window attention, rows = query {u}s, columns = key {u}s; row {w} outlined."
    return View(pic, caption, None, (0, 0), 1, (0, 0))


def compare(an: Analysis, pair: tuple[int, int], s: ViewSettings) -> tuple[View, View, str]:
    """Token maps of a DSSA block and the GSA block after it (same photo, head and settings):
    (DSSA view, GSA view, caption); the two pictures have one size.

    Both are drawn on ONE colour scale, 0 to the larger maximum of the two maps (``View.vrange``, the
    same colour bar on both), so equal colours mean equal attention. Each picture is labelled inside
    its own half of a label band under the photo (DSSA in the left half of the DSSA picture, GSA in
    the right half of the GSA picture, :func:`render.pair_bands`): in the swipe slider, which shows the
    left part of one and the right part of the other, the labels never splice; under the photo, no
    image toolbar (drawn over the top-right corner) hides them.
    """
    if tuple(pair) not in an.dssa_gsa_pairs():
        raise SettingsError(f"Blocks {pair} are not a DSSA block followed by a GSA block of one stage.")
    resolved = [_resolve(an, s.with_(block=b)) for b in pair]
    heats = [an.token_map(i, h) for i, _, h, _ in resolved]
    hi = max(float(np.max(heat)) for heat in heats)
    vrange = (0.0, hi)
    pics = [_draw(an, heat, s, k, block=i, vmin=0.0, vmax=hi) for heat, (i, _, _, k) in zip(heats, resolved)]
    labels = []
    for _, rec, h, _ in resolved:
        u = "groups" if rec.kind == "gsa" else "windows"
        labels.append(
            [
                f"{rec.kind.upper()} · stage {rec.stage + 1} · block {rec.index + 1}",
                f"{rec.window_size}x{rec.window_size} {u} · {head_name(h)}",
                f"shared colour scale 0 to {render._fmt(hi)}",
            ]
        )
    bands = render.pair_bands(pics[0].shape[1], labels[0], labels[1])
    out = [
        View(np.concatenate([pic, band], axis=0), rec.label, heat, (0, 0), k, an.size, vrange)
        for band, pic, heat, (_, rec, _, k) in zip(bands, pics, heats, resolved)
    ]
    ra, rb = resolved[0][1], resolved[1][1]
    caption = (
        f"**Left: DSSA**, {ra.label}, each window token over its {ra.window_size}x{ra.window_size} window. "
        f"**Right: GSA**, {rb.label}, each group token over its {rb.window_size}x{rb.window_size} group "
        "(thin lines: the windows inside each group). Same photo and head, and **one shared colour scale**, "
        f"0 to {render._fmt(hi)} (the larger maximum of the two maps): equal colours mean equal attention. "
        "The slider swipes between them."
    )
    return out[0], out[1], caption


def side_by_side(a: np.ndarray, b: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two pictures (Ha, Wa, 3) and (Hb, Wb, 3) uint8 in one, bottoms padded white to one height:
    (max(Ha, Hb), Wa + gap + Wb, 3) uint8."""
    h = max(a.shape[0], b.shape[0])

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, h - x.shape[0]), (0, 0), (0, 0)), constant_values=255)

    return np.concatenate([pad(a), np.full((h, gap, 3), 255, np.uint8), pad(b)], axis=1)


def rollout(an: Analysis, s: ViewSettings) -> View:
    """Attention rollout over every block, pooled over the last block's cells
    (``rollout_query="pooled"``) or from ``s.point``; heads fused (a head index means the mean)."""
    pooled = s.rollout_query == "pooled"
    head = s.head if isinstance(s.head, str) else "mean"
    k = s.scale or display_scale(an.size)
    ro = an.rollout(s.point, pooled=pooled, head=head, residual=s.residual, self_weight=s.self_weight)
    what = "pooled over the output" if pooled else "from the point"
    pic = _draw(an, ro.heat, s, k, marker=None if pooled else an._point(s.point), title=f"rollout · {what}")
    caption = (
        f"Attention rollout through every block ({what}, {head_name(head)}, residual {s.residual:g}): "
        "where the model's output drew from in the photo."
    )
    return View(pic, caption, ro.heat, (render.TITLE_HEIGHT, 0), k, an.size)


def attribution(
    an: Analysis,
    heat: np.ndarray,
    s: ViewSettings,
    *,
    method_label: str,
    target: int,
    class_name: str,
    seconds: float,
    smoothed: int = 0,
    settings: str = "",
) -> View:
    """A class attribution (H, W) over the photo. Signed maps show their positive part; the colour bar
    tops out at the 99.5th percentile, so a few extreme pixels do not wash out the rest (both said in
    the caption). ``settings``: the method's settings in words (e.g. ``"16 steps from a black image"``,
    :func:`sepvit_viz.explain.attribution.describe`), shown after the method's name. ``smoothed``:
    the stem stride ``heat`` was destriped with for display (said in the title and caption); 0: raw."""
    k = s.scale or display_scale(an.size)
    signed = bool(heat.min() < 0)
    shown = np.maximum(heat, 0) if signed else heat
    hi = float(np.percentile(shown, 99.5))
    hi = hi if hi > float(shown.min()) else None
    title = f"{method_label} · {class_name} ({target})" + (" · smoothed" if smoothed else "")
    pic = _draw(an, shown, s, k, title=title, vmax=hi)
    caption = (
        f"**{method_label}**{f' ({settings})' if settings else ''} for class **{class_name}** ({target}), "
        f"p = {an.probs[target]:.3f}; "
        f"{seconds:.2f} s."
        + (" Positive evidence shown (negative values clipped)." if signed else "")
        + (
            f" Colour scale up to the 99.5th percentile ({hi:.3g}): the top 0.5% of pixels saturate."
            if hi is not None
            else ""
        )
        + (
            f" Smoothed for display ({2 * smoothed - 1} px tent: the stride-{smoothed} stripes of the "
            "patch embedding removed); scores and downloaded arrays use the raw map."
            if smoothed
            else ""
        )
        + (
            " **The map is empty**: no pixel has positive evidence for this class under this method (the "
            "SepViT relevance, for one, starts from the last-stage tokens that raise the class score, and "
            "for an unlikely class there may be none). Another method or class may say more."
            if not float(shown.max()) > 0.0
            else ""
        )
    )
    return View(pic, caption, shown, (render.TITLE_HEIGHT, 0), k, an.size)


# ------------------------------------------------------------------------------------ figure tier
def figure(an: Analysis, view: str, s: ViewSettings) -> np.ndarray:
    """Annotated figure of one map view (tokens | pixel | pwa_map | composed | rollout), drawn with
    matplotlib's Figure API on Agg and returned as pixels: (H', W', 3) uint8.

    Raises ``ValueError`` for an unknown ``view``, :class:`NoView` for ``pwa_map`` of a global block.
    """
    i, rec, h, _ = _resolve(an, s)
    grid, sub = an.grid_lines(i, s.gsa_subwindows)
    box = None
    if view == "tokens":
        heat = an.token_map(i, h)
    elif view == "pixel":
        q = an.pixel_query(i, s.point, h)
        heat, box = q.heat, q.box
    elif view == "pwa_map":
        _require_pwa(rec)
        w = query_window(an, i, s)
        heat, box = an.pwa_map(i, w, h), an.window_box(i, w)
    elif view == "composed":
        heat = an.composed(i, s.point, h, s.self_weight).mixed  # own cell left out, as in :func:`pixel`
    elif view == "rollout":
        head = h if isinstance(h, str) else "mean"
        heat = an.rollout(
            s.point, pooled=s.rollout_query == "pooled", head=head, residual=s.residual, self_weight=s.self_weight
        ).heat
        grid, sub = None, None
    else:
        raise ValueError(f"unknown view {view!r}")
    title = "rollout over all blocks" if view == "rollout" else f"{rec.label}\n{view} · {head_name(h)}"
    # the views about one query pixel mark it (cyan cross) and name it, as the app's pictures do
    about_point = view in ("pixel", "composed") or (view == "rollout" and s.rollout_query == "point")
    point = (an.centre() if s.point is None else (int(s.point[0]), int(s.point[1]))) if about_point else None
    if view == "composed":
        title += " · own cell left out"
    elif view == "pwa_map":
        title += f" · {unit(rec)} {w} (outlined) over all {unit(rec)}s"
    if point is not None:
        title += f" · pixel (y {point[0]}, x {point[1]})"
    return render.overlay_figure(
        an.image, heat, title=title, cmap=s.cmap, alpha=s.alpha, grid=grid, subgrid=sub, box=box, point=point
    )


def pwa_figure(an: Analysis, s: ViewSettings) -> np.ndarray:
    """Annotated figure of the PWA matrix as pixels, (H', W', 3) uint8 (raises :class:`NoView` for a
    global block)."""
    i, rec, h, _ = _resolve(an, s)
    _require_pwa(rec)
    return render.pwa_matrix_figure(
        an.pwa_matrix(i, h),
        cmap=s.cmap,
        highlight=query_window(an, i, s),
        grid=rec.grid,
        title=f"{rec.label}\nPWA · {head_name(h)}",
        unit=unit(rec),
    )


def gallery(an: Analysis, view: str, s: ViewSettings) -> np.ndarray:
    """One panel per head of ``view`` (tokens | pixel | pwa_map | composed) for ``s.block``:
    (H', W', 3) uint8."""
    i, rec, _, _ = _resolve(an, s)
    grid, _ = an.grid_lines(i, False)
    return render.head_gallery(
        an.image,
        an.head_maps(i, view, s.point, window=s.window, self_weight=s.self_weight),
        cmap=s.cmap,
        alpha=s.alpha,
        grid=grid,
        suptitle=f"{rec.label} · "
        + ("attention each pixel receives" if view == "tokens" and not rec.has_token else view)
        + " per head",
    )


def curves_figure(scores: Mapping[str, Curves], *, title: str | None = None) -> Figure:
    """The figure behind :func:`curves`: deletion and insertion axes side by side, one legend for
    both below them (outside the curves), each method with both of its AUCs.

    The axes say what the curves hold: pixels removed / revealed (most attributed first), the fill
    (``Curves.extras["baseline"]``, when every curve has the same one) and the score (class
    probability or logit, ``extras["score"]``). ``title`` (e.g. the class explained) goes above both.
    """
    rows = -(-len(scores) // 3)  # legend rows of up to three methods
    fig = Figure(figsize=(8, 3.0 + 0.22 * rows + (0.3 if title else 0.0)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_d, ax_i = fig.subplots(1, 2, sharey=True)
    for label, c in scores.items():
        (line,) = ax_d.plot(c.fractions, c.deletion)
        ax_i.plot(c.fractions, c.insertion, color=line.get_color())
        line.set_label(f"{label}: {c.deletion_auc:.3g} / {c.insertion_auc:.3g}")
    fills = {str(c.extras.get("baseline", "")) for c in scores.values()}
    fill = next(iter(fills)) if len(fills) == 1 else ""
    fill_name = {"mean": "mean-colour", "gray": "grey"}.get(fill, fill)
    on = f" ({fill_name} fill)" if fill_name and fill_name != "tensor" else ""
    ax_d.set_title(f"deletion{on}: lower AUC = better", fontsize=10)
    ax_i.set_title(f"insertion{on}: higher AUC = better", fontsize=10)
    ax_d.set_xlabel("fraction of pixels removed (most attributed first)", fontsize=9)
    ax_i.set_xlabel("fraction of pixels revealed (most attributed first)", fontsize=9)
    kinds = {str(c.extras.get("score", "prob")) for c in scores.values()}
    ax_d.set_ylabel("class logit" if kinds == {"logit"} else "class probability")
    if title:
        fig.suptitle(title, fontsize=10)
    if scores:
        fig.legend(
            loc="outside lower center",
            ncols=min(3, len(scores)),
            fontsize=7,
            title="AUC: deletion / insertion",
            title_fontsize=7,
        )
    return fig


def curves(scores: Mapping[str, Curves], *, title: str | None = None) -> np.ndarray:
    """Deletion and insertion curves of several methods side by side: (H, W, 3) uint8 (Figure API, Agg);
    ``title``: see :func:`curves_figure`."""
    return render.figure_to_rgb(curves_figure(scores, title=title))
