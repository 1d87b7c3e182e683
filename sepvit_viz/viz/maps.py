"""Attention maps of SepViT as pure numpy functions, in image coordinates.

Everything here takes plain arrays for ONE image (drop the batch axis of a capture record first) and
a :class:`sepvit_viz.viz.geometry.WindowGeometry` (``height, width, window, grid, pad, has_token, stride``),
and returns arrays. No torch, no model.

Axis letters: n windows (raster order, ``a`` = query window, ``b`` = key window), h heads, L tokens of
one window (index 0 = window token when ``has_token``, then the window's P = wh * ww pixels in raster
order; a global block has L = P = H * W and no token), (H, W) the unpadded feature map, (Hi, Wi) the
model's input image.

Shapes taken:
    dwa: (n, h, L, L) depthwise (within-window) attention, rows = queries.
    pwa: (h, n, n) pointwise (window-to-window) attention, rows = query windows.

Image coordinates: a feature cell (i, j) at stride s is centred on input pixel (s*i, s*j), where
SepViT's padded patch embeddings put it (kernel 7 stride 4 padding 3, then kernel 3 stride 2 padding
1), and covers the input pixels nearest to it: rows ``[s*i - s//2, s*i - s//2 + s)`` clipped to the
image, so the first cell is cut to its lower half and the last runs to the image's edge
(:func:`cell_edges`). The bottom/right padding of the window tiling is cropped first, then every map
is drawn cell by cell (nearest, so window borders stay exact) at the input image size. Points are
``(row, col)`` = ``(y, x)`` pixels of the model's input image.

Views (each takes any block, any head index or a fusion ``"mean" | "max" | "min"`` over heads):
    1. :func:`token_map`: each window token's attention over its own window's pixels, tiled onto the
       image, plus each token's attention to itself (:func:`token_self_map`); for blocks without a
       token, :func:`received_map` (mean attention each pixel receives) stands in.
    2. :func:`pixel_query`: one pixel's DWA row over its window (or 14x14 group), with the weight it
       gives its window token.
    3. :func:`pwa_matrix` (n x n per head) and :func:`pwa_row_map` (a chosen window's row as a heat map
       over the window grid); :func:`window_at` picks a window from a point.
    4. GSA blocks are the same calls (their "window" is the 14x14 group); :func:`grid_lines` with
       ``subdivide=2`` also gives the 7x7 sub-windows of each group; :func:`dssa_gsa_pairs` finds the
       DSSA block / following GSA block pairs of a stage for side-by-side views.
    5. :func:`composed_query`: pixel-to-pixel attention of a whole DSSA/GSA block (DWA then PWA with
       the inner shortcuts); its ``mixed`` map leaves the query's own cell out (:func:`leave_out_cell`).
    6. :func:`rollout`: attention rollout over blocks and stages of a model with no CLS token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sepvit_viz.viz.geometry import WindowGeometry

__all__ = [
    "BlockAttention",
    "ComposedQuery",
    "Geometry",
    "GeometryLike",
    "HeadSelect",
    "PixelQuery",
    "Rollout",
    "block_operator",
    "cell_at",
    "cell_box",
    "cell_edges",
    "composed_query",
    "dssa_gsa_pairs",
    "fuse_heads",
    "grid_lines",
    "leave_out_cell",
    "pixel_cells",
    "pixel_query",
    "pooling_matrix",
    "pwa_matrix",
    "pwa_row_map",
    "received_map",
    "rollout",
    "rollout_matrix",
    "tile_windows",
    "to_image",
    "token_map",
    "token_self_map",
    "window_at",
    "window_box",
    "window_values_to_image",
]

HeadSelect = int | Literal["mean", "max", "min"]
FUSIONS = ("mean", "max", "min")


#: The window geometry maps read (:class:`sepvit_viz.viz.geometry.WindowGeometry`, torch-free); the
#: old names stay as aliases.
Geometry = WindowGeometry
GeometryLike = WindowGeometry


@dataclass(frozen=True)
class BlockAttention:
    """One block's attention for one image: what :func:`rollout` and the composed view consume.

    dwa: (n, h, L, L); pwa: (h, n, n) or None (global block); geometry: the block's tiling.
    """

    dwa: np.ndarray
    pwa: np.ndarray | None
    geometry: GeometryLike
    stage: int
    name: str = ""
    kind: str = ""


# ----------------------------------------------------------------------------- helpers
def fuse_heads(a: np.ndarray, head: HeadSelect, axis: int) -> np.ndarray:
    """Pick one head (int) or fuse all heads (``"mean" | "max" | "min"``) along ``axis``."""
    if isinstance(head, str):
        if head not in FUSIONS:
            raise ValueError(f"head fusion must be one of {FUSIONS} or a head index, got {head!r}")
        return getattr(np, head)(a, axis=axis)
    heads = a.shape[axis]
    if not (-heads <= int(head) < heads):
        raise ValueError(f"head {head} out of range: this block has {heads} heads")
    return np.take(a, int(head), axis=axis)


def _image_size(geom: GeometryLike, image_size: tuple[int, int] | None) -> tuple[int, int]:
    if image_size is None:
        return geom.height * geom.stride, geom.width * geom.stride
    return int(image_size[0]), int(image_size[1])


def _pixel_mask(geom: GeometryLike) -> np.ndarray:
    """(n, P) True where a window pixel is real (not padding)."""
    hp, wp = geom.height + geom.pad[0], geom.width + geom.pad[1]
    real = np.zeros((hp, wp), dtype=bool)
    real[: geom.height, : geom.width] = True
    return _untile_inverse(real, geom)


def _untile_inverse(fmap: np.ndarray, geom: GeometryLike) -> np.ndarray:
    """Padded map (..., Hp, Wp) -> (..., n, P) window layout (inverse of :func:`tile_windows`)."""
    (gh, gw), (wh, ww) = geom.grid, geom.window
    lead = fmap.shape[:-2]
    x = fmap.reshape(*lead, gh, wh, gw, ww)
    x = np.moveaxis(x, -3, -2)  # (..., gh, gw, wh, ww)
    return x.reshape(*lead, gh * gw, wh * ww)


def tile_windows(values: np.ndarray, geom: GeometryLike) -> np.ndarray:
    """Per-window pixel values (..., n, P) -> feature map (..., H, W), padding cropped."""
    (gh, gw), (wh, ww) = geom.grid, geom.window
    if values.shape[-2:] != (gh * gw, wh * ww):
        raise ValueError(f"expected (..., {gh * gw}, {wh * ww}) window values, got {values.shape}")
    lead = values.shape[:-2]
    x = values.reshape(*lead, gh, gw, wh, ww)
    x = np.moveaxis(x, -2, -3)  # (..., gh, wh, gw, ww)
    return x.reshape(*lead, gh * wh, gw * ww)[..., : geom.height, : geom.width]


def pixel_cells(size: int, stride: int, cells: int) -> np.ndarray:
    """(size,) the feature cell (along one axis) that each input pixel belongs to: the one whose
    centre ``stride * j`` is nearest (ties go to the later cell), clipped to ``[0, cells)``."""
    return _nearest_cell(np.arange(size), stride, cells)


def _nearest_cell(pixel, stride: int, cells: int):
    """Pixel index (int or int array) -> the cell whose centre ``stride * j`` is nearest, clipped."""
    return np.minimum((pixel + stride // 2) // stride, cells - 1)


def cell_edges(cells: int, stride: int, size: int) -> np.ndarray:
    """(cells + 1,) pixel edges along one axis: cell j covers input pixels ``[e[j], e[j + 1])``.

    ``e[j] = stride * j - stride // 2`` inside, 0 first and ``size`` last (:func:`pixel_cells`' cells).
    """
    edges = np.arange(cells + 1) * stride - stride // 2
    edges[0], edges[-1] = 0, size
    return np.clip(edges, 0, size)


def to_image(fmap: np.ndarray, stride: int, image_size: tuple[int, int]) -> np.ndarray:
    """Feature map (H, W) at ``stride`` -> (Hi, Wi): every input pixel takes the value of the cell it
    belongs to (:func:`pixel_cells`: cell (i, j) centred on pixel (stride i, stride j)).

    When the cells do not cover the image (never the case for SepViT, whose maps are ceil(Hi / s)),
    the last row/column is repeated.
    """
    hi, wi = image_size
    h, w = fmap.shape[-2:]
    rows, cols = pixel_cells(hi, stride, h), pixel_cells(wi, stride, w)
    return np.take(np.take(fmap, rows, axis=-2), cols, axis=-1)


def window_values_to_image(
    values: np.ndarray, geom: GeometryLike, image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """One value per window (n,) -> (Hi, Wi) map where each window's area holds its value."""
    (gh, gw), (wh, ww) = geom.grid, geom.window
    grid = np.asarray(values).reshape(gh, gw)
    fmap = np.repeat(np.repeat(grid, wh, axis=0), ww, axis=1)[: geom.height, : geom.width]
    return to_image(fmap, geom.stride, _image_size(geom, image_size))


def cell_at(
    geom: GeometryLike, point: tuple[float, float], image_size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Image point (y, x) -> feature cell (row, col); raises when the point is outside the image."""
    hi, wi = _image_size(geom, image_size)
    y, x = point
    if not (0 <= y < hi and 0 <= x < wi):
        raise ValueError(f"point (y={y}, x={x}) is outside the {hi}x{wi} image")
    s = geom.stride
    return int(_nearest_cell(int(y), s, geom.height)), int(_nearest_cell(int(x), s, geom.width))


def cell_box(
    geom: GeometryLike, cell: tuple[int, int], image_size: tuple[int, int] | None = None
) -> tuple[int, int, int, int]:
    """Image-pixel box ``(y0, x0, y1, x1)`` (end exclusive) of the pixels that belong to a feature cell."""
    hi, wi = _image_size(geom, image_size)
    ys, xs = cell_edges(geom.height, geom.stride, hi), cell_edges(geom.width, geom.stride, wi)
    r, c = cell
    return int(ys[r]), int(xs[c]), int(ys[r + 1]), int(xs[c + 1])


def window_at(geom: GeometryLike, point: tuple[float, float], image_size: tuple[int, int] | None = None) -> int:
    """Index (raster order) of the window or group holding image point (y, x)."""
    r, c = cell_at(geom, point, image_size)
    return (r // geom.window[0]) * geom.grid[1] + c // geom.window[1]


def _cell_index(geom: GeometryLike, cell: tuple[int, int]) -> tuple[int, int]:
    """Feature cell -> (window index, pixel index inside the window)."""
    r, c = cell
    wr, pr = divmod(r, geom.window[0])
    wc, pc = divmod(c, geom.window[1])
    return wr * geom.grid[1] + wc, pr * geom.window[1] + pc


def window_box(geom: GeometryLike, window: int, image_size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """Image-pixel box ``(y0, x0, y1, x1)`` (end exclusive) of a window, padding cropped."""
    hi, wi = _image_size(geom, image_size)
    gr, gc = divmod(int(window), geom.grid[1])
    (wh, ww), s = geom.window, geom.stride
    ys, xs = cell_edges(geom.height, s, hi), cell_edges(geom.width, s, wi)
    r0, c0 = min(gr * wh, geom.height), min(gc * ww, geom.width)
    r1, c1 = min((gr + 1) * wh, geom.height), min((gc + 1) * ww, geom.width)
    return int(ys[r0]), int(xs[c0]), int(ys[r1]), int(xs[c1])


def grid_lines(
    geom: GeometryLike, image_size: tuple[int, int] | None = None, subdivide: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Interior window borders in image pixels: (row positions, column positions).

    ``subdivide=2`` also returns the borders of the 2x2 sub-windows of every window (the 7x7 windows
    inside a GSA block's 14x14 groups).
    """
    hi, wi = _image_size(geom, image_size)
    (wh, ww), s = geom.window, geom.stride
    if subdivide < 1 or wh % subdivide or ww % subdivide:
        raise ValueError(f"cannot subdivide a {wh}x{ww} window by {subdivide}")
    step_h, step_w = wh // subdivide, ww // subdivide
    ys = cell_edges(geom.height, s, hi)[np.arange(step_h, geom.height, step_h)]
    xs = cell_edges(geom.width, s, wi)[np.arange(step_w, geom.width, step_w)]
    return ys[ys < hi], xs[xs < wi]


# ----------------------------------------------------------------------------- view 1
def token_map(
    dwa: np.ndarray, geom: GeometryLike, head: HeadSelect = "mean", image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Each window token's attention over its window's pixels, tiled onto the image: (Hi, Wi).

    ``dwa[:, :, 0, 1:]`` (row 0 = the token as query, pixel keys). A window's pixel values sum to one
    minus the token's attention to itself (see :func:`token_self_map`).
    """
    if not geom.has_token:
        raise ValueError("this block has no window token (global attention); use received_map instead")
    rows = fuse_heads(dwa[:, :, 0, 1:], head, axis=1)  # (n, P)
    return to_image(tile_windows(rows, geom), geom.stride, _image_size(geom, image_size))


def token_self_map(
    dwa: np.ndarray, geom: GeometryLike, head: HeadSelect = "mean", image_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each window token's attention to itself: ((n,) values, (Hi, Wi) map filling each window)."""
    if not geom.has_token:
        raise ValueError("this block has no window token (global attention)")
    vals = fuse_heads(dwa[:, :, 0, 0], head, axis=1)  # (n,)
    return vals, window_values_to_image(vals, geom, image_size)


def received_map(
    dwa: np.ndarray, geom: GeometryLike, head: HeadSelect = "mean", image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Mean attention each pixel receives from the real pixels of its window: (Hi, Wi).

    Works for every block (the stand-in for :func:`token_map` on global blocks). Padded query rows are
    left out of the mean; window tokens as queries too.
    """
    t = int(geom.has_token)
    real = _pixel_mask(geom)  # (n, P)
    a = fuse_heads(dwa[:, :, t:, t:], head, axis=1)  # (n, P, P) pixel queries x pixel keys
    w = real.astype(a.dtype)
    recv = np.einsum("nqk,nq->nk", a, w) / np.maximum(w.sum(axis=1, keepdims=True), 1)
    return to_image(tile_windows(recv, geom), geom.stride, _image_size(geom, image_size))


# ----------------------------------------------------------------------------- view 2
@dataclass(frozen=True)
class PixelQuery:
    """One query's DWA attention over its window.

    heat: (Hi, Wi), zero outside the query's window; cell: the query's feature cell (row, col);
    window: its window index; box: the window's image box (y0, x0, y1, x1); token_weight: attention
    to the window token (None for global blocks); values: the raw row (L,) after head selection.
    """

    heat: np.ndarray
    cell: tuple[int, int]
    window: int
    box: tuple[int, int, int, int]
    token_weight: float | None
    values: np.ndarray


def pixel_query(
    dwa: np.ndarray,
    geom: GeometryLike,
    point: tuple[float, float],
    head: HeadSelect = "mean",
    image_size: tuple[int, int] | None = None,
) -> PixelQuery:
    """The DWA row of the pixel at image point (y, x) as a map over its window (or group)."""
    size = _image_size(geom, image_size)
    cell = cell_at(geom, point, size)
    a, p = _cell_index(geom, cell)
    t = int(geom.has_token)
    row = fuse_heads(dwa[a, :, p + t, :], head, axis=0)  # (L,)
    n, P = geom.grid[0] * geom.grid[1], geom.window[0] * geom.window[1]
    vals = np.zeros((n, P), dtype=row.dtype)
    vals[a] = row[t:]
    heat = to_image(tile_windows(vals, geom), geom.stride, size)
    return PixelQuery(heat, cell, a, window_box(geom, a, size), float(row[0]) if t else None, row)


# ----------------------------------------------------------------------------- view 3
def pwa_matrix(pwa: np.ndarray, head: HeadSelect = "mean") -> np.ndarray:
    """(h, n, n) -> (n, n) windows-by-windows attention of one head or a fusion."""
    return fuse_heads(pwa, head, axis=0)


def pwa_row_map(
    pwa: np.ndarray,
    geom: GeometryLike,
    window: int,
    head: HeadSelect = "mean",
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Window ``window``'s PWA row as a heat map over the window grid: (Hi, Wi)."""
    n = pwa.shape[-1]
    if not (0 <= window < n):
        raise ValueError(f"window {window} out of range 0..{n - 1}")
    return window_values_to_image(pwa_matrix(pwa, head)[window], geom, image_size)


# ----------------------------------------------------------------------------- view 4
def dssa_gsa_pairs(kinds: Sequence[tuple[int, str]]) -> list[tuple[int, int]]:
    """Indices (i, i + 1) of each DSSA block directly followed by a GSA block of the same stage.

    ``kinds``: (stage, kind) of every block in model order (e.g. from ``model.block_table``).
    """
    return [
        (i, i + 1)
        for i in range(len(kinds) - 1)
        if kinds[i][1] == "dssa" and kinds[i + 1][1] == "gsa" and kinds[i][0] == kinds[i + 1][0]
    ]


# ----------------------------------------------------------------------------- view 5
@dataclass(frozen=True)
class ComposedQuery:
    """Where one pixel draws from through a whole DSSA/GSA block.

    heat: (Hi, Wi) weights on input pixels; token_mass: the part that comes from window tokens
    (learned parameters, not image content); lost_mass: the part that lands on padded positions.
    heat summed over feature cells (not image pixels) + token_mass + lost_mass = 1.
    feature: (H, W) the same weights at feature resolution.
    mixed: (Hi, Wi) what the block mixes in from OTHER cells (:func:`leave_out_cell`): ``heat`` with
    the query's own cell set to 0 and the rest rescaled to sum 1 over feature cells (all zero when
    nothing comes from elsewhere); self_share: the own cell's part of the pixel weights (the two
    shortcuts and the query's attention to itself), in [0, 1].
    """

    heat: np.ndarray
    feature: np.ndarray
    token_mass: float
    lost_mass: float
    cell: tuple[int, int]
    window: int
    mixed: np.ndarray
    self_share: float


def leave_out_cell(fmap: np.ndarray, cell: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(H, W) non-negative weights -> (the weights with ``cell`` set to 0 and the rest rescaled to
    sum 1, the share ``cell`` held). All zeros and share 1 (0 for an all-zero map) when no other
    cell has weight.

    The composed view's readable form: counted as attention to itself, the block's shortcuts put a
    quarter to a half of the weight on the query's own cell, which then outshines everything the
    block mixes in from elsewhere.
    """
    total = float(fmap.sum())
    own = float(fmap[cell])
    out = np.array(fmap, dtype=np.float64)
    out[cell] = 0.0
    rest = total - own
    if rest <= 0.0 or total <= 0.0:
        return np.zeros_like(fmap), (1.0 if total > 0.0 else 0.0)
    return (out / rest).astype(fmap.dtype), own / total


def _with_self(a: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * A + weight * I over the last two axes: a shortcut counted as attention to itself."""
    out = (1.0 - weight) * a
    idx = np.arange(a.shape[-1])
    out[..., idx, idx] += weight
    return out


def composed_query(
    dwa: np.ndarray,
    pwa: np.ndarray | None,
    geom: GeometryLike,
    point: tuple[float, float],
    head: HeadSelect = "mean",
    self_weight: float = 0.5,
    image_size: tuple[int, int] | None = None,
) -> ComposedQuery:
    """Pixel-to-pixel attention of a whole DSSA (or GSA) block for the query at image point (y, x).

    Linearisation (values and projections taken as identity; what stays is how tokens are mixed).
    Per head, the official block computes ``Y = A_dw V + U`` (inner shortcut) and then, for pixels,
    ``O = A_pw F + F`` where ``F = Y[1:]`` with padded pixels zeroed. Each shortcut is an identity
    matrix beside the attention; as in attention rollout we weight it ``self_weight`` (default 0.5:
    the shortcut counts as much as the attention) and the attention ``1 - self_weight``:
    ``Â = (1 - self_weight) A + self_weight I`` for both A_dw and A_pw, so every row still sums to 1.
    Then query (a, p) -> key (b, q):

        M[(a, p), (b, q)] = Â_pw[a, b] * m_b[p] * Â_dw[b][p + 1, q + 1]

    with m_b[p] = 1 when position p of window b is a real pixel (the model zeroes padded pixels
    before PWA). Mass on the window tokens (column 0 of Â_dw) is ``token_mass``; mass dropped by the
    padding mask or landing on padded keys is ``lost_mass``. Heads are composed one by one (head j of
    PWA mixes head j's channels of F, which DWA head j produced) and then selected or fused.
    A global block has no PWA: M = Â_dw (its single shortcut included).
    """
    if not (0.0 <= self_weight <= 1.0):
        raise ValueError(f"self_weight must be in [0, 1], got {self_weight}")
    size = _image_size(geom, image_size)
    cell = cell_at(geom, point, size)
    a, p = _cell_index(geom, cell)
    t = int(geom.has_token)
    real = _pixel_mask(geom)  # (n, P)
    # Â_dw rows of position p in every window b: (h, n, L); the DWA shortcut sits at column p + t
    dw = (1.0 - self_weight) * np.moveaxis(dwa[:, :, p + t, :], 1, 0).astype(np.float64)
    dw[:, :, p + t] += self_weight
    heads, n = dw.shape[0], dw.shape[1]
    w = np.zeros((heads, n))  # Â_pw[a, :] per head
    w[:, a] = self_weight if (pwa is not None and t) else 1.0
    if pwa is not None and t:
        w += (1.0 - self_weight) * pwa[:, a, :]
    w *= real[:, p][None, :]  # PWA reads only real pixels of each window
    per_head = w[:, :, None] * dw  # (h, n, L)
    token = per_head[:, :, 0].sum(axis=1) if t else np.zeros(heads)  # (h,)
    pix = per_head[:, :, t:] * real[None]  # (h, n, P), real keys only
    lost = 1.0 - token - pix.sum(axis=(1, 2))  # (h,) padding-masked or padded-key mass
    fmap = fuse_heads(tile_windows(pix, geom), head, axis=0)  # (H, W)
    # masses are head means under a max/min fusion (those fusions are not distributions)
    mass_head: HeadSelect = head if isinstance(head, int) else "mean"
    tok = float(fuse_heads(token, mass_head, axis=0))
    lost_m = float(fuse_heads(lost, mass_head, axis=0))
    mixed, share = leave_out_cell(fmap, cell)
    return ComposedQuery(
        to_image(fmap.astype(np.float32), geom.stride, size),
        fmap,
        tok,
        lost_m,
        cell,
        a,
        to_image(mixed.astype(np.float32), geom.stride, size),
        share,
    )


# ----------------------------------------------------------------------------- view 6
def _pool_axis(n_dst: int, n_src: int, kernel: int, stride: int, padding: int, weights: str) -> np.ndarray:
    """(n_dst, n_src) row-stochastic 1-D footprint of a strided convolution."""
    if weights == "uniform":
        taps = np.ones(kernel)
    elif weights == "tent":
        taps = 1.0 - np.abs(np.arange(kernel) - (kernel - 1) / 2) / ((kernel + 1) / 2)
    else:
        raise ValueError(f"weights must be 'tent' or 'uniform', got {weights!r}")
    m = np.zeros((n_dst, n_src))
    for i in range(n_dst):
        for k in range(kernel):
            j = stride * i - padding + k
            if 0 <= j < n_src:
                m[i, j] = taps[k]
    sums = m.sum(axis=1, keepdims=True)
    if (sums == 0).any():
        raise ValueError(f"a grid of {n_dst} cannot come from a grid of {n_src} with stride {stride}")
    return m / sums


def pooling_matrix(
    src: tuple[int, int],
    dst: tuple[int, int],
    kernel: int = 3,
    stride: int = 2,
    padding: int = 1,
    weights: Literal["tent", "uniform"] = "tent",
) -> np.ndarray:
    """(Nd, Ns) row-stochastic matrix of a patch embedding seen as spatial pooling.

    Row (i, j) of the ``dst`` grid spreads over the cells of the ``src`` grid inside the convolution's
    footprint (rows ``stride*i - padding .. + kernel - 1``), clipped to the map (the zero padding
    carries no image content) and renormalised. ``tent`` weights the 3 taps (1/2, 1, 1/2) per axis:
    with stride 2 every source cell away from the edges is then covered equally (column sums 1/2 per
    axis); at the edges, per axis, the first source cell gets 2/3 (its footprint lost the padded tap
    and was renormalised), the second 7/12 and the last of an even-sized source 1/4 (it lies in one
    footprint only). ``uniform`` (1, 1, 1) over-weights the odd cells that two footprints share and
    paints a checkerboard on the rollout.
    """
    (hs, ws), (hd, wd) = src, dst
    return np.kron(
        _pool_axis(hd, hs, kernel, stride, padding, weights), _pool_axis(wd, ws, kernel, stride, padding, weights)
    )


def _pool_left(v: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """``v @ pooling_matrix(src, dst)`` for rows v (k, Nd), computed separably: (k, Ns)."""
    ry, rx = _pool_axis(dst[0], src[0], 3, 2, 1, "tent"), _pool_axis(dst[1], src[1], 3, 2, 1, "tent")
    out = np.einsum("kij,ia,jb->kab", v.reshape(-1, dst[0], dst[1]), ry, rx, optimize=True)
    return out.reshape(v.shape[0], -1)


def block_operator(
    block: BlockAttention,
    head: Literal["mean", "max", "min"] = "mean",
    self_weight: float = 0.5,
    dtype: type = np.float64,
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """The composed token-mixing matrix C of one block, as a left-multiplication and its row sums.

    Returns ``(apply, rowsum)``: ``apply(v)`` computes ``v @ C`` for row vectors v (k, H*W) over the
    block's real feature cells; rowsum (H*W,) = ``C @ 1``. C is :func:`composed_query`'s M restricted
    to real pixels, with heads fused on the attention matrices first (A_dw and A_pw separately).
    ``dtype``: float64 (exact sums, tests) or float32 (half the memory traffic, interactive use).
    """
    geom = block.geometry
    t = int(geom.has_token)
    real = _pixel_mask(geom)  # (n, P)
    n, P = real.shape
    # pixel queries -> real pixel keys (token mass dropped), attention weighted 1 - self_weight ...
    dw = fuse_heads(block.dwa[:, :, t:, t:], head, axis=1).astype(dtype) * (
        (1.0 - self_weight) * real[:, None, :]
    ).astype(dtype)
    # ... plus the inner shortcut on the diagonal (lost where the position is padding)
    idx = np.arange(P)
    dw[:, idx, idx] += (self_weight * real).astype(dtype)
    if block.pwa is not None and t:
        pw = _with_self(fuse_heads(block.pwa, head, axis=0).astype(dtype), self_weight)  # (n, n)
    else:
        pw = np.eye(n, dtype=dtype)
    hp, wp = geom.height + geom.pad[0], geom.width + geom.pad[1]

    def windows(v: np.ndarray) -> np.ndarray:  # (k, H*W) -> (k, n, P)
        x = np.zeros((v.shape[0], hp, wp), dtype=dtype)
        x[:, : geom.height, : geom.width] = v.reshape(-1, geom.height, geom.width)
        return _untile_inverse(x, geom)

    def apply(v: np.ndarray) -> np.ndarray:
        w = np.einsum("kap,ab->kbp", windows(v), pw) * real[None]  # PWA reads only real pixels
        out = np.einsum("kbp,bpq->kbq", w, dw)
        return tile_windows(out, geom).reshape(v.shape[0], -1)

    z = dw.sum(axis=2)  # (n, P): mass each (window, position) query keeps on real keys
    rowsum = np.einsum("ab,bp->ap", pw, z * real)
    return apply, tile_windows(rowsum, geom).reshape(-1)


@dataclass(frozen=True)
class Rollout:
    """Result of :func:`rollout`.

    tokens: (H0, W0) weights on the first block's input cells (sum 1); heat: (Hi, Wi) in image
    coordinates; end: index of the last block used; cell: the query cell at that block (None: pooled).
    """

    tokens: np.ndarray
    heat: np.ndarray
    end: int
    cell: tuple[int, int] | None


def _propagate(
    blocks: Sequence[BlockAttention],
    v: np.ndarray,
    end: int,
    head: str,
    residual: float,
    self_weight: float,
    dtype: type = np.float64,
) -> np.ndarray:
    """Row vectors over block ``end``'s output cells -> over block 0's input cells: v @ R_end ... R_0."""
    for i in range(end, -1, -1):
        b = blocks[i]
        apply, rowsum = block_operator(b, head, self_weight, dtype)
        v = v.astype(dtype, copy=False)
        v = residual * v + (1.0 - residual) * apply(v / np.maximum(rowsum, 1e-12)[None])
        if i > 0 and blocks[i - 1].stage != b.stage:
            prev = blocks[i - 1].geometry
            if b.stage - blocks[i - 1].stage != 1:
                raise ValueError("rollout needs consecutive stages (no stage may be left out)")
            v = _pool_left(v, (prev.height, prev.width), (b.geometry.height, b.geometry.width))
    return v


def rollout(
    blocks: Sequence[BlockAttention],
    *,
    point: tuple[float, float] | None = None,
    end: int | None = None,
    head: Literal["mean", "max", "min"] = "mean",
    residual: float = 0.5,
    self_weight: float = 0.5,
    image_size: tuple[int, int] | None = None,
    dtype: type = np.float64,
) -> Rollout:
    """Attention rollout (Abnar & Zuidema 2020) for SepViT, which has no CLS token.

    Definition. For block k with composed token mixing C_k (:func:`block_operator`: DWA then PWA with
    both inner shortcuts weighted ``self_weight``; token and padding mass dropped), rows renormalised
    to Ĉ_k = diag(C_k 1)^-1 C_k, the block's outer residual (``x + attn(x)``; the MLP mixes no tokens)
    gives R_k = residual * I + (1 - residual) * Ĉ_k. Heads are fused on each attention matrix
    (``mean`` / ``max`` / ``min`` over heads of A_dw and A_pw) before composing. Between stages the
    patch embedding (3x3 conv, stride 2, padding 1) is the pooling matrix P_s (:func:`pooling_matrix`):
    each coarse cell draws from its 3x3 footprint with tent weights (1/2, 1, 1/2 per axis, which cover
    every fine cell equally away from the map's edges: per axis, the first fine cell weighs 4/3 of an
    interior one, the last of an even-sized map 1/2; see :func:`pooling_matrix`). The position conv
    (PEG) is taken as identity. The chain, from the output of block ``end`` back to the first block's input, is

        R = R_end · ... · P_s · R_k · ... · R_0    (rows: block ``end``'s cells, cols: block 0's cells)

    Every factor is row-stochastic, so every row of R sums to 1. The query row is the mean of all rows
    (the classifier mean-pools the last tokens; ``point=None``) or the row of the cell holding
    ``point`` at block ``end``'s resolution. Stage-1 cells map to pixels like every other map (4x4
    blocks, nearest).
    """
    if not blocks:
        raise ValueError("rollout needs at least one block")
    end = len(blocks) - 1 if end is None else int(end)
    if not (0 <= end < len(blocks)):
        raise ValueError(f"end block {end} out of range 0..{len(blocks) - 1}")
    if not (0.0 <= residual <= 1.0):
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    g_end, g0 = blocks[end].geometry, blocks[0].geometry
    size = _image_size(g0, image_size)
    n_end = g_end.height * g_end.width
    if point is None:
        v, cell = np.full((1, n_end), 1.0 / n_end), None
    else:
        cell = cell_at(g_end, point, size)
        v = np.zeros((1, n_end))
        v[0, cell[0] * g_end.width + cell[1]] = 1.0
    tokens = _propagate(blocks, v, end, head, residual, self_weight, dtype)[0].reshape(g0.height, g0.width)
    return Rollout(tokens, to_image(tokens.astype(np.float32), g0.stride, size), end, cell)


def rollout_matrix(
    blocks: Sequence[BlockAttention],
    *,
    end: int | None = None,
    head: Literal["mean", "max", "min"] = "mean",
    residual: float = 0.5,
    self_weight: float = 0.5,
) -> np.ndarray:
    """The full rollout matrix R (N_end, N_0) of :func:`rollout` (for small maps and tests)."""
    end = len(blocks) - 1 if end is None else int(end)
    g = blocks[end].geometry
    return _propagate(blocks, np.eye(g.height * g.width), end, head, residual, self_weight)
