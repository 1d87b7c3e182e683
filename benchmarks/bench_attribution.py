"""Attribution benchmark: speed per method, memory of Integrated Gradients, and a faithfulness scorecard.

Three tables (markdown), each with its conditions:

1. **Speed**: median seconds per method for one image (SepViT-Lite at 224 by default), methods
   timed interleaved (see ``benchmarks/common.py``). Target: every method <= 2 s (Integrated
   Gradients with its default 16 steps included); IG-32 is shown for reference.
2. **Memory**: peak resident memory of a fresh process that loads the model and runs a 64-step
   Integrated Gradients (target < 1.5 GB), and its rise over the same process before the call.
3. **Faithfulness scorecard** over labelled photos (``<root>/<wnid>/*.jpg``, labels from
   ``imagenet_classes.tsv``) that played no part in any tuning (``docs/attribution.md``): for every
   method, the six untuned measures of :mod:`sepvit_viz.explain.scorecard` (deletion and insertion with the
   image-mean and the noise fill, ROAD most- and least-relevant first), the model-randomisation
   sanity check (Spearman with the fully random model's map; ``--sanity cascade`` gives every
   level), the mean rank over the six measures and a readable verdict. Rows ", destriped" score the
   same attribution through the stripe filter (what :func:`sepvit_viz.explain.attribution.destripe` costs).
   The class explained is the model's top prediction (``--target label``: the true class).

Usage::

    # the scoring run of docs/attribution.md, in two halves (each under ~12 minutes on 2 loaded cores)
    python benchmarks/bench_attribution.py --skip-speed --skip-memory --data ../shared/data/val/imagenette \
        --offset 100 --limit 4 --threads 1 --faith-steps 10 --json a.json
    python benchmarks/bench_attribution.py ... --offset 104 --limit 4 --json b.json
    python benchmarks/bench_attribution.py --skip-speed --skip-memory --from-json a.json b.json
    # the cascade per level, sanity only
    python benchmarks/bench_attribution.py ... --offset 100 --limit 2 --sanity cascade --skip-measures --json c.json
    # speed only
    python benchmarks/bench_attribution.py --skip-memory --skip-faithfulness --threads 1
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
from sepvit_viz.explain.attribution import attribute, destripe  # noqa: E402
from sepvit_viz.preprocess import preprocess  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "val" / "imagenette"  # the speed photo
DEFAULT_LABELS = ROOT.parent / "shared" / "data" / "imagenet_classes.tsv"
DEFAULT_CHECKPOINT = ROOT / "assets" / "sepvit_lite_distilled.safetensors"

#: (row label, method, options): the speed table: every method once with its defaults, plus IG-32.
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("Saliency", "saliency", {}),
    ("Input x Gradient", "input_x_gradient", {}),
    ("Integrated Gradients (16, black; default)", "integrated_gradients", {}),
    ("Integrated Gradients (32, black)", "integrated_gradients", {"steps": 32}),
    ("SmoothGrad (16)", "smoothgrad", {}),
    ("GradientSHAP (16)", "gradient_shap", {}),
    ("Occlusion (28 px windows, gray)", "occlusion", {}),
    ("Grad-CAM stage 4", "gradcam", {}),
    ("SepViT relevance", "sepvit_relevance", {}),
    ("Random (floor)", "random", {}),
]

#: speed-only row: Integrated Gradients under bf16 autocast (an option; fp32 is the default)
BF16_IG = "Integrated Gradients (16, black, bf16 autocast)"


def load_model(args: argparse.Namespace) -> torch.nn.Module:
    path = Path(args.checkpoint) if args.checkpoint else None
    if path is not None and path.exists():
        from sepvit_viz.model.weights import load_checkpoint

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
    targets = {label: 2.0 for label, method, _ in VARIANTS if method != "random" and "(32" not in label}
    with torch.no_grad():
        target = int(model(x).argmax())
    fns = {label: (lambda m=method, o=opts: attribute(model, x, target, m, **o)) for label, method, opts in VARIANTS}
    if args.bf16:
        fns[BF16_IG] = lambda: attribute(model, x, target, "integrated_gradients", precision="bf16")
    # CPU seconds of the process per call (all its threads): what the work costs, whatever else runs
    cpu: dict[str, list[float]] = {label: [] for label in fns}

    def with_cpu(label: str, fn):
        def call() -> None:
            c0 = time.process_time()
            fn()
            cpu[label].append(time.process_time() - c0)

        return call

    fns = {label: with_cpu(label, fn) for label, fn in fns.items()}

    def forward_only() -> None:
        with torch.no_grad():
            model(x)

    # calibration row: on a shared machine, read every time relative to one plain forward pass
    cpu["(reference: one forward, no grad)"] = []
    fns["(reference: one forward, no grad)"] = with_cpu("(reference: one forward, no grad)", forward_only)
    with num_threads(args.threads):
        timings = time_interleaved(fns, reps=args.repeats, warmup=1)
    ref = timings["(reference: one forward, no grad)"].median
    rows = [
        [
            "(reference: one forward, no grad)",
            fmt(ref),
            fmt(timings["(reference: one forward, no grad)"].spread, 2),
            fmt(statistics.median(cpu["(reference: one forward, no grad)"][1:])),
            "1",
            "",
        ]
    ]
    for label in [v[0] for v in VARIANTS] + ([BF16_IG] if args.bf16 else []):
        t = timings[label]
        goal = targets.get(label)
        verdict = "" if goal is None else ("yes" if t.median < goal else "NO") + f" (< {goal} s)"
        rows.append(
            [
                label,
                fmt(t.median),
                fmt(t.spread, 2),
                fmt(statistics.median(cpu[label][1:])),
                fmt(t.median / ref),
                verdict,
            ]
        )
    return rows


def bench_panel(model: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace) -> list[list[str]]:
    """Wall and CPU seconds of one ``scorecard.faithfulness_table`` call (every method) per setting."""
    from sepvit_viz.explain.scorecard import faithfulness_table

    with torch.no_grad():
        target = int(model(x).argmax())
    settings = [
        ("steps 10, ROAD 20/50/80%, sanity (full random model)", {"steps": 10, "road_fractions": (0.2, 0.5, 0.8)}),
        ("steps 8, ROAD 50%, no sanity", {"steps": 8, "road_fractions": (0.5,), "sanity": None}),
    ]
    rows = []
    with num_threads(args.threads):
        for label, kw in settings:
            t0, c0 = time.perf_counter(), time.process_time()
            faithfulness_table(model, x, target, **kw)
            rows.append([label, fmt(time.perf_counter() - t0), fmt(time.process_time() - c0)])
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
#: (row label, method, options, map): the scorecard rows. ``map`` is "own" (what ``attribute``
#: returns by default: the method's own map) or "destriped" (the same attribution filtered by
#: :func:`sepvit_viz.explain.attribution.destripe`, ``smooth=True``: what the stripe filter costs), for the
#: three methods whose stripes were reported.
SCORE_ROWS: list[tuple[str, str, dict[str, Any], str]] = [
    ("Saliency", "saliency", {}, "own"),
    ("Saliency, destriped", "saliency", {}, "destriped"),
    ("Input x Gradient", "input_x_gradient", {}, "own"),
    ("Integrated Gradients (16, black)", "integrated_gradients", {}, "own"),
    ("Integrated Gradients (16, black), destriped", "integrated_gradients", {}, "destriped"),
    ("SmoothGrad (16)", "smoothgrad", {}, "own"),
    ("GradientSHAP (16)", "gradient_shap", {}, "own"),
    ("Occlusion (28 px windows, gray)", "occlusion", {}, "own"),
    ("Grad-CAM stage 4", "gradcam", {}, "own"),
    ("SepViT relevance (steps 1-7)", "sepvit_relevance", {}, "own"),
    ("SepViT relevance (steps 1-7), destriped", "sepvit_relevance", {}, "destriped"),
    ("SepViT relevance, attention only (steps 1-5)", "sepvit_relevance", {"modulation": 0.0, "sharp": None}, "own"),
    ("Random (floor)", "random", {}, "own"),
]

#: Which photos and measures tuned what (also in docs/attribution.md): the relevance's steps 6-7 were
#: chosen on val/imagenette photos #0-49 (round-robin order) with blurred-fill deletion / insertion.
SCORING_DATA = ROOT.parent / "shared" / "data" / "val" / "mini-imagenet"


def _explain(method: str, opts: dict[str, Any], kind: str):
    def explain(m: torch.nn.Module, xx: torch.Tensor, t: int) -> np.ndarray:
        return attribute(m, xx, t, method, smooth=kind == "destriped", **opts).map_hw

    return explain


def score_photo(model: torch.nn.Module, x: torch.Tensor, target: int, args: argparse.Namespace, sanity: str | None):
    """Every scorecard row on one photo: {row label: {"scores": {...}, "rho": [...], "levels": [...], "sec": s}}."""
    from dataclasses import replace

    from sepvit_viz.explain.sanity import cascading_randomisation
    from sepvit_viz.explain.scorecard import score_method

    out: dict[str, Any] = {}
    cache: dict[tuple[str, str], Any] = {}
    for label, method, opts, kind in SCORE_ROWS:
        key = (method, json.dumps(opts, sort_keys=True))
        if key not in cache:
            cache[key] = attribute(model, x, target, method, **opts)
        a = cache[key]
        if kind == "destriped":
            a = replace(a, map_hw=destripe(a.map_hw))
        row: dict[str, Any] = {"sec": a.seconds}
        if not args.skip_measures:
            row["scores"] = score_method(
                model,
                x,
                target,
                method,
                options=opts,
                attribution=a,
                steps=args.faith_steps,
                sanity=None,
                tuned=args.tuned,
                batch_size=args.batch_size,
                road_fractions=tuple(args.road_fractions),
            ).scores
        if sanity is not None:
            res = cascading_randomisation(
                model, x, target, _explain(method, opts, kind), original=a.map_hw, full_only=sanity == "full"
            )
            row["rho"], row["levels"] = res.rho, res.levels
        out[label] = row
    return out


def bench_faithfulness(model: torch.nn.Module, args: argparse.Namespace) -> dict[str, Any]:
    """Per-photo scorecards over ``args.data`` (photos ``offset .. offset + limit``), as a JSON-able dict."""
    labels = read_labels(Path(args.labels))
    photos = list_photos(Path(args.data), labels, args.limit, args.offset)
    if not photos:
        raise SystemExit(f"no labelled photos under {args.data}")
    per_photo = []
    with num_threads(args.threads):
        for i, (path, label_idx) in enumerate(tqdm(photos, desc="scorecard", unit="photo")):
            x = preprocess(Image.open(path), args.size)
            with torch.no_grad():
                pred = int(model(x).argmax())
            target = label_idx if args.target == "label" else pred
            sanity = None if args.sanity == "none" or i >= args.sanity_limit else args.sanity
            rows = score_photo(model, x, target, args, sanity)
            per_photo.append(
                {
                    "photo": str(Path(path).relative_to(Path(args.data).parent)),
                    "label": label_idx,
                    "pred": pred,
                    "rows": rows,
                }
            )
    return {"data": str(args.data), "offset": args.offset, "limit": args.limit, "per_photo": per_photo}


def _cascade_markdown(photos: list[dict[str, Any]]) -> str:
    """Per-level mean Spearman correlations of the photos that ran the whole cascade."""
    casc = [p for p in photos if len(next(iter(p["rows"].values())).get("levels", [])) > 1]
    if not casc:
        return ""
    labels = [lab for lab, *_ in SCORE_ROWS if all(lab in p["rows"] for p in casc)]
    levels = casc[0]["rows"][labels[0]]["levels"]
    rows = [
        [lab, *[fmt(float(np.mean([p["rows"][lab]["rho"][k] for p in casc])), 2) for k in range(len(levels))]]
        for lab in labels
    ]
    names = ", ".join(p["photo"] for p in casc)
    return "\n".join(
        [
            "Cascading randomisation (Adebayo et al. 2018): mean Spearman rank correlation between the trained "
            f"model's map and the map after re-initialising each level and every level above it ({len(casc)} "
            f"photos: {names}):",
            "",
            md_table(["method", *[f"random down to {lv}" for lv in levels]], rows),
        ]
    )


def scorecard_markdown(results: list[dict[str, Any]], tuned: bool = False) -> str:
    """The methods x measures table (means over photos), the verdicts and the sanity correlations."""
    from sepvit_viz.explain.sanity import PASS_BELOW
    from sepvit_viz.explain.scorecard import MEASURES, TUNED_MEASURES, verdict

    every = [p for r in results for p in r["per_photo"]]
    photos = [p for p in every if "scores" in next(iter(p["rows"].values()))]
    if not photos:
        return _cascade_markdown(every)
    labels = [lab for lab, *_ in SCORE_ROWS if all(lab in p["rows"] for p in photos)]
    measures = list(MEASURES) + (
        list(TUNED_MEASURES) if tuned and "del_blur" in photos[0]["rows"][labels[0]]["scores"] else []
    )

    def vals(label: str, key: str) -> list[float]:
        return [p["rows"][label]["scores"][key] for p in photos]

    floor = {m.key: vals("Random (floor)", m.key) for m in MEASURES}
    rows = []
    for label in labels:
        rhos = [p["rows"][label]["rho"][-1] for p in photos if "rho" in p["rows"][label]]
        v = verdict({m.key: vals(label, m.key) for m in MEASURES}, floor, rhos or None)
        means = [float(np.mean(vals(label, m.key))) for m in measures]
        rows.append(
            [label, *[fmt(v_, 3) for v_ in means], fmt(float(np.mean(np.abs(rhos))), 2) if rhos else "", v.text]
        )
    # rank of each row per untuned measure (1 = best), averaged: who leads on the untuned measures
    ranks = np.zeros(len(labels))
    for m in MEASURES:
        means = np.array([np.mean(vals(lab, m.key)) for lab in labels])
        order = np.argsort(means if m.lower_is_better else -means, kind="stable")
        r = np.empty(len(labels))
        r[order] = np.arange(1, len(labels) + 1)
        ranks += r / len(MEASURES)
    for row, r in zip(rows, ranks):
        row.insert(len(measures) + 1, fmt(float(r), 3))
    # the rule for the app's default (fixed before the scoring runs): among the methods at their
    # default options (own map), the best mean rank over the six untuned measures that passes the sanity check
    spec = {lab: (method, opts, kind) for lab, method, opts, kind in SCORE_ROWS}
    passes = {}
    for lab in labels:
        rhos = [p["rows"][lab]["rho"][-1] for p in photos if "rho" in p["rows"][lab]]
        passes[lab] = bool(rhos) and float(np.mean(np.abs(rhos))) < PASS_BELOW
    candidates = [
        (r, lab)
        for r, lab in zip(ranks, labels)
        if spec[lab][0] != "random" and spec[lab][1] == {} and spec[lab][2] == "own" and passes[lab]
    ]
    choice = min(candidates)[1] if candidates else None
    n_sanity = sum(1 for p in photos if "rho" in p["rows"][labels[0]])
    heads = ["method", *[m.label + (" (lower better)" if m.lower_is_better else " (higher better)") for m in measures]]
    heads += ["mean rank (6 untuned measures)", "sanity: mean |rank corr.| with random-weight map", "verdict"]
    text = [
        f"Photos: {len(photos)} ({', '.join(sorted({str(r['data']) for r in results}))}); "
        f"model top-1 on them {np.mean([p['pred'] == p['label'] for p in photos]):.0%}; class explained: the top prediction. "
        f"Sanity check on the first {n_sanity} photos.",
        "",
        md_table(heads, rows),
        "",
        "Default method by this table (best mean rank among methods at their defaults that pass the sanity "
        f"check): **{choice or ('none passes' if n_sanity else 'none: the sanity check was not run')}**"
        + (f" ({spec[choice][0]})." if choice else "."),
    ]
    if any(len(p["rows"][labels[0]].get("levels", [])) > 1 for p in every):
        text += ["", _cascade_markdown(every)]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="sepvit_lite", help="variant when no checkpoint is found")
    p.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT), help="safetensors checkpoint ('' for random weights)"
    )
    p.add_argument(
        "--data",
        default=str(SCORING_DATA),
        help="folder of <wnid>/<photo> files (default: val/mini-imagenet, used for no tuning)",
    )
    p.add_argument("--labels", default=str(DEFAULT_LABELS), help="TSV with index, wnid, name")
    p.add_argument("--limit", type=int, default=20, help="number of photos for the faithfulness table")
    p.add_argument("--offset", type=int, default=0, help="skip this many photos first (a disjoint set)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per method (speed table)")
    p.add_argument("--faith-steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument(
        "--sanity",
        choices=["full", "cascade", "none"],
        default="full",
        help="model-randomisation check: fully random model only, every level, or none",
    )
    p.add_argument("--sanity-limit", type=int, default=10**6, help="run the sanity check on the first N photos only")
    p.add_argument("--road-fractions", type=float, nargs="+", default=[0.2, 0.5, 0.8], help="ROAD removal shares")
    p.add_argument("--skip-measures", action="store_true", help="sanity check only (with --sanity cascade)")
    p.add_argument("--tuned", action="store_true", help="also report the blurred-fill curves (the tuning measure)")
    p.add_argument("--from-json", nargs="+", help="print the scorecard from saved --json runs (no model runs)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward in the curves")
    p.add_argument("--target", choices=["pred", "label"], default="pred")
    p.add_argument(
        "--bf16", action="store_true", help="add a bf16-autocast IG row (emulated, very slow on AVX2-only CPUs)"
    )
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--panel", action="store_true", help="also time the app panel's faithfulness_table (speed part)")
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
        print(
            md_table(["method", "median s (wall)", "IQR / median", "median CPU s", "x forward", "meets target"], rows)
        )
        report["speed"] = rows
        if args.panel:
            print("\n### Faithfulness panel: every method on one photo (one call each)\n")
            panel = bench_panel(model, x, args)
            print(md_table(["setting", "wall s", "CPU s"], panel))
            report["panel"] = panel
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
        results = []
        for f in args.from_json or []:  # files written by --json: their "faithfulness" part
            saved = json.loads(Path(f).read_text())["faithfulness"]
            results += saved if isinstance(saved, list) else [saved]
        if not results:
            with num_threads(args.threads):
                cond = conditions(
                    model=model.config.name,
                    input=f"{args.size}x{args.size}",
                    photos=f"{args.limit} from #{args.offset}",
                    steps=args.faith_steps,
                    target=args.target,
                )
                results = [bench_faithfulness(model, args)]
            print("\n### Faithfulness scorecard (untuned measures; means over photos)\n")
            print(cond)
        else:
            print("\n### Faithfulness scorecard (untuned measures; means over photos)\n")
            print(f"From saved runs: {', '.join(args.from_json)}.")
        print(scorecard_markdown(results, tuned=args.tuned))
        report["faithfulness"] = results[0] if len(results) == 1 else results
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


TITLE = "Attribution speed, memory and faithfulness"


def run(quick: bool) -> str:
    """The runner's contract (benchmarks/run.py): markdown of this benchmark, smaller in quick mode."""
    import contextlib
    import io

    if quick:
        argv = ["--limit", "1", "--repeats", "1", "--faith-steps", "4", "--skip-memory"]
        argv += ["--road-fractions", "0.5", "--sanity", "none"]
    else:  # the scoring photos of docs/attribution.md (used for no tuning); about 25 minutes on 2 cores
        argv = ["--data", str(DEFAULT_DATA), "--offset", "100", "--limit", "8", "--faith-steps", "10"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(argv)
    return buf.getvalue()


if __name__ == "__main__":
    main()
