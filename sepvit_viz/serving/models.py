"""The model pool: each model loaded once, lazily, and kept as a few replicas.

A request borrows one replica for its whole run, so hooks that one request attaches (attention
capture, Grad-CAM, relevance) never see another request's forward. Models are named by a typed
:class:`ModelKey` (which file, which version), never by a string parsed back.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sepvit_viz.limits import CONCURRENCY, MODEL_CACHE_ENTRIES
from sepvit_viz.model.sepvit import SepViT, create_model
from sepvit_viz.model.weights import ASSETS_DIR, DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, load_from_hub
from sepvit_viz.validation import SettingsError, is_hub_repo_id, is_hub_revision
from sepvit_viz.viz import pipeline

__all__ = [
    "MODELS",
    "MODEL_DEFAULT",
    "MODEL_HUB",
    "MODEL_RANDOM",
    "ModelEntry",
    "ModelKey",
    "ModelStore",
    "bundled_checkpoints",
    "model_choices",
]

MODEL_DEFAULT = "default"
MODEL_RANDOM = "random"
MODEL_HUB = "hub"
BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True)
class ModelKey:
    """Which model a result came from.

    kind: ``"default" | "bundled" | "random" | "hub"``; name: the bundled file name or the Hub repo id
    (``""`` otherwise); revision: the Hub revision (``"main"`` when none was given); version: the
    file's mtime and size for files (a replaced checkpoint is another model), else ``""``;
    missing: the default checkpoint is absent (random weights stand in).
    """

    kind: str
    name: str = ""
    revision: str = ""
    version: str = ""
    missing: bool = False

    @property
    def checkpoint(self) -> Path | None:
        """The local file this model comes from (default or bundled), None otherwise."""
        if self.kind == "default" and not self.missing:
            return DEFAULT_CHECKPOINT
        if self.kind == "bundled":
            return ASSETS_DIR / self.name
        return None

    @property
    def choice(self) -> tuple[str, str, str]:
        """(dropdown value, Hub repo, Hub revision) that selects this model again."""
        if self.kind == "bundled":
            return BUNDLED_PREFIX + self.name, "", ""
        if self.kind == "hub":
            return MODEL_HUB, self.name, "" if self.revision == "main" else self.revision
        return self.kind, "", ""


Loader = Callable[[], tuple[SepViT, str, "str | None"]]


@dataclass
class ModelEntry:
    """A loaded model: its replicas (one per concurrent request), names and an optional warning."""

    key: ModelKey
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
            raise SettingsError("The app is busy; please try again in a moment.") from None
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
    out += [(f"bundled: {p.name}", BUNDLED_PREFIX + p.name) for p in bundled_checkpoints()]
    out += [("SepViT-Lite, random weights (baseline)", MODEL_RANDOM), ("Hugging Face Hub checkpoint…", MODEL_HUB)]
    return out


def _version(path: Path) -> str:
    st = path.stat()
    return f"{st.st_mtime_ns}:{st.st_size}"


def load_default() -> tuple[SepViT, str, str | None]:
    """The shipped checkpoint, or random weights with a warning when it is missing."""
    if DEFAULT_CHECKPOINT.is_file():
        return load_checkpoint(DEFAULT_CHECKPOINT), "SepViT-Lite, distilled (default checkpoint)", None
    model, label, _ = load_random()
    return (
        model,
        label,
        (
            f"The default checkpoint ({DEFAULT_CHECKPOINT.name}) is not available: the app is running SepViT-Lite "
            "with **random weights**. Predictions and maps are meaningless until the checkpoint is installed."
        ),
    )


def load_random() -> tuple[SepViT, str, str | None]:
    """SepViT-Lite with seeded random weights (a baseline for the maps)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("sepvit_lite")
    return model, "SepViT-Lite, random weights", "Random weights: a baseline for the maps, not a classifier."


class ModelStore:
    """Thread-safe, lazily filled, bounded cache of models (each a pool of ``replicas`` copies)."""

    def __init__(self, replicas: int = CONCURRENCY, capacity: int = MODEL_CACHE_ENTRIES) -> None:
        self.replicas = replicas
        self.capacity = capacity
        self._entries: OrderedDict[ModelKey, ModelEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[ModelKey, threading.Lock] = {}

    def resolve(
        self, choice: str | None, repo: str | None = None, revision: str | None = None
    ) -> tuple[ModelKey, Loader]:
        """(key, loader) for a model choice; raises :class:`SettingsError` for an unknown one."""
        choice = choice or MODEL_DEFAULT
        if not isinstance(choice, str):  # a list: the API's dropdown takes one of its choices in a list
            raise SettingsError(f"Unknown model choice {choice!r}; choose one from the list.")
        if choice == MODEL_DEFAULT:
            if DEFAULT_CHECKPOINT.is_file():
                return ModelKey("default", version=_version(DEFAULT_CHECKPOINT)), load_default
            return ModelKey("default", missing=True), load_default
        if choice == MODEL_RANDOM:
            return ModelKey("random"), load_random
        if choice.startswith(BUNDLED_PREFIX):
            name = choice[len(BUNDLED_PREFIX) :]
            files = {p.name: p for p in bundled_checkpoints()}
            if name not in files:
                raise SettingsError(f"No bundled checkpoint named {name!r}; choose one from the list.")
            path = files[name]
            return ModelKey("bundled", name, version=_version(path)), lambda: (
                load_checkpoint(path),
                f"bundled checkpoint {name}",
                None,
            )
        if choice == MODEL_HUB:
            repo = (repo or "").strip()
            rev = (revision or "").strip() or None
            if not is_hub_repo_id(repo):
                raise SettingsError(f"Enter a Hugging Face Hub repo id like 'owner/name' (got {repo!r}).")
            if rev is not None and not is_hub_revision(rev):
                raise SettingsError(f"Invalid revision {rev!r}: use a branch, tag or commit hash.")

            def load_hub() -> tuple[SepViT, str, str | None]:
                try:
                    model = load_from_hub(repo, revision=rev)
                except CheckpointError as e:
                    raise SettingsError(
                        f"Could not load {repo} from the Hugging Face Hub: {str(e).rstrip('.')}."
                    ) from None
                return model, f"{repo}@{rev or 'main'} (Hugging Face Hub)", None

            return ModelKey("hub", repo, rev or "main"), load_hub
        raise SettingsError(f"Unknown model choice {choice!r}; choose one from the list.")

    def loaded(self, choice: str | None, repo: str | None = None, revision: str | None = None) -> bool:
        """True when the model of this choice is in the pool (:meth:`get` returns at once); False also
        for a choice :meth:`resolve` refuses (then :meth:`get` says why)."""
        try:
            key, _ = self.resolve(choice, repo, revision)
        except SettingsError:
            return False
        with self._lock:
            return key in self._entries

    def get(self, choice: str | None, repo: str | None = None, revision: str | None = None) -> ModelEntry:
        """The loaded model for a choice (loaded now, once, if needed)."""
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

    def entry_for(self, key: ModelKey) -> ModelEntry:
        """The loaded model a result was made with (loaded again if it was evicted); a
        :class:`SettingsError` when that model changed since (a replaced checkpoint file)."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            entry = self.get(*key.choice)
        if entry.key != key:
            raise SettingsError("The model changed since this photo was analysed; please press Analyze again.")
        return entry


def _build_entry(key: ModelKey, model: SepViT, label: str, warning: str | None, replicas: int) -> ModelEntry:
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


#: The app's model pool.
MODELS = ModelStore()
