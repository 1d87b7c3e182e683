"""The one settings object between ``app.py`` and the handlers.

:class:`Settings` holds every control's value under one name; :class:`Binding` pairs those names
with the page's components, so a handler wired through it takes ``(session, settings)`` and returns
``{name: value}`` (Gradio passes a dict of component values in and takes one out). A new control is a
new field here plus its component in the layout; no signature in between changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import gradio as gr

from sepvit_viz.explain.attribution import DEFAULT_METHOD
from sepvit_viz.limits import COLORMAPS, DEFAULT_FIT, DEFAULT_OPACITY, DEFAULT_RESOLUTION
from sepvit_viz.serving.models import MODEL_DEFAULT

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_PWA_BLOCK",
    "DEFAULT_TOKEN_BLOCK",
    "TOP_PREDICTION",
    "Binding",
    "Settings",
]

TOP_PREDICTION = "top"
DEFAULT_TOKEN_BLOCK = "stages.1.blocks.0"
DEFAULT_PWA_BLOCK = "stages.1.blocks.0"


@dataclass(frozen=True)
class Settings:
    """Every control of the page, as the components hold them (checked by the handlers).

    x, y: the clicked pixel in model-input pixels and window: the clicked window (raster index);
    -1 means "nothing clicked yet" (the centre). pair: ``"dssa_block|gsa_block"``; None = the first.
    fit: ``"aspect"`` (the photo's shape, shorter side at the resolution) or ``"crop"`` (centre square).
    smooth: show the attribution through :func:`sepvit_viz.explain.attribution.destripe` (display
    only: scores and the downloaded arrays keep the raw map).
    tab: the id of the tab the page shows (``handlers.TABS``; the first, ``"tokens"``, at the start).
    """

    model: str = MODEL_DEFAULT
    hub_repo: str = ""
    hub_revision: str = ""
    resolution: Any = DEFAULT_RESOLUTION
    target: Any = TOP_PREDICTION
    method: str = DEFAULT_METHOD
    cmap: str = COLORMAPS[0]
    opacity: Any = DEFAULT_OPACITY
    token_block: str = DEFAULT_TOKEN_BLOCK
    token_head: Any = "mean"
    pixel_view: str = "dwa"
    x: Any = -1
    y: Any = -1
    pwa_block: str = DEFAULT_PWA_BLOCK
    pwa_head: Any = "mean"
    window: Any = -1
    pair: str | None = None
    fit: str = DEFAULT_FIT
    smooth: Any = False
    tab: str = "tokens"

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from component values; None (an empty component) means the default."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}")
        return cls(**{k: v for k, v in values.items() if v is not None or k == "pair"})

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


class Binding:
    """Names <-> components: ``Binding(model=model_dropdown, ...)``.

    ``inputs`` / ``outputs`` are the component sets to give an event; :meth:`handler` wraps
    ``fn(state, settings) -> {name: value}`` into the dict-in, dict-out callable Gradio calls.
    """

    def __init__(self, **components: Any) -> None:
        self.components = components
        self._names = {id(c): n for n, c in components.items()}

    def __getitem__(self, name: str) -> Any:
        return self.components[name]

    def read(self, data: Mapping[Any, Any]) -> Settings:
        """Settings from Gradio's ``{component: value}`` (components not bound here are ignored)."""
        setting_names = {f.name for f in fields(Settings)}
        values = {self._names[id(c)]: v for c, v in data.items() if id(c) in self._names}
        return Settings.of(**{k: v for k, v in values.items() if k in setting_names})

    def write(self, values: Mapping[str, Any]) -> dict[Any, Any]:
        """``{name: value}`` -> ``{component: value}``."""
        return {self.components[k]: v for k, v in values.items()}

    def handler(
        self, fn: Callable[..., Mapping[str, Any]], state: Any, names: list[str], progress: bool = False
    ) -> tuple[Callable[[dict], dict], set, set]:
        """(callable, inputs, outputs) for an event: ``fn`` gets the state's value and the settings of
        every bound control, and returns values for some of ``names`` (those it leaves out do not
        change; ``{}`` changes nothing). ``progress``: ``fn`` also takes ``progress=``, Gradio's
        progress tracker (for work that may run long, such as an attribution), and ``request=``, the
        event's ``gr.Request`` (which browser tab asked)."""

        def run(data: dict, **kwargs: Any) -> Any:
            out = self.write(fn(data.get(state), self.read(data), **kwargs))
            # Gradio reads an empty dict as one value (too few for several outputs): say "no change"
            return out if out else gr.skip()

        def run_with_progress(
            data: dict,
            progress: Any = gr.Progress(),  # noqa: B008 (Gradio finds it by this default)
            request: gr.Request | None = None,  # Gradio finds it by this annotation
        ) -> Any:
            return run(data, progress=progress, request=request)

        handler = run_with_progress if progress else run
        handler.__name__ = handler.__qualname__ = getattr(fn, "__name__", "run")

        inputs = {state, *(c for n, c in self.components.items() if n in {f.name for f in fields(Settings)})}
        return handler, inputs, {self.components[n] for n in names}
