"""Diagnosis on tuning photos: where do the student and the teacher disagree, class by class?

For a folder of labelled photos (WordNet-id subfolders, e.g. a *training* folder: tuning data, never
a held-out one whose figures are reported), it prints per true class the photos, the student-teacher
agreement and both top-1 scores, then the most frequent disagreements as "teacher's class -> student's
class". Photos are read with the evaluation transform (224 px, bicubic, centre crop 0.875). It is not
an automatic benchmark module (it reads photos that stay outside the project); run it by hand::

    python -m benchmarks.probe_disagreements --data ../shared/data/train/imagenette --limit 1000 \\
        --checkpoint assets/sepvit_lite_distilled.safetensors
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.common import conditions, md_table


@dataclass(frozen=True)
class ClassRow:
    """One true class: photos, and the shares of them where student and teacher agree / are right."""

    label: int
    photos: int
    agreement: float
    student_top1: float
    teacher_top1: float


def per_class(labels: Sequence[int], student: Sequence[int], teacher: Sequence[int]) -> list[ClassRow]:
    """Rows by true class (sorted by agreement, lowest first) from three equal-length index lists."""
    if not len(labels) == len(student) == len(teacher):
        raise ValueError(f"lengths differ: {len(labels)} labels, {len(student)} student, {len(teacher)} teacher")
    counts: dict[int, list[int]] = {}
    for y, s, t in zip(labels, student, teacher, strict=True):
        c = counts.setdefault(int(y), [0, 0, 0, 0])
        c[0] += 1
        c[1] += s == t
        c[2] += s == y
        c[3] += t == y
    rows = [ClassRow(y, n, ag / n, st / n, te / n) for y, (n, ag, st, te) in counts.items()]
    return sorted(rows, key=lambda r: (r.agreement, r.label))


def top_disagreements(student: Sequence[int], teacher: Sequence[int], k: int = 10) -> list[tuple[int, int, int]]:
    """The ``k`` most frequent (teacher's class, student's class, count) among photos where they differ."""
    pairs = Counter((int(t), int(s)) for s, t in zip(student, teacher, strict=True) if s != t)
    return [(t, s, n) for (t, s), n in pairs.most_common(k)]


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from sepvit_viz.model.weights import DEFAULT_CHECKPOINT, load_checkpoint
    from sepvit_viz.training.data import imagenet_class_names, load_eval_set
    from sepvit_viz.training.evaluate import predict
    from sepvit_viz.training.teacher import create_teacher

    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_disagreements", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a folder of WordNet-id subfolders (tuning photos)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="student (default: the shipped one)")
    p.add_argument("--limit", type=int, default=1000, help="photos, spread over the classes (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="which photos (default 1)")
    p.add_argument("--top", type=int, default=12, help="disagreement pairs to list (default 12)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = imagenet_class_names()

    def class_name(i: int) -> str:
        return f"{names[i]} ({i})"

    images, labels, _ = load_eval_set(args.data, 224, limit=args.limit, seed=args.seed)
    student = predict(load_checkpoint(args.checkpoint).eval(), images, 50, bf16=False, desc="student")
    teacher_net = create_teacher().to(memory_format=torch.channels_last)
    teacher = predict(teacher_net, images, 50, bf16=False, channels_last=True, desc="teacher")
    y, s, t = labels.tolist(), student.tolist(), teacher.tolist()
    print(conditions(threads=args.threads, checkpoint=args.checkpoint, photos=len(y), data=args.data))
    print()
    rows = per_class(y, s, t)
    print(
        md_table(
            ["true class", "photos", "agreement", "student top-1", "teacher top-1"],
            [
                [class_name(r.label), r.photos, f"{r.agreement:.1%}", f"{r.student_top1:.1%}", f"{r.teacher_top1:.1%}"]
                for r in rows
            ],
        )
    )
    n = len(y)
    print(
        f"\nall: agreement {sum(a == b for a, b in zip(s, t, strict=True)) / n:.1%}, "
        f"student top-1 {sum(a == b for a, b in zip(s, y, strict=True)) / n:.1%}, "
        f"teacher top-1 {sum(a == b for a, b in zip(t, y, strict=True)) / n:.1%}\n"
    )
    print(
        md_table(
            ["teacher says", "student says", "photos"],
            [[class_name(a), class_name(b), k] for a, b, k in top_disagreements(s, t, args.top)],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
