"""Held-out accuracy of the shipped distilled checkpoint against the teacher (issue 6's bar).

Uses the same code as ``python -m sepvit_viz.evaluate DIR ... --teacher``: 1000-way top-1 at 224
(bicubic, centre crop 0.875, mean = std = 0.5), student fp32, teacher bf16. The photos live beside the
project in ``../shared/data/val/`` (never committed); without them the section says so and measures
nothing. Quick mode takes 8 photos per folder (a smoke run: its numbers mean nothing).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import conditions
from sepvit_viz.evaluate import TARGETS  # the bar: (student top-1, agreement) per held-out folder

TITLE = "Accuracy of the distilled checkpoint"

VAL_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val"


def run(quick: bool) -> str:
    import torch

    from sepvit_viz.evaluate import evaluate_dirs, markdown_table
    from sepvit_viz.weights import DEFAULT_CHECKPOINT, load_checkpoint

    head = "### held-out top-1 at 224\n\n"
    dirs = [VAL_ROOT / name for name in TARGETS if (VAL_ROOT / name).is_dir()]
    if not DEFAULT_CHECKPOINT.is_file():
        return head + f"Skipped: no checkpoint at `{DEFAULT_CHECKPOINT.name}`.\n"
    if not dirs:
        return head + f"Skipped: the held-out photos (`{VAL_ROOT}`) are not on this machine.\n"
    try:
        from sepvit_viz.teacher import create_teacher

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
        "Targets (issue 6): "
        + "; ".join(f"{k}: top-1 >= {a:.0%}, agreement >= {b:.0%}" for k, (a, b) in TARGETS.items()),
        "",
        "Coverage: about 110 classes are well represented in the training photos, the other ~890 by one "
        "photo each; both held-out folders fall in the well-represented classes.",
    ]
    if quick:
        lines.append("\n(Quick mode: 8 photos per folder, a smoke run; the numbers mean nothing.)")
    return "\n".join(lines) + "\n"
