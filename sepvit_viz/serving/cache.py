"""The result cache: a bounded, thread-safe LRU of deterministic results under typed keys.

A forward (:class:`ForwardKey`: model, resolution, photo digest, input size) and an attribution
(:class:`AttributionKey`: model, resolution, digest of the model input, method, class) depend on
nothing else, so a photo seen again (the examples, a user pressing Analyze twice) comes back at once.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from sepvit_viz.limits import RESULT_CACHE_BYTES, RESULT_CACHE_ENTRIES, SESSION_BYTES
from sepvit_viz.serving.models import ModelKey

__all__ = ["RESULTS", "SESSIONS", "AttributionKey", "ForwardKey", "ResultCache", "SessionBudget", "digest", "nbytes"]


def digest(pixels: np.ndarray) -> str:
    """SHA-256 of an image's shape and pixels (what a cached result is keyed by)."""
    h = hashlib.sha256()
    h.update(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ForwardKey:
    """One forward: which model, at which resolution, of which photo (:func:`digest` of its pixels),
    at which model input (height, width): the photo's fit (square crop or its own aspect) decides it,
    and a square photo gets the same input, so the same entry, either way."""

    model: ModelKey
    resolution: int
    photo: str
    input_size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class AttributionKey:
    """One attribution: by ``model`` at ``resolution``, of the model input ``image`` (:func:`digest` of
    the crop the model saw, shape included), by ``method``, for class ``target``."""

    model: ModelKey
    resolution: int
    image: str
    method: str
    target: int


def nbytes(value: Any) -> int:
    """Bytes of the arrays a cached result holds (its memory, give or take small objects).

    Arrays and tensors count their buffers; a result with an integer ``nbytes`` attribute (a forward)
    says its own size; any other object counts the arrays among its attributes (an attribution).
    """
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return int(value.numel() * value.element_size())
    own = getattr(value, "nbytes", None)
    if isinstance(own, int):
        return own
    return sum(nbytes(v) for v in getattr(value, "__dict__", {}).values() if isinstance(v, (np.ndarray, torch.Tensor)))


class ResultCache:
    """Bounded, thread-safe LRU of deterministic results (forwards, attributions).

    Bounded twice: at most ``capacity`` entries and at most ``max_bytes`` of arrays (a forward at
    448 px holds about 45 MB of attention, nine times one at 224 px). A result larger than the whole
    budget is not kept.
    """

    def __init__(self, capacity: int = 32, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._sizes: dict[Any, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of arrays held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        size = nbytes(value)
        with self._lock:
            self._pop(key)
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._data[key] = value
            self._sizes[key] = size
            self._bytes += size
            while len(self._data) > self.capacity or (self.max_bytes is not None and self._bytes > self.max_bytes):
                self._pop(next(iter(self._data)))

    def _pop(self, key: Any) -> None:
        if key in self._data:
            del self._data[key]
            self._bytes -= self._sizes.pop(key, 0)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self._bytes = 0


# examples (9 forwards + 9 attributions at 224 px, about 45 MB) stay warm; bounded in count and bytes
RESULTS = ResultCache(capacity=RESULT_CACHE_ENTRIES, max_bytes=RESULT_CACHE_BYTES)


class Releasable(Protocol):
    """What :class:`SessionBudget` tracks: its size in bytes, and a way to let go of its arrays."""

    @property
    def nbytes(self) -> int: ...

    def release(self) -> bool: ...


class SessionBudget:
    """The bytes of per-user analyses, bounded: past ``max_bytes`` the least recently used go first.

    :meth:`touch` marks an analysis used now (tracking it when new), then asks the least recently used
    others to :meth:`Releasable.release` their arrays until the total fits. The analysis touched is
    never released (a user is always served their own analysis), so what is held stays under
    ``max_bytes`` plus one analysis. An analysis that is busy (its ``release`` returns False) is
    skipped. Only weak references are kept: one that Gradio drops (time-to-live, session capacity)
    leaves by itself.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._live: OrderedDict[int, weakref.ref] = OrderedDict()
        self._lock = threading.Lock()
        self.released = 0  # analyses released so far (for the load benchmark)

    def _alive(self) -> list[tuple[int, Any]]:
        out = []
        for k, ref in list(self._live.items()):
            obj = ref()
            if obj is None:
                del self._live[k]
            else:
                out.append((k, obj))
        return out

    @property
    def nbytes(self) -> int:
        """Bytes the tracked analyses hold now."""
        with self._lock:
            return sum(obj.nbytes for _, obj in self._alive())

    def __len__(self) -> int:
        with self._lock:
            return len(self._alive())

    def touch(self, obj: Releasable) -> None:
        with self._lock:
            k = id(obj)
            ref = self._live.get(k)
            if ref is None or ref() is not obj:
                self._live[k] = weakref.ref(obj)
            self._live.move_to_end(k)
            alive = self._alive()
            total = sum(o.nbytes for _, o in alive)
            for key, other in alive[:-1]:  # oldest first; never the one just touched
                if total <= self.max_bytes:
                    break
                size = other.nbytes
                if other.release():
                    del self._live[key]
                    total -= size
                    self.released += 1


# users' analyses (each session's gr.State), bounded in bytes on top of Gradio's count and time-to-live
SESSIONS = SessionBudget(SESSION_BYTES)
