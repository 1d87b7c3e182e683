"""What the app does with an error: the user's own mistakes are one log line, faults a traceback.

A bad file, a missing photo, an unknown class or an unreachable Hub repo is expected: the user reads
the message in a toast and the server log gets one line (:func:`user_error`). Gradio prints the
traceback of every ``gr.Error`` unless it is raised with ``print_exception=False``, so every error
meant for a user is made here. Real faults keep their traceback (logged by
:func:`sepvit_viz.serving.handlers._user_errors` with a reference).
"""

from __future__ import annotations

import logging

import gradio as gr

__all__ = ["user_error"]

_log = logging.getLogger("sepvit_viz.serving")


def user_error(message: str, *, log: bool = True) -> gr.Error:
    """A ``gr.Error`` showing ``message`` to the user, logged as one line (no traceback, here or by Gradio)."""
    if log:
        _log.warning("refused a request: %s", " ".join(str(message).split()))
    return gr.Error(message, print_exception=False)
