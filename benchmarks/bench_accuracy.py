"""Held-out accuracy of the shipped distilled checkpoint against the teacher (issue 17's bar).

Uses the same code as ``python -m sepvit_viz.training.evaluate DIR ... --teacher``: 1000-way top-1 at 224
(bicubic, centre crop 0.875, mean = std = 0.5), student fp32, teacher bf16 where the CPU has it
natively. The photos live outside the project: ``../shared/data/val/`` and, for tiny-imagenet and
imagewoof, the extracted extra photos named by ``SEPVIT_EXTRA_DATA`` (``OUT`` of
``../shared/data/extract_extra.py``); missing folders are skipped and said so. Quick mode takes 8 photos per folder (a smoke run: its numbers mean nothing).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import conditions
from sepvit_viz.training.evaluate import TARGETS  # the bar: (student top-1, agreement) per held-out folder

TITLE = "Accuracy of the distilled checkpoint"

VAL_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val"


def val_dirs() -> list[Path]:
    """The held-out folders with a target that exist here: shared val/ first, then SEPVIT_EXTRA_DATA's val/."""
    import os

    roots = [VAL_ROOT]
    if os.environ.get("SEPVIT_EXTRA_DATA"):
        roots.append(Path(os.environ["SEPVIT_EXTRA_DATA"]) / "val")
    found = {}
    for root in roots:
        for name in TARGETS:
            if name not in found and (root / name).is_dir():
                found[name] = root / name
    return [found[n] for n in TARGETS if n in found]


def run(quick: bool) -> str:
    import torch

    from sepvit_viz.model.weights import DEFAULT_CHECKPOINT, load_checkpoint
    from sepvit_viz.training.evaluate import evaluate_dirs, markdown_table

    head = "### held-out top-1 at 224\n\n"
    dirs = val_dirs()
    if not DEFAULT_CHECKPOINT.is_file():
        return head + f"Skipped: no checkpoint at `{DEFAULT_CHECKPOINT.name}`.\n"
    if not dirs:
        return head + f"Skipped: the held-out photos (`{VAL_ROOT}`) are not on this machine.\n"
    try:
        from sepvit_viz.training.teacher import create_teacher

        teacher = create_teacher().to(memory_format=torch.channels_last)
    except ImportError:
        teacher = None
    limit = 8 if quick else None
    model = load_checkpoint(DEFAULT_CHECKPOINT).float().eval()
    rows = evaluate_dirs(model, dirs, teacher, limit=limit)
    lines = [
        head + conditions(checkpoint=DEFAULT_CHECKPOINT.name, photos_per_folder=limit or "all"),
        "",
        markdown_table(rows),
        "",
        "Targets (issue 17): "
        + "; ".join(
            f"{k}: top-1 >= {a:.0%}" + (f", agreement >= {b:.0%}" if b is not None else "")
            for k, (a, b) in TARGETS.items()
        ),
        "",
        "Not measured here: " + (", ".join(sorted(set(TARGETS) - {d.name for d in dirs})) or "none") + ".",
    ]
    if quick:
        lines.append("\n(Quick mode: 8 photos per folder, a smoke run; the numbers mean nothing.)")
    return "\n".join(lines) + "\n"
