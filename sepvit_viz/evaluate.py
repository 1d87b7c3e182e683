"""Held-out accuracy of the shipped SepViT: ``python -m sepvit_viz.evaluate DIR [DIR ...] [--teacher]``.

Each DIR holds photos in folders named by WordNet id. Prints a markdown table with, per DIR, the
number of photos and the student's 1000-way top-1 at 224 (evaluation transform: bicubic, centre crop
0.875, mean = std = 0.5); with ``--teacher`` also EfficientNet-Lite0's top-1 (bf16, as measured for
the issue's bar) and the student-teacher top-1 agreement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepvit_viz.data import load_eval_set, normalize_uint8

__all__ = ["evaluate_dirs", "main", "markdown_table", "predict"]


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
) -> list[dict[str, Any]]:
    """Per folder: photos, student top-1 and (with a teacher) teacher top-1 and top-1 agreement, at 224."""
    rows = []
    for d in dirs:
        images, labels, _ = load_eval_set(d, 224, limit=limit, seed=seed)
        s = predict(model, images, batch_size, bf16=bf16, desc=f"student {Path(d).name}")
        row: dict[str, Any] = {
            "dir": str(d),
            "name": Path(d).name,
            "photos": len(labels),
            "student_top1": (s == labels).float().mean().item(),
        }
        if teacher is not None:
            t = predict(teacher, images, batch_size, bf16=True, channels_last=True, desc=f"teacher {Path(d).name}")
            row["teacher_top1"] = (t == labels).float().mean().item()
            row["agreement"] = (s == t).float().mean().item()
        rows.append(row)
    return rows


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


def main(argv: list[str] | None = None) -> int:
    from sepvit_viz.runtime import tune_malloc
    from sepvit_viz.weights import DEFAULT_CHECKPOINT, load_checkpoint

    tune_malloc()

    p = argparse.ArgumentParser(prog="python -m sepvit_viz.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", help="folders of photos in WordNet-id subfolders")
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
        help="record the results in the checkpoint's .card.json (under 'evaluation')",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for d in args.dirs:
        if not Path(d).is_dir():
            p.error(f"not a folder: {d}")
    model = load_checkpoint(args.checkpoint).float().eval()
    teacher = None
    if args.teacher:
        from sepvit_viz.teacher import create_teacher

        teacher = create_teacher().to(memory_format=torch.channels_last)
    t0 = time.time()
    rows = evaluate_dirs(model, args.dirs, teacher, limit=args.limit, batch_size=args.batch_size, bf16=args.bf16)
    print(f"checkpoint: {args.checkpoint} (1000-way top-1 at 224, centre crop 0.875)")
    print(markdown_table(rows))
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    if args.update_card:
        card_path = Path(args.checkpoint).with_name(
            Path(args.checkpoint).name.removesuffix(".safetensors") + ".card.json"
        )
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        card["evaluation"] = {
            "protocol": "1000-way top-1 at 224 px, bicubic resize, centre crop 0.875, mean = std = 0.5; "
            "student fp32" + (" (bf16 autocast)" if args.bf16 else "") + ", teacher bf16",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "results": {r["name"]: {k: v for k, v in r.items() if k not in ("name", "dir")} for r in rows},
            "limit_per_folder": args.limit,
        }
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"updated {card_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
