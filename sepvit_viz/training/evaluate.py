"""Held-out accuracy of the shipped SepViT: ``python -m sepvit_viz.training.evaluate DIR [DIR ...] [--teacher]``.

Each DIR holds photos in folders named by WordNet id. Prints a markdown table with, per DIR, the
number of photos and the student's 1000-way top-1 at 224 (evaluation transform: bicubic, centre crop
0.875, mean = std = 0.5); with ``--teacher`` also EfficientNet-Lite0's top-1 (bf16 where the CPU has
it natively, else float32) and the student-teacher top-1 agreement. Folders named like a held-out set with a
target (:data:`TARGETS`) also get a met / not met verdict, printed and (``--update-card``) recorded
in the model card.

The app and the ``render`` command show one line drawn from the model card next to their predictions
(:func:`sepvit_viz.model.weights.model_note`; an older card without a training-data summary gives its
``coverage`` text).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sepvit_viz.cliargs import threads_problem
from sepvit_viz.model.weights import card_path_for, coverage_note
from sepvit_viz.training.data import held_out_key, labelled_images, load_eval_set, normalize_uint8

__all__ = [
    "TARGETS",
    "card_path_for",
    "check_eval_dir",
    "coverage_note",
    "evaluate_dirs",
    "evaluate_examples",
    "listed_examples",
    "main",
    "markdown_table",
    "predict",
    "update_card",
    "verdicts",
]

#: Minimum student top-1 and student-teacher agreement per held-out folder name (None: no bar on that
#: measure); the source is :data:`TARGETS_SOURCE`. ``benchmarks/bench_accuracy.py`` imports it.
TARGETS: dict[str, tuple[float, float | None]] = {
    "imagenette": (0.75, 0.75),
    "mini-imagenet": (0.36, 0.50),
    "tiny-imagenet": (0.20, 0.45),
    "imagewoof": (0.68, None),
}
TARGETS_SOURCE = "issue 17"


def check_eval_dir(root: str | Path) -> None:
    """Raise ``ValueError`` with a one-line message unless ``root`` holds photos in WordNet-id subfolders
    (the checks of :func:`sepvit_viz.training.data.labelled_images`, run before any model is loaded)."""
    labelled_images(root)


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 50,
    bf16: bool = False,
    channels_last: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """Top-1 class of each photo. images: (N, H, W, 3) uint8 (evaluation crop) -> (N,) int64."""
    from tqdm import tqdm

    model.eval()
    preds = []
    starts = range(0, len(images), batch_size)
    for i in tqdm(starts, desc=desc, disable=desc is None, leave=False, file=sys.stderr):
        x = normalize_uint8(images[i : i + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            preds.append(model(x).float().argmax(-1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)


def evaluate_dirs(
    model: nn.Module,
    dirs: Sequence[str | Path],
    teacher: nn.Module | None = None,
    limit: int | None = None,
    batch_size: int = 50,
    bf16: bool = False,
    seed: int = 0,
    teacher_bf16: bool | None = None,
) -> list[dict[str, Any]]:
    """Per folder: photos, student top-1 and (with a teacher) teacher top-1 and top-1 agreement, at 224.

    The teacher runs under bf16 autocast where the CPU computes bf16 natively (``teacher_bf16=None``),
    else in float32 (bf16 is emulated, and slow, without native support).
    """
    if teacher_bf16 is None:
        from sepvit_viz.model.runtime import cpu_has_native_bf16

        teacher_bf16 = cpu_has_native_bf16()
    rows = []
    for d in dirs:
        unreadable: list[Path] = []
        images, labels, _ = load_eval_set(d, 224, limit=limit, seed=seed, unreadable=unreadable)  # checks the layout
        for path in unreadable:
            print(f"skipped unreadable photo {path}", file=sys.stderr)
        if not len(labels):
            raise ValueError(f"{d}: no readable photo")
        s = predict(model, images, batch_size, bf16=bf16, desc=f"student {Path(d).name}")
        row: dict[str, Any] = {
            "dir": str(d),
            "name": Path(d).name,
            "photos": len(labels),
            **({"unreadable_photos_skipped": len(unreadable)} if unreadable else {}),
            "student_top1": (s == labels).double().mean().item(),
        }
        if teacher is not None:
            t = predict(
                teacher, images, batch_size, bf16=teacher_bf16, channels_last=True, desc=f"teacher {Path(d).name}"
            )
            row["teacher_top1"] = (t == labels).double().mean().item()
            row["agreement"] = (s == t).double().mean().item()
        rows.append(row)
    return rows


def listed_examples(folder: str | Path) -> list[tuple[Path, int]]:
    """The photos of an examples folder with their true class, from its ``ATTRIBUTION.md`` table
    (rows ``| file.jpg | <class index> <name> | ...``). Raises ``ValueError`` when a listed photo is missing."""
    import re

    folder = Path(folder)
    out = []
    for line in (folder / "ATTRIBUTION.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*([^|/\\]+\.(?:jpe?g|png))\s*\|\s*(\d+)\s", line, flags=re.IGNORECASE)
        if m:
            path = folder / m.group(1).strip()
            if not path.is_file():
                raise ValueError(f"{folder}/ATTRIBUTION.md lists {m.group(1)!r}, which is not in the folder")
            out.append((path, int(m.group(2))))
    return sorted(out)


@torch.no_grad()
def evaluate_examples(
    model: nn.Module, folder: str | Path, teacher: nn.Module | None = None, teacher_bf16: bool | None = None
) -> list[dict[str, Any]]:
    """Per example photo (:func:`listed_examples`): its true class and the student's (and teacher's)
    top-1 class and probability at 224 px with the evaluation transform."""
    from PIL import Image

    from sepvit_viz.imageio import upright
    from sepvit_viz.preprocess import resize_center_crop
    from sepvit_viz.training.data import imagenet_class_names

    if teacher_bf16 is None:
        from sepvit_viz.model.runtime import cpu_has_native_bf16

        teacher_bf16 = cpu_has_native_bf16()
    names = imagenet_class_names()
    rows = []
    for path, label in listed_examples(folder):
        with Image.open(path) as im:
            # upright and on white where transparent, as the app reads an upload
            img = torch.from_numpy(np.array(resize_center_crop(upright(im), 224), dtype=np.uint8))
        x = normalize_uint8(img[None])
        row: dict[str, Any] = {"file": path.name, "class": names[label]}
        nets = [("student", model, False)] + ([("teacher", teacher, teacher_bf16)] if teacher is not None else [])
        for who, net, bf16 in nets:
            net.eval()
            if who == "teacher":
                x_in = x.contiguous(memory_format=torch.channels_last)
            else:
                x_in = x
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                prob = net(x_in).float().softmax(-1)[0]
            top = int(prob.argmax())
            row[who] = {
                "top1": names[top],
                "index": top,  # names are not unique ("crane": 134 the bird, 517 the machine)
                "probability": round(float(prob[top]), 3),
                "right": top == label,
            }
        rows.append(row)
    return rows


def many_classes_summary(rows: Sequence[dict[str, Any]], folder: str | Path) -> dict[str, Any]:
    """Counts over :func:`evaluate_examples` rows: photos, distinct true classes, how many the student
    (and the teacher) name right, and on how many the two name the same class."""
    out: dict[str, Any] = {
        "folder": Path(folder).name,
        "photos": len(rows),
        "classes": len({r["class"] for r in rows}),
        "student_right": sum(bool(r["student"]["right"]) for r in rows),
    }
    if rows and all("teacher" in r for r in rows):
        out["teacher_right"] = sum(bool(r["teacher"]["right"]) for r in rows)
        out["agreement"] = sum(
            r["student"].get("index", r["student"]["top1"]) == r["teacher"].get("index", r["teacher"]["top1"])
            for r in rows
        )
    return out


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`evaluate_dirs` as a markdown table (percentages, one decimal)."""
    with_teacher = any("teacher_top1" in r for r in rows)
    head = ["held-out folder", "photos", "student top-1"]
    if with_teacher:
        head += ["teacher top-1", "student-teacher agreement"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], f"{r['photos']:,}", f"{100 * r['student_top1']:.1f}%"]
        if with_teacher:
            cells += [
                f"{100 * r['teacher_top1']:.1f}%" if "teacher_top1" in r else "-",
                f"{100 * r['agreement']:.1f}%" if "agreement" in r else "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _bar(value: float | None, minimum: float | None) -> str:
    if minimum is None:
        return "no target"
    if value is None:
        return "not measured"
    # rates are counts / photos; 1e-6 absorbs a rate that went through float32 (700/1000 -> 0.69999999)
    # and is far below one photo in a million
    return "met" if value >= minimum - 1e-6 else "not met"


def verdicts(
    rows: Sequence[dict[str, Any]], targets: dict[str, tuple[float, float]] = TARGETS
) -> dict[str, dict[str, str]]:
    """Per row whose folder name has a target: "met" / "not met" / "not measured" for the student's top-1,
    the agreement, and ``all`` (met only when both are met)."""
    out = {}
    for r in rows:
        if r["name"] not in targets:
            continue
        top1_min, agreement_min = targets[r["name"]]
        v = {
            "student_top1": _bar(r.get("student_top1"), top1_min),
            "agreement": _bar(r.get("agreement"), agreement_min),
        }
        if all(x in ("met", "no target") for x in v.values()):
            v["all"] = "met"
        else:
            v["all"] = "not met" if "not met" in v.values() else "not measured"
        out[r["name"]] = v
    return out


def verdict_lines(rows: Sequence[dict[str, Any]], targets: dict[str, tuple[float, float]] = TARGETS) -> list[str]:
    """One human-readable line per row with a target: each bar, the measured value and the verdict."""
    lines = []
    for name, v in verdicts(rows, targets).items():
        r = next(r for r in rows if r["name"] == name)
        parts = []
        for key, label, minimum in zip(("student_top1", "agreement"), ("top-1", "agreement"), targets[name]):
            if minimum is None:
                continue
            got = f"{100 * r[key]:.1f}%" if key in r else "not measured"
            parts.append(f"{label} {got} (target >= {minimum:.0%}): {v[key]}")
        source = f"{TARGETS_SOURCE}'s targets" if targets is TARGETS else "the given targets"
        lines.append(f"{name} vs {source}: " + "; ".join(parts))
    return lines


def update_card(
    card_path: str | Path,
    rows: Sequence[dict[str, Any]],
    bf16: bool = False,
    limit: int | None = None,
    targets: dict[str, tuple[float, float | None]] = TARGETS,
    teacher_bf16: bool | None = None,
) -> dict[str, Any]:
    """Record the rows under the card's ``evaluation`` with the targets and verdicts; returns that entry.

    ``bf16`` and ``teacher_bf16`` name the precision the student and teacher ran at; ``teacher_bf16=None``
    resolves it as :func:`evaluate_dirs` does (bf16 where the CPU computes bf16 natively).
    """
    if teacher_bf16 is None:
        from sepvit_viz.model.runtime import cpu_has_native_bf16

        teacher_bf16 = cpu_has_native_bf16()
    card_path = Path(card_path)
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    names = [r["name"] for r in rows if r["name"] in targets]
    with_teacher = any("teacher_top1" in r for r in rows)
    entry: dict[str, Any] = {
        "protocol": "1000-way top-1 at 224 px, bicubic resize, centre crop 0.875, mean = std = 0.5; "
        + ("student under bf16 autocast" if bf16 else "student fp32")
        + ((", teacher bf16" if teacher_bf16 else ", teacher fp32") if with_teacher else ", no teacher"),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "results": {
            r["name"]: {
                **({"folder": held_out_key(r["dir"])} if r.get("dir") else {}),
                **{k: v for k, v in r.items() if k not in ("name", "dir")},
            }
            for r in rows
        },
        "limit_per_folder": limit,
        "targets_source": TARGETS_SOURCE,
        "targets": {n: {"student_top1_min": targets[n][0], "agreement_min": targets[n][1]} for n in names},
        "teacher_dtype": ("bf16" if teacher_bf16 else "float32") if with_teacher else None,
        "verdict": verdicts(rows, targets),
    }
    if limit is not None:
        entry["verdict_note"] = f"judged on a random subset of at most {limit} photos per folder, not the whole set"
    card["evaluation"] = entry
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return entry


def not_held_out(card_path: str | Path, folders: Sequence[str | Path]) -> list[str]:
    """The ``folders`` (as :func:`held_out_key` names them) that the card's
    ``training_data.held_out_never_trained_on`` does not list: figures from them must not be recorded
    as held-out (``train/imagenette`` and ``val/imagenette`` share a name). A card that lists no
    held-out folders (an older card) refuses none."""
    card_path = Path(card_path)
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    held = (card.get("training_data") or {}).get("held_out_never_trained_on")
    if not held:
        return []
    return [held_out_key(f) for f in folders if held_out_key(f) not in set(held)]


def evaluation_losses(card_path: str | Path, folders: Sequence[str], teacher: bool, limit: int | None) -> list[str]:
    """What recording a new evaluation of ``folders`` (folder names) would drop from the card's current
    ``evaluation`` entry: folders not measured again, the teacher's figures, whole-folder counts."""
    card_path = Path(card_path)
    old = json.loads(card_path.read_text()).get("evaluation") if card_path.is_file() else None
    if not old or not old.get("results"):
        return []
    lost = []
    gone = sorted(set(old["results"]) - set(folders))
    if gone:
        lost.append("the results of " + ", ".join(gone))
    if not teacher and any("teacher_top1" in r for r in old["results"].values()):
        lost.append("the teacher's figures (give --teacher)")
    if limit is not None and old.get("limit_per_folder") is None:
        lost.append("whole-folder results (this run has --limit)")
    return lost


def main(argv: list[str] | None = None) -> int:
    from sepvit_viz.model.runtime import tune_malloc
    from sepvit_viz.model.weights import DEFAULT_CHECKPOINT, load_checkpoint

    tune_malloc()

    p = argparse.ArgumentParser(prog="python -m sepvit_viz.training.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="*", help="folders of photos in WordNet-id subfolders (e.g. DIR/n01440764/*.jpg)")
    p.add_argument(
        "--examples",
        help="also run the example photos of this folder (true classes from its ATTRIBUTION.md); "
        "with --update-card recorded under 'examples'",
    )
    p.add_argument(
        "--many-classes",
        metavar="DIR",
        help="a folder of photos of many different classes, each listed with its class in its ATTRIBUTION.md "
        "(e.g. ../shared/examples); with --update-card their count right is recorded under 'many_classes'",
    )
    p.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT), help="student checkpoint (default: the shipped one)"
    )
    p.add_argument("--teacher", action="store_true", help="also run EfficientNet-Lite0 and report agreement")
    p.add_argument("--limit", type=int, help="a fixed random subset of at most N photos per folder")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--bf16", action="store_true", help="run the student under bf16 autocast (default fp32)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--json", dest="json_out", help="also write the rows to this JSON file")
    p.add_argument(
        "--update-card",
        action="store_true",
        help="record the results, the targets and the verdicts in the checkpoint's .card.json (under 'evaluation'); "
        "refused when that would drop folders, teacher figures or whole-folder counts the card holds, unless --replace",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="with --update-card: replace the card's evaluation even if it loses entries",
    )
    args = p.parse_args(argv)
    if not args.dirs and not args.examples and not args.many_classes:
        p.error("give held-out folders, --examples DIR, --many-classes DIR, or several")
    problems = [
        f"{flag} must be at least 1 (got {v})"
        for flag, v in (("--limit", args.limit), ("--batch-size", args.batch_size))
        if v is not None and v < 1
    ]
    problems.append(threads_problem(args.threads))
    if args.json_out:  # refused before the evaluation runs, not after it
        target = Path(args.json_out)
        if target.is_dir() or not target.parent.is_dir():
            problems.append(f"--json {args.json_out}: not a file in an existing folder")
    if problem := next((pr for pr in problems if pr), None):
        print(f"error: {problem}", file=sys.stderr)  # one line, as for the errors below
        raise SystemExit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
    for d in args.dirs:
        try:
            check_eval_dir(d)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.update_card and args.dirs:
        wrong = not_held_out(card_path_for(args.checkpoint), args.dirs)
        if wrong:
            print(
                f"error: --update-card records figures as held-out, but {', '.join(wrong)} is not among the "
                f"held-out folders the card names (training_data.held_out_never_trained_on): "
                "measure it without --update-card",
                file=sys.stderr,
            )
            return 2
    if args.update_card and args.dirs and not args.replace:
        lost = evaluation_losses(
            card_path_for(args.checkpoint), [Path(d).name for d in args.dirs], args.teacher, args.limit
        )
        if lost:
            print(
                f"error: --update-card would drop {'; '.join(lost)} from {card_path_for(args.checkpoint)}: "
                "measure them again in the same command, or pass --replace",
                file=sys.stderr,
            )
            return 2
    try:
        model = load_checkpoint(args.checkpoint).float().eval()
    except (OSError, ValueError) as e:  # CheckpointError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    teacher = None
    if args.teacher:
        from sepvit_viz.training.teacher import create_teacher

        teacher = create_teacher().to(memory_format=torch.channels_last)
    t0 = time.time()
    try:
        rows = evaluate_dirs(model, args.dirs, teacher, limit=args.limit, batch_size=args.batch_size, bf16=args.bf16)
    except (OSError, ValueError) as e:  # e.g. a folder whose every photo is unreadable
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoint: {args.checkpoint} (1000-way top-1 at 224, centre crop 0.875)")
    if rows:
        print(markdown_table(rows))
        for line in verdict_lines(rows):
            print(line)
    examples = None
    if args.examples:
        try:
            examples = evaluate_examples(model, args.examples, teacher)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for r in examples:
            t = f"; teacher {r['teacher']['top1']}" if "teacher" in r else ""
            ok = "right" if r["student"]["right"] else "wrong"
            print(f"{r['file']}: {r['class']} -> {r['student']['top1']} ({r['student']['probability']:.0%}, {ok}){t}")
    many = None
    if args.many_classes:
        try:
            many = many_classes_summary(evaluate_examples(model, args.many_classes, teacher), args.many_classes)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        t = f"; teacher {many['teacher_right']}, agreement {many['agreement']}" if "teacher_right" in many else ""
        print(
            f"{many['folder']}: {many['photos']} photos of {many['classes']} classes, student right on {many['student_right']}{t}"
        )
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    if args.json_out:
        try:
            Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
        except OSError as e:
            print(f"error: --json {args.json_out}: {e.strerror or e}", file=sys.stderr)
            return 2
    if args.update_card:
        card_path = card_path_for(args.checkpoint)
        from sepvit_viz.model.runtime import cpu_has_native_bf16

        if rows:
            update_card(card_path, rows, bf16=args.bf16, limit=args.limit, teacher_bf16=cpu_has_native_bf16())
        entries: dict[str, Any] = {}
        if examples is not None:
            entries["examples"] = {
                "folder": Path(args.examples).name,
                "student_right": sum(r["student"]["right"] for r in examples),
                "photos": len(examples),
                "results": examples,
            }
        if many is not None:
            entries["many_classes"] = many
        if entries:  # one read and one write of the card for both entries
            card = json.loads(card_path.read_text()) if card_path.exists() else {}
            card.update(entries)
            card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"updated {card_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
