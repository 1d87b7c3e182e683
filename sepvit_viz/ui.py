"""Handlers of the Gradio app (``app.py`` only lays out components and wires them to these).

Every public handler takes plain component values (plus the per-user :class:`Analysis` held in a
``gr.State``) and returns display-ready values: RGB uint8 arrays, ``{class name: probability}`` dicts,
Markdown strings, table rows, file paths. Library errors become :class:`gradio.Error` with a message
meant for the person using the app; nothing else escapes to the browser.

Shared, thread-safe, module-level objects hold no per-user data:

* :data:`MODELS` (:class:`ModelStore`): each model is loaded once, lazily, and kept as a small pool of
  replicas. A request borrows one replica for its whole run, so hooks that one request attaches
  (attention capture, Grad-CAM, relevance) never see another request's forward.
* :data:`RESULTS` (:class:`ResultCache`): a bounded LRU of finished forwards keyed by the photo's
  bytes, the model and the resolution (deterministic results, so the example photos and any photo
  seen again come back at once).

Per user: :class:`Analysis` (the forward's attention records, probabilities and the attributions and
faithfulness scores computed so far). Views that only change rendering (block, head, colormap,
opacity, clicked pixel or window) are drawn from it without running the model again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from . import maps, pipeline, render
from .attribution import METHODS, Attribution, attribute
from .capture import AttentionRecord
from .faithfulness import Curves, deletion_insertion
from .model import SepViT, create_model
from .preprocess import to_tensor
from .runtime import release_free_memory
from .validation import (
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    RESOLUTION_MULTIPLE,
    UserInputError,
    resolve_class,
    validate_head,
    validate_opacity,
    validate_resolution,
    validate_steps,
)
from .weights import ASSETS_DIR, DEFAULT_CHECKPOINT, CheckpointError, coverage_note, load_checkpoint, load_from_hub

__all__ = [
    "COLORMAPS",
    "DEFAULT_METHOD",
    "DEFAULT_RESOLUTION",
    "EXAMPLES_DIR",
    "MAX_RESOLUTION",
    "MAX_UPLOAD_BYTES",
    "MIN_RESOLUTION",
    "MODELS",
    "RESULTS",
    "Analysis",
    "ModelStore",
    "analyze",
    "block_choices",
    "compare",
    "coverage_markdown",
    "cross_window",
    "example_photos",
    "explain",
    "faithfulness",
    "head_choices",
    "model_banner",
    "model_choices",
    "photo_input",
    "pixel_query",
    "prepare_downloads",
    "rerender",
    "status_markdown",
    "target_choices",
]

# ------------------------------------------------------------------------------------ settings
#: Input resolution: default, bounds (the model pads any size; memory and time grow with the square).
DEFAULT_RESOLUTION = 224
RESOLUTION_STEP = RESOLUTION_MULTIPLE  # MIN_RESOLUTION / MAX_RESOLUTION: sepvit_viz.validation
#: Largest upload in bytes (also passed to ``launch(max_file_size=...)``).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Requests that may run the model at the same time (one model replica each).
CONCURRENCY = max(1, int(os.environ.get("SEPVIT_CONCURRENCY", "2")))
#: Requests allowed to wait in the queue before new ones are told the app is busy.
QUEUE_SIZE = max(1, int(os.environ.get("SEPVIT_QUEUE_SIZE", "32")))
#: Seconds a user's analysis is kept after its last update.
STATE_TTL_S = 900  # API clients send no heartbeat: their state lives this long
#: Sessions whose state Gradio keeps at most (``launch(state_session_capacity=...)``; Gradio's default
#: is 10,000): the oldest session's analysis is dropped first.
STATE_SESSIONS = 64

DEFAULT_METHOD = "sepvit_relevance"
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "turbo", "jet", "gray")
HEAD_FUSIONS = ("mean", "max", "min")
TOP_PREDICTION = "top"
EXAMPLES_DIR = ASSETS_DIR / "examples"

MODEL_DEFAULT = "default"
MODEL_RANDOM = "random"
MODEL_HUB = "hub"
_BUNDLED_PREFIX = "bundled:"

DEFAULT_TOKEN_BLOCK = "stages.1.blocks.0"
DEFAULT_PWA_BLOCK = "stages.1.blocks.0"

_GRID_RGB = np.array([255, 255, 255], dtype=np.float32)
_MARK_RGB = np.array([0, 229, 255], dtype=np.float32)


class UserError(UserInputError):
    """A problem with what the user sent or chose; ``str(err)`` is shown to them as is."""


_log = logging.getLogger(__name__)

#: What a user sees when a request fails for a reason that is not theirs (a bug, a library's internal
#: check): no exception text, which could name files, shapes or settings of the server.
INTERNAL_ERROR_MESSAGE = (
    "Something went wrong on the server while handling this request (reference {ref}). "
    "Please try again, or try another photo or other settings."
)


@contextmanager
def _user_errors(release_memory: bool = False) -> Iterator[None]:
    """Turn errors into ``gr.Error`` (message only, never a traceback).

    Only errors written for users show their text: :class:`UserInputError` (bad photo, impossible
    setting: :class:`UserError`, ``SettingsError``, ``ImageInputError``) and :class:`CheckpointError`
    (a checkpoint that does not fit, naming its keys and shapes). Anything else, a plain ``ValueError``
    from a library's argument check included, is a bug: it is logged here with its traceback and a
    short reference, and the user gets :data:`INTERNAL_ERROR_MESSAGE` with that reference.
    """
    try:
        yield
    except gr.Error:
        raise
    except UserInputError as e:  # bad photo or impossible setting: the message is for the user
        raise gr.Error(str(e)) from None
    except CheckpointError as e:
        raise gr.Error(f"Could not load the model: {e}") from None
    except MemoryError:
        raise gr.Error("Not enough memory for this request; try a lower resolution.") from None
    except Exception:  # unexpected (ValueError from an internal check included): log it, say nothing of it
        ref = uuid.uuid4().hex[:8]
        _log.exception("internal error in a request handler (reference %s)", ref)
        raise gr.Error(INTERNAL_ERROR_MESSAGE.format(ref=ref)) from None
    finally:
        if release_memory:  # handlers that ran the model: hand freed activations back (runtime.py)
            release_free_memory()


# ------------------------------------------------------------------------------------ photo input
def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose preprocessing decodes nothing: handlers get the upload's path (or bytes).

    The stock component opens every upload with Pillow before the handler runs, outside any size
    check; here all decoding goes through :func:`load_photo` (size bounds checked before decoding,
    clear messages). Same frontend as ``gr.Image``: upload, drag and drop, clipboard, webcam.
    (An instance attribute rather than a subclass: Gradio writes a ``.pyi`` file next to the module
    of every Component subclass it sees.)
    """
    kwargs = {"type": "filepath", "image_mode": None, "sources": ["upload", "webcam", "clipboard"], **kwargs}
    image = gr.Image(**kwargs)
    image.preprocess = _raw_upload  # type: ignore[method-assign]
    return image


def _raw_upload(payload: Any) -> str | bytes | None:
    """``gr.Image`` payload -> the uploaded file's path (or the bytes of a data URL), undecoded."""
    if payload is None:
        return None
    url = getattr(payload, "url", None)
    if url and url.startswith("data:"):
        # bound the encoded size before decoding anything (base64 is 4/3 of the bytes)
        if len(url) > MAX_UPLOAD_BYTES * 4 // 3 + 1024:
            raise gr.Error(f"The photo is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=False)
        except (ValueError, IndexError):
            raise gr.Error("The photo could not be read (bad data URL).") from None
    if getattr(payload, "path", None) is None:
        raise gr.Error("No photo received; please upload it again.")
    return str(payload.path)


def load_photo(source: str | bytes | Path | Image.Image | np.ndarray) -> Image.Image:
    """Decode an untrusted upload into an upright RGB image, or raise :class:`UserError`."""
    try:
        from .imageio import load_image
    except ImportError:  # robustness module not installed yet: minimal local checks
        return _load_photo_minimal(source)
    try:
        # 1024 px on the short side is plenty for a 448 px analysis; JPEGs decode at reduced scale
        return load_image(source, max_short_side=1024)
    except UserInputError as e:  # ImageInputError: a message meant for the user (other errors are bugs)
        raise UserError(str(e)) from None


def _load_photo_minimal(source: Any) -> Image.Image:
    from PIL import ImageOps

    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = Image.fromarray(source)
    else:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        if not data:
            raise UserError("The upload is empty; please choose a photo.")
        if len(data) > MAX_UPLOAD_BYTES:
            raise UserError(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
        try:
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > 50_000_000:
                raise UserError(f"The image is too large ({img.width} x {img.height} pixels).")
            img.load()
        except UserError:
            raise
        except Exception:
            raise UserError("This file is not a photo the app can read (JPEG, PNG, WebP, GIF, BMP, TIFF).") from None
    img = ImageOps.exif_transpose(img)
    return img.convert("RGB")


def example_photos() -> list[str]:
    """Paths of the bundled example photos (``assets/examples/*.jpg``), sorted."""
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))


# ------------------------------------------------------------------------------------ models
@dataclass
class ModelEntry:
    """A loaded model: its replicas (one per concurrent request), names and an optional warning."""

    key: str
    label: str
    warning: str | None
    class_names: list[str]
    replicas: queue.Queue[SepViT]
    num_heads: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def borrow(self, timeout: float = 600.0) -> Iterator[SepViT]:
        """Exclusive use of one replica for the duration of the ``with``."""
        try:
            model = self.replicas.get(timeout=timeout)
        except queue.Empty:
            raise UserError("The app is busy; please try again in a moment.") from None
        try:
            yield model
        finally:
            self.replicas.put(model)


def bundled_checkpoints() -> list[Path]:
    """Checkpoints shipped in ``assets/`` besides the default one."""
    return sorted(p for p in ASSETS_DIR.glob("*.safetensors") if p.resolve() != DEFAULT_CHECKPOINT.resolve())


def model_choices() -> list[tuple[str, str]]:
    """(label, value) pairs for the model dropdown (no free-form paths: only what the app ships, or the Hub)."""
    out = [("SepViT-Lite, distilled (default)", MODEL_DEFAULT)]
    out += [(f"bundled: {p.name}", _BUNDLED_PREFIX + p.name) for p in bundled_checkpoints()]
    out += [("SepViT-Lite, random weights (baseline)", MODEL_RANDOM), ("Hugging Face Hub checkpoint…", MODEL_HUB)]
    return out


_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REV_RE = re.compile(r"[A-Za-z0-9._/-]{1,100}")


class ModelStore:
    """Thread-safe, lazily filled, bounded cache of models (each a pool of ``replicas`` copies)."""

    def __init__(self, replicas: int = CONCURRENCY, capacity: int = 4) -> None:
        self.replicas = replicas
        self.capacity = capacity
        self._entries: OrderedDict[str, ModelEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def resolve(
        self, choice: str | None, repo: str | None = None, revision: str | None = None
    ) -> tuple[str, Callable[[], tuple[SepViT, str, str | None]]]:
        """(cache key, loader) for a model choice; raises :class:`UserError` for an unknown one."""
        choice = choice or MODEL_DEFAULT
        if choice == MODEL_DEFAULT:
            if DEFAULT_CHECKPOINT.is_file():
                st = DEFAULT_CHECKPOINT.stat()
                return f"default:{st.st_mtime_ns}:{st.st_size}", _load_default
            return "default:missing", _load_default
        if choice == MODEL_RANDOM:
            return "random", _load_random
        if choice.startswith(_BUNDLED_PREFIX):
            name = choice[len(_BUNDLED_PREFIX) :]
            files = {p.name: p for p in bundled_checkpoints()}
            if name not in files:
                raise UserError(f"No bundled checkpoint named {name!r}; choose one from the list.")
            path = files[name]
            return f"bundled:{name}:{path.stat().st_mtime_ns}", lambda: (
                load_checkpoint(path),
                f"bundled checkpoint {name}",
                None,
            )
        if choice == MODEL_HUB:
            repo = (repo or "").strip()
            revision = (revision or "").strip() or None
            if not _REPO_RE.fullmatch(repo) or ".." in repo:
                raise UserError(f"Enter a Hugging Face Hub repo id like 'owner/name' (got {repo!r}).")
            if revision is not None and (not _REV_RE.fullmatch(revision) or ".." in revision):
                raise UserError(f"Invalid revision {revision!r}: use a branch, tag or commit hash.")

            def load_hub() -> tuple[SepViT, str, str | None]:
                try:
                    model = load_from_hub(repo, revision=revision)
                except CheckpointError as e:
                    raise UserError(
                        f"Could not load {repo} from the Hugging Face Hub (it may be unreachable from this "
                        f"server, or the repo has no model.safetensors): {e}"
                    ) from None
                return model, f"{repo}@{revision or 'main'} (Hugging Face Hub)", None

            return f"hub:{repo}@{revision or 'main'}", load_hub
        raise UserError(f"Unknown model choice {choice!r}; choose one from the list.")

    def get(self, choice: str | None, repo: str | None = None, revision: str | None = None) -> ModelEntry:
        key, loader = self.resolve(choice, repo, revision)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        try:
            with key_lock:  # one load per key; other keys load in parallel
                with self._lock:
                    if key in self._entries:
                        return self._entries[key]
                entry = _build_entry(key, *loader(), replicas=self.replicas)
                with self._lock:
                    self._entries[key] = entry
                    while len(self._entries) > self.capacity:
                        self._entries.popitem(last=False)
                return entry
        finally:
            with self._lock:
                self._key_locks.pop(key, None)


def _build_entry(key: str, model: SepViT, label: str, warning: str | None, replicas: int) -> ModelEntry:
    """A pool of ``replicas`` copies of ``model`` (eval mode) with its class names."""
    model = model.eval()
    pool: queue.Queue[SepViT] = queue.Queue()
    pool.put(model)
    for _ in range(replicas - 1):
        clone = type(model)(model.config)
        clone.load_state_dict(model.state_dict())
        pool.put(clone.eval())
    names = pipeline.class_names_for(model.config.num_classes)
    return ModelEntry(key, label, warning, names, pool, {b.name: b.num_heads for b in model.iter_blocks()})


def _load_default() -> tuple[SepViT, str, str | None]:
    if DEFAULT_CHECKPOINT.is_file():
        return load_checkpoint(DEFAULT_CHECKPOINT), "SepViT-Lite, distilled (default checkpoint)", None
    model, label, _ = _load_random()
    return (
        model,
        label,
        (
            f"The default checkpoint ({DEFAULT_CHECKPOINT.name}) is not available: the app is running SepViT-Lite "
            "with **random weights**. Predictions and maps are meaningless until the checkpoint is installed."
        ),
    )


def _load_random() -> tuple[SepViT, str, str | None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("sepvit_lite")
    return model, "SepViT-Lite, random weights", "Random weights: a baseline for the maps, not a classifier."


MODELS = ModelStore()


def model_banner(choice: str | None = MODEL_DEFAULT) -> str:
    """Markdown shown above the app: which model runs, with a warning when it has random weights."""
    try:
        key, _ = MODELS.resolve(choice)
    except UserError as e:
        return f"⚠️ {e}"
    if key == "default:missing":
        return (
            f"⚠️ **The default checkpoint is missing** ({DEFAULT_CHECKPOINT.name}): the app runs SepViT-Lite "
            "with random weights, so predictions and maps are meaningless."
        )
    return ""


def model_fields(choice: str | None) -> tuple[Any, Any, str]:
    """Show the Hub repo / revision boxes only for the Hub choice; refresh the banner."""
    hub = choice == MODEL_HUB
    return gr.update(visible=hub), gr.update(visible=hub), model_banner(choice if not hub else MODEL_DEFAULT)


def warm_up(background: bool = True) -> threading.Thread | None:
    """Load the default model now; then compute every example photo (forward and default attribution),
    in a background thread unless ``background`` is False, so the first visitors get them at once."""
    entry = MODELS.get(MODEL_DEFAULT)

    def examples() -> None:
        for path in example_photos():
            try:
                an = Analysis.of(run_forward(entry, load_photo(path), DEFAULT_RESOLUTION))
                _attribution(an, entry, DEFAULT_METHOD, an.top1)
            except Exception as e:  # a broken example must not stop the app from starting
                print(f"warm-up skipped {Path(path).name}: {type(e).__name__}: {e}")

    if not background:
        examples()
        return None
    thread = threading.Thread(target=examples, name="sepvit-warm-up", daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------------ analysis
@dataclass(frozen=True)
class Forward:
    """One forward of one photo under attention capture (deterministic: shared by the result cache).

    ``result`` is the pipeline's :class:`sepvit_viz.pipeline.Analysis` (image as the model saw it,
    attention records, logits); only its arrays are read from here, never its memo (each user gets a
    fresh copy with its own memo, see :meth:`session`).
    """

    model_key: str
    model_label: str
    warning: str | None
    resolution: int
    class_names: list[str]
    result: pipeline.Analysis
    probs: np.ndarray
    seconds: float

    @property
    def image(self) -> np.ndarray:
        return self.result.image

    @property
    def records(self) -> list[AttentionRecord]:
        return self.result.records

    def index(self, name: str) -> int:
        """Position of block ``name`` (``"stages.1.blocks.0"``) in the records; clear error if unknown."""
        for i, r in enumerate(self.records):
            if r.name == name:
                return i
        raise UserError(f"Unknown block {name!r}; choose one of: {', '.join(r.name for r in self.records)}.")

    def record(self, name: str) -> AttentionRecord:
        return self.records[self.index(name)]

    def session(self) -> pipeline.Analysis:
        """A copy of the pipeline result that shares the arrays but has its own memo of maps."""
        r = self.result
        return pipeline.Analysis(
            image=r.image,
            records=r.records,
            logits=r.logits,
            top5=r.top5,
            model_name=r.model_name,
            timings=dict(r.timings),
        )


@dataclass
class Analysis:
    """What the app keeps per user (in a ``gr.State``): the forward and what was computed from it.

    ``maps`` memoises every attention map drawn so far (pipeline); ``attributions`` and ``curves``
    hold the attribution maps and deletion / insertion curves per (method, class).
    """

    forward: Forward
    maps: pipeline.Analysis
    attributions: dict[tuple[str, int], Attribution] = field(default_factory=dict)
    curves: dict[tuple[str, int], Curves] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def of(cls, fwd: Forward) -> Analysis:
        return cls(fwd, fwd.session())

    @property
    def top1(self) -> int:
        return int(np.argmax(self.forward.probs))


def _nbytes(value: Any) -> int:
    """Bytes of the arrays a cached result holds (what its memory is, give or take small objects)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return int(value.numel() * value.element_size())
    if isinstance(value, Forward):
        n = _nbytes(value.image) + _nbytes(value.probs) + _nbytes(value.result.logits)
        for r in value.records:
            n += _nbytes(r.dwa) + (_nbytes(r.pwa) if r.pwa is not None else 0)
        return n
    if isinstance(value, Attribution):
        return _nbytes(value.map_hw) + _nbytes(value.raw)
    return 0


class ResultCache:
    """Bounded, thread-safe LRU of deterministic results (forwards, attributions).

    Bounded twice: at most ``capacity`` entries and at most ``max_bytes`` of arrays (a forward at
    448 px holds about 45 MB of attention, nine times one at 224 px). A result larger than the whole
    budget is not kept.
    """

    def __init__(self, capacity: int = 32, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of arrays held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: tuple) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key: tuple, value: Any) -> None:
        size = _nbytes(value)
        with self._lock:
            self._pop(key)
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._data[key] = value
            self._sizes[key] = size
            self._bytes += size
            while len(self._data) > self.capacity or (self.max_bytes is not None and self._bytes > self.max_bytes):
                self._pop(next(iter(self._data)))

    def _pop(self, key: tuple) -> None:
        if key in self._data:
            del self._data[key]
            self._bytes -= self._sizes.pop(key, 0)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self._bytes = 0


#: Bytes of arrays the result cache may hold (``SEPVIT_RESULT_CACHE_MB``, default 256).
RESULT_CACHE_BYTES = max(0, int(os.environ.get("SEPVIT_RESULT_CACHE_MB", "256"))) * 2**20
# examples (6 forwards + 6 attributions at 224 px, about 30 MB) stay warm; bounded in count and bytes
RESULTS = ResultCache(capacity=16, max_bytes=RESULT_CACHE_BYTES)


def _check_resolution(resolution: Any) -> int:
    return validate_resolution(DEFAULT_RESOLUTION if resolution is None else resolution)


def _photo_digest(photo: Image.Image) -> str:
    h = hashlib.sha256()
    h.update(f"{photo.size}".encode())
    h.update(photo.tobytes())
    return h.hexdigest()


def run_forward(entry: ModelEntry, photo: Image.Image, resolution: int) -> Forward:
    """One forward under capture (:func:`sepvit_viz.pipeline.analyze`), cached by photo, model and size."""
    key = ("forward", entry.key, resolution, _photo_digest(photo))
    hit = RESULTS.get(key)
    if hit is not None:
        return hit
    start = time.perf_counter()
    with entry.borrow() as model:
        result = pipeline.analyze(model, photo, size=resolution, class_names=entry.class_names, precompute=False)
    fwd = Forward(
        entry.key,
        entry.label,
        entry.warning,
        resolution,
        entry.class_names,
        result,
        result.probs.astype(np.float32),
        time.perf_counter() - start,
    )
    RESULTS.put(key, fwd)
    return fwd


def _progress_fn(progress: Any, lo: float, hi: float) -> Callable[[float, str], None] | None:
    if progress is None:
        return None

    def cb(frac: float, desc: str) -> None:
        progress(lo + (hi - lo) * float(frac), desc=desc)

    return cb


# ------------------------------------------------------------------------------------ choices
def target_choices(class_names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs: the top prediction, then every class as ``"index: name"``."""
    names = class_names if class_names is not None else pipeline.class_names_for(1000)
    return [("Top prediction", TOP_PREDICTION)] + [(f"{i}: {n}", str(i)) for i, n in enumerate(names)]


def method_choices() -> list[tuple[str, str]]:
    return [(m.label, m.name) for m in METHODS.values()]


def block_choices(rows: Sequence[Any], pwa_only: bool = False) -> list[tuple[str, str]]:
    """(label, block name) pairs from block-table rows or capture records; ``pwa_only`` keeps blocks with PWA."""
    return [(r.label, r.name) for r in rows if not pwa_only or r.kind != "global"]


def pair_choices(records: Sequence[Any]) -> list[tuple[str, str]]:
    """(label, "dssa_name|gsa_name") for each DSSA block followed by a GSA block in the same stage."""
    pairs = maps.dssa_gsa_pairs([(r.stage, r.kind) for r in records])
    out = []
    for i, j in pairs:
        a, b = records[i], records[j]
        out.append((f"stage {a.stage + 1}: block {a.index + 1} DSSA vs block {b.index + 1} GSA", f"{a.name}|{b.name}"))
    return out


def head_choices(num_heads: int) -> list[tuple[str, str]]:
    """(label, value): head fusions, then each head (values are 0-based indices as strings)."""
    return [("mean of heads", "mean"), ("max of heads", "max"), ("min of heads", "min")] + [
        (f"head {h}", str(h)) for h in range(num_heads)
    ]


def default_block_table() -> list[Any]:
    """Block table of the default architecture at the default resolution (no weights needed)."""
    return create_model("sepvit_lite").block_table(DEFAULT_RESOLUTION)


def _parse_head(head: Any, num_heads: int) -> maps.HeadSelect:
    if head is None or head == "":
        return "mean"
    return validate_head(head, num_heads)  # type: ignore[return-value]


def _parse_target(target: Any, class_names: Sequence[str], top1: int) -> int:
    """Class index from "top", an index (int or string, optionally "i: name") or a class name."""
    if target is None or (isinstance(target, str) and target.strip().lower() in ("", TOP_PREDICTION, "top prediction")):
        return top1
    if isinstance(target, str):
        m = re.fullmatch(r"\s*(\d+):.*", target)  # a dropdown label "123: name"
        if m:
            target = m.group(1)
    return resolve_class(target, class_names)


def _check_method(method: Any) -> str:
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise UserError(f"Unknown attribution method {method!r}; choose one of {', '.join(METHODS)}.")
    return str(method)


def _check_cmap(cmap: Any) -> str:
    cmap = cmap or COLORMAPS[0]
    if cmap not in COLORMAPS:
        raise UserError(f"Unknown colormap {cmap!r}; choose one of {', '.join(COLORMAPS)}.")
    return str(cmap)


def _check_opacity(opacity: Any) -> float:
    return validate_opacity(0.6 if opacity is None else opacity)


# ------------------------------------------------------------------------------------ drawing
#: Pictures are drawn with the photo at least this many pixels wide (integer upscaling of the model
#: input: 224 px -> x2), so the views are readable; clicks are mapped back by the same factor.
DISPLAY_SIDE = 448


def display_scale(resolution: int) -> int:
    """Integer factor from model-input pixels to picture pixels (1 when the input is already large)."""
    return max(1, DISPLAY_SIDE // max(int(resolution), 1))


def _lines(rec: AttentionRecord, size: tuple[int, int]) -> dict[str, Any]:
    """Window borders (and, for GSA, the 7x7 windows inside each group) in model-input pixels."""
    geom = rec.geometry
    out: dict[str, Any] = {}
    if geom.has_token:
        out["grid"] = maps.grid_lines(geom, size)
        if rec.kind == "gsa":
            out["subgrid"] = maps.grid_lines(geom, size, subdivide=2)
    return out


def _picture(
    fwd: Forward,
    heat: np.ndarray,
    cmap: str,
    opacity: float,
    *,
    grid: Any = None,
    subgrid: Any = None,
    box: tuple[int, int, int, int] | None = None,
    marker: tuple[int, int] | None = None,
    title: str | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """:func:`sepvit_viz.render.compose_view` on the photo upscaled by :func:`display_scale`.

    Everything is given in model-input pixels (heat (H, W), lines, box (y0, x0, y1, x1), marker (y, x));
    the heat is repeated k x k (window borders stay exact), the photo resized (bicubic). Without a
    title the photo starts at the picture's top-left corner, so picture pixel (x, y) is model pixel
    (x // k, y // k); the colour bar sits to its right.
    """
    k = display_scale(fwd.resolution)
    image = fwd.image
    if k > 1:
        h, w = image.shape[:2]
        image = np.asarray(Image.fromarray(image).resize((w * k, h * k), Image.Resampling.BICUBIC))
        heat = np.repeat(np.repeat(heat, k, axis=0), k, axis=1)
        grid = None if grid is None else (np.asarray(grid[0]) * k, np.asarray(grid[1]) * k)
        subgrid = None if subgrid is None else (np.asarray(subgrid[0]) * k, np.asarray(subgrid[1]) * k)
        box = None if box is None else tuple(int(v) * k for v in box)
        marker = None if marker is None else (marker[0] * k + k // 2, marker[1] * k + k // 2)
    return render.compose_view(
        image,
        heat,
        cmap=cmap,
        alpha=opacity,
        vmax=vmax,
        grid=grid,
        subgrid=subgrid,
        box=box,
        marker=marker,
        title=title,
    )


# ------------------------------------------------------------------------------------ views
def _image_size(fwd: Forward) -> tuple[int, int]:
    return fwd.image.shape[0], fwd.image.shape[1]


def _attribution(
    an: Analysis,
    model_entry: ModelEntry | None,
    method: str,
    target: int,
    progress: Callable[[float, str], None] | None = None,
) -> Attribution:
    key = (method, target)
    if key in an.attributions:
        return an.attributions[key]
    fwd = an.forward
    cache_key = ("attr", fwd.model_key, fwd.resolution, hashlib.sha256(fwd.image.tobytes()).hexdigest(), method, target)
    hit = RESULTS.get(cache_key)
    if hit is None:
        entry = model_entry or _entry_for(fwd)
        x = to_tensor(Image.fromarray(fwd.image))
        with entry.borrow() as model:
            hit = attribute(model, x, target, method, progress=progress)
        RESULTS.put(cache_key, hit)
    an.attributions[key] = hit
    return hit


def _bundled_name(model_key: str) -> str:
    """The file name inside a ``bundled:<name>:<mtime>`` cache key (see :meth:`ModelStore.resolve`)."""
    return model_key[len(_BUNDLED_PREFIX) :].rsplit(":", 1)[0]


def _entry_for(fwd: Forward) -> ModelEntry:
    """The loaded model an analysis was made with (reloaded if it was evicted)."""
    with MODELS._lock:
        entry = MODELS._entries.get(fwd.model_key)
    if entry is not None:
        return entry
    kind = fwd.model_key.split(":", 1)[0]
    if kind == "default":
        entry = MODELS.get(MODEL_DEFAULT)
    elif kind == "random":
        entry = MODELS.get(MODEL_RANDOM)
    elif kind == "bundled":
        entry = MODELS.get(_BUNDLED_PREFIX + _bundled_name(fwd.model_key))
    else:
        repo, _, rev = fwd.model_key[len("hub:") :].partition("@")
        entry = MODELS.get(MODEL_HUB, repo, None if rev == "main" else rev)
    if entry.key != fwd.model_key:
        raise UserError("The model changed since this photo was analysed; please press Analyze again.")
    return entry


def top5(fwd: Forward) -> dict[str, float]:
    """``{"name (index)": probability}`` of the five most likely classes (for ``gr.Label``)."""
    return {f"{p.name} ({p.index})": p.prob for p in fwd.result.top5}


def attribution_view(
    an: Analysis,
    method: str,
    target: int,
    cmap: str,
    opacity: float,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[np.ndarray, str]:
    """Attribution overlay with a colour bar (uint8) and a one-line caption."""
    att = _attribution(an, None, method, target, progress)
    m = att.map_hw
    signed = bool(m.min() < 0)
    shown = np.maximum(m, 0) if signed else m
    hi = float(np.percentile(shown, 99.5))  # a few extreme pixels should not wash out the rest
    hi = hi if hi > float(shown.min()) else None
    name = an.forward.class_names[target]
    img = _picture(an.forward, shown, cmap, opacity, vmax=hi, title=f"{METHODS[method].label} · {name} ({target})")
    caption = (
        f"**{METHODS[method].label}** for class **{name}** ({target}), p = {an.forward.probs[target]:.3f}; "
        f"{att.seconds:.2f} s." + (" Positive evidence shown (negative values clipped)." if signed else "")
    )
    return img, caption


def _unit(rec: AttentionRecord) -> str:
    return "group" if rec.kind == "gsa" else "window"


def token_view(
    an: Analysis, block: str, head: Any, cmap: str, opacity: float, point: tuple[int, int] | None = None
) -> tuple[np.ndarray, str]:
    """Every window token's attention over its window, tiled over the photo, with the window grid.

    Drawn at model-input size with the colour bar on the right and no title band, so a click at
    (x, y) on the picture is pixel (x, y) of the model input.
    """
    fwd = an.forward
    i = fwd.index(block)
    rec = fwd.records[i]
    h = _parse_head(head, rec.num_heads)
    size = _image_size(fwd)
    with an.lock:
        heat = an.maps.token_map(i, h)
        self_vals = an.maps.token_self(i, h)
    if self_vals is not None:
        caption = (
            f"{rec.label}: each window token's attention over the pixels of its {_unit(rec)} ({_head_name(h)}). "
            f"Window tokens keep {float(np.mean(self_vals)):.1%} of their attention on themselves on average. "
            "Click the photo to pick a pixel."
        )
    else:
        caption = (
            f"{rec.label}: this block has no window tokens (one global window); shown is the mean "
            f"attention each pixel receives ({_head_name(h)}). Click the photo to pick a pixel."
        )
    img = _picture(fwd, heat, cmap, opacity, marker=point, **_lines(rec, size))
    return img, caption


PIXEL_VIEWS = ("dwa", "block")


def pixel_view(
    an: Analysis, block: str, head: Any, point: tuple[int, int], cmap: str, opacity: float, kind: str = "dwa"
) -> tuple[np.ndarray, str]:
    """The clicked pixel's attention: inside its window or group (``"dwa"``), or through the whole
    block, DWA then PWA with the shortcuts (``"block"``); its window outlined."""
    if kind not in PIXEL_VIEWS:
        raise UserError(f"Unknown pixel view {kind!r}; choose 'dwa' (inside its window) or 'block' (whole block).")
    fwd = an.forward
    i = fwd.index(block)
    rec = fwd.records[i]
    h = _parse_head(head, rec.num_heads)
    size = _image_size(fwd)
    y, x = _check_point(point, size)
    with an.lock:
        q = an.maps.pixel_query(i, (y, x), h)
        comp = an.maps.composed(i, (y, x), h) if kind == "block" else None
    where = "the global window" if not rec.has_token else f"{_unit(rec)} {q.window}"
    lines = _lines(rec, size)
    if comp is None:
        title = f"pixel (x={x}, y={y}) in its {_unit(rec) if rec.has_token else 'global window'} · {_head_name(h)}"
        img = _picture(fwd, q.heat, cmap, opacity, box=q.box, marker=(y, x), title=title, **lines)
    else:
        title = f"pixel (x={x}, y={y}) through the whole block · {_head_name(h)}"
        img = _picture(fwd, comp.heat, cmap, opacity, marker=(y, x), title=title, **lines)
    if comp is None:
        tok = "" if q.token_weight is None else f"; it gives {q.token_weight:.1%} of its attention to its window token"
        caption = f"Pixel (x={x}, y={y}) is feature cell {q.cell} of {rec.label}, in {where} ({_head_name(h)}){tok}."
    else:
        caption = (
            f"Pixel (x={x}, y={y}) through the whole block {rec.label} ({_head_name(h)}): DWA inside its {_unit(rec)}, "
            f"then PWA across {_unit(rec)}s, shortcuts counted as attention to itself. "
            f"{comp.token_mass:.1%} of its weight comes from window tokens."
        )
    return img, caption


def _head_name(h: maps.HeadSelect) -> str:
    return f"head {h}" if isinstance(h, int) else f"{h} of heads"


def _check_point(point: Any, size: tuple[int, int]) -> tuple[int, int]:
    try:
        y, x = (round(float(v)) for v in point)
    except (TypeError, ValueError):
        raise UserError(f"A point needs two numbers (x, y), got {point!r}.") from None
    if not (0 <= y < size[0] and 0 <= x < size[1]):
        raise UserError(
            f"Point (x={x}, y={y}) is outside the model input ({size[1]} x {size[0]} pixels: "
            f"x from 0 to {size[1] - 1}, y from 0 to {size[0] - 1})."
        )
    return y, x


def _pwa_record(fwd: Forward, block: str) -> AttentionRecord:
    rec = fwd.record(block)
    if rec.pwa is None:
        raise UserError(
            f"{rec.label} has global attention: no window-to-window (PWA) attention. Choose a DSSA or GSA block."
        )
    return rec


def pwa_views(
    an: Analysis, block: str, head: Any, window: int | None, cmap: str, opacity: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """(PWA matrix picture, the chosen window's row as a heat map over the photo with the grid, caption).

    The photo view is drawn at model-input size without a title band (clicks map to input pixels).
    """
    fwd = an.forward
    rec = _pwa_record(fwd, block)
    i = fwd.index(block)
    h = _parse_head(head, rec.num_heads)
    size = _image_size(fwd)
    geom = rec.geometry
    n = geom.num_windows
    if window is None:
        window = (geom.grid[0] // 2) * geom.grid[1] + geom.grid[1] // 2
    window = int(window)
    if not 0 <= window < n:
        raise UserError(f"Window {window} does not exist: {rec.label} has {_unit(rec)}s 0 to {n - 1}.")
    y0, x0, y1, x1 = maps.window_box(geom, window, size)
    centre = ((y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2)  # a point inside the window, for the pipeline
    with an.lock:
        heat = an.maps.pwa_map(i, centre, h)
        mat = an.maps.pwa_matrix(i, h)
    unit = _unit(rec)
    img = _picture(fwd, heat, cmap, opacity, box=(y0, x0, y1, x1), **_lines(rec, size))
    mat_img = render.matrix_view(
        mat,
        cmap=cmap,
        size=size[0] * display_scale(fwd.resolution),
        highlight=window,
        title=f"PWA {n}x{n} · {rec.label} · {_head_name(h)}",
        row_label=f"query {unit}",
        col_label=f"key {unit}",
    )
    row = mat[window]
    caption = (
        f"{rec.label}: {unit} {window} (outlined) attends most to {unit} {int(np.argmax(row))} "
        f"({float(row.max()):.1%}) and {float(row[window]):.1%} to itself ({_head_name(h)}). "
        f"Matrix: rows = query {unit}s, columns = key {unit}s ({n} x {n}, raster order). "
        f"Click the photo to pick another {unit}."
    )
    return mat_img, img, caption


def compare_views(an: Analysis, pair: str, head: Any, cmap: str, opacity: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Token maps of a DSSA block and the GSA block after it, same photo and settings."""
    fwd = an.forward
    valid = {v for _, v in pair_choices(fwd.records)}
    if pair not in valid:
        raise UserError(
            f"{pair!r} is not a DSSA/GSA block pair of this model at {fwd.resolution} px; "
            f"choose one of: {', '.join(sorted(valid)) or 'none'}."
        )
    a_name, b_name = str(pair).split("|")
    size = _image_size(fwd)
    views = []
    for name in (a_name, b_name):
        i = fwd.index(name)
        rec = fwd.records[i]
        h = _parse_head(head, rec.num_heads)
        with an.lock:
            heat = an.maps.token_map(i, h)
        views.append(_picture(fwd, heat, cmap, opacity, title=f"{rec.label} · {_head_name(h)}", **_lines(rec, size)))
    ra, rb = fwd.record(a_name), fwd.record(b_name)
    caption = (
        f"Left: {ra.label}, each window token over its {ra.window_size}x{ra.window_size} window. "
        f"Right: {rb.label}, each group token over its {rb.window_size}x{rb.window_size} group "
        "(thin lines: the windows inside each group). Same photo, head and colours; the slider "
        "swipes between them."
    )
    return views[0], views[1], caption


# ------------------------------------------------------------------------------------ handlers
def _require(an: Analysis | None) -> Analysis:
    if not isinstance(an, Analysis):
        raise UserError("Upload a photo (or pick an example) and press Analyze first.")
    return an


def analyze(
    photo: Any,
    model_choice: str | None = MODEL_DEFAULT,
    hub_repo: str | None = "",
    hub_revision: str | None = "",
    resolution: Any = DEFAULT_RESOLUTION,
    target: Any = TOP_PREDICTION,
    method: str | None = DEFAULT_METHOD,
    cmap: str | None = COLORMAPS[0],
    opacity: Any = 0.6,
    token_block: str | None = DEFAULT_TOKEN_BLOCK,
    token_head: Any = "mean",
    pwa_block: str | None = DEFAULT_PWA_BLOCK,
    pwa_head: Any = "mean",
    pair: str | None = None,
    progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds its tracker by this default)
) -> tuple[Any, ...]:
    """The main endpoint: a photo in; the top-5 classes and the main views out.

    Returns (analysis state, status Markdown, top-5 ``{label: p}``, attribution overlay, window-token
    map, cross-window map, compare (DSSA, GSA) pair for the image slider).
    """
    with _user_errors(release_memory=True):
        if photo is None:
            raise UserError("Upload a photo (or pick an example) first.")
        res = _check_resolution(resolution)
        method = _check_method(method)
        cmap = _check_cmap(cmap)
        opacity = _check_opacity(opacity)
        progress(0.02, desc="Reading the photo")
        image = load_photo(photo)
        progress(0.08, desc="Loading the model")
        entry = MODELS.get(model_choice, hub_repo, hub_revision)
        progress(0.15, desc=f"SepViT forward at {res} px")
        fwd = run_forward(entry, image, res)
        an = Analysis.of(fwd)
        tgt = _parse_target(target, fwd.class_names, an.top1)
        token_block = token_block or DEFAULT_TOKEN_BLOCK
        pwa_block = pwa_block or DEFAULT_PWA_BLOCK
        pairs = pair_choices(fwd.records)
        pair = pair or (pairs[0][1] if pairs else None)
        # check every setting before the slow part
        fwd.record(token_block)
        _pwa_record(fwd, pwa_block)
        progress(0.3, desc=f"{METHODS[method].label} attribution")
        att_img, _ = attribution_view(an, method, tgt, cmap, opacity, _progress_fn(progress, 0.3, 0.9))
        progress(0.92, desc="Drawing the attention maps")
        tok_img, _ = token_view(an, token_block, token_head, cmap, opacity)
        _, row_img, _ = pwa_views(an, pwa_block, pwa_head, None, cmap, opacity)
        cmp = None
        if pair is not None:
            a, b, _ = compare_views(an, pair, token_head, cmap, opacity)
            cmp = (a, b)
        return an, status_markdown(fwd), top5(fwd), att_img, tok_img, row_img, cmp


def analyze_new_photo(
    photo: Any,
    model_choice: str | None,
    hub_repo: str | None,
    hub_revision: str | None,
    resolution: Any,
    target: Any,
    method: str | None,
    cmap: str | None,
    opacity: Any,
    token_block: str | None,
    token_head: Any,
    pwa_block: str | None,
    pwa_head: Any,
    pair: str | None,
    current: Analysis | None = None,
    progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds its tracker by this default)
) -> tuple[Any, ...]:
    """:func:`analyze` for the photo's change event; clearing the photo keeps everything as it is."""
    if photo is None:
        return (current, *(gr.update() for _ in range(6)))
    return analyze(
        photo,
        model_choice,
        hub_repo,
        hub_revision,
        resolution,
        target,
        method,
        cmap,
        opacity,
        token_block,
        token_head,
        pwa_block,
        pwa_head,
        pair,
        progress=progress,
    )


def coverage_markdown(model_key: str) -> str:
    """The caveat shown with the top-5 classes: the model card's coverage text for the default or a bundled
    checkpoint (:func:`sepvit_viz.evaluate.coverage_note`); "" for other models or a card without it."""
    if model_key.startswith("default:") and model_key != "default:missing":
        path = DEFAULT_CHECKPOINT
    elif model_key.startswith(_BUNDLED_PREFIX):
        path = ASSETS_DIR / _bundled_name(model_key)
    else:
        return ""
    note = coverage_note(path)
    return f"⚠️ **Read these predictions with care.** {note}" if note else ""


def status_markdown(fwd: Forward) -> str:
    """One line on the model and input, the model's warning if it has one, and its coverage caveat (the
    status sits right above the top-5 classes)."""
    line = (
        f"Model: **{fwd.model_label}** · input {fwd.resolution} x {fwd.resolution} px (centre crop) · "
        f"forward with attention capture {fwd.seconds * 1000:.0f} ms"
    )
    caveat = coverage_markdown(fwd.model_key)
    return (f"⚠️ {fwd.warning}\n\n" if fwd.warning else "") + line + (f"\n\n{caveat}" if caveat else "")


def after_analysis(
    an: Analysis | None,
    target: Any,
    method: str | None,
    cmap: str | None,
    opacity: Any,
    token_block: str | None,
    token_head: Any,
    pwa_block: str | None,
    pwa_head: Any,
    pair: str | None,
    view: str | None = "dwa",
) -> tuple[Any, ...]:
    """Everything the UI shows after :func:`analyze` beyond its API outputs (no model run).

    Dropdown updates (block lists: labels depend on the model and the resolution; heads; classes),
    the faithfulness table (empty for a new photo), captions, the pixel view at the centre, the PWA
    matrix, the side-by-side compare pair, and reset click positions (x, y, window).
    """
    if not isinstance(an, Analysis):
        return (gr.update(),) * 19
    with _user_errors(release_memory=True):
        fwd = an.forward
        recs = fwd.records
        names = {r.name for r in recs}
        tb = (
            token_block
            if token_block in names
            else (DEFAULT_TOKEN_BLOCK if DEFAULT_TOKEN_BLOCK in names else recs[0].name)
        )
        pwa_opts = block_choices(recs, pwa_only=True)
        pb = pwa_block if pwa_block in {v for _, v in pwa_opts} else (pwa_opts[0][1] if pwa_opts else None)
        pairs = pair_choices(recs)
        pr = pair if pair in {v for _, v in pairs} else (pairs[0][1] if pairs else None)
        tgt_opts = target_choices(fwd.class_names)
        tgt = target if target in {v for _, v in tgt_opts} else TOP_PREDICTION
        th_opts = head_choices(fwd.record(tb).num_heads)
        th = token_head if token_head in {v for _, v in th_opts} else "mean"
        ph_opts = head_choices(fwd.record(pb).num_heads) if pb else head_choices(1)
        ph = pwa_head if pwa_head in {v for _, v in ph_opts} else "mean"
        cmap, opacity, method = _check_cmap(cmap), _check_opacity(opacity), _check_method(method)
        t = _parse_target(tgt, fwd.class_names, an.top1)
        att_caption = attribution_view(an, method, t, cmap, opacity)[1] if (method, t) in an.attributions else ""
        _, tok_caption, pix, pix_caption = window_tokens(an, tb, th, cmap, opacity, -1, -1, view)
        if pb is not None:
            mat, _, pwa_caption = pwa_views(an, pb, ph, None, cmap, opacity)
        else:
            mat, pwa_caption = None, "This model has no window-to-window attention at this resolution."
        if pr is not None:
            cmp_a, cmp_b, cmp_caption = compare_views(an, pr, th, cmap, opacity)
        else:
            cmp_a = cmp_b = None
            cmp_caption = "This model has no DSSA block followed by a GSA block at this resolution."
        return (
            gr.update(choices=block_choices(recs), value=tb),
            gr.update(choices=th_opts, value=th),
            gr.update(choices=pwa_opts, value=pb),
            gr.update(choices=ph_opts, value=ph),
            gr.update(choices=pairs, value=pr),
            gr.update(choices=tgt_opts, value=tgt),
            _faith_rows(an),
            att_caption,
            tok_caption,
            pix,
            pix_caption,
            mat,
            pwa_caption,
            cmp_a,
            cmp_b,
            cmp_caption,
            -1,
            -1,
            -1,
        )


def head_update(an: Analysis | None, block: str | None, head: Any, rows: Sequence[Any] | None = None) -> Any:
    """Head dropdown choices for a block (keeps the head when the new block has it)."""
    num = None
    if isinstance(an, Analysis):
        try:
            num = an.forward.record(block).num_heads
        except UserError:
            num = None
    if num is None:
        for r in rows or default_block_table():
            if r.name == block:
                num = r.num_heads
    if num is None:
        return gr.update()
    choices = head_choices(num)
    return gr.update(choices=choices, value=head if head in {v for _, v in choices} else "mean")


def explain(
    an: Analysis | None,
    target: Any,
    method: str | None,
    cmap: str | None,
    opacity: Any,
    progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds its tracker by this default)
) -> tuple[Any, ...]:
    """Attribution overlay for a chosen class and method (the model runs only for a new pair)."""
    with _user_errors(release_memory=True):
        an = _require(an)
        method = _check_method(method)
        tgt = _parse_target(target, an.forward.class_names, an.top1)
        progress(0.0, desc=f"{METHODS[method].label}")
        img, caption = attribution_view(
            an, method, tgt, _check_cmap(cmap), _check_opacity(opacity), _progress_fn(progress, 0.0, 1.0)
        )
        scores = an.curves.get((method, tgt))
        if scores is not None:
            caption += f" Deletion AUC {scores.deletion_auc:.3f} (lower is better), insertion AUC {scores.insertion_auc:.3f} (higher is better)."
        return an, img, caption


def _unset(v: Any) -> bool:
    """Hidden click fields start at -1 (nothing clicked yet); None and "" mean the same."""
    if v is None or v == "":
        return True
    try:
        return float(v) == -1
    except (TypeError, ValueError):
        return False


def window_tokens(
    an: Analysis | None,
    block: str | None,
    head: Any,
    cmap: str | None,
    opacity: Any,
    x: Any = -1,
    y: Any = -1,
    view: str | None = "dwa",
) -> tuple[Any, ...]:
    """Window-token map of a block, and the pixel view at (x, y) (-1, -1: the centre).

    Returns (token map, its caption, pixel view, its caption).
    """
    with _user_errors():
        an = _require(an)
        cmap, opacity = _check_cmap(cmap), _check_opacity(opacity)
        block = block or DEFAULT_TOKEN_BLOCK
        size = _image_size(an.forward)
        point = None if _unset(x) or _unset(y) else _check_point((y, x), size)
        tok, caption = token_view(an, block, head, cmap, opacity, point)
        if point is None:
            point = (size[0] // 2, size[1] // 2)
        pix, pix_caption = pixel_view(an, block, head, point, cmap, opacity, view or "dwa")
        return tok, caption, pix, pix_caption


def pixel_query(
    an: Analysis | None,
    block: str | None,
    head: Any,
    x: Any,
    y: Any,
    cmap: str | None,
    opacity: Any,
    view: str | None = "dwa",
) -> tuple[Any, ...]:
    """One pixel's attention (x, y in model-input pixels): in its window (``view="dwa"``) or through the
    whole block (``"block"``). Returns (token map with the pixel marked, pixel view, caption)."""
    with _user_errors():
        an = _require(an)
        if x is None or y is None:
            raise UserError("Click a pixel on the photo (or give x and y).")
        size = _image_size(an.forward)
        point = _check_point((y, x), size)
        block = block or DEFAULT_TOKEN_BLOCK
        cmap, opacity = _check_cmap(cmap), _check_opacity(opacity)
        tok, _ = token_view(an, block, head, cmap, opacity, point)
        pix, caption = pixel_view(an, block, head, point, cmap, opacity, view or "dwa")
        return tok, pix, caption


def cross_window(
    an: Analysis | None, block: str | None, head: Any, window: Any, cmap: str | None, opacity: Any
) -> tuple[Any, ...]:
    """PWA matrix and one window's attention over all windows (window: raster index; -1 = the centre).

    Returns (matrix picture, heat map over the photo, caption).
    """
    with _user_errors():
        an = _require(an)
        w = None
        if not _unset(window):
            try:
                wf = float(window)
            except (TypeError, ValueError):
                raise UserError(f"Window must be a whole number, got {window!r}.") from None
            if isinstance(window, bool) or not wf.is_integer():
                raise UserError(f"Window must be a whole number, got {window!r}.")
            w = int(wf)
        return pwa_views(an, block or DEFAULT_PWA_BLOCK, head, w, _check_cmap(cmap), _check_opacity(opacity))


def compare(an: Analysis | None, pair: str | None, head: Any, cmap: str | None, opacity: Any) -> tuple[Any, ...]:
    """DSSA vs GSA token maps side by side and as an image-slider pair."""
    with _user_errors():
        an = _require(an)
        if not pair:
            pairs = pair_choices(an.forward.records)
            if not pairs:
                raise UserError("This model has no DSSA block followed by a GSA block at this resolution.")
            pair = pairs[0][1]
        a, b, caption = compare_views(an, pair, head, _check_cmap(cmap), _check_opacity(opacity))
        return (a, b), a, b, caption


def _click(an: Analysis, evt: gr.SelectData) -> tuple[int, int] | None:
    """Model-input (x, y) of a click on a view without title band (see :func:`_picture`); None on the colour bar."""
    size = _image_size(an.forward)
    k = display_scale(an.forward.resolution)
    x, y = (int(float(v)) // k for v in evt.index)
    if not (0 <= x < size[1] and 0 <= y < size[0]):
        return None
    return x, y


def point_from_select(an: Analysis | None, evt: gr.SelectData) -> tuple[Any, Any]:
    """Click on a displayed view -> (x, y) in model-input pixels (views are drawn at input size)."""
    if not isinstance(an, Analysis) or evt is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
        return gr.update(), gr.update()
    xy = _click(an, evt)
    return (gr.update(), gr.update()) if xy is None else xy


def reset_window() -> int:
    """A new block has another window grid: go back to its centre window."""
    return -1


def window_from_select(an: Analysis | None, block: str | None, evt: gr.SelectData) -> Any:
    """Click on the cross-window view -> index of the window (or group) under it."""
    if not isinstance(an, Analysis) or evt is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
        return gr.update()
    try:
        rec = _pwa_record(an.forward, block or DEFAULT_PWA_BLOCK)
    except UserError:
        return gr.update()
    xy = _click(an, evt)
    if xy is None:
        return gr.update()
    return maps.window_at(rec.geometry, (xy[1], xy[0]), _image_size(an.forward))


def rerender(
    an: Analysis | None,
    target: Any,
    method: str | None,
    cmap: str | None,
    opacity: Any,
    token_block: str | None,
    token_head: Any,
    x: Any,
    y: Any,
    pwa_block: str | None,
    pwa_head: Any,
    window: Any,
    pair: str | None,
    view: str | None = "dwa",
) -> tuple[Any, ...]:
    """Redraw every view after a colormap / opacity change (cached attributions; no model run)."""
    if not isinstance(an, Analysis):
        return (gr.update(),) * 8
    with _user_errors():
        cmap, opacity = _check_cmap(cmap), _check_opacity(opacity)
        method = _check_method(method)
        tgt = _parse_target(target, an.forward.class_names, an.top1)
        att = (
            gr.update() if (method, tgt) not in an.attributions else attribution_view(an, method, tgt, cmap, opacity)[0]
        )
        tok, _, pix, _ = window_tokens(an, token_block, token_head, cmap, opacity, x, y, view)
        mat, row, _ = cross_window(an, pwa_block, pwa_head, window, cmap, opacity)
        try:
            sl, a, b, _ = compare(an, pair, token_head, cmap, opacity)
        except gr.Error:
            sl, a, b = None, None, None
        return att, tok, pix, mat, row, sl, a, b


# ------------------------------------------------------------------------------------ faithfulness
FAITH_HEADERS = ["method", "class", "deletion AUC (lower = better)", "insertion AUC (higher = better)", "seconds"]


def _faith_rows(an: Analysis) -> list[list[Any]]:
    rows = []
    for (method, tgt), c in sorted(
        an.curves.items(), key=lambda kv: kv[1].insertion_auc - kv[1].deletion_auc, reverse=True
    ):
        att = an.attributions.get((method, tgt))
        rows.append(
            [
                METHODS[method].label,
                f"{an.forward.class_names[tgt]} ({tgt})",
                round(c.deletion_auc, 4),
                round(c.insertion_auc, 4),
                round(att.seconds, 2) if att else None,
            ]
        )
    return rows


def faithfulness(
    an: Analysis | None,
    target: Any,
    method: str | None,
    scope: str | None = "this method",
    steps: Any = 16,
    progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds its tracker by this default)
) -> tuple[Any, ...]:
    """Deletion / insertion scores of the chosen method (or every method) for the chosen class.

    Returns (state, table rows sorted by insertion - deletion, curves plot).
    """
    with _user_errors(release_memory=True):
        an = _require(an)
        tgt = _parse_target(target, an.forward.class_names, an.top1)
        steps = validate_steps(steps, maximum=64, what="The number of deletion / insertion steps")
        methods = list(METHODS) if scope == "all methods" else [_check_method(method)]
        entry = _entry_for(an.forward)
        x = to_tensor(Image.fromarray(an.forward.image))
        for k, m in enumerate(methods):
            lo, hi = k / len(methods), (k + 1) / len(methods)
            mid = lo + 0.6 * (hi - lo)
            att = _attribution(an, entry, m, tgt, _progress_fn(progress, lo, mid))
            if (m, tgt) not in an.curves:
                progress(mid, desc=f"deletion / insertion: {METHODS[m].label}")
                with entry.borrow() as model:
                    an.curves[(m, tgt)] = deletion_insertion(
                        model, x, att.map_hw, tgt, steps=steps, progress=_progress_fn(progress, mid, hi)
                    )
        curves = {METHODS[m].label: an.curves[(m, tgt)] for m in methods}
        return an, _faith_rows(an), curves_plot(curves)


def curves_plot(curves: dict[str, Curves]) -> np.ndarray:
    """Deletion and insertion curves of several methods side by side: (H, W, 3) uint8 (Figure API, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax_d, ax_i = fig.subplots(1, 2, sharey=True)
    for label, c in curves.items():
        ax_d.plot(c.fractions, c.deletion, label=f"{label} ({c.deletion_auc:.3f})")
        ax_i.plot(c.fractions, c.insertion, label=f"{label} ({c.insertion_auc:.3f})")
    ax_d.set_title("deletion (lower AUC = better)")
    ax_i.set_title("insertion (higher AUC = better)")
    for ax in (ax_d, ax_i):
        ax.set_xlabel("fraction of pixels")
        ax.legend(fontsize=7)
    ax_d.set_ylabel("class probability")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# ------------------------------------------------------------------------------------ downloads
DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "sepvit_viz_downloads"
DOWNLOAD_TTL_S = 3600


def _prune_downloads(now: float | None = None) -> None:
    now = time.time() if now is None else now
    if not DOWNLOAD_ROOT.is_dir():
        return
    for d in DOWNLOAD_ROOT.iterdir():
        try:
            if d.is_dir() and now - d.stat().st_mtime > DOWNLOAD_TTL_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def prepare_downloads(
    an: Analysis | None,
    target: Any,
    method: str | None,
    cmap: str | None,
    opacity: Any,
    token_block: str | None,
    token_head: Any,
    x: Any,
    y: Any,
    pwa_block: str | None,
    pwa_head: Any,
    window: Any,
    pair: str | None,
    view: str | None = "dwa",
) -> list[str]:
    """PNG files of the current views and ``sepvit_analysis.npz`` with the raw arrays.

    The .npz holds the model input, logits and probabilities, every block's DWA (and PWA) attention,
    the maps of the current token-tab settings and every attribution map computed so far.
    """
    with _user_errors():
        an = _require(an)
        fwd = an.forward
        cmap, opacity = _check_cmap(cmap), _check_opacity(opacity)
        method = _check_method(method)
        tgt = _parse_target(target, fwd.class_names, an.top1)
        views: dict[str, np.ndarray] = {"input": fwd.image}
        if (method, tgt) in an.attributions:
            views[f"attribution_{method}_{tgt}"] = attribution_view(an, method, tgt, cmap, opacity)[0]
        tok, _, pix, _ = window_tokens(an, token_block, token_head, cmap, opacity, x, y, view)
        views["window_tokens"], views[f"pixel_{view or 'dwa'}"] = tok, pix
        mat, row, _ = cross_window(an, pwa_block, pwa_head, window, cmap, opacity)
        views["pwa_matrix"], views["cross_window"] = mat, row
        try:
            _, a, b, _ = compare(an, pair, token_head, cmap, opacity)
            views["compare_dssa"], views["compare_gsa"] = a, b
        except gr.Error:
            pass
        block = token_block or DEFAULT_TOKEN_BLOCK
        i = fwd.index(block)
        size = _image_size(fwd)
        point = None if _unset(x) or _unset(y) else _check_point((y, x), size)
        settings = pipeline.ViewSettings(block=i, head=_parse_head(token_head, fwd.records[i].num_heads), point=point)
        with an.lock:
            arrays = an.maps.arrays(settings)
        arrays["probs"] = fwd.probs
        for (m, t), att in an.attributions.items():
            arrays[f"attribution.{m}.{t}"] = att.map_hw
        _prune_downloads()
        out = DOWNLOAD_ROOT / uuid.uuid4().hex
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for name, img in views.items():
            path = out / f"{name}.png"
            path.write_bytes(render.to_png(img))
            files.append(str(path))
        path = out / "sepvit_analysis.npz"
        render.export_npz(arrays, path)
        files.append(str(path))
        return files
