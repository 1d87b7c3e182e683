"""One entry point: a photo in, every attention view out, from ONE forward pass.

    from sepvit_viz.pipeline import analyze, load_model, ViewSettings
    model, warning = load_model("sepvit_lite")          # warning: None, or why weights are random
    result = analyze(model, pil_image, size=224)        # one forward under capture + default maps
    result.top5                                         # [Prediction(index, name, prob), ...]
    views = result.render_views(ViewSettings(block=3, head="max", cmap="magma", point=(120, 80)))
    views["tokens"], views["pixel"], views["pwa_matrix"], views["pwa_map"], views["composed"], views["rollout"]

``analyze`` runs the model once under :class:`~sepvit_viz.capture.AttentionCapture` and returns an
:class:`Analysis` holding the captured attention, the image exactly as the model saw it and the top-5
classes. Every map of :mod:`sepvit_viz.maps` is then a cheap numpy computation on the stored
attention, memoised per (view, block, head, cell, ...), so changing the head, block, colormap,
opacity or clicked point re-renders without touching the model. An Analysis is independent of the
model (keep one per user/session, e.g. in ``gr.State``); ``analyze`` is safe to call from several
threads on one shared model.

Conventions: blocks are indexed 0..len(records)-1 in model order (``Analysis.block_labels()``
names them); points are ``(row, col)`` = ``(y, x)`` pixels of ``Analysis.image`` (the model's input:
gradio's ``SelectData.index`` is ``(x, y)``, swap it); ``head`` is a head index or
``"mean" | "max" | "min"``. Views for a block that lacks them (PWA of a global block, window tokens
of a global block) fall back sensibly: the token view shows the attention each pixel receives, the
PWA views a short notice picture.

Pictures (``render_*``, ``render_views``) are RGB uint8 arrays from the fast tier of
:mod:`sepvit_viz.render`; ``figure_*`` methods give the annotated matplotlib versions (slower).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from . import maps, render
from .capture import AttentionCapture, AttentionRecord
from .preprocess import CROP_PCT, INTERPOLATION, resize_center_crop, to_tensor

__all__ = [
    "MAX_SIDE",
    "MIN_SIDE",
    "VIEWS",
    "Analysis",
    "Prediction",
    "ViewSettings",
    "analyze",
    "class_names_for",
    "input_size",
    "load_model",
    "prepare_image",
]

#: Input sides accepted by :func:`analyze` (pixels). Above 512 the global blocks' L x L attention
#: grows past ~10^7 entries per head, too much memory for a shared CPU Space.
MIN_SIDE, MAX_SIDE = 32, 512
#: The views of :meth:`Analysis.render_views`, in display order.
VIEWS = ("tokens", "pixel", "pwa_matrix", "pwa_map", "composed", "rollout")


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    prob: float


@dataclass(frozen=True)
class ViewSettings:
    """Everything a re-render may change. ``point=None`` means the image centre."""

    block: int = 0
    head: maps.HeadSelect = "mean"
    cmap: str = "inferno"
    alpha: float = 0.6
    point: tuple[int, int] | None = None
    gsa_subwindows: bool = True
    self_weight: float = 0.5
    residual: float = 0.5
    rollout_query: Literal["pooled", "point"] = "pooled"

    def with_(self, **changes: Any) -> ViewSettings:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- inputs
def input_size(size: int | Sequence[int]) -> tuple[int, int]:
    hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(hw) != 2 or not all(MIN_SIDE <= s <= MAX_SIDE for s in hw):
        raise ValueError(f"input size must be one int or (height, width), each in {MIN_SIDE}..{MAX_SIDE}; got {size}")
    return hw  # type: ignore[return-value]


def prepare_image(image: Image.Image, size: int | Sequence[int] = 224, crop_pct: float = CROP_PCT) -> Image.Image:
    """Any PIL image -> RGB ``(height, width)`` crop the model sees (evaluation transform).

    A square size is exactly :func:`sepvit_viz.preprocess.resize_center_crop`; for (H, W) the image is
    scaled (bicubic) to cover ``(H, W) / crop_pct`` keeping its aspect, then centre-cropped.
    """
    h, w = input_size(size)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # flatten transparency onto white instead of the black that convert("RGB") gives
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(bg, rgba)
    image = image.convert("RGB")
    if h == w:
        return resize_center_crop(image, h, crop_pct)
    iw, ih = image.size
    scale = max(h / ih, w / iw) / crop_pct
    nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
    image = image.resize((nw, nh), INTERPOLATION)
    left, top = (nw - w) // 2, (nh - h) // 2
    return image.crop((left, top, left + w, top + h))


def class_names_for(num_classes: int) -> list[str]:
    """ImageNet names for a 1000-way head (``assets/imagenet_classes.tsv``), else ``class N``."""
    if num_classes == 1000:
        try:
            from .data import imagenet_class_names

            names = imagenet_class_names()
            if len(names) == 1000:
                return names
        except (ImportError, OSError, ValueError):
            pass
    return [f"class {i}" for i in range(num_classes)]


def load_model(name: str = "sepvit_lite", checkpoint: str | None = None) -> tuple[nn.Module, str | None]:
    """An eval-mode model and a warning (None when trained weights were loaded).

    ``checkpoint``: a file to load. A project checkpoint (safetensors with config metadata) rebuilds
    its own architecture; any other file is loaded strictly into variant ``name``. Without it, the
    project's default checkpoint for ``name``; when there is none the model keeps RANDOM weights and
    the warning says so (every view still works, but the maps mean nothing).
    """
    import sepvit_viz
    from sepvit_viz.weights import CheckpointError, load_checkpoint

    if checkpoint:
        try:
            return load_checkpoint(checkpoint), None
        except CheckpointError:
            return sepvit_viz.create_model(name, checkpoint_path=checkpoint).eval(), None
    try:
        return sepvit_viz.create_model(name, pretrained=True).eval(), None
    except (ValueError, FileNotFoundError, OSError) as e:
        msg = f"no trained weights for {name} ({e}); using RANDOM weights: predictions and maps are meaningless"
        warnings.warn(msg, stacklevel=2)
        return sepvit_viz.create_model(name).eval(), msg


# ----------------------------------------------------------------------------- the analysis
class _Memo:
    """A small LRU memo: maps cost little, but a session clicking around should not grow forever."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()  # two handlers of one session may draw at once

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
            value = make()
            self._d[key] = value
            if len(self._d) > self.maxsize:
                self._d.popitem(last=False)
            return value

    def __len__(self) -> int:
        return len(self._d)


def _notice(text: str, size: tuple[int, int]) -> np.ndarray:
    img = Image.new("RGB", (size[1], size[0]), (245, 245, 245))
    ImageDraw.Draw(img).multiline_text(
        (size[1] // 2, size[0] // 2), text, fill=(90, 90, 90), anchor="mm", align="center", font=render._font(11)
    )
    return np.asarray(img)


@dataclass
class Analysis:
    """Everything computed from one forward pass (see the module docstring for conventions).

    Attributes:
        image: (H, W, 3) uint8, the crop the model saw; maps and points live in its pixels.
        records: one :class:`AttentionRecord` per block (batch of one).
        logits: (num_classes,) float32. probs: softmax of logits.
        top5: the five most likely classes.
        model_name: the config name of the model.
        timings: seconds spent in ``forward`` (under capture) and ``maps`` (precompute).
    """

    image: np.ndarray
    records: list[AttentionRecord]
    logits: np.ndarray
    top5: list[Prediction]
    model_name: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    _memo: _Memo = field(default_factory=_Memo, repr=False)

    def __post_init__(self) -> None:
        self.blocks = [r.image(0) for r in self.records]

    # --------------------------------------------------------------- basics
    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max()
        e = np.exp(z)
        return e / e.sum()

    def block_labels(self) -> list[str]:
        return [r.label for r in self.records]

    def record(self, block: int) -> AttentionRecord:
        if not (0 <= block < len(self.records)):
            raise ValueError(f"block {block} out of range 0..{len(self.records) - 1}")
        return self.records[block]

    def _block(self, block: int) -> maps.BlockAttention:
        self.record(block)  # validates the index
        return self.blocks[block]

    def head_for(self, block: int, head: maps.HeadSelect) -> maps.HeadSelect:
        """``head`` if block has it, else ``"mean"`` (stages have different head counts; pictures say
        which head they show, so a fallback is visible)."""
        if isinstance(head, str) or 0 <= int(head) < self.record(block).num_heads:
            return head
        return "mean"

    def _settings(self, settings: ViewSettings | None) -> ViewSettings:
        s = settings or ViewSettings()
        return s.with_(head=self.head_for(s.block, s.head))

    def centre(self) -> tuple[int, int]:
        return self.size[0] // 2, self.size[1] // 2

    def _point(self, point: tuple[int, int] | None) -> tuple[int, int]:
        return self.centre() if point is None else (int(point[0]), int(point[1]))

    def _cell(self, block: int, point: tuple[int, int] | None) -> tuple[int, int]:
        return maps.cell_at(self.record(block).geometry, self._point(point), self.size)

    def _cell_point(self, block: int, cell: tuple[int, int]) -> tuple[int, int]:
        s = self.record(block).geometry.stride
        return cell[0] * s, cell[1] * s

    def dssa_gsa_pairs(self) -> list[tuple[int, int]]:
        return maps.dssa_gsa_pairs([(r.stage, r.kind) for r in self.records])

    def grid_lines(self, block: int, subwindows: bool = True) -> tuple[render.Lines, render.Lines | None]:
        """(window/group borders, GSA 7x7 sub-window borders or None) in image pixels."""
        r = self.record(block)
        g = r.geometry
        if not g.has_token:
            return (np.array([], int), np.array([], int)), None
        sub = None
        if subwindows and r.kind == "gsa" and g.window[0] % 2 == 0:
            sub = maps.grid_lines(g, self.size, subdivide=2)
        return maps.grid_lines(g, self.size), sub

    # --------------------------------------------------------------- maps (memoised)
    def token_map(self, block: int, head: maps.HeadSelect = "mean") -> np.ndarray:
        """(H, W) window-token attention over each window; received attention for global blocks."""
        b = self._block(block)

        def make() -> np.ndarray:
            if b.geometry.has_token:
                return maps.token_map(b.dwa, b.geometry, head, self.size).astype(np.float32)
            return maps.received_map(b.dwa, b.geometry, head, self.size).astype(np.float32)

        return self._memo.get(("token", block, head), make)

    def token_self(self, block: int, head: maps.HeadSelect = "mean") -> np.ndarray | None:
        """(n,) each window token's attention to itself, None for global blocks."""
        b = self._block(block)
        if not b.geometry.has_token:
            return None
        return self._memo.get(
            ("token_self", block, head), lambda: maps.token_self_map(b.dwa, b.geometry, head, self.size)[0]
        )

    def pixel_query(
        self, block: int, point: tuple[int, int] | None = None, head: maps.HeadSelect = "mean"
    ) -> maps.PixelQuery:
        b, cell = self._block(block), self._cell(block, point)
        return self._memo.get(
            ("pixel", block, head, cell),
            lambda: maps.pixel_query(b.dwa, b.geometry, self._cell_point(block, cell), head, self.size),
        )

    def pwa_matrix(self, block: int, head: maps.HeadSelect = "mean") -> np.ndarray | None:
        b = self._block(block)
        if b.pwa is None:
            return None
        return self._memo.get(("pwa", block, head), lambda: maps.pwa_matrix(b.pwa, head))

    def window_at(self, block: int, point: tuple[int, int] | None = None) -> int:
        return maps.window_at(self.record(block).geometry, self._point(point), self.size)

    def pwa_map(
        self, block: int, point: tuple[int, int] | None = None, head: maps.HeadSelect = "mean"
    ) -> np.ndarray | None:
        """(H, W) the PWA row of the window holding ``point``, None for global blocks."""
        b = self._block(block)
        if b.pwa is None:
            return None
        w = self.window_at(block, point)
        return self._memo.get(
            ("pwa_map", block, head, w),
            lambda: maps.pwa_row_map(b.pwa, b.geometry, w, head, self.size).astype(np.float32),
        )

    def composed(
        self, block: int, point: tuple[int, int] | None = None, head: maps.HeadSelect = "mean", self_weight: float = 0.5
    ) -> maps.ComposedQuery:
        b, cell = self._block(block), self._cell(block, point)
        return self._memo.get(
            ("composed", block, head, cell, self_weight),
            lambda: maps.composed_query(
                b.dwa, b.pwa, b.geometry, self._cell_point(block, cell), head, self_weight, self.size
            ),
        )

    def rollout(
        self,
        point: tuple[int, int] | None = None,
        *,
        pooled: bool = True,
        end: int | None = None,
        head: Literal["mean", "max", "min"] = "mean",
        residual: float = 0.5,
        self_weight: float = 0.5,
    ) -> maps.Rollout:
        """Rollout up to block ``end`` (default: the last), pooled over its cells or from ``point``."""
        end = len(self.blocks) - 1 if end is None else end
        head = head if isinstance(head, str) else "mean"  # a head index means nothing across stages
        cell = None if pooled else self._cell(end, point)
        q = None if cell is None else self._cell_point(end, cell)
        return self._memo.get(
            ("rollout", end, head, cell, residual, self_weight),
            lambda: maps.rollout(
                self.blocks,
                point=q,
                end=end,
                head=head,
                residual=residual,
                self_weight=self_weight,
                image_size=self.size,
                dtype=np.float32,  # interactive use: sums stay 1 within ~1e-6
            ),
        )

    def head_maps(self, block: int, view: str, point: tuple[int, int] | None = None) -> list[np.ndarray]:
        """One map per head for ``view`` in tokens | pixel | pwa_map | composed."""
        heads = self.record(block).num_heads
        get: dict[str, Callable[[int], np.ndarray | None]] = {
            "tokens": lambda h: self.token_map(block, h),
            "pixel": lambda h: self.pixel_query(block, point, h).heat,
            "pwa_map": lambda h: self.pwa_map(block, point, h),
            "composed": lambda h: self.composed(block, point, h).heat,
        }
        if view not in get:
            raise ValueError(f"per-head view must be one of {sorted(get)}, got {view!r}")
        out = [get[view](h) for h in range(heads)]
        if any(m is None for m in out):
            raise ValueError(f"{self.record(block).label} has no {view} view")
        return out  # type: ignore[return-value]

    def precompute(self, settings: ViewSettings | None = None) -> None:
        """Every map for every block at ``settings`` (default head, point), plus the rollout."""
        s = self._settings(settings)
        for i in range(len(self.blocks)):
            self.token_map(i, s.head)
            self.token_self(i, s.head)
            self.pixel_query(i, s.point, s.head)
            self.pwa_matrix(i, s.head)
            self.pwa_map(i, s.point, s.head)
            self.composed(i, s.point, s.head, s.self_weight)
        self.rollout(s.point, pooled=s.rollout_query == "pooled", residual=s.residual, self_weight=s.self_weight)

    # --------------------------------------------------------------- pictures (fast tier)
    def _head_name(self, head: maps.HeadSelect) -> str:
        return f"head {head}" if isinstance(head, int) else f"{head} of heads"

    def render_tokens(self, s: ViewSettings) -> np.ndarray:
        s = self._settings(s)
        r = self.record(s.block)
        grid, sub = self.grid_lines(s.block, s.gsa_subwindows)
        what = "window tokens" if r.has_token else "attention received"
        return render.compose_view(
            self.image,
            self.token_map(s.block, s.head),
            cmap=s.cmap,
            alpha=s.alpha,
            grid=grid,
            subgrid=sub,
            title=f"{what} · {self._head_name(s.head)}",
        )

    def render_pixel(self, s: ViewSettings) -> np.ndarray:
        s = self._settings(s)
        q = self.pixel_query(s.block, s.point, s.head)
        grid, sub = self.grid_lines(s.block, s.gsa_subwindows)
        tok = "" if q.token_weight is None else f" · token {q.token_weight:.3f}"
        return render.compose_view(
            self.image,
            q.heat,
            cmap=s.cmap,
            alpha=s.alpha,
            grid=grid,
            subgrid=sub,
            box=q.box,
            marker=self._point(s.point),
            title=f"pixel query{tok}",
        )

    def render_pwa_matrix(self, s: ViewSettings) -> np.ndarray:
        s = self._settings(s)
        m = self.pwa_matrix(s.block, s.head)
        if m is None:
            return _notice("global attention block:\nno windows, no PWA", self.size)
        w = self.window_at(s.block, s.point)
        unit = "group" if self.record(s.block).kind == "gsa" else "window"
        return render.matrix_view(
            m,
            cmap=s.cmap,
            size=self.size[0],
            highlight=w,
            title=f"PWA {m.shape[0]}x{m.shape[0]} · {self._head_name(s.head)}",
            row_label=f"query {unit}",
            col_label=f"key {unit}",
        )

    def render_pwa_map(self, s: ViewSettings) -> np.ndarray:
        s = self._settings(s)
        m = self.pwa_map(s.block, s.point, s.head)
        if m is None:
            return _notice("global attention block:\nno windows, no PWA", self.size)
        w = self.window_at(s.block, s.point)
        grid, sub = self.grid_lines(s.block, s.gsa_subwindows)
        box = maps.window_box(self.record(s.block).geometry, w, self.size)
        return render.compose_view(
            self.image,
            m,
            cmap=s.cmap,
            alpha=s.alpha,
            grid=grid,
            subgrid=sub,
            box=box,
            title=f"PWA row of window {w} · {self._head_name(s.head)}",
        )

    def render_composed(self, s: ViewSettings) -> np.ndarray:
        s = self._settings(s)
        c = self.composed(s.block, s.point, s.head, s.self_weight)
        grid, sub = self.grid_lines(s.block, s.gsa_subwindows)
        return render.compose_view(
            self.image,
            c.heat,
            cmap=s.cmap,
            alpha=s.alpha,
            grid=grid,
            subgrid=sub,
            marker=self._point(s.point),
            title=f"whole block · {self._head_name(s.head)}",
        )

    def render_rollout(self, s: ViewSettings) -> np.ndarray:
        s = self._settings(s)
        pooled = s.rollout_query == "pooled"
        head = s.head if isinstance(s.head, str) else "mean"
        ro = self.rollout(s.point, pooled=pooled, head=head, residual=s.residual, self_weight=s.self_weight)
        what = "pooled" if pooled else "from point"
        return render.compose_view(
            self.image,
            ro.heat,
            cmap=s.cmap,
            alpha=s.alpha,
            marker=None if pooled else self._point(s.point),
            title=f"rollout · {what}",
        )

    def render_views(self, settings: ViewSettings | None = None, views: Sequence[str] = VIEWS) -> dict[str, np.ndarray]:
        """The named fast-tier pictures (keys from :data:`VIEWS`) for one setting."""
        s = self._settings(settings)
        fns = {
            "tokens": self.render_tokens,
            "pixel": self.render_pixel,
            "pwa_matrix": self.render_pwa_matrix,
            "pwa_map": self.render_pwa_map,
            "composed": self.render_composed,
            "rollout": self.render_rollout,
        }
        unknown = [v for v in views if v not in fns]
        if unknown:
            raise ValueError(f"unknown views {unknown}; choose from {VIEWS}")
        return {v: fns[v](s) for v in views}

    def render_pair(
        self, pair: tuple[int, int], view: str = "tokens", settings: ViewSettings | None = None
    ) -> np.ndarray:
        """Two blocks' ``view`` side by side (e.g. a DSSA block and the GSA block after it)."""
        s = self._settings(settings)
        a = self.render_views(s.with_(block=pair[0]), [view])[view]
        b = self.render_views(s.with_(block=pair[1]), [view])[view]
        h = max(a.shape[0], b.shape[0])
        pad = lambda x: np.pad(x, ((0, h - x.shape[0]), (0, 0), (0, 0)), constant_values=255)  # noqa: E731
        return np.concatenate([pad(a), np.full((h, 8, 3), 255, np.uint8), pad(b)], axis=1)

    # --------------------------------------------------------------- pictures (figure tier)
    def figure_gallery(self, view: str, settings: ViewSettings | None = None) -> np.ndarray:
        s = self._settings(settings)
        grid, _ = self.grid_lines(s.block, False)
        return render.head_gallery(
            self.image,
            self.head_maps(s.block, view, s.point),
            cmap=s.cmap,
            alpha=s.alpha,
            grid=grid,
            suptitle=f"{self.record(s.block).label} · {view} per head",
        )

    def figure_pwa(self, settings: ViewSettings | None = None) -> np.ndarray | None:
        s = self._settings(settings)
        m = self.pwa_matrix(s.block, s.head)
        if m is None:
            return None
        r = self.record(s.block)
        return render.pwa_matrix_figure(
            m,
            cmap=s.cmap,
            highlight=self.window_at(s.block, s.point),
            grid=r.grid,
            title=f"{r.label}\nPWA · {self._head_name(s.head)}",
        )

    def figure_overlay(self, view: str, settings: ViewSettings | None = None) -> np.ndarray:
        """Annotated figure of one map view (tokens | pixel | pwa_map | composed | rollout)."""
        s = self._settings(settings)
        grid, sub = self.grid_lines(s.block, s.gsa_subwindows)
        box = None
        if view == "tokens":
            heat = self.token_map(s.block, s.head)
        elif view == "pixel":
            q = self.pixel_query(s.block, s.point, s.head)
            heat, box = q.heat, q.box
        elif view == "pwa_map":
            heat = self.pwa_map(s.block, s.point, s.head)
            if heat is None:
                raise ValueError(f"{self.record(s.block).label} has no PWA")
        elif view == "composed":
            heat = self.composed(s.block, s.point, s.head, s.self_weight).heat
        elif view == "rollout":
            head = s.head if isinstance(s.head, str) else "mean"
            heat = self.rollout(s.point, pooled=s.rollout_query == "pooled", head=head, residual=s.residual).heat
            grid, sub = None, None
        else:
            raise ValueError(f"unknown view {view!r}")
        title = (
            "rollout over all blocks"
            if view == "rollout"
            else f"{self.record(s.block).label}\n{view} · {self._head_name(s.head)}"
        )
        return render.overlay_figure(
            self.image, heat, title=title, cmap=s.cmap, alpha=s.alpha, grid=grid, subgrid=sub, box=box
        )

    def figure_side_by_side(
        self, pair: tuple[int, int], view: str = "tokens", settings: ViewSettings | None = None
    ) -> np.ndarray:
        s = self._settings(settings)
        panels = []
        for blk in pair:
            t = s.with_(block=blk)
            heat = {
                "tokens": lambda t=t: self.token_map(t.block, t.head),
                "pixel": lambda t=t: self.pixel_query(t.block, t.point, t.head).heat,
                "composed": lambda t=t: self.composed(t.block, t.point, t.head, t.self_weight).heat,
            }[view]()
            grid, sub = self.grid_lines(blk, s.gsa_subwindows)
            panels.append((heat, self.record(blk).label, grid, sub))
        return render.side_by_side_figure(
            self.image, panels, cmap=s.cmap, alpha=s.alpha, suptitle=f"{view} · {self._head_name(s.head)}"
        )

    # --------------------------------------------------------------- export
    def arrays(self, settings: ViewSettings | None = None) -> dict[str, np.ndarray]:
        """Raw arrays: image, logits, every block's DWA/PWA, and the maps of ``settings``."""
        s = self._settings(settings)
        out: dict[str, np.ndarray] = {"image": self.image, "logits": self.logits}
        for r in self.records:
            out[f"{r.name}.dwa"] = r.dwa[0]
            if r.pwa is not None:
                out[f"{r.name}.pwa"] = r.pwa[0]
        name = self.records[s.block].name
        out[f"{name}.token_map"] = self.token_map(s.block, s.head)
        out[f"{name}.pixel_query"] = self.pixel_query(s.block, s.point, s.head).heat
        out[f"{name}.composed"] = self.composed(s.block, s.point, s.head, s.self_weight).heat
        pm = self.pwa_map(s.block, s.point, s.head)
        if pm is not None:
            out[f"{name}.pwa_map"] = pm
        out["rollout"] = self.rollout(s.point, residual=s.residual, self_weight=s.self_weight).heat
        return out

    def export_npz(self, path: str | None = None, settings: ViewSettings | None = None) -> bytes | None:
        """Save :meth:`arrays` as a compressed .npz (bytes when ``path`` is None)."""
        return render.export_npz(self.arrays(settings), path)


def analyze(
    model: nn.Module,
    image: Image.Image,
    *,
    size: int | Sequence[int] = 224,
    class_names: Sequence[str] | None = None,
    precompute: bool = True,
    settings: ViewSettings | None = None,
) -> Analysis:
    """Run ONE forward of ``model`` on ``image`` under attention capture and wrap the result.

    image: any PIL image (any mode; transparency is flattened on white).
    size: an int (square centre crop, the evaluation transform) or (height, width), each side
        within ``MIN_SIDE..MAX_SIDE``.
    class_names: names per class index (default: ImageNet names for 1000 classes, else ``class N``).
    precompute: compute every map for every block at ``settings`` now, so the first views are instant.
    """
    crop = prepare_image(image, size)
    x = to_tensor(crop)
    t0 = time.perf_counter()
    with torch.inference_mode(), AttentionCapture(model) as cap:
        logits = model(x)[0].float().numpy()
    t1 = time.perf_counter()
    names = list(class_names) if class_names is not None else class_names_for(logits.shape[0])
    z = np.exp(logits - logits.max())
    probs = z / z.sum()
    top = np.argsort(-probs)[:5]
    config = getattr(model, "config", None)
    result = Analysis(
        image=np.asarray(crop, dtype=np.uint8).copy(),
        records=cap.records,
        logits=logits,
        top5=[Prediction(int(i), names[i] if i < len(names) else f"class {i}", float(probs[i])) for i in top],
        model_name=getattr(config, "name", type(model).__name__),
    )
    if precompute:
        result.precompute(settings)
    result.timings.update(forward=t1 - t0, maps=time.perf_counter() - t1)
    return result
