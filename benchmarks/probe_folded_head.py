"""Diagnosis on the val folders: can the teacher's classifier read the student's features?

Distillation fits a linear projection from the student's last-stage tokens to the teacher's 1280
feature channels (the feature-matching loss). The teacher's classifier is linear too, so
``teacher_fc(projection(mean of tokens))`` is a 1000-way head of the student's own shape
(:func:`folded_head`), which would carry the teacher's knowledge of every class. This script scores
that head, the student's own head and blends of their logits (1000-way top-1 and agreement with the
teacher, evaluation transform: 224 px, bicubic, centre crop 0.875). It needs the run's saved state
(``runs/NAME/state.pt``, which holds the projection) and photos that stay outside the project, so it
is not an automatic benchmark module; run it by hand::

    python -m benchmarks.probe_folded_head --checkpoint runs/run21/sepvit_lite_distilled.safetensors \\
        --state runs/run21/state.pt --dirs ../shared/data/val/* OUT/val/*
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.common import conditions, md_table


def folded_head(
    fc_weight: torch.Tensor, fc_bias: torch.Tensor, proj_weight: torch.Tensor, proj_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fc(proj(x))`` as one linear map. fc: (K, F), (K,); proj: (F, C), (F,) -> weight (K, C), bias (K,).

    Exact because mean pooling, the projection and the classifier are all linear: the teacher's
    classifier applied to the mean of the projected tokens is this head applied to the mean token."""
    return fc_weight @ proj_weight, fc_weight @ proj_bias + fc_bias


def main(argv: Sequence[str] | None = None) -> int:
    from tqdm import tqdm

    from sepvit_viz.model.weights import load_checkpoint
    from sepvit_viz.training.data import load_eval_set, normalize_uint8
    from sepvit_viz.training.teacher import create_teacher

    ap = argparse.ArgumentParser(prog="python -m benchmarks.probe_folded_head", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="the student (.safetensors)")
    ap.add_argument("--state", required=True, help="the run's state.pt (holds the feature projection)")
    ap.add_argument("--dirs", nargs="+", type=Path, required=True, help="held-out folders (WordNet-id subfolders)")
    ap.add_argument(
        "--own",
        nargs="+",
        type=float,
        default=[0.0, 0.25, 0.5, 0.75, 1.0],
        help="weights of the student's own head in the blend (default 0 0.25 0.5 0.75 1)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    student = load_checkpoint(args.checkpoint).float().eval()
    teacher = create_teacher().eval()
    proj = torch.load(args.state, map_location="cpu", weights_only=False)["feat_proj"]
    w, b = folded_head(teacher._fc.weight.detach(), teacher._fc.bias.detach(), proj["weight"], proj["bias"])
    top1 = {a: [] for a in args.own}
    rows = []
    with torch.no_grad():
        for d in args.dirs:
            images, labels, _ = load_eval_set(d, 224, seed=0)
            pooled, t_pred = [], []
            for i in tqdm(range(0, len(images), 50), desc=d.name, leave=False):
                x = normalize_uint8(images[i : i + 50])
                pooled.append(student.forward_head(student.forward_features(x), pre_logits=True))
                t_pred.append(teacher(x.contiguous(memory_format=torch.channels_last)).argmax(-1))
            p, t = torch.cat(pooled), torch.cat(t_pred)
            own, folded = student.head(p), p @ w.T + b
            row = [d.name, len(labels), f"{100 * (t == labels).double().mean().item():.1f}"]
            for a in args.own:
                pred = (a * own + (1 - a) * folded).argmax(-1)
                acc = (pred == labels).double().mean().item()
                top1[a].append(acc)
                row.append(f"{100 * acc:.1f} / {100 * (pred == t).double().mean().item():.1f}")
            rows.append(row)
    rows.append(["mean top-1", "", ""] + [f"{100 * sum(v) / len(v):.1f}" for v in top1.values()])
    print(conditions(model=Path(args.checkpoint).name, state=Path(args.state).name))
    head = ["folder", "photos", "teacher top-1"] + [f"own head {a:g}: top-1 / agreement" for a in args.own]
    print(md_table(head, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
