"""Runs the shipped card's lineage does not reach: record them under the card's ``other_runs``.

A card's ``lineage`` lists the runs its checkpoint descends from. A run that was evaluated and not
shipped, and that no shipped checkpoint descends from, would otherwise appear in no card. This module
adds such runs, taken from their own cards, to a card's ``other_runs``, each with its held-out
evaluation, its mean top-1 over those folders, its mean agreement over the folders that have an
agreement target, its many-classes count and ``shipped: false``.

    python -m sepvit_viz.training.card assets/sepvit_lite_distilled.card.json \
        runs/RUN/sepvit_lite_distilled.card.json --why "mean top-1 below the shipped run's"

A new checkpoint's card inherits its parent's ``other_runs`` when distill writes it; for a card
written without them (or to merge another card's), ``--carry-from OLD_CARD`` copies them over::

    python -m sepvit_viz.training.card runs/RUN/sepvit_lite_distilled.card.json \
        --carry-from assets/sepvit_lite_distilled.card.json
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "carry_other_runs",
    "check_card",
    "main",
    "mean_agreement",
    "mean_top1",
    "other_run_record",
    "record_other_runs",
]


def mean_top1(card: dict[str, Any]) -> float | None:
    """The mean student top-1 over the folders of the card's full ``evaluation`` (None without one)."""
    results = (card.get("evaluation") or {}).get("results") or {}
    values = [r["student_top1"] for r in results.values() if isinstance(r, dict) and "student_top1" in r]
    return sum(values) / len(values) if values else None


def mean_agreement(card: dict[str, Any]) -> float | None:
    """The mean student-teacher agreement over the folders of the card's full ``evaluation`` that have
    an agreement target (``evaluation.targets[folder].agreement_min``); None without such a folder."""
    evaluation = card.get("evaluation") or {}
    results = evaluation.get("results") or {}
    targets = evaluation.get("targets") or {}
    values = [
        r["agreement"]
        for name, r in results.items()
        if isinstance(r, dict) and "agreement" in r and (targets.get(name) or {}).get("agreement_min") is not None
    ]
    return sum(values) / len(values) if values else None


def other_run_record(run_card: dict[str, Any], why: str | None = None) -> dict[str, Any]:
    """A not-shipped run's entry: its lineage record plus ``shipped: false``, ``mean_top1``,
    ``mean_agreement`` (where the card has agreement targets), ``many_classes`` (student / teacher
    right of how many) and ``why_not_shipped`` when given."""
    from sepvit_viz.training.distill import lineage_record

    record = {**lineage_record(run_card), "shipped": False}
    mean = mean_top1(run_card)
    if mean is not None:
        record["mean_top1"] = round(mean, 4)
    agreement = mean_agreement(run_card)
    if agreement is not None:
        record["mean_agreement"] = round(agreement, 4)
    many = run_card.get("many_classes")
    if isinstance(many, dict) and "student_right" in many:
        record["many_classes"] = {k: many.get(k) for k in ("photos", "student_right", "teacher_right")}
    if why:
        record["why_not_shipped"] = why
    return record


def record_other_runs(
    card: dict[str, Any], run_cards: Sequence[dict[str, Any]], why: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Return a copy of ``card`` with each run card recorded under ``other_runs`` (a run recorded
    before is replaced, in place) and one message per run card. A card without a ``run`` name, or of
    a run that is the card's own or already in its ``lineage``, is not recorded (ValueError for the
    former, a message for the latter)."""
    out = dict(card)
    others = list(out.get("other_runs") or [])
    in_chain = {r.get("run") for r in out.get("lineage") or []} | {out.get("run")}
    messages: list[str] = []
    for run_card in run_cards:
        name = run_card.get("run")
        if not name:
            raise ValueError("a run card without a 'run' name: is it a model card written by distill?")
        if name in in_chain:
            messages.append(f"{name}: already in the card's lineage (or the card's own run), not added")
            continue
        record = other_run_record(run_card, why)
        at = next((i for i, r in enumerate(others) if r.get("run") == name), None)
        if at is None:
            others.append(record)
            messages.append(f"{name}: added")
        else:
            others[at] = record
            messages.append(f"{name}: replaced")
    out["other_runs"] = others
    return out, messages


def _fill_means(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with ``mean_top1`` and ``mean_agreement`` computed from its own ``evaluation`` where
    it lacks them (entries recorded before those fields existed); the agreement targets are
    :data:`sepvit_viz.training.evaluate.TARGETS`'."""
    from sepvit_viz.training.evaluate import TARGETS

    results = record.get("evaluation")
    if not isinstance(results, dict):
        return record
    out = dict(record)
    if "mean_top1" not in out:
        mean = mean_top1({"evaluation": {"results": results}})
        if mean is not None:
            out["mean_top1"] = round(mean, 4)
    if "mean_agreement" not in out:
        targets = {n: {"agreement_min": a} for n, (_, a) in TARGETS.items()}
        agreement = mean_agreement({"evaluation": {"results": results, "targets": targets}})
        if agreement is not None:
            out["mean_agreement"] = round(agreement, 4)
    return out


def carry_other_runs(card: dict[str, Any], source: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return a copy of ``card`` with the ``other_runs`` entries of ``source`` appended, and one message
    per entry. An entry of a run that is ``card``'s own, in its ``lineage`` or already in its
    ``other_runs`` is left out (the card's own record of a run wins); an entry without ``mean_top1`` or
    ``mean_agreement`` gets them from its own evaluation.

    When ``card`` does not descend from ``source``'s run (a checkpoint from another branch replaces
    it), ``source``'s own run (``shipped: "before this checkpoint"``) and the runs of its lineage that
    ``card``'s lineage lacks are carried too, so that no run drops out of the record."""
    from sepvit_viz.training.distill import lineage_record

    out = dict(card)
    # the card's own entries too: one inherited through distill was never carried
    others = [_fill_means(r) if isinstance(r, dict) else r for r in out.get("other_runs") or []]
    taken = {r.get("run") for r in out.get("lineage") or []} | {out.get("run")} | {r.get("run") for r in others}
    messages: list[str] = []
    records = [r if isinstance(r, dict) else {} for r in source.get("other_runs") or []]
    if source.get("run") and source.get("run") not in taken:  # another branch: keep the old chain on record
        for entry in source.get("lineage") or []:
            if isinstance(entry, dict) and entry.get("run") not in taken:
                records.append({**entry, "shipped": False, "note": "in the lineage of the checkpoint shipped before"})
        own = {**lineage_record(source), "shipped": "before this checkpoint"}
        mean, agreement = mean_top1(source), mean_agreement(source)
        own.update({"mean_top1": round(mean, 4)} if mean is not None else {})
        own.update({"mean_agreement": round(agreement, 4)} if agreement is not None else {})
        records.append(own)
    for record in records:
        name = record.get("run")
        if not name:
            raise ValueError("an other_runs entry without a 'run' name in the card to carry from")
        if name in taken:
            messages.append(f"{name}: already in the card, not carried")
            continue
        others.append(_fill_means(record))
        taken.add(name)
        messages.append(f"{name}: carried")
    out["other_runs"] = others
    return out, messages


#: The sections of a card this module reads with ``.get``: each is an object (or absent / empty).
_SECTIONS = (
    "evaluation",
    "evaluation_during_training",
    "training_data",
    "augmentation",
    "optimizer",
    "feature_loss",
    "hard_target_loss",
    "resolution",
)


def _check_results(results: object, where: str) -> None:
    """Per-folder results (``{folder: {"student_top1": ..., "agreement": ...}}``): the figures this
    module averages must be numbers."""
    if not results:
        return
    if not isinstance(results, dict):
        raise ValueError(f"{where} is not an object")
    for folder, r in results.items():
        for key in ("student_top1", "agreement"):
            if isinstance(r, dict) and key in r and not isinstance(r[key], (int, float)):
                raise ValueError(f"{where}.{folder}.{key} is not a number")


def check_card(card: dict[str, Any]) -> None:
    """Raise ``ValueError`` (the reason) when a field this module reads has a shape distill never
    writes: a section that is not an object, ``lineage`` / ``other_runs`` that are not lists of
    objects, a ``run`` name that is not text, a top-1 or agreement that is not a number."""
    if not isinstance(card.get("run"), (str, type(None))):
        raise ValueError("'run' is not a name")
    for key in _SECTIONS:
        if card.get(key) and not isinstance(card[key], dict):
            raise ValueError(f"{key!r} is not an object")
    evaluation = card.get("evaluation") or {}
    _check_results(evaluation.get("results"), "evaluation.results")
    targets = evaluation.get("targets")
    if targets and not isinstance(targets, dict):
        raise ValueError("evaluation.targets is not an object")
    for folder, target in (targets or {}).items():
        if target and not isinstance(target, dict):
            raise ValueError(f"evaluation.targets.{folder} is not an object")
    for key in ("lineage", "other_runs"):
        entries = card.get(key)
        if entries and not isinstance(entries, list):
            raise ValueError(f"{key!r} is not a list")
        for i, entry in enumerate(entries or []):
            if not isinstance(entry, dict):
                raise ValueError(f"{key}[{i}] is not an object")
            if not isinstance(entry.get("run"), (str, type(None))):
                raise ValueError(f"{key}[{i}].run is not a name")
            if isinstance(entry.get("evaluation"), dict):  # a run's results, averaged when carried
                _check_results(entry["evaluation"], f"{key}[{i}].evaluation")


def _read_card(path: str | Path) -> dict[str, Any]:
    """The card at ``path``, checked with :func:`check_card`; ``ValueError`` naming ``path`` otherwise."""
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8 text
        raise ValueError(f"{path}: not a readable model card ({e})") from e
    except RecursionError:
        raise ValueError(f"{path}: not a model card written by distill (nested too deeply)") from None
    if not isinstance(card, dict):
        raise ValueError(f"{path}: not a model card written by distill (a JSON object was expected)")
    try:
        check_card(card)
    except ValueError as e:
        raise ValueError(f"{path}: not a model card written by distill ({e})") from None
    return card


def _write_card(path: str | Path, text: str) -> None:
    """Replace the card at ``path`` (through a symbolic link, keeping its mode) with ``text``
    atomically: a temporary file in the same folder, then ``os.replace``, so an interrupted or
    failed write leaves the old card whole. ``OSError`` when it cannot be written."""
    target = Path(os.path.realpath(path))
    if not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "no permission to write it")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sepvit_viz.training.card", description=__doc__.splitlines()[0])
    p.add_argument("card", help="the card to update, e.g. assets/sepvit_lite_distilled.card.json")
    p.add_argument("runs", nargs="*", help="cards of finished, evaluated runs that were not shipped")
    p.add_argument("--why", help="why they were not shipped (the rule and the figures), recorded with each")
    p.add_argument(
        "--carry-from",
        metavar="CARD",
        help="also copy this card's other_runs (e.g. the card a new checkpoint replaces)",
    )
    args = p.parse_args(argv)
    if not args.runs and not args.carry_from:
        p.error("give run cards to record, --carry-from CARD, or both")
    try:
        updated = _read_card(args.card)
        messages: list[str] = []
        if args.carry_from:
            updated, carried = carry_other_runs(updated, _read_card(args.carry_from))
            messages += carried
        if args.runs:
            run_cards = [_read_card(r) for r in args.runs]
            for path, run_card in zip(args.runs, run_cards):
                if not run_card.get("run"):
                    raise ValueError(f"{path}: not a model card written by distill (it has no 'run' name)")
            updated, recorded = record_other_runs(updated, run_cards, args.why)
            messages += recorded
        try:
            text = json.dumps(updated, indent=2) + "\n"
        except RecursionError:
            raise ValueError(f"{args.card}: not a model card written by distill (nested too deeply)") from None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        _write_card(args.card, text)
    except OSError as e:
        print(f"error: {args.card}: cannot write it ({e.strerror or e}); the card is unchanged", file=sys.stderr)
        return 2
    for m in messages:
        print(m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
