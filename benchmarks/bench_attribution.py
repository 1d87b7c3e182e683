"""Attribution benchmark: speed per method, memory of Integrated Gradients, and faithfulness.

Three tables (markdown), each with its conditions:

1. **Speed**: median seconds per method for one image (SepViT-Lite at 224 by default, 2 threads),
   methods timed interleaved (see ``benchmarks/common.py``). Targets: Saliency < 0.2 s,
   Integrated Gradients with 32 steps < 2 s, SepViT relevance < 0.5 s.
2. **Memory**: peak resident memory of a fresh process that loads the model and runs a 64-step
   Integrated Gradients (target < 1.5 GB), and its rise over the same process before the call.
3. **Faithfulness** over a folder of labelled photos (``<root>/<wnid>/*.jpg``, labels from
   ``imagenet_classes.tsv``): mean deletion AUC (lower is better), mean insertion AUC (higher is
   better), both with a blurred baseline, and mean attribution time per image, for every method
   and a random map (the floor). The class explained is the model's top prediction
   (``--target label`` explains the true class instead).

Usage::

    .venv/bin/python benchmarks/bench_attribution.py --limit 20
    .venv/bin/python benchmarks/bench_attribution.py --skip-speed --skip-memory --limit 50 --json out.json
    # the relevance's optional two-scale pixel order (step 7): tune on 20 photos, confirm on 30 others
    .venv/bin/python benchmarks/bench_attribution.py --skip-speed --skip-memory --variants order --limit 20
    .venv/bin/python benchmarks/bench_attribution.py --skip-speed --skip-memory --variants order --offset 20 --limit 30
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import conditions, fmt, md_table, num_threads, time_interleaved  # noqa: E402

from sepvit_viz import create_model  # noqa: E402
from sepvit_viz.attribution import attribute  # noqa: E402
from sepvit_viz.faithfulness import deletion_insertion  # noqa: E402
from sepvit_viz.preprocess import preprocess  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "val" / "imagenette"
DEFAULT_LABELS = ROOT.parent / "shared" / "data" / "imagenet_classes.tsv"
DEFAULT_CHECKPOINT = ROOT / "assets" / "sepvit_lite_distilled.safetensors"

#: (row label, method, options): every method once with its defaults, plus variants worth a row.
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("Saliency", "saliency", {}),
    ("Input x Gradient", "input_x_gradient", {}),
    ("Integrated Gradients (32, black)", "integrated_gradients", {"steps": 32, "baseline": "black"}),
    ("Integrated Gradients (32, blurred)", "integrated_gradients", {"steps": 32, "baseline": "blurred"}),
    ("SmoothGrad (16)", "smoothgrad", {}),
    ("GradientSHAP (16)", "gradient_shap", {}),
    ("Occlusion (28 px windows, gray)", "occlusion", {}),
    ("Occlusion (28 px windows, blurred)", "occlusion", {"baseline": "blurred"}),
    ("Grad-CAM stage 1", "gradcam", {"stage": 0}),
    ("Grad-CAM stage 2", "gradcam", {"stage": 1}),
    ("Grad-CAM stage 3", "gradcam", {"stage": 2}),
    ("Grad-CAM stage 4", "gradcam", {"stage": 3}),
    ("SepViT relevance", "sepvit_relevance", {}),
    ("SepViT relevance, smooth order only (sharp None)", "sepvit_relevance", {"sharp": None}),
    ("SepViT relevance, attention only (modulation 0, sharp None)", "sepvit_relevance", {"modulation": 0.0, "sharp": None}),
    ("Random (floor)", "random", {}),
]


#: ``--variants order``: the SepViT relevance's pixel order (step 7: ``sharp`` share, ``rounds`` of
#: re-reading; default 0.03 / 2) against the generic methods that came closest on the full table.
ORDER_VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("Input x Gradient", "input_x_gradient", {}),
    ("Integrated Gradients (32, blurred)", "integrated_gradients", {"steps": 32, "baseline": "blurred"}),
    ("GradientSHAP (16)", "gradient_shap", {}),
    ("Occlusion (28 px windows, blurred)", "occlusion", {"baseline": "blurred"}),
    ("SepViT relevance, smooth order only (sharp None)", "sepvit_relevance", {"sharp": None}),
    *[
        (f"SepViT relevance, sharp {d}, {r} round{'s' if r > 1 else ''}", "sepvit_relevance", {"sharp": d, "rounds": r})
        for d, r in ((0.1, 1), (0.05, 1), (0.05, 2), (0.05, 3))
    ],
    ("SepViT relevance (default: sharp 0.03, 2 rounds)", "sepvit_relevance", {}),
    ("Random (floor)", "random", {}),
]

#: speed-only row: Integrated Gradients under bf16 autocast (an option; fp32 is the default)
BF16_IG = "Integrated Gradients (32, black, bf16 autocast)"


def load_model(args: argparse.Namespace) -> torch.nn.Module:
    path = Path(args.checkpoint) if args.checkpoint else None
    if path is not None and path.exists():
        from sepvit_viz.weights import load_checkpoint

        model = load_checkpoint(path)
        print(f"model: {path} ({model.config.name})")
    else:
        if path is not None:
            print(f"(no checkpoint at {path}: random {args.model} weights; speed and memory are still valid)")
        model = create_model(args.model)
    return model.eval()


def read_labels(path: Path) -> dict[str, tuple[int, str]]:
    """wnid -> (class index, name) from a TSV with columns index, wnid, name."""
    with open(path, encoding="utf-8") as fh:
        return {row["wnid"]: (int(row["index"]), row["name"]) for row in csv.DictReader(fh, delimiter="\t")}


def list_photos(root: Path, labels: dict[str, tuple[int, str]], limit: int, offset: int = 0) -> list[tuple[Path, int]]:
    """Photos taken round-robin over the class folders (sorted), so a small limit covers classes.

    ``offset`` skips the first photos of that order: tune on ``--limit 20``, confirm on
    ``--offset 20 --limit 50`` (disjoint photos).
    """
    per_class = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in labels:
            continue
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        per_class.append([(f, labels[d.name][0]) for f in files])
    out: list[tuple[Path, int]] = []
    i = 0
    while len(out) < offset + limit and any(i < len(c) for c in per_class):
        out += [c[i] for c in per_class if i < len(c)]
        i += 1
    return out[offset : offset + limit]


# ------------------------------------------------------------------------------------ speed
def bench_speed(model: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace) -> list[list[str]]:
    targets = {"Saliency": 0.2, "Integrated Gradients (32, black)": 2.0, "SepViT relevance": 0.5}
    with torch.no_grad():
        target = int(model(x).argmax())
    fns = {label: (lambda m=method, o=opts: attribute(model, x, target, m, **o)) for label, method, opts in VARIANTS}
    fns[BF16_IG] = lambda: attribute(model, x, target, "integrated_gradients", steps=32, precision="bf16")

    def forward_only() -> None:
        with torch.no_grad():
            model(x)

    # calibration row: on a shared machine, read every time relative to one plain forward pass
    fns["(reference: one forward, no grad)"] = forward_only
    with num_threads(args.threads):
        timings = time_interleaved(fns, reps=args.repeats, warmup=1)
    ref = timings["(reference: one forward, no grad)"].median
    rows = [
        [
            "(reference: one forward, no grad)",
            fmt(ref),
            fmt(timings["(reference: one forward, no grad)"].spread, 2),
            "1",
            "",
        ]
    ]
    for label in [v[0] for v in VARIANTS] + [BF16_IG]:
        t = timings[label]
        goal = targets.get(label)
        verdict = "" if goal is None else ("yes" if t.median < goal else "NO") + f" (< {goal} s)"
        rows.append([label, fmt(t.median), fmt(t.spread, 2), fmt(t.median / ref), verdict])
    return rows


# ------------------------------------------------------------------------------------ memory
def _status_kb(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status, in kB."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(args: argparse.Namespace) -> None:
    """Child process: load the model, one forward, then IG-64; print RSS figures (bytes) as JSON.

    The peak (VmHWM) is reset just before the call (``/proc/self/clear_refs``), so ``peak`` is the
    whole process's highest resident memory *during* IG, torch and the model included.
    """
    torch.set_num_threads(args.threads)
    model = load_model(args)
    x = torch.randn(1, 3, args.size, args.size)
    with torch.no_grad():
        model(x)
    before = _status_kb("VmRSS") * 1024
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    a = attribute(model, x, 0, "integrated_gradients", steps=64)
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM") * 1024 if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ibs = a.extras["options"]["internal_batch_size"]
    print(
        json.dumps(
            {"before": before, "peak": peak, "seconds": seconds, "internal_batch_size": ibs, "peak_reset": reset}
        )
    )


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--memory-probe",
        "--threads",
        str(args.threads),
        "--size",
        str(args.size),
        "--model",
        args.model,
        "--checkpoint",
        args.checkpoint or "",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ faithfulness
def bench_faithfulness(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list[list[str]], dict[str, Any]]:
    labels = read_labels(Path(args.labels))
    photos = list_photos(Path(args.data), labels, args.limit, args.offset)
    if not photos:
        raise SystemExit(f"no labelled photos under {args.data}")
    variants = ORDER_VARIANTS if args.variants == "order" else VARIANTS
    stats: dict[str, dict[str, list[float]]] = {label: {"del": [], "ins": [], "sec": []} for label, _, _ in variants}
    correct = 0
    with num_threads(args.threads):
        for path, label_idx in tqdm(photos, desc="faithfulness", unit="photo"):
            x = preprocess(Image.open(path), args.size)
            with torch.no_grad():
                pred = int(model(x).argmax())
            correct += int(pred == label_idx)
            target = label_idx if args.target == "label" else pred
            for label, method, opts in variants:
                a = attribute(model, x, target, method, **opts)
                cur = deletion_insertion(model, x, a.map_hw, target, steps=args.faith_steps, batch_size=args.batch_size)
                stats[label]["del"].append(cur.deletion_auc)
                stats[label]["ins"].append(cur.insertion_auc)
                stats[label]["sec"].append(a.seconds)
    rows = []
    floor = stats["Random (floor)"]
    for label, _, _ in variants:
        s = stats[label]
        beats = label == "Random (floor)" or (
            np.mean(s["del"]) < np.mean(floor["del"]) and np.mean(s["ins"]) > np.mean(floor["ins"])
        )
        rows.append(
            [
                label,
                fmt(float(np.mean(s["del"]))),
                fmt(float(np.mean(s["ins"]))),
                fmt(float(np.mean(s["ins"]) - np.mean(s["del"]))),
                fmt(statistics.median(s["sec"])),
                "" if label == "Random (floor)" else ("yes" if beats else "NO"),
            ]
        )
    summary = {
        "photos": len(photos),
        "top1": correct / len(photos),
        "per_method": {k: {m: [float(v) for v in vals] for m, vals in s.items()} for k, s in stats.items()},
    }
    return rows, summary


def relevance_verdict(summary: dict[str, Any], name: str = "SepViT relevance") -> str:
    per = summary["per_method"]
    rel = per[name]
    generic = [k for k in per if not k.startswith("SepViT relevance") and k != "Random (floor)"]
    best_del = min(generic, key=lambda k: np.mean(per[k]["del"]))
    best_ins = max(generic, key=lambda k: np.mean(per[k]["ins"]))
    ok_del = np.mean(rel["del"]) < np.mean(per[best_del]["del"])
    ok_ins = np.mean(rel["ins"]) > np.mean(per[best_ins]["ins"])
    beaten_by_del = [k for k in generic if np.mean(per[k]["del"]) <= np.mean(rel["del"])]
    beaten_by_ins = [k for k in generic if np.mean(per[k]["ins"]) >= np.mean(rel["ins"])]
    return (
        f"{name} vs the best generic method: deletion {fmt(float(np.mean(rel['del'])))} vs "
        f"{fmt(float(np.mean(per[best_del]['del'])))} ({best_del}) -> {'beats' if ok_del else 'does NOT beat'}; "
        f"insertion {fmt(float(np.mean(rel['ins'])))} vs {fmt(float(np.mean(per[best_ins]['ins'])))} ({best_ins}) "
        f"-> {'beats' if ok_ins else 'does NOT beat'}.\n"
        f"Generic methods at least as good on deletion: {', '.join(beaten_by_del) or 'none'}; "
        f"on insertion: {', '.join(beaten_by_ins) or 'none'}."
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="sepvit_lite", help="variant when no checkpoint is found")
    p.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT), help="safetensors checkpoint ('' for random weights)"
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of <wnid>/<photo> files")
    p.add_argument("--labels", default=str(DEFAULT_LABELS), help="TSV with index, wnid, name")
    p.add_argument("--limit", type=int, default=20, help="number of photos for the faithfulness table")
    p.add_argument("--offset", type=int, default=0, help="skip this many photos first (a disjoint set)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per method (speed table)")
    p.add_argument("--faith-steps", type=int, default=20, help="deletion/insertion steps")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward in the curves")
    p.add_argument("--target", choices=["pred", "label"], default="pred")
    p.add_argument(
        "--variants", choices=["all", "order"], default="all",
        help="faithfulness rows: every method (all) or the relevance's pixel-order options against the closest generic ones",
    )
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-faithfulness", action="store_true")
    p.add_argument("--json", help="also write all numbers to this JSON file")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_probe:
        memory_probe(args)
        return

    model = load_model(args)
    report: dict[str, Any] = {"args": vars(args)}
    if not args.skip_speed:
        photos = list_photos(Path(args.data), read_labels(Path(args.labels)), 1) if Path(args.data).exists() else []
        x = preprocess(Image.open(photos[0][0]), args.size) if photos else torch.randn(1, 3, args.size, args.size)
        with num_threads(args.threads):
            print("\n### Speed (one image, median seconds)\n")
            print(conditions(model=model.config.name, input=f"{args.size}x{args.size}", repetitions=args.repeats))
            rows = bench_speed(model, x, args)
        print(md_table(["method", "median s", "IQR / median", "x forward", "meets target"], rows))
        report["speed"] = rows
    if not args.skip_memory:
        mem = bench_memory(args)
        gb = 1024**3
        print("\n### Memory of Integrated Gradients, 64 steps\n")
        print(
            conditions(
                model=model.config.name,
                input=f"{args.size}x{args.size}",
                internal_batch_size=mem["internal_batch_size"],
            )
        )
        print(
            md_table(
                ["peak RSS (GB)", "before the call (GB)", "rise (GB)", "seconds", "meets < 1.5 GB"],
                [
                    [
                        fmt(mem["peak"] / gb),
                        fmt(mem["before"] / gb),
                        fmt((mem["peak"] - mem["before"]) / gb),
                        fmt(mem["seconds"]),
                        "yes" if mem["peak"] < 1.5 * gb else "NO",
                    ]
                ],
            )
        )
        report["memory"] = mem
    if not args.skip_faithfulness:
        with num_threads(args.threads):
            cond = conditions(
                model=model.config.name,
                input=f"{args.size}x{args.size}",
                photos=f"{args.limit} from #{args.offset}",
                steps=args.faith_steps,
                baseline="blurred (sigma 10 px)",
                target=args.target,
            )
            rows, summary = bench_faithfulness(model, args)
        print("\n### Faithfulness (means over photos; deletion: lower is better, insertion: higher is better)\n")
        print(cond)
        print(f"Photos: {summary['photos']}; model top-1 on them: {summary['top1']:.1%}.")
        print(
            md_table(["method", "deletion AUC", "insertion AUC", "ins - del", "median s / image", "beats random"], rows)
        )
        for name in summary["per_method"]:
            if name.startswith("SepViT relevance") and "attention only" not in name:
                print("\n" + relevance_verdict(summary, name))
        report["faithfulness"] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


TITLE = "Attribution speed, memory and faithfulness"


def run(quick: bool) -> str:
    """The runner's contract (benchmarks/run.py): markdown of this benchmark, smaller in quick mode."""
    import contextlib
    import io

    argv = ["--limit", "2", "--repeats", "1", "--faith-steps", "5", "--skip-memory"] if quick else ["--limit", "20"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(argv)
    return buf.getvalue()


if __name__ == "__main__":
    main()
