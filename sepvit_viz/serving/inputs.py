"""Checks of the values a page or an API call sends, before any handler uses them.

Each function takes a raw component value (a string, number, ``None``, or whatever a client posted)
and returns the validated value, or raises :class:`~sepvit_viz.validation.SettingsError` with a
message for the user. "Stale" tests tell a value the page kept from another model or block (it is
replaced, with a note) from a malformed one (refused). No Gradio, no model: pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from sepvit_viz.explain.attribution import METHODS
from sepvit_viz.limits import COLORMAPS
from sepvit_viz.serving.settings import DEFAULT_METHOD, TOP_PREDICTION
from sepvit_viz.validation import AmbiguousClassError, SettingsError, resolve_class, validate_head
from sepvit_viz.viz import maps

__all__ = [
    "check_cmap",
    "check_flag",
    "check_method",
    "check_point",
    "check_smooth",
    "check_window",
    "is_top",
    "parse_head",
    "parse_target",
    "stale_class",
    "stale_head",
    "unset",
]


def parse_head(head: Any, num_heads: int) -> maps.HeadSelect:
    if head is None or head == "":
        return "mean"
    return validate_head(head, num_heads)  # type: ignore[return-value]


def is_top(target: Any) -> bool:
    """The target means "the top prediction" (unset, "top", "Top prediction")."""
    return target is None or (
        isinstance(target, str) and target.strip().lower() in ("", TOP_PREDICTION, "top prediction")
    )


def stale_class(target: Any, num_classes: int) -> bool:
    """True for a class dropdown value (the digits of a class number) at or past ``num_classes``: one
    the page keeps from a model with more classes. Names, ``"#i"``, ints and malformed values are not
    stale (the strict checks refuse them)."""
    return isinstance(target, str) and target.strip().isdigit() and int(target) >= num_classes


def parse_target(target: Any, class_names: Sequence[str], top1: int) -> int:
    """Class index from "top", an index (int or string, optionally "i: name") or a class name."""
    if is_top(target):
        return top1
    if isinstance(target, str):
        m = re.fullmatch(r"\s*(\d+):.*", target)  # a dropdown label "123: name"
        if m:
            target = m.group(1)
    try:
        return resolve_class(target, class_names)
    except AmbiguousClassError:
        raise
    except SettingsError:
        # text typed into the search box and left there: a part of exactly one class name is that class
        text = target.strip().lower() if isinstance(target, str) else ""
        hits = [i for i, name in enumerate(class_names) if text and text in name.lower()]
        if len(hits) == 1:
            return hits[0]
        if hits:
            some = ", ".join(f"{i}: {class_names[i]}" for i in hits[:5]) + (", ..." if len(hits) > 5 else "")
            raise SettingsError(
                f"{target.strip()!r} is part of {len(hits)} class names ({some}); pick one from the list."
            ) from None
        raise


def check_method(method: Any) -> str:
    method = method or DEFAULT_METHOD
    if not isinstance(method, str) or method not in METHODS:  # a list (the API's dropdown takes one) is no method
        raise SettingsError(f"Unknown attribution method {method!r}; choose one of {', '.join(METHODS)}.")
    return str(method)


def check_cmap(cmap: Any) -> str:
    cmap = cmap or COLORMAPS[0]
    if cmap not in COLORMAPS:
        raise SettingsError(f"Unknown colormap {cmap!r}; choose one of {', '.join(COLORMAPS)}.")
    return str(cmap)


def unset(v: Any) -> bool:
    """Hidden click fields start at -1 (nothing clicked yet); None and "" mean the same."""
    if v is None or v == "":
        return True
    try:
        return float(v) == -1
    except (TypeError, ValueError):
        return False


def check_point(x: Any, y: Any, size: tuple[int, int]) -> tuple[int, int] | None:
    """(y, x) model-input pixel from the click fields; None when nothing is clicked (-1)."""
    if unset(x) or unset(y):
        return None
    try:
        if isinstance(x, (bool, np.bool_)) or isinstance(y, (bool, np.bool_)):
            raise TypeError
        yy, xx = round(float(y)), round(float(x))
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite coordinate
        raise SettingsError(f"A point needs two numbers (x, y), got {(x, y)!r}.") from None
    if not (0 <= yy < size[0] and 0 <= xx < size[1]):
        raise SettingsError(
            f"Point (x={xx}, y={yy}) is outside the model input ({size[1]} x {size[0]} pixels: "
            f"x from 0 to {size[1] - 1}, y from 0 to {size[0] - 1})."
        )
    return yy, xx


def check_window(window: Any) -> int | None:
    if unset(window):
        return None
    try:
        wf = float(window)
    except (TypeError, ValueError):
        raise SettingsError(f"Window must be a whole number, got {window!r}.") from None
    if isinstance(window, bool) or not wf.is_integer():
        raise SettingsError(f"Window must be a whole number, got {window!r}.")
    return int(wf)


def check_flag(value: Any, what: str) -> bool:
    """A checkbox's value: a bool (None, an empty component, is off); anything else is refused."""
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise SettingsError(f"{what} must be true or false, got {value!r}.")


def check_smooth(value: Any) -> bool:
    """The "smooth the stripes" checkbox: a bool (None, an empty component, is off)."""
    return check_flag(value, "Smoothing")


def stale_head(head: Any, num_heads: int) -> bool:
    """True for a well-formed head index that this block lacks (e.g. head 3 of a 2-head block), which a
    page keeps from a block with more heads; False for a head the block has and for a malformed one
    (``"abc"``, ``-1``), which the strict checks refuse."""
    try:
        h = validate_head(head, 1 << 30)  # well-formed for some block
    except SettingsError:
        return False
    return isinstance(h, int) and h >= num_heads
