"""Checks the command lines share (``render``, ``stats`` and ``training.evaluate``; distill reads the
same :data:`~sepvit_viz.limits.MAX_THREADS`): one wording, one bound, for all.

Each check returns the problem as one line (without ``error: ``) or None; the commands print it and
exit with status 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from sepvit_viz.limits import MAX_THREADS

__all__ = ["RecordGiven", "add_out_and_model_arguments", "checkpoint_problem", "model_mismatch", "threads_problem"]


class RecordGiven(argparse.Action):
    """Stores the option's value as ``store`` does and sets ``<dest>_given`` to True, so a command
    can tell ``--model sepvit_lite`` from the default."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None):  # noqa: ARG002 (argparse's signature)
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def threads_problem(threads: int | None) -> str | None:
    """Why ``--threads`` cannot be used: below 1 or above :data:`~sepvit_viz.limits.MAX_THREADS`."""
    if threads is None or 1 <= threads <= MAX_THREADS:
        return None
    return f"--threads must be 1 to {MAX_THREADS}, got {threads}"


def checkpoint_problem(option: str, value: str | None) -> str | None:
    """Why a checkpoint option (``--checkpoint``, ``--compare``) cannot be used: the empty string
    (leaving the option out picks the project's weights; ``''`` is never a file)."""
    if value is not None and value == "":
        return f"{option} is empty: name a weights file, or leave {option} out for the project's checkpoint"
    return None


def model_mismatch(config: Any, model: str, given: bool, checkpoint: str | None) -> str | None:
    """The warning for a checkpoint that rebuilt its own architecture though ``--model`` (given
    explicitly: ``given``) names another one; None when ``--model`` was not given, or matches."""
    from sepvit_viz.model.weights import differs_from_variant

    if not given or checkpoint is None or not differs_from_variant(config, model):
        return None
    return f"{checkpoint} holds its own architecture ({config.name}), which is used: --model {model} is ignored for it"


def add_out_and_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--out`` (kept as text: ``''`` must be refused, and ``Path('')`` is already ``'.'``),
    ``--model`` (recording whether it was given) and ``--checkpoint``, as render and stats take them."""
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--model",
        default="sepvit_lite",
        action=RecordGiven,
        help="model variant (default sepvit_lite); a checkpoint with its own architecture overrides it (with a warning)",
    )
    p.add_argument("--checkpoint", default=None, help="weights file (default: the project's checkpoint)")
