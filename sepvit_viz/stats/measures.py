"""Model-level attention statistics: what every block and head does across many photos.

    from sepvit_viz.stats import measures as stats
    result = stats.model_stats(model, photo_paths, size=224, batch_size=8)   # streams the photos
    result.summary()["p50"]            # (rows, measures): median over photos of every head's value
    stats.cached_model_stats(model)    # the bundled example photos, cached by the weights' fingerprint
    stats.photo_values(analysis.records)   # one photo's values, to mark on the same axes
    stats.typicality_caption(result, values, "dwa_distance")   # "within the 5-95% range on 13 of 15 heads"

Three layers, from pure to I/O:

1. Measures (numpy only, no torch, no model): :func:`dwa_measures`, :func:`pwa_measures` and
   :func:`block_measures` take one block's captured attention for a batch of images and return one
   number per image and head for every measure of :data:`MEASURES`.
2. Aggregation: :class:`StatsAccumulator` turns the records of batched forwards into per-photo values,
   :class:`ModelStats` holds them and gives means and percentiles over photos.
3. The streaming driver: :func:`list_photos`, :func:`compute_stats` (several models on the same photos,
   decoded once), :func:`model_stats`, and for the app :func:`cached_model_stats`,
   :func:`model_fingerprint`, :func:`photo_values`, :func:`square_records`, :func:`photo_ranks`,
   :func:`typicality_caption`.

Attention comes from :class:`sepvit_viz.viz.capture.AttentionCapture` (the model's named taps); the
model knows nothing about statistics. Shapes (axis letters as in :mod:`sepvit_viz.viz.maps`): B images,
n windows (raster order), h heads, L tokens of one window (index 0 = window token when the block has
one, then the window's P = wh * ww pixels in raster order; a global block has L = P = H * W), M
measures.

Definitions (every distance is Euclidean, in pixels of the model's input image: feature cells at
stride s are s pixels apart; every per-image value is a plain mean over the real, unpadded queries;
padded keys never count):

* ``dwa_distance``: pixel to pixel. For each real pixel query, the mean distance to the pixels it
  attends to: ``sum_k A[q, k] d(q, k) / sum_k A[q, k]`` over real pixel keys k (the share given to the
  window token, which has no position, is left out and reported as ``pixel_to_token``). Then the mean
  over queries. Uniform attention over a 7x7 window at stride s gives ``s`` times the mean distance
  between two cells of a 7x7 grid (3.61 s); attending only to itself gives 0.
* ``token_distance``: token to pixel. The same for row 0 (the window token as query), measured from
  the centre (mean position) of the window's real pixels; mean over windows.
* ``pixel_to_token``: the share ``A[q, 0]`` each real pixel gives its window token, mean over queries.
* ``token_self``: the share ``A[0, 0]`` each window token keeps for itself, mean over windows.
* ``dwa_entropy``: entropy (nats) of each real pixel query's row over all real keys (token included);
  ``dwa_entropy_norm``: the same divided by ``log(number of real keys)`` (1 = uniform, 0 = one key).
* ``pwa_distance``: window to window. ``sum_b A_pw[a, b] d(a, b)`` with d the distance between the
  centres of the windows' real pixels, mean over query windows a.
* ``pwa_entropy_norm``: entropy of each PWA row divided by ``log(n)`` (undefined with one window).
* ``pwa_self``: the share ``A_pw[a, a]`` a window keeps for itself, mean over windows.

A measure a block does not have (window tokens and PWA of a global block, normalised PWA entropy of a
single window) is NaN.

Memory: the driver keeps one batch of attention maps at a time (a few MB per 224 photo for Lite) and,
for all photos, only their per-head numbers: 4 bytes x photos x heads of the model x measures
(1,000 photos of Lite: 1.6 MB).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sepvit_viz.viz.maps import GeometryLike

__all__ = [
    "IMAGE_SUFFIXES",
    "MEASURES",
    "MEASURE_NAMES",
    "PERCENTILES",
    "HeadRow",
    "Measure",
    "ModelStats",
    "StatsAccumulator",
    "StatsInputError",
    "block_measures",
    "cached_model_stats",
    "clear_cache",
    "compute_stats",
    "dwa_measures",
    "example_photos",
    "head_rows",
    "list_photos",
    "model_fingerprint",
    "model_stats",
    "photo_ranks",
    "photo_values",
    "pwa_measures",
    "square_records",
    "typicality_caption",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
#: Percentiles over photos reported beside the mean.
PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
#: Below this a probability mass counts as none (a row that gives everything to its token).
_EPS = 1e-12


@dataclass(frozen=True)
class Measure:
    """One statistic: its key (CSV column stem), a short label, its unit and which attention it reads."""

    name: str
    label: str
    unit: str
    source: str  # "dwa" | "token" | "pwa"


MEASURES: tuple[Measure, ...] = (
    Measure("dwa_distance", "DWA mean attention distance, pixel to pixel", "px", "dwa"),
    Measure("token_distance", "DWA mean attention distance, window token to pixels", "px", "token"),
    Measure("pixel_to_token", "share each pixel gives its window token", "share", "token"),
    Measure("token_self", "share each window token keeps for itself", "share", "token"),
    Measure("dwa_entropy", "DWA attention entropy", "nats", "dwa"),
    Measure("dwa_entropy_norm", "DWA attention entropy / log(keys)", "0..1", "dwa"),
    Measure("pwa_distance", "PWA mean distance between windows", "px", "pwa"),
    Measure("pwa_entropy_norm", "PWA entropy / log(windows)", "0..1", "pwa"),
    Measure("pwa_self", "share each window keeps for itself in PWA", "share", "pwa"),
)
MEASURE_NAMES: tuple[str, ...] = tuple(m.name for m in MEASURES)
_INDEX = {name: i for i, name in enumerate(MEASURE_NAMES)}


class StatsInputError(ValueError):
    """Photos or settings the statistics cannot use; ``str(err)`` is a message meant for the user."""


# ----------------------------------------------------------------------------- geometry helpers
def _cells(geom: GeometryLike) -> tuple[np.ndarray, np.ndarray]:
    """Cell coordinates of every window slot: ((n, P, 2) float64 (row, col) in the padded map,
    (n, P) True where the slot is a real pixel, not padding)."""
    (gh, gw), (wh, ww) = geom.grid, geom.window
    rows = np.arange(gh)[:, None, None, None] * wh + np.arange(wh)[None, None, :, None]
    cols = np.arange(gw)[None, :, None, None] * ww + np.arange(ww)[None, None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)  # (gh, gw, wh, ww): windows then pixels, raster order
    pos = np.stack([rows, cols], axis=-1).reshape(gh * gw, wh * ww, 2).astype(np.float64)
    real = (pos[..., 0] < geom.height) & (pos[..., 1] < geom.width)
    return pos, real


def _centres(pos: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(n, 2) mean position of each window's real pixels (every window has one: padding < window)."""
    return (pos * real[..., None]).sum(axis=1) / np.maximum(real.sum(axis=1), 1)[:, None]


def _entropy(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) over the last axis; zero probabilities contribute nothing."""
    logp = np.zeros(p.shape, dtype=p.dtype)
    np.log(p, out=logp, where=p > 0)  # log of the positive entries only: no clamping pass, no log(0)
    return -np.einsum("...k,...k->...", p, logp)  # product and sum in one pass, no temporary


def _batched(a: np.ndarray, ndim: int, what: str) -> tuple[np.ndarray, bool]:
    a = np.asarray(a)
    if a.ndim == ndim - 1:
        return a[None], False
    if a.ndim != ndim:
        raise ValueError(f"{what} must have {ndim - 1} axes (one image) or {ndim} (a batch), got shape {a.shape}")
    return a, True


# ----------------------------------------------------------------------------- measures
def dwa_measures(dwa: np.ndarray, geom: GeometryLike) -> dict[str, np.ndarray]:
    """Depthwise (within-window) measures of one block.

    Args:
        dwa: (B, n, h, L, L) or (n, h, L, L) DWA probabilities, rows = queries (a capture record's
            ``dwa``; padded keys exactly 0, padded query rows ignored).
        geom: the block's tiling (``WindowGeometry`` or ``maps.Geometry``).

    Returns:
        ``dwa_distance, dwa_entropy, dwa_entropy_norm`` and, for blocks with a window token,
        ``token_distance, pixel_to_token, token_self``: each (B, h), or (h,) for one image.
        Definitions in the module docstring.
    """
    a, batched = _batched(dwa, 5, "dwa")
    t = int(geom.has_token)
    pos, real = _cells(geom)  # (n, P, 2), (n, P)
    n, P = real.shape
    if a.shape[1] != n or a.shape[3:] != (P + t, P + t):
        raise ValueError(f"dwa of shape {np.shape(dwa)} does not fit {n} windows of {P} pixels (token: {bool(t)})")
    a = a.astype(np.float32, copy=False)
    s = float(geom.stride)
    # pixel-to-pixel distances depend only on the two slots, the same in every window; keys that are
    # padding get distance and weight 0 (per window, so an (n, P, P) table)
    offsets = pos[0][:, None, :] - pos[0][None, :, :]
    dist = (s * np.hypot(offsets[..., 0], offsets[..., 1]))[None] * real[:, None, :]  # (n, P, P)
    key_real = real.astype(np.float32)
    pix = a[:, :, :, t:, t:]  # (B, n, h, P, P) pixel queries -> pixel keys
    mass = np.matmul(pix, key_real[:, None, :, None])[..., 0]  # (B, n, h, P) share of each query on real pixels
    per_query = np.einsum("bnhpq,npq->bnhp", pix, dist.astype(np.float32)) / np.maximum(mass, _EPS)
    real_q = real[None, :, None, :]  # real queries only, each counted once
    nq = float(real.sum())

    def query_mean(x: np.ndarray) -> np.ndarray:  # (B, n, h, P) -> (B, h)
        # where(), not a product with the mask: a padded query row may hold anything, NaN included
        return np.where(real_q, x, 0.0).sum(axis=(1, 3), dtype=np.float64) / nq

    ent = _entropy(a[:, :, :, t:, :])  # (B, n, h, P) over all keys (padded keys are 0: no effect)
    keys = real.sum(axis=1) + t  # (n,) real keys of each window
    log_keys = np.log(np.maximum(keys, 1)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ent_norm = np.where(keys[None, :, None, None] > 1, ent / log_keys[None, :, None, None], np.nan)
    out = {
        "dwa_distance": query_mean(per_query),
        "dwa_entropy": query_mean(ent),
        "dwa_entropy_norm": query_mean(ent_norm),
    }
    if t:
        row0 = a[:, :, :, 0, 1:] * key_real[None, :, None, :]  # (B, n, h, P) token -> real pixels
        centre = _centres(pos, real)  # (n, 2)
        to_centre = s * np.hypot(*(pos - centre[:, None, :]).transpose(2, 0, 1))  # (n, P)
        tok = np.einsum("bnhp,np->bnh", row0, to_centre.astype(np.float32)) / np.maximum(row0.sum(-1), _EPS)
        out["token_distance"] = tok.mean(axis=1)
        out["pixel_to_token"] = query_mean(a[:, :, :, 1:, 0])
        out["token_self"] = a[:, :, :, 0, 0].mean(axis=1)
    return {k: (v if batched else v[0]).astype(np.float64) for k, v in out.items()}


def pwa_measures(pwa: np.ndarray, geom: GeometryLike) -> dict[str, np.ndarray]:
    """Pointwise (window-to-window) measures of one block.

    Args:
        pwa: (B, h, n, n) or (h, n, n) PWA probabilities, rows = query windows.
        geom: the block's tiling; window centres are the centres of their real pixels.

    Returns:
        ``pwa_distance, pwa_entropy_norm, pwa_self``: each (B, h), or (h,) for one image.
        ``pwa_entropy_norm`` is NaN when the map holds a single window.
    """
    a, batched = _batched(pwa, 4, "pwa")
    pos, real = _cells(geom)
    n = real.shape[0]
    if a.shape[2:] != (n, n):
        raise ValueError(f"pwa of shape {np.shape(pwa)} does not fit a grid of {n} windows")
    a = a.astype(np.float64, copy=False)
    centre = _centres(pos, real) * float(geom.stride)  # (n, 2) in input pixels
    d = centre[:, None, :] - centre[None, :, :]
    dist = np.hypot(d[..., 0], d[..., 1])  # (n, n)
    ent = _entropy(a)  # (B, h, n)
    out = {
        "pwa_distance": np.einsum("zhab,ab->zha", a, dist).mean(axis=-1),
        "pwa_entropy_norm": (ent / math.log(n)).mean(axis=-1) if n > 1 else np.full(a.shape[:2], np.nan),
        "pwa_self": np.diagonal(a, axis1=2, axis2=3).mean(axis=-1),
    }
    return {k: (v if batched else v[0]) for k, v in out.items()}


def block_measures(dwa: np.ndarray, pwa: np.ndarray | None, geom: GeometryLike) -> np.ndarray:
    """Every measure of one block: (B, h, M) (or (h, M) for one image), in :data:`MEASURE_NAMES`
    order, NaN where the block has no such attention (see the module docstring)."""
    found = dwa_measures(dwa, geom)
    if pwa is not None and geom.has_token:
        found |= pwa_measures(pwa, geom)
    shape = next(iter(found.values())).shape
    out = np.full((*shape, len(MEASURES)), np.nan, dtype=np.float32)
    for name, value in found.items():
        out[..., _INDEX[name]] = value
    return out


# ----------------------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class HeadRow:
    """One row of the statistics: a head of a block.

    block: 0-based position of the block in model order (depth); name: ``stages.1.blocks.1``;
    stage, index: 0-based stage and block index inside it; kind: ``dssa | gsa | global``;
    window: the block's nominal window (7 or 14); head: 0-based head index.
    """

    block: int
    name: str
    stage: int
    index: int
    kind: str
    window: int
    head: int

    @property
    def block_label(self) -> str:
        """e.g. ``2.2 GSA`` (1-based stage.block and the kind)."""
        return f"{self.stage + 1}.{self.index + 1} {self.kind.upper()}"


def head_rows(records: Sequence[Any]) -> tuple[HeadRow, ...]:
    """The rows (one per head of every block, model order) of capture records (``AttentionRecord``)."""
    return tuple(
        HeadRow(i, r.name, r.stage, r.index, r.kind, r.window_size, h)
        for i, r in enumerate(records)
        for h in range(r.num_heads)
    )


def _records_values(records: Sequence[Any], image: slice | int = slice(None)) -> np.ndarray:
    """Records of one forward -> (B, rows, M) values (or (rows, M) for an int ``image``)."""
    parts = []
    for r in records:
        pwa = None if r.pwa is None else r.pwa[image]
        parts.append(block_measures(r.dwa[image], pwa, r.geometry))
    return np.concatenate(parts, axis=-2)


def photo_values(records: Sequence[Any], image: int = 0) -> np.ndarray:
    """One photo's own values: (rows, M), rows as :func:`head_rows` of the same records.

    ``records``: capture records of a forward (e.g. ``Analysis.records`` of the app's current photo);
    ``image``: which image of their batch. The rows line up with :class:`ModelStats` of the same model
    at the same input size, so the values can be marked on its plots.
    """
    if not records:
        raise ValueError("no attention records: run the forward under AttentionCapture first")
    return _records_values(records, int(image))


@dataclass
class ModelStats:
    """Per-photo values of every head of every block, for one model on a set of photos.

    Attributes:
        label: the checkpoint's name in plots and the CSV.
        rows: one :class:`HeadRow` per head of every block, model order.
        values: (photos, rows, M) float32, NaN where a block lacks the measure.
        photos: the photos' names, in ``values`` order.
        size: input side (pixels) the photos were cropped to.
        skipped: (photo, reason) of photos that could not be read.
        seconds: wall time of the computation (decoding, forwards, measures).
    """

    label: str
    rows: tuple[HeadRow, ...]
    values: np.ndarray
    photos: tuple[str, ...]
    size: int
    skipped: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_photos(self) -> int:
        return int(self.values.shape[0])

    @property
    def blocks(self) -> list[HeadRow]:
        """The first row of every block (block-level fields), model order."""
        return [r for r in self.rows if r.head == 0]

    def column(self, measure: str) -> np.ndarray:
        """(photos, rows) values of one measure."""
        if measure not in _INDEX:
            raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURE_NAMES)}")
        return self.values[:, :, _INDEX[measure]]

    def summary(self) -> dict[str, np.ndarray]:
        """Over photos, per row and measure: ``mean`` and ``p5 .. p95`` (:data:`PERCENTILES`), each
        (rows, M) float64, NaN where undefined; ``count`` (rows, M): photos with a value."""
        v = self.values.astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (measures a block lacks)
            out = {"mean": np.nanmean(v, axis=0) if len(v) else np.full(v.shape[1:], np.nan)}
            for q in PERCENTILES:
                out[f"p{q}"] = np.nanpercentile(v, q, axis=0) if len(v) else np.full(v.shape[1:], np.nan)
        out["count"] = np.isfinite(v).sum(axis=0)
        return out


class StatsAccumulator:
    """Collects per-photo values from batched forwards under capture, keeping no attention maps.

    ``add(records, names)`` after each forward (records of a batch of ``len(names)`` images), then
    ``result()``. Every batch must come from the same model at the same input size.
    """

    def __init__(self, label: str, size: int) -> None:
        self.label = label
        self.size = size
        self.rows: tuple[HeadRow, ...] | None = None
        self._values: list[np.ndarray] = []
        self._names: list[str] = []

    def add(self, records: Sequence[Any], names: Sequence[str]) -> None:
        rows = head_rows(records)
        if self.rows is None:
            self.rows = rows
        elif rows != self.rows:
            raise ValueError("records of another model layout: one accumulator per model and input size")
        values = _records_values(records)
        if values.shape[0] != len(names):
            raise ValueError(f"records hold {values.shape[0]} images but {len(names)} names were given")
        self._values.append(values)
        self._names.extend(names)

    def result(self, skipped: Sequence[tuple[str, str]] = (), seconds: float = 0.0, **meta: Any) -> ModelStats:
        rows = self.rows or ()
        values = (
            np.concatenate(self._values, axis=0)
            if self._values
            else np.zeros((0, len(rows), len(MEASURES)), np.float32)
        )
        return ModelStats(self.label, rows, values, tuple(self._names), self.size, tuple(skipped), seconds, dict(meta))


# ----------------------------------------------------------------------------- photos
def list_photos(
    sources: Iterable[str | Path], limit: int | None = None, exclude: str | Path | None = None
) -> list[Path]:
    """Photos named by ``sources``: files as given, folders searched recursively for image suffixes
    (:data:`IMAGE_SUFFIXES`), sorted; each photo once (a file named twice, or found through two
    sources, by its resolved path); at most ``limit`` (the first ones) when given.

    ``exclude`` is the report's output folder (``--out``), whose plots are not photos: when it lies
    strictly inside a source folder nothing under it is read; when it is the source folder itself
    (or holds it) only the report's own plots directly in it (``depth_*.png``, ``kinds.png``) are
    left out, so ``stats SRC --out SRC`` still measures SRC's photos.

    Raises:
        StatsInputError: a source that does not exist, a file without an image suffix, or no photo at all.
    """
    skip = Path(exclude).resolve() if exclude is not None else None

    def wanted(f: Path, folder: Path) -> bool:
        if skip is None:
            return True
        real = f.resolve()
        if skip != folder and skip.is_relative_to(folder):  # --out strictly inside the source
            return not real.is_relative_to(skip)
        return not (real.parent == skip and _is_report_plot(real.name))

    found: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            folder = p.resolve()
            inside = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and wanted(f, folder)
            )
            if not inside:
                raise StatsInputError(f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) in {p} or its subfolders")
            found += inside
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise StatsInputError(f"{p} is not a photo (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
            found.append(p)
        else:
            raise StatsInputError(f"{p} does not exist")
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)  # the first of each, in order
    found = list(unique.values())
    if not found:
        raise StatsInputError("no photos given")
    if limit is not None:
        if limit < 1:
            raise StatsInputError(f"the photo limit must be at least 1, got {limit}")
        found = found[:limit]
    return found


def _is_report_plot(name: str) -> bool:
    """Whether ``name`` is a picture ``sepvit_viz.stats.plots.write_report`` writes (``depth_<measure>.png``,
    ``kinds.png``)."""
    return name == "kinds.png" or (name.startswith("depth_") and name.endswith(".png"))


def _load(path: Path, size: int) -> np.ndarray:
    """One photo -> (3, size, size) float32, the evaluation transform; raises ImageInputError."""
    from sepvit_viz.imageio import load_image
    from sepvit_viz.preprocess import CROP_PCT, preprocess

    # a JPEG is decoded straight at the scale the crop needs (Image.draft)
    image = load_image(path, max_short_side=math.ceil(size / CROP_PCT))
    return preprocess(image, size)[0].numpy()


def _batches(
    paths: Sequence[Path], size: int, batch_size: int, on_skip: Callable[[Path, str], None]
) -> Iterator[tuple[np.ndarray, list[Path]]]:
    """(B, 3, size, size) arrays and their paths; photos that fail to load go to ``on_skip``.

    One thread decodes the next batch while the caller runs the current one (Pillow releases the
    GIL while decoding, so this overlaps with the forward).
    """
    from sepvit_viz.imageio import ImageInputError

    def load_batch(chunk: Sequence[Path]) -> tuple[list[np.ndarray], list[Path], list[tuple[Path, str]]]:
        arrays, ok, bad = [], [], []
        for p in chunk:
            try:
                arrays.append(_load(p, size))
                ok.append(p)
            except (ImageInputError, OSError, ValueError) as e:
                bad.append((p, str(e)))
        return arrays, ok, bad

    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stats-decode") as pool:
        pending = pool.submit(load_batch, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            arrays, ok, bad = pending.result()  # type: ignore[union-attr]
            pending = pool.submit(load_batch, chunks[k + 1]) if k + 1 < len(chunks) else None
            for p, reason in bad:
                on_skip(p, reason)
            if arrays:
                yield np.stack(arrays), ok


# ----------------------------------------------------------------------------- driver
def _check_models(models: Mapping[str, Any]) -> None:
    if not models:
        raise ValueError("no model given")
    layouts = {}
    for label, m in models.items():
        if getattr(m, "training", False):
            raise ValueError(f"model {label!r} is in training mode: call model.eval() first")
        layouts[label] = [(b.name, b.kind) for b in m.iter_blocks()] if hasattr(m, "iter_blocks") else None
    first = next(iter(layouts.values()))
    for label, layout in layouts.items():
        if layout != first:
            raise StatsInputError(
                f"cannot compare {label!r} with {next(iter(layouts))!r}: their blocks differ "
                "(plots put the checkpoints' blocks on one depth axis, so the architectures must match)"
            )


def compute_stats(
    models: Mapping[str, Any],
    photos: Sequence[str | Path],
    *,
    size: int = 224,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[ModelStats]:
    """Statistics of each model (label -> eval-mode SepViT) over the same photos, streamed.

    Every photo is decoded once (centre crop ``size x size``, the evaluation transform) and every
    batch of ``batch_size`` goes through each model in float32 under attention capture; the batch's
    maps are reduced to per-head numbers and dropped before the next batch. ``progress(k)`` is called
    with the number of photos just handled (read or skipped); ``on_skip(path, reason)`` for each photo
    that could not be read. Photos that fail are listed in each result's ``skipped``.

    Raises:
        ValueError: no model, a model in training mode, or ``batch_size`` < 1.
        StatsInputError: models whose blocks differ, or not a single photo could be read.
    """
    import torch

    from sepvit_viz.viz.capture import AttentionCapture

    _check_models(models)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    paths = [Path(p) for p in photos]
    acc = {label: StatsAccumulator(label, size) for label in models}
    skipped: list[tuple[str, str]] = []

    def skip(p: Path, reason: str) -> None:
        skipped.append((str(p), reason))
        if on_skip is not None:
            on_skip(p, reason)
        if progress is not None:
            progress(1)

    t0 = time.perf_counter()
    for arrays, ok in _batches(paths, size, batch_size, skip):
        # float32 on purpose: bf16 autocast is emulated, and slow, on CPUs without native bf16
        x = torch.from_numpy(arrays)
        names = [str(p) for p in ok]
        for label, model in models.items():
            with torch.inference_mode(), AttentionCapture(model) as cap:
                model(x)
            acc[label].add(cap.records, names)
            del cap  # the batch's maps go now, before the next batch is captured
        if progress is not None:
            progress(len(ok))
    seconds = time.perf_counter() - t0
    results = [a.result(skipped, seconds) for a in acc.values()]
    if results[0].num_photos == 0:
        first = f": {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise StatsInputError(f"none of the {len(paths)} photo(s) could be read{first}")
    return results


def model_stats(
    model: Any,
    photos: Sequence[str | Path],
    *,
    size: int = 224,
    batch_size: int = 8,
    label: str = "model",
    progress: Callable[[int], None] | None = None,
) -> ModelStats:
    """:func:`compute_stats` for one model."""
    return compute_stats({label: model}, photos, size=size, batch_size=batch_size, progress=progress)[0]


# ----------------------------------------------------------------------------- the app's Model tab
def square_records(model: Any, image: np.ndarray) -> list[Any]:
    """Capture records of one forward of ``model`` on the centre ``s x s`` square of a model input,
    ``s`` its short side, at the same scale.

    ``image``: (H, W, 3) uint8, the pixels the model saw (``Analysis.image``). The reference statistics
    are taken on square inputs; a photo analysed at its own aspect has other window grids and longer
    distances, so give :func:`photo_values` these records to compare it with them like for like.
    """
    import torch
    from PIL import Image

    from sepvit_viz.preprocess import to_tensor
    from sepvit_viz.viz.capture import AttentionCapture

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = to_tensor(Image.fromarray(np.ascontiguousarray(image[top : top + s, left : left + s], dtype=np.uint8)))
    p = next(model.parameters(), None)  # the input follows the model's device and dtype
    if p is not None:
        x = x.to(p.device, p.dtype)
    with torch.inference_mode(), AttentionCapture(model) as cap:
        model(x)
    return list(cap.records)


def photo_ranks(stats: ModelStats, values: np.ndarray) -> np.ndarray:
    """Where one photo stands among ``stats``' photos: (rows, M) percentile ranks in 0..100 (the share
    of photos whose value is below this photo's, ties counted half), NaN where undefined.

    ``values``: (rows, M) from :func:`photo_values`, rows as ``stats.rows`` (same model). Compare at
    the same input size: distances are in input pixels and the window grid depends on the size.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != stats.values.shape[1:]:
        raise ValueError(f"values of shape {values.shape} do not fit statistics of shape {stats.values.shape[1:]}")
    ref = stats.values.astype(np.float64)  # (photos, rows, M)
    valid = np.isfinite(ref)
    below = ((ref < values) & valid).sum(axis=0) + 0.5 * ((ref == values) & valid).sum(axis=0)
    count = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((count > 0) & np.isfinite(values), 100.0 * below / count, np.nan)


def typicality_caption(stats: ModelStats, values: np.ndarray, measure: str, low: float = 5, high: float = 95) -> str:
    """One sentence for the app: on how many heads this photo's ``measure`` lies within the
    ``low``..``high`` percentiles of the statistics' photos (interpolated, the bars
    :func:`~sepvit_viz.stats.plots.depth_figure` draws), and which heads lie outside."""
    if measure not in _INDEX:
        raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURE_NAMES)}")
    j = _INDEX[measure]
    values = np.asarray(values, dtype=np.float64)
    if values.shape != stats.values.shape[1:]:
        raise ValueError(f"values of shape {values.shape} do not fit statistics of shape {stats.values.shape[1:]}")
    ref = stats.values[:, :, j].astype(np.float64)  # (photos, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without this measure (all NaN)
        lo, hi = np.nanpercentile(ref, [low, high], axis=0) if len(ref) else (np.nan, np.nan)
    v = values[:, j]
    ok = np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return "No block of this model has this measure."
    outside = [stats.rows[i] for i in np.flatnonzero(ok & ((v < lo) | (v > hi)))]
    text = (
        f"This photo lies within the {low:g}-{high:g}% range of the {stats.num_photos} reference photo(s) on "
        f"{int(ok.sum()) - len(outside)} of {int(ok.sum())} heads"
    )
    if not outside:
        return text + "."
    names = ", ".join(f"{r.block_label} head {r.head}" for r in outside[:6])
    return text + f"; outside: {names}" + (f" and {len(outside) - 6} more" if len(outside) > 6 else "") + "."


def example_photos() -> list[Path]:
    """The bundled example photos (``assets/examples``), sorted."""
    folder = Path(__file__).resolve().parents[2] / "assets" / "examples"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def model_fingerprint(model: Any) -> str:
    """A hex digest of a model's config and every weight (a key that changes whenever the weights do,
    even when new weights are loaded into the same object)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    h.update((config.to_json() if hasattr(config, "to_json") else type(model).__name__).encode())
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_CACHE: OrderedDict[Hashable, ModelStats] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def cached_model_stats(
    model: Any,
    photos: Sequence[str | Path] | None = None,
    *,
    key: Hashable | None = None,
    size: int = 224,
    batch_size: int = 6,
    label: str | None = None,
) -> ModelStats:
    """The statistics of ``model`` on ``photos`` (default: :func:`example_photos`), computed once.

    Cached (the last few, shared by every thread) under (``key``, photos, size): pass the app's own
    model key, or leave it None to use :func:`model_fingerprint`, so that new weights mean new
    statistics. Two threads asking at once for the same new key may both compute it (harmless).
    """
    photos = list(photos) if photos is not None else example_photos()
    if not photos:
        raise StatsInputError("no photos to compute the model statistics on")
    key = model_fingerprint(model) if key is None else key
    full_key = (key, tuple(str(p) for p in photos), int(size))
    with _CACHE_LOCK:
        if full_key in _CACHE:
            _CACHE.move_to_end(full_key)
            return _CACHE[full_key]
    name = label or getattr(getattr(model, "config", None), "name", "model")
    result = model_stats(model, photos, size=size, batch_size=batch_size, label=name)
    with _CACHE_LOCK:
        _CACHE[full_key] = result
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


def clear_cache() -> None:
    """Forget every cached :func:`cached_model_stats` result."""
    with _CACHE_LOCK:
        _CACHE.clear()
