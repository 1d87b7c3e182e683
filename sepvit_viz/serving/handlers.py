"""Handlers of the Gradio app (``app.py`` only lays out components and wires them to these).

Every handler takes component values (plus the per-user
:class:`~sepvit_viz.serving.session.Session` held in a ``gr.State``) and returns display-ready values: RGB uint8 arrays, ``{class name: probability}`` dicts, Markdown,
table rows, file paths. Pictures and captions come from :mod:`sepvit_viz.viz.views` (the CLI draws
through the same functions). The public API endpoints keep their positional parameters; inside,
each builds one :class:`~sepvit_viz.serving.settings.Settings`. Library errors meant for users
(:class:`~sepvit_viz.validation.UserInputError`, :class:`~sepvit_viz.model.weights.CheckpointError`)
become :class:`gradio.Error` with their message; anything else is logged with a reference and the
user gets :data:`INTERNAL_ERROR_MESSAGE`.

Per user: :class:`~sepvit_viz.serving.session.Session` (the forward, its own memo of maps, the
attributions and faithfulness scores computed so far). Views that only change rendering (block, head, colormap, opacity, clicked
pixel or window) are drawn from it without running the model again.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from sepvit_viz.explain.attribution import METHODS, Attribution, attribute, describe, destripe
from sepvit_viz.explain.scorecard import MEASURES, Scorecard, faithfulness_table
from sepvit_viz.limits import (
    COLORMAPS,
    DEFAULT_FIT,
    DEFAULT_OPACITY,
    DEFAULT_RESOLUTION,
    MAX_FAITHFULNESS_STEPS,
)
from sepvit_viz.model.runtime import release_free_memory
from sepvit_viz.model.sepvit import create_model
from sepvit_viz.model.weights import DEFAULT_CHECKPOINT, CheckpointError, model_note
from sepvit_viz.preprocess import to_tensor
from sepvit_viz.serving import downloads
from sepvit_viz.serving.cache import RESULTS, AttributionKey, digest
from sepvit_viz.serving.errors import user_error
from sepvit_viz.serving.inputs import (
    check_cmap,
    check_flag,
    check_method,
    check_point,
    check_smooth,
    check_window,
    is_top,
    parse_head,
    parse_target,
    stale_class,
    stale_head,
)
from sepvit_viz.serving.models import MODEL_DEFAULT, MODEL_HUB, MODELS, ModelEntry, ModelKey
from sepvit_viz.serving.photos import example_photos, load_photo
from sepvit_viz.serving.session import (
    Forward,
    Session,
    live,
    newest_mark,
    restore_mark,
    run_forward,
    session_for,
    superseded,
    using,
)
from sepvit_viz.serving.settings import DEFAULT_METHOD, DEFAULT_PWA_BLOCK, DEFAULT_TOKEN_BLOCK, TOP_PREDICTION, Settings
from sepvit_viz.validation import (
    SettingsError,
    UserInputError,
    choose,
    validate_opacity,
    validate_resolution,
    validate_steps,
)
from sepvit_viz.viz import maps, pipeline, render, views
from sepvit_viz.viz.capture import AttentionRecord

__all__ = [
    "FAITH_HEADERS",
    "INTERNAL_ERROR_MESSAGE",
    "Forward",
    "Session",
    "after_analysis",
    "analyze",
    "analyze_new_photo",
    "compare",
    "cross_window",
    "explain",
    "faithfulness",
    "load_model",
    "pixel_query",
    "prepare_downloads",
    "rerender",
    "show_tab",
    "show_tab_after_analysis",
    "tab_marker",
    "warm_up",
    "window_tokens",
]

_log = logging.getLogger(__name__)

#: What a user sees when a request fails for a reason that is not theirs (a bug, a library's internal
#: check): no exception text, which could name files, shapes or settings of the server.
INTERNAL_ERROR_MESSAGE = (
    "Something went wrong on the server while handling this request (reference {ref}). "
    "Please try again, or try another photo or other settings."
)

#: Give freed heap memory back to the system after every request that ran the model (glibc's
#: ``malloc_trim`` through ctypes; opt-in with ``SEPVIT_MALLOC_TRIM=1``, a no-op off glibc).
MALLOC_TRIM = os.environ.get("SEPVIT_MALLOC_TRIM", "0") == "1"

PIXEL_VIEWS = ("dwa", "block")


@contextmanager
def _user_errors(ran_model: bool = False) -> Iterator[None]:
    """Turn errors into ``gr.Error`` (message only, never a traceback).

    Only errors written for users show their text: :class:`UserInputError` (bad photo, impossible
    setting) and :class:`CheckpointError` (a checkpoint that does not fit, an unreachable Hub). They
    are expected: the server log gets one line each (:func:`.errors.user_error`). Anything else, a
    plain ``ValueError`` from a library's argument check included, is a bug: it is logged here with
    its traceback and a short reference, and the user gets :data:`INTERNAL_ERROR_MESSAGE`.
    """
    try:
        yield
    except gr.Error as e:
        if e.print_exception:  # made elsewhere for the user: one log line, no traceback either
            raise user_error(e.message) from None
        raise
    except UserInputError as e:  # bad photo or impossible setting: the message is for the user
        raise user_error(str(e)) from None
    except CheckpointError as e:
        raise user_error(f"Could not load the model: {e}") from None
    except MemoryError:
        raise user_error("Not enough memory for this request; try a lower resolution.") from None
    except Exception:  # unexpected (ValueError from an internal check included): log it, say nothing of it
        ref = uuid.uuid4().hex[:8]
        _log.exception("internal error in a request handler (reference %s)", ref)
        # the traceback is in the log line above; Gradio's own would only show this re-raise
        raise gr.Error(INTERNAL_ERROR_MESSAGE.format(ref=ref), print_exception=False) from None
    finally:
        if ran_model and MALLOC_TRIM:
            release_free_memory()


# ------------------------------------------------------------------------------------ model banner
def model_banner(choice: str | None = MODEL_DEFAULT) -> str:
    """Markdown shown above the app: which model runs, with a warning when it has random weights."""
    try:
        key, _ = MODELS.resolve(choice)
    except SettingsError as e:
        return f"⚠️ {e}"
    if key.missing:
        return (
            f"⚠️ **The default checkpoint is missing** ({DEFAULT_CHECKPOINT.name}): the app runs SepViT-Lite "
            "with random weights, so predictions and maps are meaningless."
        )
    return ""


def model_fields(choice: str | None) -> tuple[Any, Any, str]:
    """Show the Hub repo / revision boxes only for the Hub choice; refresh the banner."""
    hub = choice == MODEL_HUB
    return gr.update(visible=hub), gr.update(visible=hub), model_banner(choice if not hub else MODEL_DEFAULT)


def load_model(choice: str | None = MODEL_DEFAULT, repo: str | None = "", revision: str | None = "") -> None:
    """Load the chosen model before a new analysis (an event with no outputs, ahead of :func:`analyze`).

    A model that cannot be loaded (an unreachable Hub, a missing repo) stops the analysis here with
    one message, so the page keeps the last good analysis as it is: no output of :func:`analyze`
    is touched, none is marked as failed.
    """
    with _user_errors():
        if not MODELS.loaded(choice, repo, revision):
            # the one step with no output to carry a progress mark: a notice says what is taking time
            gr.Info(HUB_LOADING_MESSAGE if choice == MODEL_HUB else LOADING_MESSAGE)
        try:
            MODELS.get(choice, repo, revision)
        except (SettingsError, CheckpointError) as e:
            raise SettingsError(f"{e} The analysis shown is unchanged.") from None


#: The notices :func:`load_model` shows while a model that is not in the pool yet loads: a local
#: checkpoint, or a Hub checkpoint that is downloaded first.
LOADING_MESSAGE = "Loading the model."
HUB_LOADING_MESSAGE = (
    "Loading the checkpoint from the Hugging Face Hub (downloaded first unless cached); that can take a while."
)


def warm_up(background: bool = True) -> threading.Thread | None:
    """Load the default model now; then compute every example photo (forward and default attribution)
    and the Model tab's statistics, in a background thread unless ``background`` is False, so the first visitors get them at once."""
    entry = MODELS.get(MODEL_DEFAULT)

    def examples() -> None:
        for path in example_photos():
            try:
                session = Session.of(run_forward(entry, load_photo(path), DEFAULT_RESOLUTION, DEFAULT_FIT))
                _attribution(session, entry, DEFAULT_METHOD, session.top1)
            except Exception as e:  # a broken example must not stop the app from starting
                _log.warning("warm-up skipped %s: %s: %s", Path(path).name, type(e).__name__, e)
        try:  # the Model tab's statistics of the default model (on the same example photos)
            from sepvit_viz.serving.model_tab import reference_stats

            reference_stats(entry)
        except Exception as e:
            _log.warning("warm-up skipped the model statistics: %s: %s", type(e).__name__, e)

    if not background:
        examples()
        return None
    thread = threading.Thread(target=examples, name="sepvit-warm-up", daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------------ analysis
def _attribution(
    session: Session,
    model_entry: ModelEntry | None,
    method: str,
    target: int,
    progress: Callable[[float, str], None] | None = None,
) -> Attribution:
    key = (method, target)
    if key in session.attributions:
        return session.attributions[key]
    fwd = session.forward
    cache_key = AttributionKey(fwd.model_key, fwd.resolution, digest(fwd.image), method, target)
    hit = RESULTS.get(cache_key)
    if hit is None:
        entry = model_entry or MODELS.entry_for(fwd.model_key)
        x = to_tensor(Image.fromarray(fwd.image))
        with entry.borrow() as model:
            hit = attribute(model, x, target, method, progress=progress)
        RESULTS.put(cache_key, hit)
    session.attributions[key] = hit
    return hit


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


def _pwa_record(fwd: Forward, block: str) -> AttentionRecord:
    rec = fwd.record(block)
    if rec.pwa is None:
        raise views.NoView(
            f"{rec.label} has global attention: no window-to-window (PWA) attention. Choose a DSSA or GSA block."
        )
    return rec


def _view_settings(session: Session, s: Settings, block: str, head: Any) -> views.ViewSettings:
    """The view layer's settings for one block of this session (block and head checked)."""
    fwd = session.forward
    i = fwd.index(block)
    return views.ViewSettings(
        block=i,
        head=parse_head(head, fwd.records[i].num_heads),
        cmap=check_cmap(s.cmap),
        alpha=validate_opacity(DEFAULT_OPACITY if s.opacity is None else s.opacity),
        point=check_point(s.x, s.y, session.maps.size),
        window=check_window(s.window),
        through=choose(s.pixel_view or "dwa", PIXEL_VIEWS, "Pixel view"),  # "Block" -> "block"
    )


# ------------------------------------------------------------------------------------ views
def _attribution_view(session: Session, s: Settings, progress: Any = None) -> views.View:
    fwd = session.forward
    method = check_method(s.method)
    target = parse_target(s.target, fwd.class_names, session.top1)
    att = _attribution(session, None, method, target, progress)
    vs = _view_settings(session, s, s.token_block or DEFAULT_TOKEN_BLOCK, "mean")
    # display only: the stored attribution (scored, downloaded) stays the raw map
    stride = session.maps.records[0].geometry.stride if check_smooth(s.smooth) else 0
    return session.draw(
        ("attribution", method, target, vs.cmap, vs.alpha, bool(stride)),
        lambda: views.attribution(
            session.maps,
            destripe(att.map_hw, stride) if stride else att.map_hw,
            vs,
            method_label=METHODS[method].label,
            target=target,
            class_name=fwd.class_names[target],
            seconds=att.seconds,
            smoothed=stride,
            settings=describe(att),
        ),
    )


def _has_attribution(session: Session, s: Settings) -> bool:
    """An attribution of ``s``'s method and class is stored. Text in the class box that names no single
    class has none: redraws and downloads, which do not depend on the class, go on without it."""
    method = check_method(s.method)
    try:
        target = parse_target(s.target, session.forward.class_names, session.top1)
    except SettingsError:
        return False
    return (method, target) in session.attributions


def _tokens(session: Session, s: Settings) -> views.View:
    """The token map of the token tab, the clicked pixel marked."""
    vs = _view_settings(session, s, s.token_block or DEFAULT_TOKEN_BLOCK, s.token_head)
    return session.draw(("tokens", vs), lambda: views.tokens(session.maps, vs))


def _pixel(session: Session, s: Settings) -> views.View:
    """The pixel view of the token tab at the click (or the centre)."""
    vs = _view_settings(session, s, s.token_block or DEFAULT_TOKEN_BLOCK, s.token_head)
    return session.draw(("pixel", vs), lambda: views.pixel(session.maps, vs))


def _token_views(session: Session, s: Settings) -> tuple[views.View, views.View]:
    """(token map with the clicked pixel marked, the pixel view at the click or the centre)."""
    return _tokens(session, s), _pixel(session, s)


def _pwa_settings(session: Session, s: Settings) -> views.ViewSettings:
    block = s.pwa_block or DEFAULT_PWA_BLOCK
    _pwa_record(session.forward, block)
    return _view_settings(session, s.with_(x=-1, y=-1, pixel_view="dwa"), block, s.pwa_head)


def _pwa_row(session: Session, s: Settings) -> views.View:
    """The chosen window's PWA row over the photo (cross-window tab)."""
    vs = _pwa_settings(session, s)
    return session.draw(("pwa_row", vs), lambda: views.pwa_row(session.maps, vs))


def _pwa_views(session: Session, s: Settings) -> tuple[views.View, views.View]:
    """(PWA matrix, the chosen window's row over the photo) of the cross-window tab."""
    vs = _pwa_settings(session, s)
    matrix = session.draw(("pwa_matrix", vs), lambda: views.pwa_matrix(session.maps, vs))
    return matrix, _pwa_row(session, s)


def _compare_views(session: Session, s: Settings) -> tuple[views.View, views.View, str]:
    """(DSSA view, GSA view, caption) of the compare tab; the caption says when the chosen head (the
    token tab's, often of a block with more heads) is not in the pair and the mean is shown."""
    a, b, vs = _compare_settings(session, s)
    dssa, gsa, caption = session.draw(("compare", a, b, vs), lambda: views.compare(session.maps, (a, b), vs))
    rec = session.forward.records[a]
    if isinstance(vs.head, int) and vs.head >= rec.num_heads:
        caption += (
            f" Head {vs.head} is not in stage {rec.stage + 1} ({rec.num_heads} heads per block): "
            "the mean over heads is shown."
        )
    return dssa, gsa, caption


def _compare_settings(session: Session, s: Settings) -> tuple[int, int, views.ViewSettings]:
    """(DSSA block index, GSA block index, view settings) of the compare tab; the pair and head checked."""
    fwd = session.forward
    pair = s.pair
    valid = [v for _, v in pair_choices(fwd.records)]
    if not pair:
        if not valid:
            raise SettingsError("This model has no DSSA block followed by a GSA block at this resolution.")
        pair = valid[0]
    if pair not in valid:
        raise SettingsError(
            f"{pair!r} is not a DSSA/GSA block pair of this model at {fwd.resolution} px; "
            f"choose one of: {', '.join(sorted(valid)) or 'none'}."
        )
    a, b = (fwd.index(n) for n in pair.split("|"))
    vs = _view_settings(session, s.with_(x=-1, y=-1, window=-1), fwd.records[a].name, "mean")
    # The tab shows the token tab's head, chosen for a block that may have more heads than the pair:
    # a head no block of the model has is refused; one the pair lacks is drawn as the mean (the
    # pictures name the head they show, and _compare_views' caption says so).
    head = parse_head(s.token_head, max(r.num_heads for r in fwd.records))
    return a, b, vs.with_(head=head)


def fit_to_forward(fwd: Forward, s: Settings) -> tuple[Settings, list[str]]:
    """``s`` with its blocks, heads and DSSA/GSA pair fitted to this analysis, and a note per change.

    The page keeps its dropdowns across analyses, so they may name a block, head or pair that this
    model at this input does not have (another variant, a smaller resolution with fewer windows).
    Such a value becomes the default (the default block, the first block with PWA, the first pair,
    ``"mean"``, the top prediction for a class number past the model's classes), and the note says
    what replaced what; an unset value becomes the default silently.
    Malformed values (a head ``"abc"`` or ``-1``) are left as they are for the strict checks to refuse.
    """
    recs = fwd.records
    names = {r.name for r in recs}
    notes: list[str] = []

    def block(value: str | None, options: Sequence[str], default: str | None, what: str) -> str | None:
        if value in options:
            return value
        if value:
            notes.append(f"{what} {value!r} → {default or 'none'}")
        return default

    tb_default = DEFAULT_TOKEN_BLOCK if DEFAULT_TOKEN_BLOCK in names else recs[0].name
    tb = block(s.token_block, [r.name for r in recs], tb_default, "token block")
    pwa_opts = [v for _, v in block_choices(recs, pwa_only=True)]
    pb = block(s.pwa_block, pwa_opts, pwa_opts[0] if pwa_opts else None, "cross-window block")
    pairs = [v for _, v in pair_choices(recs)]
    pr = block(s.pair, pairs, pairs[0] if pairs else None, "DSSA/GSA pair")

    def head(value: Any, name: str | None, what: str) -> Any:
        if value is None or value == "":
            return "mean"
        if name is None:
            return value
        num_heads = fwd.record(name).num_heads
        if stale_head(value, num_heads):
            notes.append(f"{what} {value} → mean (the block has {num_heads})")
            return "mean"
        return value

    th = head(s.token_head, tb, "head")
    ph = head(s.pwa_head, pb, "cross-window head")
    tgt = s.target
    n_classes = len(fwd.class_names)
    if stale_class(tgt, n_classes):
        notes.append(f"class {str(tgt).strip()} → top prediction (the model has {n_classes} classes)")
        tgt = TOP_PREDICTION
    return s.with_(token_block=tb, token_head=th, pwa_block=pb, pwa_head=ph, pair=pr, target=tgt), notes


# ------------------------------------------------------------------------------------ endpoints
def analyze(
    photo: Any,
    model_choice: str | None = MODEL_DEFAULT,
    hub_repo: str | None = "",
    hub_revision: str | None = "",
    resolution: Any = DEFAULT_RESOLUTION,
    target: Any = TOP_PREDICTION,
    method: str | None = DEFAULT_METHOD,
    cmap: str | None = COLORMAPS[0],
    opacity: Any = DEFAULT_OPACITY,
    token_block: str | None = DEFAULT_TOKEN_BLOCK,
    token_head: Any = "mean",
    pwa_block: str | None = DEFAULT_PWA_BLOCK,
    pwa_head: Any = "mean",
    pair: str | None = None,
    fit: str | None = DEFAULT_FIT,
    smooth: Any = False,
    pixel_view: str | None = "dwa",
    progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds its tracker by this default)
    request: gr.Request | None = None,
) -> tuple[Any, ...]:
    """The main endpoint: a photo in; the top-5 classes and the first tab's pictures out. ``fit``:
    ``"aspect"`` (default: the model input takes the photo's shape, the shorter side at
    ``resolution``) or ``"crop"`` (the centre square). ``smooth``: show the attribution destriped
    (display only; the attribution is drawn when its tab is shown). ``pixel_view``: the pixel view's
    kind (``"dwa"``: in its window; ``"block"``: through the whole block, DWA then PWA).

    Returns (session state, status Markdown, top-5 ``{label: p}``, window-token map, pixel view at
    the centre): what the page's first tab (Window tokens) shows, and nothing else is drawn or
    computed. The other views come from the session on demand (:func:`show_tab` when their tab is
    selected; the endpoints ``/explain``, ``/cross_window``, ``/compare`` for API users), never
    running the forward again. ``target`` and ``method`` are checked here (a bad one fails before
    the forward), but the attribution runs only when it is shown.
    """
    inputs = (photo, model_choice, hub_repo, hub_revision, resolution, target, method, cmap, opacity)
    inputs += (token_block, token_head, pwa_block, pwa_head, pair, fit, smooth, pixel_view)
    return _analyze(inputs, progress=progress, request=request)


def _analyze(
    inputs: tuple[Any, ...], *, progress: Any, request: Any, current: Session | None = None
) -> tuple[Any, ...]:
    """:func:`analyze` of its ``inputs`` (its parameters before ``progress``, in order); ``current``:
    the page's analysis (:func:`analyze_new_photo`). When the photo and settings give that same
    analysis again (:func:`session_for`) and its page is set up already, nothing on the page changes:
    the session, then no-change updates."""
    (photo, model_choice, hub_repo, hub_revision, resolution, target, method, cmap, opacity) = inputs[:9]
    (token_block, token_head, pwa_block, pwa_head, pair, fit, smooth, pixel_view) = inputs[9:]
    s = Settings.of(
        model=model_choice,
        hub_repo=hub_repo,
        hub_revision=hub_revision,
        resolution=resolution,
        target=target,
        method=method,
        cmap=cmap,
        opacity=opacity,
        token_block=token_block or None,
        token_head=token_head,
        pwa_block=pwa_block or None,
        pwa_head=pwa_head,
        pair=pair,
        fit=fit,
        smooth=smooth,
        pixel_view=pixel_view or None,
    )
    with _user_errors(ran_model=True):
        if photo is None:
            raise SettingsError("Upload a photo (or pick an example) first.")
        res = validate_resolution(DEFAULT_RESOLUTION if s.resolution is None else s.resolution)
        fit = choose(s.fit, pipeline.FITS, "Photo fit")
        s = s.with_(pixel_view=choose(s.pixel_view, PIXEL_VIEWS, "Pixel view"))
        check_method(s.method)
        check_cmap(s.cmap)
        validate_opacity(s.opacity)
        check_smooth(s.smooth)
        progress(0.02, desc="Reading the photo")
        image = load_photo(photo)
        progress(0.08, desc="Loading the model")
        entry = MODELS.get(s.model, s.hub_repo, s.hub_revision)
        progress(0.15, desc=f"SepViT forward at {res} px")
        # this tab's newest analysis: a slower request on an earlier photo of this tab now shows nothing
        mark = newest_mark(request)
        session = session_for(run_forward(entry, image, res, fit), request, current)
        with using(session):  # held: another user's analysis cannot release it mid-request
            fwd = session.forward
            # the page's dropdowns may hold a block, head or pair of the last model or resolution
            s, notes = fit_to_forward(fwd, s)
            # every setting is checked here, so that a wrong one fails the call, not a later view
            try:
                parse_target(s.target, fwd.class_names, session.top1)
                _view_settings(session, s, s.token_block, s.token_head)
                if s.pwa_block is not None:  # None: this model has no PWA at this input
                    _pwa_settings(session, s)
                if s.pair is not None:
                    _compare_settings(session, s)
            except UserInputError:
                # refused: the page keeps the analysis it shows, which must stay the newest
                restore_mark(request, mark, session)
                raise
            if session is current and session.page_set:  # the same upload again: the page shows it
                return (session, *(gr.update() for _ in range(ANALYZE_OUTPUTS - 1)))
            progress(0.9, desc="Drawing the window tokens")
            tok, pix = _token_views(session, s)
            return session, status_markdown(fwd, notes), top5(fwd), tok.picture, pix.picture


#: How many values :func:`analyze` returns (the session first).
ANALYZE_OUTPUTS = 5


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
    fit: str | None,
    smooth: Any,
    pixel_view: str | None,
    current: Session | None,
    progress: Any = gr.Progress(),  # noqa: B008
    request: gr.Request | None = None,
) -> tuple[Any, ...]:
    """:func:`analyze` for the photo's change event (its inputs, then the current session); clearing
    the photo keeps everything as it is, and so does the same photo again (Gradio fires the change
    event twice when an upload replaces a photo). Every parameter is positional: Gradio hands the progress
    tracker and the request only to those (not after ``*args``)."""
    if photo is None:
        return (current, *(gr.update() for _ in range(ANALYZE_OUTPUTS - 1)))
    inputs = (photo, model_choice, hub_repo, hub_revision, resolution, target, method, cmap, opacity)
    inputs += (token_block, token_head, pwa_block, pwa_head, pair, fit, smooth, pixel_view)
    return _analyze(inputs, progress=progress, request=request, current=current)


def top5(fwd: Forward) -> dict[str, float]:
    """``{"name (index)": probability}`` of the five most likely classes (for ``gr.Label``)."""
    return {f"{p.name} ({p.index})": p.prob for p in fwd.result.top5}


def coverage_markdown(model_key: ModelKey) -> str:
    """The one line shown with the top-5 classes for the default or a bundled checkpoint: what it was
    trained on and how it measured on held-out photos (:func:`sepvit_viz.model.weights.model_note`, drawn
    from its model card); "" for other models or a checkpoint without a card."""
    path = model_key.checkpoint
    note = model_note(path) if path is not None else None
    return f"ⓘ {note}" if note else ""


def status_markdown(fwd: Forward, notes: Sequence[str] = ()) -> str:
    """One line on the model and input, the model's warning if it has one, and its coverage caveat (the
    status sits right above the top-5 classes); ``notes``: the settings :func:`fit_to_forward` replaced,
    one more line."""
    h, w = fwd.result.size
    how = "the photo's aspect kept" if fwd.fit == "aspect" else "centre square crop"
    line = (
        f"Model: **{fwd.model_label}** · input {w} x {h} px ({how}) · "
        f"forward with attention capture {fwd.seconds * 1000:.0f} ms"
    )
    if notes:
        line += "\n\nNot in this model at this input, so shown instead: " + "; ".join(notes) + "."
    caveat = coverage_markdown(fwd.model_key)
    return (f"⚠️ {fwd.warning}\n\n" if fwd.warning else "") + line + (f"\n\n{caveat}" if caveat else "")


#: The status line's first words after a new photo was refused (:func:`photo_refused`).
PHOTO_REFUSED = "**This photo was not analysed** (the message says why)"


def photo_refused(session: Session | None) -> str:
    """The status after a new photo's analysis (or its model) was refused: the photo box shows the new
    photo while the pictures, and the analysis every control draws from, are still the previous
    photo's; the status says so instead of leaving them to pass for the new photo's."""
    if live(session):
        fwd = session.forward
        return f"{PHOTO_REFUSED}: the pictures below are of the previous photo.\n\n" + status_markdown(fwd)
    return f"{PHOTO_REFUSED}. Fix the setting it names and press Analyze, or choose another photo."


#: The page's tabs by id, in order: the first is shown after a new analysis until another is chosen.
TABS = ("tokens", "attribution", "pwa", "compare", "model", "downloads")

#: The pictures and captions of each tab, by name (``app.py`` binds each to a component). A new
#: analysis empties those of every tab but the first (:func:`after_analysis`); :func:`show_tab`
#: draws a tab's when it is shown.
TAB_VIEWS: dict[str, tuple[str, ...]] = {
    "tokens": ("token_img", "token_caption", "pixel_img", "pixel_caption"),
    "attribution": ("attribution_img", "attribution_caption"),
    "pwa": ("pwa_matrix_img", "pwa_row_img", "pwa_caption"),
    "compare": ("compare_slider", "compare_a", "compare_b", "compare_caption"),
}

#: What :func:`after_analysis` returns, by name (``app.py`` binds each to a component).
AFTER_ANALYSIS = (
    "token_block",
    "token_head",
    "pwa_block",
    "pwa_head",
    "pair",
    "target",
    "faith_table",
    "faith_plot",
    "token_caption",
    "pixel_caption",
    "x",
    "y",
    "window",
    "downloads",
    *(name for tab, names in TAB_VIEWS.items() if tab != TABS[0] for name in names),
)


def after_analysis(session: Session | None, s: Settings) -> dict[str, Any]:
    """Everything the page shows after :func:`analyze` beyond its API outputs (no model run, nothing
    drawn), by name (:data:`AFTER_ANALYSIS`): dropdowns for this model and resolution, the (empty)
    faithfulness table, the token tab's captions (its pictures came with :func:`analyze`), reset
    clicks, and the other tabs' pictures and captions emptied: they belonged to the last photo, and
    :func:`show_tab` draws them for this one when their tab is shown. ``{}`` (nothing changes) before
    any analysis, and for an analysis whose page is set up already (the photo was cleared, or the
    same upload's other change event got there first)."""
    if not live(session):
        return {}
    with session.lock:  # claimed before the work: a second chain of events on this session waits for none
        if session.page_set:
            return {}
        session.page_set = True
    try:
        out = _page_for(session, s)
    except BaseException:
        session.page_set = False  # not set up: the next such event tries again
        raise
    with session.lock:  # the other tabs go out emptied: one drawn meanwhile (by the other chain) is drawn again
        session.tabs_drawn.clear()
    return out


def _page_for(session: Session, s: Settings) -> dict[str, Any]:
    """:func:`after_analysis`'s values for a live session (no claim)."""
    with _user_errors(), using(session):
        fwd = session.forward
        recs = fwd.records
        s, _ = fit_to_forward(fwd, s)  # as analyze fitted them
        tb, pb, pr = s.token_block, s.pwa_block, s.pair
        pwa_opts = block_choices(recs, pwa_only=True)
        pairs = pair_choices(recs)
        tgt_opts = target_choices(fwd.class_names)
        tgt = s.target
        if tgt not in {v for _, v in tgt_opts}:  # typed text analyze accepted: the class it named
            try:
                tgt = TOP_PREDICTION if is_top(tgt) else str(parse_target(tgt, fwd.class_names, session.top1))
            except SettingsError:
                tgt = TOP_PREDICTION
        th_opts = head_choices(fwd.record(tb).num_heads)
        th = s.token_head if s.token_head in {v for _, v in th_opts} else "mean"
        ph_opts = head_choices(fwd.record(pb).num_heads) if pb else head_choices(1)
        ph = s.pwa_head if s.pwa_head in {v for _, v in ph_opts} else "mean"
        s = s.with_(token_head=th, pwa_head=ph, target=tgt, x=-1, y=-1, window=-1)
        out: dict[str, Any] = {
            "token_block": gr.update(choices=block_choices(recs), value=tb),
            "token_head": gr.update(choices=th_opts, value=th),
            "pwa_block": gr.update(choices=pwa_opts, value=pb),
            "pwa_head": gr.update(choices=ph_opts, value=ph),
            "pair": gr.update(choices=pairs, value=pr),
            "target": gr.update(choices=tgt_opts, value=tgt),
            "faith_table": _faith_rows(session),
            "faith_plot": None,  # the curves of the last photo's table
            "x": -1,
            "y": -1,
            "window": -1,
            "downloads": None,  # the last photo's files
        }
        tok, pix = _token_views(session, s)  # drawn by analyze: the session's pictures give them back
        out.update(token_caption=tok.caption, pixel_caption=pix.caption)
        for tab, shown in TAB_VIEWS.items():
            if tab != TABS[0]:
                out.update({name: "" if name.endswith("_caption") else None for name in shown})
        return out


def show_tab(session: Session | None, s: Settings, progress: Any = None, request: Any = None) -> dict[str, Any]:
    """The pictures and captions of tab ``s.tab`` (:data:`TAB_VIEWS`) for the analysis in ``session``,
    by name, drawn from it (or given back from its pictures): the forward never runs again. The
    attribution tab runs its attribution when this photo, class and method have none yet (the one
    model run here; ``progress``: Gradio's tracker, for it). ``{}`` for a tab without such views (Model,
    Downloads), before any analysis, for an unknown tab, and when the request's browser tab has
    analysed another photo meanwhile (``request``: Gradio's; the old photo's pictures must not land)."""
    out = _tab_views(session, s, progress)
    return {} if out and superseded(session, request) else out  # views drawn: session is a live Session


def _tab_views(session: Session | None, s: Settings, progress: Any) -> dict[str, Any]:
    """:func:`show_tab` without the check for a newer analysis."""
    if not live(session) or s.tab not in TAB_VIEWS:
        return {}
    with _user_errors(ran_model=s.tab == "attribution"), using(session):
        if s.tab == "tokens":
            tok, pix = _token_views(session, s)
            return {
                "token_img": tok.picture,
                "token_caption": tok.caption,
                "pixel_img": pix.picture,
                "pixel_caption": pix.caption,
            }
        if s.tab == "attribution":
            view = _attribution_view(session, s, _progress_fn(progress, 0.0, 1.0))
            return {"attribution_img": view.picture, "attribution_caption": _attribution_caption(session, s, view)}
        if s.tab == "pwa":
            block = _pwa_block_or_none(session, s)
            if block is None:
                return {"pwa_caption": NO_PWA}
            mat, row = _pwa_views(session, s.with_(pwa_block=block))
            return {"pwa_matrix_img": mat.picture, "pwa_row_img": row.picture, "pwa_caption": row.caption}
        if not pair_choices(session.forward.records):
            return {"compare_caption": NO_PAIR}
        a, b, caption = _compare_views(session, s)
        return {
            "compare_slider": (a.picture, b.picture),
            "compare_a": a.picture,
            "compare_b": b.picture,
            "compare_caption": caption,
        }


def tab_marker(tab: str) -> Callable[[], str]:
    """The function a tab's select event calls to remember it as the page's shown tab (a ``gr.State``)."""
    if tab not in TABS:
        raise ValueError(f"unknown tab {tab!r}; the tabs are {TABS}")

    def mark() -> str:
        return tab

    mark.__name__ = mark.__qualname__ = f"show_{tab}"
    return mark


def show_tab_after_analysis(
    session: Session | None, s: Settings, progress: Any = None, request: Any = None
) -> dict[str, Any]:
    """:func:`show_tab` for the event after a new analysis: the visible tab's views, but not the first
    tab's, which :func:`analyze` returned already, and ``{}`` for a tab this event drew for this
    analysis already (:attr:`Session.tabs_drawn`: the same chain of events ran again on it)."""
    if s.tab == TABS[0] or not live(session):
        return {}
    with session.lock:  # claimed before drawing: two such events at once draw the tab once
        if s.tab in session.tabs_drawn:
            return {}
        session.tabs_drawn.add(s.tab)
    out: dict[str, Any] = {}
    try:
        out = show_tab(session, s, progress, request)
    finally:
        if not out:  # nothing drawn (superseded, an error): the next such event may draw it
            session.tabs_drawn.discard(s.tab)
    return out


NO_PWA = "This model has no window-to-window attention at this resolution."
NO_PAIR = "This model has no DSSA block followed by a GSA block at this resolution."


def _pwa_block_or_none(session: Session, s: Settings) -> str | None:
    """``s.pwa_block`` when this model has it with PWA, else the first block with PWA; None if none."""
    options = [v for _, v in block_choices(session.forward.records, pwa_only=True)]
    return s.pwa_block if s.pwa_block in options else next(iter(options), None)


def _attribution_caption(session: Session, s: Settings, view: views.View) -> str:
    """The attribution's caption, with its deletion / insertion AUCs once the faithfulness panel measured them."""
    method = check_method(s.method)
    scores = session.curves.get((method, parse_target(s.target, session.forward.class_names, session.top1)))
    if scores is None:
        return view.caption
    return view.caption + (
        f" Deletion AUC {scores.deletion_auc:.3g} (lower is better), "
        f"insertion AUC {scores.insertion_auc:.3g} (higher is better), mean-colour fill."
    )


def head_update(session: Session | None, block: str | None, head: Any) -> Any:
    """Head dropdown choices for a block (keeps the head when the new block has it)."""
    num = None
    # read once: the memory budget may release the analysis (forward -> None) at any moment
    fwd = session.forward if live(session) else None
    if fwd is not None:
        try:
            num = fwd.record(block).num_heads
        except SettingsError:
            num = None
    if num is None:
        num = next((r.num_heads for r in default_block_table() if r.name == block), None)
    if num is None:
        return gr.update()
    choices = head_choices(num)
    return gr.update(choices=choices, value=head if head in {v for _, v in choices} else "mean")


def explain(
    session: Session | None,
    target: Any,
    method: str | None,
    cmap: str | None,
    opacity: Any,
    smooth: Any = False,
    progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds its tracker by this default)
    request: gr.Request | None = None,
) -> tuple[Any, ...]:
    """Attribution overlay for a chosen class and method (the model runs only for a new pair);
    ``smooth`` shows it destriped (display only). Returns (picture, caption); the session is updated
    in place and is not an output (a slow call cannot put back an analysis a new photo replaced).
    When the same browser tab has analysed another photo while this ran, nothing changes on the page
    (``gr.skip()`` for both): the old photo's map must not replace the new photo's."""
    with _user_errors(ran_model=True), using(session) as session:
        s = Settings.of(target=target, method=method, cmap=cmap, opacity=opacity, smooth=smooth)
        method = check_method(s.method)
        progress(0.0, desc=f"{METHODS[method].label}")
        view = _attribution_view(session, s, _progress_fn(progress, 0.0, 1.0))
        if superseded(session, request):
            return gr.skip(), gr.skip()
        return view.picture, _attribution_caption(session, s, view)


def attribution_caption_after_scores(
    session: Session | None,
    target: Any,
    method: str | None,
    cmap: str | None,
    opacity: Any,
    smooth: Any = False,
    request: gr.Request | None = None,
) -> Any:
    """The attribution's caption once the faithfulness panel has scored it (its deletion / insertion
    AUCs added), run after "Compute scores"; no change when there is no attribution of this class and
    method to caption, or the tab has analysed another photo since."""
    if not live(session) or superseded(session, request):
        return gr.skip()
    with _user_errors(), using(session) as session:
        s = Settings.of(target=target, method=method, cmap=cmap, opacity=opacity, smooth=smooth)
        if not _has_attribution(session, s):
            return gr.skip()
        return _attribution_caption(session, s, _attribution_view(session, s))


def window_tokens(
    session: Session | None,
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
    with _user_errors(), using(session) as session:
        s = Settings.of(token_block=block or None, token_head=head, cmap=cmap, opacity=opacity, x=x, y=y)
        tok, pix = _token_views(session, s.with_(pixel_view=view or "dwa"))
        return tok.picture, tok.caption, pix.picture, pix.caption


def pixel_query(
    session: Session | None,
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
    with _user_errors(), using(session) as session:
        if x is None or y is None:
            raise SettingsError("Click a pixel on the photo (or give x and y).")
        s = Settings.of(token_block=block or None, token_head=head, cmap=cmap, opacity=opacity, x=x, y=y)
        if check_point(x, y, session.maps.size) is None:
            raise SettingsError("Click a pixel on the photo (or give x and y).")
        tok, pix = _token_views(session, s.with_(pixel_view=view or "dwa"))
        return tok.picture, pix.picture, pix.caption


def cross_window(
    session: Session | None, block: str | None, head: Any, window: Any, cmap: str | None, opacity: Any
) -> tuple[Any, ...]:
    """PWA matrix and one window's attention over all windows (window: raster index; -1 = the centre).

    Returns (matrix picture, heat map over the photo, caption).
    """
    with _user_errors(), using(session) as session:
        s = Settings.of(pwa_block=block or None, pwa_head=head, window=window, cmap=cmap, opacity=opacity)
        mat, row = _pwa_views(session, s)
        return mat.picture, row.picture, row.caption


def compare(session: Session | None, pair: str | None, head: Any, cmap: str | None, opacity: Any) -> tuple[Any, ...]:
    """DSSA vs GSA token maps side by side and as an image-slider pair."""
    with _user_errors(), using(session) as session:
        a, b, caption = _compare_views(session, Settings.of(pair=pair, token_head=head, cmap=cmap, opacity=opacity))
        return (a.picture, b.picture), a.picture, b.picture, caption


def _clicked_view(session: Session, evt: gr.SelectData | None) -> tuple[int, int] | None:
    """Model-input (y, x) of a click on a clickable view (token map, cross-window map); None off the photo."""
    if evt is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
        return None
    k = views.display_scale(session.maps.size)  # both clickable views: the photo below a title band
    probe = views.View(np.zeros((1, 1, 3), np.uint8), "", None, (render.TITLE_HEIGHT, 0), k, session.maps.size)
    return probe.to_model(float(evt.index[0]), float(evt.index[1]))


def point_from_select(session: Session | None, evt: gr.SelectData) -> tuple[Any, Any]:
    """Click on the token map -> (x, y) in model-input pixels; nothing changes off the photo."""
    if not live(session):
        return gr.update(), gr.update()
    try:
        with session.in_use():
            yx = _clicked_view(session, evt)
    except SettingsError:  # released meanwhile: the next view says so
        return gr.update(), gr.update()
    return (gr.update(), gr.update()) if yx is None else (yx[1], yx[0])


def reset_window() -> int:
    """A new block has another window grid: go back to its centre window."""
    return -1


def window_from_select(session: Session | None, block: str | None, evt: gr.SelectData) -> Any:
    """Click on the cross-window view -> index of the window (or group) under it."""
    if not live(session):
        return gr.update()
    try:
        with session.in_use():  # SettingsError when released meanwhile
            i = session.forward.index(block or DEFAULT_PWA_BLOCK)
            _pwa_record(session.forward, block or DEFAULT_PWA_BLOCK)
            yx = _clicked_view(session, evt)
            return gr.update() if yx is None else session.maps.window_at(i, yx)
    except SettingsError:
        return gr.update()


def _view_controls(*values: Any) -> Settings:
    """Settings from the positional values of the ``/render`` and ``/downloads`` endpoints."""
    names = ("target", "method", "cmap", "opacity", "token_block", "token_head", "x", "y", "pwa_block")
    names += ("pwa_head", "window", "pair", "pixel_view", "smooth")
    given = dict(zip(names, values))
    for k in ("token_block", "pwa_block", "pixel_view"):
        given[k] = given[k] or None  # "" from an empty component: the default
    if given.get("pixel_view") is not None:
        given["pixel_view"] = choose(given["pixel_view"], PIXEL_VIEWS, "Pixel view")
    return Settings.of(**given)


def rerender(
    session: Session | None,
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
    smooth: Any = False,
) -> tuple[Any, ...]:
    """Redraw every view after a colormap / opacity change (cached attributions; no model run).
    Returns (attribution, token map, pixel view, PWA matrix, cross-window map, slider pair, DSSA, GSA)."""
    if not live(session):
        return (gr.update(),) * 8
    with _user_errors(), using(session):
        tab_controls = (token_block, token_head, x, y, pwa_block, pwa_head, window, pair, view)
        s = _view_controls(target, method, cmap, opacity, *tab_controls, smooth)
        att = _attribution_view(session, s).picture if _has_attribution(session, s) else gr.update()
        tok, pix = _token_views(session, s)
        mat = row = gr.update()  # a model without PWA: nothing to redraw there
        if _pwa_block_or_none(session, s):
            mat, row = (v.picture for v in _pwa_views(session, s))
        try:
            a, b, _ = _compare_views(session, s)
            sl, ca, cb = (a.picture, b.picture), a.picture, b.picture
        except SettingsError:
            sl = ca = cb = None
        return att, tok.picture, pix.picture, mat, row, sl, ca, cb


# ------------------------------------------------------------------------------------ faithfulness
#: Columns of the faithfulness table: the method, the six untuned measures of
#: :data:`sepvit_viz.explain.scorecard.MEASURES` (↓ lower is better, ↑ higher is better), the verdict text,
#: seconds. Short enough that the whole table fits its panel on a 1400 px wide window
#: (:data:`FAITH_WIDTHS`). The scorecard's sanity column is never shown: when the check runs, its
#: result is in the verdict text.
FAITH_HEADERS = ["method", *(m.label + (" ↓" if m.lower_is_better else " ↑") for m in MEASURES), "verdict", "seconds"]
#: Width of each column of :data:`FAITH_HEADERS` (headers wrap inside them).
FAITH_WIDTHS = ["13%", *["10%"] * len(MEASURES), "17%", "10%"]
_SANITY_COLUMN = Scorecard(0, [], {}, 0.0).headers().index("sanity |rank corr.|")

#: The panel's light preset of :func:`sepvit_viz.explain.scorecard.faithfulness_table`: one ROAD fraction and
#: no sanity check by default (the model randomisation costs a second attribution per method, about
#: as much again as the attributions themselves: the panel's "sanity check" box asks for it); steps
#: come from the panel (default :data:`FAITH_STEPS`).
FAITH_STEPS = 8
#: The panel's "Score" choices: the chosen method (against the random map) or every method.
FAITH_SCOPES = ("this method", "all methods")
FAITH_PRESET: dict[str, Any] = {"road_fractions": (0.5,), "sanity": None}
#: The table's label: what the arrows mean, what the ROAD columns hold (the class probability with the
#: preset's share of the pixels imputed) and that one photo's verdicts are indicative.
FAITH_LABEL = (
    "Scores (↓ lower is better, ↑ higher is better). Deletion / insertion: areas under the class probability; "
    "ROAD: the class probability with "
    + " and ".join(f"{f:.0%}" for f in FAITH_PRESET["road_fractions"])
    + " of the pixels imputed. Verdicts compare with the random map on this one photo: indicative only."
)


def _faith_rows(session: Session) -> list[list[Any]]:
    """The last faithfulness table of this session as :data:`FAITH_HEADERS` (none yet: no rows)."""
    if session.scorecard is None:
        return []
    return [row[:_SANITY_COLUMN] + row[_SANITY_COLUMN + 1 :] for row in session.scorecard.table()]


def faithfulness(
    session: Session | None,
    target: Any,
    method: str | None,
    scope: str | None = "this method",
    steps: Any = FAITH_STEPS,
    sanity: Any = False,
    progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds its tracker by this default)
    request: gr.Request | None = None,
) -> tuple[Any, ...]:
    """Faithfulness of the chosen method (or every method) for the chosen class, with a verdict against
    the random map (:func:`sepvit_viz.explain.scorecard.faithfulness_table`, light preset :data:`FAITH_PRESET`),
    attributions already computed reused; ``sanity`` true adds the model-randomisation check (one
    more attribution per method; its result is in the verdict text).

    Progress: each attribution still to compute, then each method's measures.
    Returns (table rows as :data:`FAITH_HEADERS`, deletion / insertion curves plot of this table).
    The session is updated in place and is not an output: a slow call that ends after a new photo's
    analysis cannot put the old analysis back, and its table and plot are not shown then (``gr.skip()``
    for both, as in :func:`explain`).
    """
    with _user_errors(ran_model=True), using(session) as session:
        tgt = parse_target(target, session.forward.class_names, session.top1)
        steps = validate_steps(steps, maximum=MAX_FAITHFULNESS_STEPS, what="The number of deletion / insertion steps")
        scope = choose("this method" if scope is None else scope, FAITH_SCOPES, "Score scope")
        sanity = check_flag(sanity, "The sanity check option")
        methods = list(METHODS) if scope == "all methods" else [check_method(method)]
        if "random" not in methods:
            methods.append("random")  # the floor of every verdict
        entry = MODELS.entry_for(session.forward.model_key)
        x = to_tensor(Image.fromarray(session.forward.image))
        preset = {**FAITH_PRESET, "sanity": "full" if sanity else FAITH_PRESET["sanity"]}
        key = (tuple(methods), tgt, steps, preset["sanity"])
        card = session.scorecards.get(key)
        if card is None:
            # progress in proportion to the work left: the attributions not yet computed, then the measures
            todo = [m for m in methods if (m, tgt) not in session.attributions]
            split = 0.5 * len(todo) / len(methods)
            for k, m in enumerate(todo):
                lo, hi = split * k / len(todo), split * (k + 1) / len(todo)
                _attribution(session, entry, m, tgt, _progress_fn(progress, lo, hi))
            atts = {m: _attribution(session, entry, m, tgt) for m in methods}
            progress(split, desc="faithfulness measures")
            with entry.borrow() as model:
                card = faithfulness_table(
                    model,
                    x,
                    tgt,
                    methods,
                    attributions=atts,
                    steps=steps,
                    progress=_progress_fn(progress, split, 1.0),
                    **preset,
                )
            session.scorecards[key] = card
        for row in card.rows:  # the curves plot (mean fill): the shown table's own curves, not computed again
            if "mean" in row.curves:  # a constant map has none (not scored)
                session.curves[(row.method, tgt)] = row.curves["mean"]
        if superseded(session, request):
            return gr.skip(), gr.skip()
        session.scorecard = card
        curves = {METHODS[m].label: session.curves[(m, tgt)] for m in methods if (m, tgt) in session.curves}
        name = session.forward.class_names[tgt]
        p = float(session.forward.probs[tgt])
        return _faith_rows(session), views.curves(curves, title=f"class {name} ({tgt}), p = {p:.3g} on the photo")


# ------------------------------------------------------------------------------------ downloads
def prepare_downloads(
    session: Session | None,
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
    smooth: Any = False,
    request: gr.Request | None = None,
) -> Any:
    """PNG files of the current views and ``sepvit_analysis.npz`` with the raw arrays (no change,
    ``gr.skip()``, when the browser tab has analysed another photo while they were written: the list
    a new analysis emptied must not fill with the old photo's files).

    The .npz holds the model input, logits and probabilities, every block's DWA (and PWA) attention,
    the maps of the current token-tab settings, the cross-window tab's shown row (``cross_window.*``:
    its map over the window grid, the matrix row, and the block, head and window it is of) and every
    attribution map computed so far (raw: the ``smooth`` display setting changes the PNG only).
    """
    with _user_errors(), using(session) as session:
        fwd = session.forward
        tab_controls = (token_block, token_head, x, y, pwa_block, pwa_head, window, pair, view)
        s = _view_controls(target, method, cmap, opacity, *tab_controls, smooth)
        pictures: dict[str, np.ndarray] = {"input": fwd.image}
        if _has_attribution(session, s):
            m, t = check_method(s.method), parse_target(s.target, fwd.class_names, session.top1)
            pictures[f"attribution_{m}_{t}"] = _attribution_view(session, s).picture
        tok, pix = _token_views(session, s)
        pictures["window_tokens"], pictures[f"pixel_{s.pixel_view}"] = tok.picture, pix.picture
        cross: dict[str, np.ndarray] = {}
        if _pwa_block_or_none(session, s):  # a model without PWA has no cross-window pictures
            mat, row = _pwa_views(session, s)
            pictures["pwa_matrix"], pictures["cross_window"] = mat.picture, row.picture
            # the arrays of the cross-window tab's own block, head and window (the token tab's may differ)
            pvs = _pwa_settings(session, s)
            i, head = pvs.block, session.maps.head_for(pvs.block, pvs.head)
            w = views.query_window(session.maps, i, pvs)
            cross = {
                "cross_window.pwa_map": row.heat,
                "cross_window.pwa_row": session.maps.pwa_matrix(i, head)[w],
                "cross_window.block": np.asarray(fwd.records[i].name),
                "cross_window.head": np.asarray(str(head)),
                "cross_window.window": np.asarray(w),
            }
        try:
            a, b, _ = _compare_views(session, s)
            pictures["compare_dssa"], pictures["compare_gsa"] = a.picture, b.picture
        except SettingsError:
            pass
        vs = _view_settings(session, s, s.token_block, s.token_head)
        with session.lock:  # an attribution may be stored by another event meanwhile
            arrays = session.maps.arrays(vs.block, vs.head, vs.point)
            attributions = list(session.attributions.items())
        arrays["probs"] = fwd.probs
        arrays.update(cross)
        for (m, t), att in attributions:
            arrays[f"attribution.{m}.{t}"] = att.map_hw
        files = downloads.write_files(pictures, arrays)
        return gr.skip() if superseded(session, request) else files
