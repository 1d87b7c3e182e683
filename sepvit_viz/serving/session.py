"""A user's analysis in the app: one forward of one photo (:class:`Forward`, shared through the result
cache) and what one user computed from it (:class:`Session`, held in a ``gr.State``).

The memory budget (:data:`sepvit_viz.serving.cache.SESSIONS`) counts every :class:`Session` and may
release the least recently used one; :func:`using` holds one for a request so that cannot happen
mid-request, and tells a user whose analysis is gone what to do. :func:`session_for` /
:func:`superseded` say whether a browser session has analysed another photo since, so a slow result
for the old photo never reaches the page. No Gradio components are built here.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sepvit_viz.explain.attribution import Attribution
from sepvit_viz.explain.faithfulness import Curves
from sepvit_viz.explain.scorecard import Scorecard
from sepvit_viz.limits import STATE_TTL_S
from sepvit_viz.serving import cache
from sepvit_viz.serving.cache import RESULTS, ForwardKey, digest, nbytes
from sepvit_viz.serving.models import ModelEntry, ModelKey
from sepvit_viz.validation import SettingsError
from sepvit_viz.viz import pipeline
from sepvit_viz.viz.capture import AttentionRecord

__all__ = [
    "RELEASED_MESSAGE",
    "Forward",
    "Session",
    "live",
    "newest_mark",
    "restore_mark",
    "run_forward",
    "session_for",
    "superseded",
    "using",
]


#: What a user whose analysis the memory budget released is told.
RELEASED_MESSAGE = (
    "This analysis was set aside to keep the server's memory bounded (many people are using the app); "
    "press Analyze again to redo it."
)


@dataclass(frozen=True)
class Forward:
    """One forward of one photo under attention capture (deterministic: shared by the result cache).

    ``result`` is the pipeline's :class:`sepvit_viz.viz.pipeline.Analysis`; only its arrays are read
    from here, never its memo (each session gets a copy with its own memo, ``result.fresh()``).
    """

    model_key: ModelKey
    model_label: str
    warning: str | None
    resolution: int
    class_names: list[str]
    result: pipeline.Analysis
    probs: np.ndarray
    seconds: float
    fit: str = "crop"

    @property
    def image(self) -> np.ndarray:
        return self.result.image

    @property
    def records(self) -> list[AttentionRecord]:
        return self.result.records

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (for the result cache's budget)."""
        return self.result.nbytes + int(self.probs.nbytes)

    def index(self, name: str) -> int:
        """Position of block ``name`` (``"stages.1.blocks.0"``) in the records; clear error if unknown."""
        for i, r in enumerate(self.records):
            if r.name == name:
                return i
        raise SettingsError(f"Unknown block {name!r}; choose one of: {', '.join(r.name for r in self.records)}.")

    def record(self, name: str) -> AttentionRecord:
        return self.records[self.index(name)]


_SERIALS = itertools.count()


@dataclass
class Session:
    """What the app keeps per user (in a ``gr.State``): the forward and what was computed from it.

    ``maps`` memoises every attention map drawn so far; ``attributions`` and ``curves`` hold the
    attribution maps and deletion / insertion curves per (method, class); ``scorecards`` the
    faithfulness tables per (methods, class, steps, sanity option), ``scorecard`` the one shown last.
    """

    forward: Forward
    maps: pipeline.Analysis
    attributions: dict[tuple[str, int], Attribution] = field(default_factory=dict)
    curves: dict[tuple[str, int], Curves] = field(default_factory=dict)
    scorecards: dict[tuple[tuple[str, ...], int, int, str | None], Scorecard] = field(default_factory=dict)
    scorecard: Scorecard | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    pictures: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict, repr=False)
    #: Capture records of the photo's centre square when its input was not square (the Model tab's
    #: marks, :func:`sepvit_viz.serving.model_tab.model_tab`): made on first use, then kept.
    square_records: list[AttentionRecord] | None = field(default=None, repr=False)

    #: Pictures kept per session (about 0.7 MB each at 224 px): enough that the events following one
    #: another (``/analyze``, then the secondary views) never draw a picture twice.
    MAX_PICTURES: ClassVar[int] = 8  # every tab's pictures (6) and two more
    #: True once :meth:`release` let go of the arrays (the memory budget, :data:`cache.SESSIONS`).
    released: bool = False
    #: True once :func:`~sepvit_viz.serving.handlers.after_analysis` set the page up for this analysis:
    #: clearing the photo runs that event chain again on the same session, and then it must change nothing.
    page_set: bool = False
    #: The tabs drawn for this analysis by the event after it (``handlers.show_tab_after_analysis``):
    #: when the chain of events runs again on the same session (a photo cleared, or the same upload's
    #: second change event), the page shows them already and nothing is sent again.
    tabs_drawn: set[str] = field(default_factory=set, repr=False)
    #: The Model tab's settings (measure, model, Hub repo, revision) when the event after an analysis
    #: drew it for this analysis last (``model_tab.model_tab_if_shown``): the same again draws nothing.
    model_tab_drawn: tuple[Any, ...] | None = field(default=None, repr=False)
    #: Requests reading this analysis now (:meth:`in_use`); the memory budget never releases it then.
    _busy: int = field(default=0, repr=False)
    _busy_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Which analysis this is, in the order they were made (:func:`superseded` compares them).
    serial: int = field(default_factory=lambda: next(_SERIALS))

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this user's analysis holds: the forward, its maps, attributions, pictures."""
        if self.released:
            return 0
        # counted in place: this runs on every draw (the budget's touch), so nothing is converted
        pictures = sum(pipeline.array_nbytes(p) for p in list(self.pictures.values()))
        extra = sum(nbytes(a) for a in list(self.attributions.values()) + list(self.curves.values()))
        extra += pipeline.array_nbytes(self.square_records or [])
        return self.forward.nbytes + self.maps.memo_nbytes + extra + pictures

    @contextmanager
    def in_use(self) -> Iterator[Session]:
        """Mark the analysis read by a request for the ``with`` body: :meth:`release` refuses meanwhile,
        so another user's analysis that fills the memory budget cannot pull it away mid-request.
        Raises :class:`SettingsError` (:data:`RELEASED_MESSAGE`) when it is released already."""
        with self._busy_lock:
            if self.released:
                raise SettingsError(RELEASED_MESSAGE)
            self._busy += 1
        try:
            yield self
        finally:
            with self._busy_lock:
                self._busy -= 1

    def release(self) -> bool:
        """Let go of every array (the user is asked to analyse again); False while a request uses it
        (:meth:`in_use`) or draws from it."""
        with self._busy_lock:
            if self._busy or not self.lock.acquire(blocking=False):
                return False
            try:
                self.released = True
                self.forward = None  # type: ignore[assignment]  # a released session is never read (using refuses it)
                self.maps = None  # type: ignore[assignment]
                self.attributions.clear()
                self.curves.clear()
                self.scorecards.clear()
                self.scorecard = None
                self.pictures.clear()
                self.square_records = None
                return True
            finally:
                self.lock.release()

    def draw(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key`` (a view's function name and its settings), the last few kept."""
        with self.lock:
            if key in self.pictures:
                self.pictures.move_to_end(key)
                return self.pictures[key]
            value = make()
            self.pictures[key] = value
            while len(self.pictures) > self.MAX_PICTURES:
                self.pictures.popitem(last=False)
        cache.SESSIONS.touch(self)  # it grew: the budget may now release older analyses
        return value

    @classmethod
    def of(cls, fwd: Forward) -> Session:
        """A new user's analysis of ``fwd``, counted in the memory budget (:data:`cache.SESSIONS`)."""
        session = cls(fwd, fwd.result.fresh())
        cache.SESSIONS.touch(session)
        return session

    @property
    def top1(self) -> int:
        return int(np.argmax(self.forward.probs))


def live(session: Any) -> bool:
    """A user's analysis that can be read (not empty, not released by the memory budget)."""
    return isinstance(session, Session) and not session.released


def run_forward(entry: ModelEntry, photo: Image.Image, resolution: int, fit: str = "crop") -> Forward:
    """One forward under capture (:func:`sepvit_viz.viz.pipeline.analyze`), cached by model, size and photo.

    ``fit``: ``"crop"`` (the centre square) or ``"aspect"`` (an input of the photo's shape, the shorter
    side at ``resolution``: :func:`sepvit_viz.viz.pipeline.fit_size`)."""
    hw = pipeline.fit_size((photo.height, photo.width), resolution, fit)
    key = ForwardKey(entry.key, resolution, digest(np.asarray(photo)), hw)
    hit = RESULTS.get(key)
    if hit is not None:
        # a square photo has one input either way: the entry is shared, the fit asked for is said
        return hit if hit.fit == fit else replace(hit, fit=fit)
    start = time.perf_counter()
    with entry.borrow() as model:
        result = pipeline.analyze(model, photo, size=hw, class_names=entry.class_names, precompute=False)
    fwd = Forward(
        entry.key,
        entry.label,
        entry.warning,
        resolution,
        entry.class_names,
        result,
        result.probs.astype(np.float32),
        time.perf_counter() - start,
        fit,
    )
    RESULTS.put(key, fwd)
    return fwd


#: The newest analysis of each browser session (Gradio's ``session_hash``: a tab, or an API client):
#: its serial, and the session itself while anything else holds it (a weak reference: this table never
#: keeps an analysis alive); bounded, the oldest forgotten first.
_LATEST: OrderedDict[str, tuple[int, weakref.ref[Session]]] = OrderedDict()
_LATEST_LOCK = threading.Lock()
_LATEST_MAX = 4096


def _same_forward(a: Forward, b: Forward) -> bool:
    """Both forwards are of the same model input through the same model (so their captures are equal)."""
    same_input = (a.model_key, a.resolution, a.fit, a.result.size) == (b.model_key, b.resolution, b.fit, b.result.size)
    return same_input and np.array_equal(a.image, b.image)


def session_for(fwd: Forward, request: Any, current: Session | None = None) -> Session:
    """The analysis of ``fwd`` for the request's browser session, recorded as its newest
    (:func:`superseded` compares against it).

    A new :class:`Session` (:meth:`Session.of`), except when the browser session's newest analysis is
    a live one of the same input and model whose page is not set up yet (:attr:`Session.page_set`),
    or is ``current`` (the analysis the page holds, given by a photo's change event): then that same
    session. One upload that replaces a photo fires Gradio's change event twice, so the
    page runs two identical analyses at once; as two sessions they would race (the page keeps the
    session of the request that returned last, while the newest mark may name the other, and then
    every view of the page's session is withheld as superseded, leaving its tabs empty). The
    Analyze button's new analysis of the same photo comes after the page was set up, and gets a new
    session.
    """
    key = getattr(request, "session_hash", None)
    if key is None:
        return Session.of(fwd)
    with _LATEST_LOCK:
        newest = _LATEST.get(key)
        same = newest[1]() if newest is not None else None
        reusable = same is not None and live(same) and (not same.page_set or same is current)
        old = same.forward if reusable else None  # read once: the memory budget may release it meanwhile
        if old is not None and _same_forward(old, fwd):
            cache.SESSIONS.touch(same)  # used now: the last the memory budget would release
            return same
        session = Session.of(fwd)
        _LATEST[key] = (session.serial, weakref.ref(session))
        _LATEST.move_to_end(key)
        while len(_LATEST) > _LATEST_MAX:
            _LATEST.popitem(last=False)
        return session


def newest_mark(request: Any) -> tuple[int, weakref.ref[Session]] | None:
    """The request's browser session's newest-analysis mark as it is now (for :func:`restore_mark`)."""
    key = getattr(request, "session_hash", None)
    with _LATEST_LOCK:
        return _LATEST.get(key) if key is not None else None


def restore_mark(request: Any, mark: tuple[int, weakref.ref[Session]] | None, session: Session) -> None:
    """Undo :func:`session_for`'s mark of ``session`` when its analysis was refused after it was made
    (a setting the new analysis does not have): the page keeps its analysis, which must not count
    as superseded. A mark another request has set since is left alone."""
    key = getattr(request, "session_hash", None)
    if key is None:
        return
    with _LATEST_LOCK:
        now = _LATEST.get(key)
        if now is None or now[0] != session.serial or (mark is not None and mark[0] == session.serial):
            return
        if mark is None:
            del _LATEST[key]
        else:
            _LATEST[key] = mark


def superseded(session: Session, request: Any) -> bool:
    """True when the request's browser session has analysed another photo since ``session`` was made:
    a slow attribution or score that ends then must not put the old photo's result on the page."""
    key = getattr(request, "session_hash", None)
    with _LATEST_LOCK:
        newest = _LATEST.get(key) if key is not None else None
    return newest is not None and newest[0] > session.serial


@contextmanager
def using(session: Session | None) -> Iterator[Session]:
    """The user's analysis, held for the ``with`` body (:meth:`Session.in_use`: the memory budget
    cannot release it mid-request); a clear message when there is none or it was released."""
    if not isinstance(session, Session):
        raise SettingsError(
            "No analysis to draw from. Upload a photo (or pick an example) and press Analyze; an analysis is "
            f"kept for {STATE_TTL_S // 60} minutes after it is made, after that press Analyze again."
        )
    with session.in_use():
        cache.SESSIONS.touch(session)  # used now: the last to be released
        yield session
