"""Photo in, :class:`Analysis` out: ONE forward under capture, then memoised maps (no drawing).

    from sepvit_viz.viz.pipeline import analyze, load_model
    from sepvit_viz.viz import views
    model, warning = load_model("sepvit_lite")          # warning: None, or why weights are random
    result = analyze(model, pil_image, size=224)        # one forward under capture
    result.top5                                         # [Prediction(index, name, prob), ...]
    view = views.tokens(result, views.ViewSettings(block=3, head="max"))  # View: .picture (Hp, Wp, 3), .caption

``analyze`` runs the model once under :class:`~sepvit_viz.viz.capture.AttentionCapture` and returns an
:class:`Analysis` holding the captured attention, the image exactly as the model saw it and the top-5
classes. Every map of :mod:`sepvit_viz.viz.maps` is then a cheap numpy computation on the stored
attention, memoised under a typed key that holds every argument the map depends on (block, head,
feature cell or window index, shortcut weights), so changing a setting never shows a stale map.
An Analysis is independent of the model (keep one per user/session); ``analyze`` is safe to call from
several threads on one shared model. Pictures are drawn by :mod:`sepvit_viz.viz.views`, never here.

Conventions: blocks are indexed 0..len(records)-1 in model order (``Analysis.block_index`` also
takes a name); points are ``(row, col)`` = ``(y, x)`` pixels of ``Analysis.image`` (the model's
input); windows are raster indices into a block's window grid (``Analysis.window_at`` turns a point
into one); ``head`` is a head index or ``"mean" | "max" | "min"``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from sepvit_viz.imageio import to_rgb, upright
from sepvit_viz.limits import INPUT_MAX_SIDE as MAX_SIDE
from sepvit_viz.limits import INPUT_MIN_SIDE as MIN_SIDE
from sepvit_viz.limits import MAX_RESOLUTION, MIN_RESOLUTION, RESOLUTION_MULTIPLE
from sepvit_viz.preprocess import CROP_PCT, INTERPOLATION, resize_center_crop, to_tensor
from sepvit_viz.viz import maps, render
from sepvit_viz.viz.capture import AttentionCapture, AttentionRecord

__all__ = [
    "FITS",
    "MAX_SIDE",
    "MIN_SIDE",
    "Analysis",
    "MapKey",
    "Prediction",
    "analyze",
    "array_nbytes",
    "class_names_for",
    "fit_size",
    "input_size",
    "load_model",
    "prepare_image",
]


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    prob: float


@dataclass(frozen=True)
class MapKey:
    """The memo key of one map: every argument the map depends on, typed (no string parsing).

    kind: ``"token" | "token_self" | "pixel" | "pwa" | "pwa_row" | "composed" | "rollout"``;
    block: block index (rollout: the end block); head: head index or fusion; where: the feature cell
    (pixel, composed, point rollout), the window index (pwa_row) or None; weights: the shortcut and
    residual weights the map uses (composed, rollout), else ().
    """

    kind: str
    block: int
    head: maps.HeadSelect
    where: tuple[int, int] | int | None = None
    weights: tuple[float, ...] = ()


# ----------------------------------------------------------------------------- inputs
def input_size(size: int | Sequence[int]) -> tuple[int, int]:
    """An int or (H, W) -> the model input (H, W), each in :data:`MIN_SIDE`..:data:`MAX_SIDE`;
    ``ValueError`` otherwise."""
    hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(hw) != 2 or not all(MIN_SIDE <= s <= MAX_SIDE for s in hw):
        raise ValueError(f"input size must be one int or (height, width), each in {MIN_SIDE}..{MAX_SIDE}; got {size}")
    return hw  # type: ignore[return-value]


#: How a photo becomes the model input at a resolution N: ``"crop"``, the centre N x N square;
#: ``"aspect"``, an input of the photo's own shape (:func:`fit_size`).
Fit = Literal["aspect", "crop"]
FITS: tuple[str, ...] = ("aspect", "crop")


def fit_size(
    photo_hw: Sequence[int],
    resolution: int,
    fit: str = "crop",
    *,
    max_side: int = MAX_RESOLUTION,
    min_side: int = MIN_RESOLUTION,
    multiple: int = RESOLUTION_MULTIPLE,
) -> tuple[int, int]:
    """The model input (H, W) for a photo of ``photo_hw`` = (height, width) pixels at ``resolution``.

    ``fit="crop"``: (resolution, resolution). ``fit="aspect"``: the SHORTER side at ``resolution`` (so
    objects keep the scale of the square crop the model was trained on) and the longer side
    ``resolution`` x the photo's aspect ratio, rounded to the nearest multiple of ``multiple`` (32:
    every stage's feature map stays whole). The longer side is at most ``max(resolution, max_side)``
    (448 by default, the app's largest resolution); a photo more elongated than that allows gets the
    cap on its longer side and its shorter side shrinks with the aspect (rounded, at least
    ``min_side``, 64: the centre crop then takes the rest). A square photo, or one within rounding of
    square, gets (resolution, resolution).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    resolution = int(resolution)
    if fit == "crop":
        return resolution, resolution
    ph, pw = (int(v) for v in photo_hw)
    if ph <= 0 or pw <= 0:
        raise ValueError(f"photo size must be positive, got {tuple(photo_hw)}")
    ratio = max(ph, pw) / min(ph, pw)
    cap = max(resolution, int(max_side))
    short, long = float(resolution), resolution * ratio
    if long > cap:
        long, short = float(cap), cap / ratio
        short = min(resolution, max(min_side, round(short / multiple) * multiple))
    short_i = int(short)
    long_i = max(short_i, round(long / multiple) * multiple)
    if long_i > cap:  # the cap need not be a multiple: round down under it
        long_i = max(short_i, cap // multiple * multiple)
    return (long_i, short_i) if ph > pw else (short_i, long_i)


def prepare_image(
    image: Image.Image, size: int | Sequence[int] = 224, crop_pct: float = CROP_PCT, fit: str = "crop"
) -> Image.Image:
    """Any PIL image -> RGB ``(height, width)`` crop the model sees (evaluation transform), turned
    upright from its EXIF orientation first (as :func:`sepvit_viz.imageio.load_image` does).

    A square size is exactly :func:`sepvit_viz.preprocess.resize_center_crop`; for (H, W) the image is
    scaled (bicubic) to cover ``(H, W) / crop_pct`` keeping its aspect, then centre-cropped. An int
    ``size`` with ``fit="aspect"`` first becomes :func:`fit_size` of the photo (its own shape, so the
    centre crop takes only the ``crop_pct`` border and what rounding leaves over); an (H, W) ``size``
    is used as given.

    Raises ``TypeError`` for anything but a PIL image (a path, array or ``None``).
    """
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"expected a PIL image, got {type(image).__name__}: "
            "sepvit_viz.imageio.load_image(path_or_array) opens or converts one"
        )
    image = upright(image)  # a photo opened with Image.open still carries its EXIF orientation
    if isinstance(size, (int, np.integer)):
        size = fit_size((image.height, image.width), int(size), fit)
    h, w = input_size(size)
    image = to_rgb(image)  # transparency flattened on white (sepvit_viz.imageio's rules)
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
            from sepvit_viz.training.data import imagenet_class_names

            names = imagenet_class_names()
            if len(names) == 1000:
                return names
        except (ImportError, OSError, ValueError):
            pass
    return [f"class {i}" for i in range(num_classes)]


def load_model(name: str = "sepvit_lite", checkpoint: str | None = None) -> tuple[nn.Module, str | None]:
    """An eval-mode model and a warning (None when trained weights were loaded).

    ``checkpoint``: a file to load (:func:`sepvit_viz.model.weights.load_checkpoint_file`). A project
    checkpoint (safetensors with config metadata) rebuilds its own architecture, whatever ``name``
    says (``model.config`` tells which); any other file is loaded strictly into variant ``name``.
    Without it (None), the project's default checkpoint for ``name``; when there is none the model
    keeps RANDOM weights and the warning says so (every view still works, but the maps mean nothing).

    Raises ``CheckpointError`` (a ``ValueError``) for a checkpoint that is empty (``""``), missing, a
    folder, or loads neither way (the message gives both reasons), and ``ValueError`` for an unknown
    ``name``.
    """
    import sepvit_viz
    from sepvit_viz.model.weights import load_checkpoint_file

    if checkpoint is not None:
        return load_checkpoint_file(checkpoint, name), None
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

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._d)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays memoised (arrays, and arrays inside tuples, lists or objects)."""
        with self._lock:
            return sum(array_nbytes(v) for v in self._d.values())

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


def array_nbytes(value: Any) -> int:
    """Bytes of the arrays a value holds, without copying any: an array, a PIL image (width x height x
    bands), arrays inside tuples or lists, or the array attributes of an object."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, (tuple, list)):
        return sum(array_nbytes(v) for v in value)
    return sum(int(v.nbytes) for v in getattr(value, "__dict__", {}).values() if isinstance(v, np.ndarray))


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

    Maps are memoised under a :class:`MapKey`; :meth:`fresh` gives a copy that shares the arrays
    but has its own memo (one per user of a cached forward).
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

    def fresh(self) -> Analysis:
        """A copy sharing the arrays, with an empty memo of its own."""
        return Analysis(self.image, self.records, self.logits, self.top5, self.model_name, dict(self.timings))

    # --------------------------------------------------------------- basics
    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max()
        e = np.exp(z)
        return e / e.sum()

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this analysis holds (image, logits, every block's attention; not the memo)."""
        n = self.image.nbytes + self.logits.nbytes
        return int(n + sum(r.dwa.nbytes + (r.pwa.nbytes if r.pwa is not None else 0) for r in self.records))

    @property
    def memo_nbytes(self) -> int:
        """Bytes of the maps memoised so far (not counted in :attr:`nbytes`)."""
        return self._memo.nbytes

    @property
    def memo_keys(self) -> list[MapKey]:
        """The keys of the maps memoised so far (oldest first)."""
        return self._memo.keys()

    def block_labels(self) -> list[str]:
        return [r.label for r in self.records]

    def block_index(self, block: int | str) -> int:
        """Index of a block given by index or module name (``"stages.1.blocks.0"``); ValueError if unknown."""
        if isinstance(block, str):
            for i, r in enumerate(self.records):
                if r.name == block:
                    return i
            raise ValueError(f"unknown block {block!r}; blocks are {', '.join(r.name for r in self.records)}")
        self.record(int(block))
        return int(block)

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

    def centre(self) -> tuple[int, int]:
        return self.size[0] // 2, self.size[1] // 2

    def _point(self, point: tuple[int, int] | None) -> tuple[int, int]:
        return self.centre() if point is None else (int(point[0]), int(point[1]))

    def cell_at(self, block: int, point: tuple[int, int] | None = None) -> tuple[int, int]:
        """Feature cell (row, col) of ``block`` under image point (y, x) (None: the centre)."""
        return maps.cell_at(self.record(block).geometry, self._point(point), self.size)

    def _cell_point(self, block: int, cell: tuple[int, int]) -> tuple[int, int]:
        s = self.record(block).geometry.stride
        return cell[0] * s, cell[1] * s

    def window_at(self, block: int, point: tuple[int, int] | None = None) -> int:
        """Raster index of the window (or group) of ``block`` holding image point (y, x) (None: the centre)."""
        return maps.window_at(self.record(block).geometry, self._point(point), self.size)

    def check_window(self, block: int, window: int) -> int:
        """``window`` if ``block`` has it, else ValueError naming the valid range."""
        n = self.record(block).geometry.num_windows
        if not 0 <= int(window) < n:
            raise ValueError(f"window {window} out of range 0..{n - 1}")
        return int(window)

    def window_box(self, block: int, window: int) -> tuple[int, int, int, int]:
        """Image box (y0, x0, y1, x1) of a window of ``block``."""
        return maps.window_box(self.record(block).geometry, self.check_window(block, window), self.size)

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

        return self._memo.get(MapKey("token", block, head), make)

    def token_self(self, block: int, head: maps.HeadSelect = "mean") -> np.ndarray | None:
        """(n,) each window token's attention to itself, None for global blocks."""
        b = self._block(block)
        if not b.geometry.has_token:
            return None
        return self._memo.get(
            MapKey("token_self", block, head), lambda: maps.token_self_map(b.dwa, b.geometry, head, self.size)[0]
        )

    def pixel_query(
        self, block: int, point: tuple[int, int] | None = None, head: maps.HeadSelect = "mean"
    ) -> maps.PixelQuery:
        """The DWA row of the pixel at image point (y, x) (None: the centre) over its window."""
        b, cell = self._block(block), self.cell_at(block, point)
        return self._memo.get(
            MapKey("pixel", block, head, cell),
            lambda: maps.pixel_query(b.dwa, b.geometry, self._cell_point(block, cell), head, self.size),
        )

    def pwa_matrix(self, block: int, head: maps.HeadSelect = "mean") -> np.ndarray | None:
        """(n, n) window-to-window attention (rows = query windows), None for global blocks."""
        b = self._block(block)
        if b.pwa is None:
            return None
        return self._memo.get(MapKey("pwa", block, head), lambda: maps.pwa_matrix(b.pwa, head))

    def pwa_map(self, block: int, window: int, head: maps.HeadSelect = "mean") -> np.ndarray | None:
        """(H, W) row ``window`` of the PWA matrix spread over the window grid, None for global blocks."""
        b = self._block(block)
        if b.pwa is None:
            return None
        w = self.check_window(block, window)
        return self._memo.get(
            MapKey("pwa_row", block, head, w),
            lambda: maps.pwa_row_map(b.pwa, b.geometry, w, head, self.size).astype(np.float32),
        )

    def composed(
        self, block: int, point: tuple[int, int] | None = None, head: maps.HeadSelect = "mean", self_weight: float = 0.5
    ) -> maps.ComposedQuery:
        """Where the pixel at (y, x) draws from through the whole block (:func:`maps.composed_query`)."""
        b, cell = self._block(block), self.cell_at(block, point)
        return self._memo.get(
            MapKey("composed", block, head, cell, (float(self_weight),)),
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
        cell = None if pooled else self.cell_at(end, point)
        q = None if cell is None else self._cell_point(end, cell)
        return self._memo.get(
            MapKey("rollout", end, head, cell, (float(residual), float(self_weight))),
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

    def head_maps(
        self,
        block: int,
        view: str,
        point: tuple[int, int] | None = None,
        *,
        window: int | None = None,
        self_weight: float = 0.5,
    ) -> list[np.ndarray]:
        """One (H, W) float map per head (H, W: the model input) for ``view`` in tokens | pixel |
        pwa_map | composed (pwa_map: ``window``, None: the one holding ``point``; composed:
        ``ComposedQuery.mixed`` with ``self_weight``, the own cell left out).

        Raises ``ValueError`` for another ``view`` or one the block lacks (pwa_map of a global block).
        """
        heads = self.record(block).num_heads

        def pwa(h: int) -> np.ndarray | None:
            w = self.window_at(block, point) if window is None else self.check_window(block, window)
            return self.pwa_map(block, w, h)

        get: dict[str, Callable[[int], np.ndarray | None]] = {
            "tokens": lambda h: self.token_map(block, h),
            "pixel": lambda h: self.pixel_query(block, point, h).heat,
            "pwa_map": pwa,
            "composed": lambda h: self.composed(block, point, h, self_weight).mixed,
        }
        if view not in get:
            raise ValueError(f"per-head view must be one of {sorted(get)}, got {view!r}")
        out = [get[view](h) for h in range(heads)]
        if any(m is None for m in out):
            raise ValueError(f"{self.record(block).label} has no {view} view")
        return out  # type: ignore[return-value]

    def precompute(self, head: maps.HeadSelect = "mean", point: tuple[int, int] | None = None) -> None:
        """Every map of every block at ``head`` and ``point`` (None: the centre), plus the pooled rollout."""
        for i in range(len(self.blocks)):
            h = self.head_for(i, head)
            self.token_map(i, h)
            self.token_self(i, h)
            self.pixel_query(i, point, h)
            self.pwa_matrix(i, h)
            self.pwa_map(i, self.window_at(i, point), h)
            self.composed(i, point, h)
        self.rollout()

    # --------------------------------------------------------------- export
    def arrays(
        self,
        block: int = 0,
        head: maps.HeadSelect = "mean",
        point: tuple[int, int] | None = None,
        *,
        self_weight: float = 0.5,
        residual: float = 0.5,
    ) -> dict[str, np.ndarray]:
        """Raw arrays: image, logits, every block's DWA/PWA, and ``block``'s maps at ``head`` and ``point``
        (the PWA row of the window holding it), plus the pooled rollout."""
        head = self.head_for(block, head)
        out: dict[str, np.ndarray] = {"image": self.image, "logits": self.logits}
        for r in self.records:
            out[f"{r.name}.dwa"] = r.dwa[0]
            if r.pwa is not None:
                out[f"{r.name}.pwa"] = r.pwa[0]
        name = self.record(block).name
        out[f"{name}.token_map"] = self.token_map(block, head)
        out[f"{name}.pixel_query"] = self.pixel_query(block, point, head).heat
        comp = self.composed(block, point, head, self_weight)
        out[f"{name}.composed"] = comp.heat
        out[f"{name}.composed_mixed"] = comp.mixed
        pm = self.pwa_map(block, self.window_at(block, point), head)
        if pm is not None:
            out[f"{name}.pwa_map"] = pm
        out["rollout"] = self.rollout(residual=residual, self_weight=self_weight).heat
        return out

    def export_npz(self, path: str | None = None, **settings: Any) -> bytes | None:
        """Save :meth:`arrays` (keyword ``settings`` passed on) as a compressed .npz (bytes when ``path`` is None)."""
        return render.export_npz(self.arrays(**settings), path)


def analyze(
    model: nn.Module,
    image: Image.Image,
    *,
    size: int | Sequence[int] = 224,
    fit: str = "crop",
    class_names: Sequence[str] | None = None,
    precompute: bool = True,
) -> Analysis:
    """Run ONE forward of ``model`` on ``image`` under attention capture and wrap the result.

    image: any PIL image (any mode; transparency is flattened on white).
    size: an int (with ``fit="crop"`` the square centre crop, the evaluation transform; with
        ``fit="aspect"`` an input of the photo's shape, the shorter side at ``size``:
        :func:`fit_size`) or (height, width), each side within ``MIN_SIDE..MAX_SIDE``.
    class_names: names per class index (default: ImageNet names for 1000 classes, else ``class N``).
    precompute: compute every map of every block (mean of heads, centre) now, so the first views are instant.
    """
    if model.training:
        # dropout / drop-path would make every analysis of the same photo differ
        raise ValueError("the model is in training mode; call model.eval() first")
    crop = prepare_image(image, size, fit=fit)
    p = next(model.parameters(), None)  # the input follows the model's device and dtype
    x = to_tensor(crop) if p is None else to_tensor(crop).to(p.device, p.dtype)
    t0 = time.perf_counter()
    with torch.inference_mode(), AttentionCapture(model) as cap:
        logits = model(x)[0].float().cpu().numpy()
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
        result.precompute()
    result.timings.update(forward=t1 - t0, maps=time.perf_counter() - t1)
    return result
