"""The "Model" tab: model-level attention statistics of the loaded checkpoint, the current photo marked.

The statistics (:func:`sepvit_viz.stats.measures.cached_model_stats`) are computed once per model and input
size on the bundled example photos and kept in the library's small cache under the pool's
:class:`~.models.ModelKey`, so a new or replaced checkpoint gets its own.
The current photo's values are marked on the same axes when it was analysed with the same model: its
capture records when its input was square, as the reference photos are, else those of one more forward
on its centre square, made once per analysis (another shape has other window grids and longer
distances).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from sepvit_viz.limits import DEFAULT_RESOLUTION
from sepvit_viz.serving.handlers import _user_errors
from sepvit_viz.serving.models import MODEL_HUB, MODELS, ModelEntry
from sepvit_viz.serving.session import RELEASED_MESSAGE, Forward, Session, live
from sepvit_viz.stats import measures as stats
from sepvit_viz.stats import plots as stats_plots
from sepvit_viz.validation import SettingsError

__all__ = ["DEFAULT_MEASURE", "MEASURE_CHOICES", "model_tab", "model_tab_if_shown", "reference_stats"]

#: (label, name) pairs for the measure dropdown, in :data:`sepvit_viz.stats.measures.MEASURES` order.
MEASURE_CHOICES = [(m.label, m.name) for m in stats.MEASURES]
DEFAULT_MEASURE = "dwa_distance"

NO_PHOTO = "Analyse a photo to mark its own values on these axes."
OTHER_MODEL = "The current photo was analysed with another model: press Analyze to mark its values here."


def _check_measure(measure: Any) -> str:
    measure = measure or DEFAULT_MEASURE
    if measure not in stats.MEASURE_NAMES:
        raise SettingsError(f"Unknown measure {measure!r}; choose one of {', '.join(stats.MEASURE_NAMES)}.")
    return str(measure)


def _square_records(session: Session, entry: ModelEntry, fwd: Forward) -> list[Any]:
    """Records of ``fwd``'s centre square (one more forward), made once per analysis and kept in it.

    Made outside the session's lock, which guards its drawings and would otherwise wait on a model
    forward; two calls at once may both run it, and either result is the same.
    """
    records = session.square_records
    if records is None:
        with entry.borrow() as model:
            records = stats.square_records(model, fwd.image)
        if not session.released:  # a released session keeps no arrays
            session.square_records = records
    return records


def reference_stats(entry: ModelEntry, size: int = DEFAULT_RESOLUTION) -> stats.ModelStats:
    """The statistics of ``entry``'s model on the example photos at ``size`` (computed once per model
    and size; a replica is borrowed while the capture hooks are on)."""
    if not stats.example_photos():
        raise SettingsError("The app has no example photos to compute the model statistics on.")
    with entry.borrow() as model:
        return stats.cached_model_stats(model, key=entry.key, size=int(size), label=entry.label)


def model_tab(
    session: Session | None,
    measure: str | None = DEFAULT_MEASURE,
    model_choice: str | None = None,
    hub_repo: str | None = "",
    hub_revision: str | None = "",
) -> tuple[Any, str, Any]:
    """The Model tab: (``measure`` against depth with this photo's values marked, caption, kinds plot).

    The model is the one chosen in the model dropdown (None: the current photo's model, else the
    default). When the current photo was analysed with that model, the statistics are taken at the
    side of its centre square (the shorter side of its input), the square its marked values come
    from, so that distances in pixels and window counts compare like for like; else at 224 px.
    """
    with _user_errors(ran_model=True):
        measure = _check_measure(measure)
        fwd: Forward | None = session.forward if isinstance(session, Session) and not session.released else None
        if model_choice is None and fwd is not None:
            entry = MODELS.entry_for(fwd.model_key)
        elif model_choice == MODEL_HUB and not (hub_repo or "").strip():
            return None, "Enter a Hugging Face Hub repo id and press Analyze to see its statistics.", None
        else:
            entry = MODELS.get(model_choice, hub_repo, hub_revision)
        same = fwd is not None and fwd.model_key == entry.key
        ref = reference_stats(entry, min(fwd.image.shape[:2]) if same else DEFAULT_RESOLUTION)
        records, square_note, size = None, "", None
        if same:
            records = fwd.records
            h, w = size = fwd.image.shape[:2]
            if h != w:  # compare like for like: the reference photos are square
                records = _square_records(session, entry, fwd)
                s = min(h, w)
                size = (s, s)
                square_note = (
                    f" The photo was analysed at {w} x {h} px (width x height); the values marked are those of "
                    f"its centre {s} x {s} square, the shape of the reference photos."
                )
        picture, caption = stats_plots.model_tab_view(ref, measure, records, input_size=size)
        caption = f"**{entry.label}**: {caption}{square_note}"
        if fwd is None:
            caption += " " + (RELEASED_MESSAGE if isinstance(session, Session) and session.released else NO_PHOTO)
        elif not same:
            caption += " " + OTHER_MODEL
        return picture, caption, stats_plots.kinds_image(ref)


def model_tab_if_shown(tab: str | None, *args: Any) -> tuple[Any, ...]:
    """:func:`model_tab` (``args`` its parameters) when the page shows the Model tab, else nothing changes:
    a new analysis or model draws the tab's plots only where they are seen (its select event draws
    them when it is opened), and for an analysis whose tab this event drew with these settings already
    (the same chain of events again: a photo cleared, or the same upload's second change event)."""
    if tab != "model":
        return gr.skip(), gr.skip(), gr.skip()
    session, drawn = args[0], tuple(args[1:])
    if live(session):
        with session.lock:
            if session.model_tab_drawn == drawn:
                return gr.skip(), gr.skip(), gr.skip()
    out = model_tab(*args)
    if live(session):
        with session.lock:  # written under the lock it is read under
            session.model_tab_drawn = drawn
    return out
