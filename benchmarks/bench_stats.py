"""Speed and memory of the model-level statistics (``python -m sepvit_viz stats``), and 1,000 photos.

    .venv/bin/python benchmarks/bench_stats.py [--photos DIR] [--counts 32,128] [--batch 8] [--threads 1] [--quick]
    python -m benchmarks --only stats          # through the benchmark runner (``run(quick)``)

Two tables:

1. **Streaming runs**: each row is a fresh child process that loads the model and runs
   :func:`sepvit_viz.stats.measures.compute_stats` (decode, crop, batched float32 forward under attention
   capture, measures) on the first N photos of the folder: wall time of the statistics, time per
   photo, and peak resident memory (``ru_maxrss``) before and after, so that a peak which does not
   grow with N shows the streaming (the maps of one batch at a time). Rows: batch 1 against the batch,
   1 torch thread against 2 (on a shared 2-core machine one thread is often the faster), then the
   larger counts. The last line extrapolates to 1,000 photos from the last (largest) run's time per
   photo (the fixed costs: process start, model load and the report's plots, are listed apart).
2. **Where one batch's time goes**: decode + crop of the batch's photos, the bare forward (fused
   attention, no hooks), the forward under capture, and the measures on the captured maps; medians,
   timed interleaved.

Photos: ``--photos`` (default ``../shared/data/val/imagenette``, searched recursively); without it,
generated 500x375 JPEGs. Model: the shipped Lite at 224 (quick mode: ``sepvit_test`` at 64 on a few
generated photos, a smoke run whose numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import conditions, fmt, md_table, num_threads, time_interleaved  # noqa: E402

TITLE = "Model-level statistics over many photos"
DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "val" / "imagenette"

# The child: load the model, note the peak memory, run the statistics, note it again (JSON on stdout).
_CHILD = """
import json, resource, sys, time, warnings
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
import torch
torch.set_num_threads(args["threads"])
from sepvit_viz.stats import measures as stats
from sepvit_viz.stats.cli import load_for_stats
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model, _ = load_for_stats(args["model"], None)
photos = stats.list_photos([args["photos"]], args["count"])
loaded = time.perf_counter()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t1 = time.perf_counter()
res = stats.compute_stats({"m": model}, photos, size=args["size"], batch_size=args["batch"])[0]
t2 = time.perf_counter()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
report = None
if args.get("report"):
    import tempfile
    from sepvit_viz.stats.plots import write_report
    t3 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        write_report([res], d)
    report = time.perf_counter() - t3
print(json.dumps(dict(photos=res.num_photos, seconds=t2 - t1, startup=loaded - t0, rss_before=before,
                      rss_after=after, report=report)))
"""


def generated_photos(folder: Path, count: int, size: tuple[int, int] = (375, 500)) -> Path:
    """``count`` random-noise JPEGs of ``size`` (rows, cols) in ``folder`` (decoding costs like a photo's)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        # smooth noise compresses like a photo, pure noise would not
        small = rng.integers(0, 256, size=(size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size[1], size[0]), Image.Resampling.BILINEAR).save(folder / f"{i:04d}.jpg")
    return folder


def child_run(model: str, photos: Path, count: int, size: int, batch: int, threads: int, report: bool = False) -> dict:
    args = json.dumps(
        dict(model=model, photos=str(photos), count=count, size=size, batch=batch, threads=threads, report=report)
    )
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, args], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"stats child failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def streaming_table(
    model: str, photos: Path, counts: list[int], size: int, batch: int, threads: int
) -> tuple[str, str]:
    """The streaming runs' table and the extrapolation line (from the last run)."""
    rows, last = [], None
    runs = [(counts[0], batch, threads)]
    if batch != 1:
        runs.insert(0, (counts[0], 1, threads))  # what batching buys
    # on a shared 2-core machine one thread is often faster than two (threads wait for each other)
    runs.append((counts[0], batch, 2 if threads == 1 else 1))
    runs += [(c, batch, threads) for c in counts[1:]]
    for i, (count, b, th) in enumerate(runs):
        r = child_run(model, photos, count, size, b, th, report=i == len(runs) - 1)
        per = r["seconds"] / max(r["photos"], 1)
        rows.append(
            [
                r["photos"],
                b,
                th,
                fmt(r["seconds"]),
                fmt(per * 1000),
                fmt(r["rss_before"]),
                fmt(r["rss_after"]),
                fmt(r["rss_after"] - r["rss_before"]),
            ]
        )
        last = r
    table = md_table(
        [
            "photos",
            "batch",
            "torch threads",
            "statistics s",
            "ms / photo",
            "peak RSS after model load MB",
            "peak RSS after statistics MB",
            "growth MB",
        ],
        rows,
    )
    assert last is not None
    per = last["seconds"] / max(last["photos"], 1)
    fixed = last["startup"] + (last["report"] or 0.0)
    line = (
        f"**1,000 photos (extrapolated from the {last['photos']}-photo run)**: {per * 1000:.0f} ms per photo x 1,000 = "
        f"{per * 1000 / 60:.1f} min of statistics, plus fixed costs of {fixed:.0f} s (process start and model "
        f"load {last['startup']:.1f} s, report with CSV and plots {last['report'] or 0:.1f} s); peak memory does "
        "not depend on the number of photos beyond their per-head numbers (4 bytes x heads x measures each)."
    )
    return table, line


def breakdown_table(model_name: str, photos: Path, size: int, batch: int, reps: int) -> str:
    import torch

    from sepvit_viz.stats import measures as stats
    from sepvit_viz.stats.cli import load_for_stats
    from sepvit_viz.viz.capture import AttentionCapture

    model, _ = load_for_stats(model_name, None)
    paths = stats.list_photos([photos], batch)
    x = torch.from_numpy(np.stack([stats._load(p, size) for p in paths]))
    with torch.inference_mode(), AttentionCapture(model) as cap:
        model(x)
    records = cap.records

    def decode() -> None:
        for p in paths:
            stats._load(p, size)

    def bare() -> None:
        with torch.inference_mode():
            model(x)

    def captured() -> None:
        with torch.inference_mode(), AttentionCapture(model):
            model(x)

    def measures() -> None:
        stats.StatsAccumulator("m", size).add(records, [str(p) for p in paths])

    t = time_interleaved(
        {
            "decode + crop": decode,
            "bare forward (fused)": bare,
            "forward under capture": captured,
            "measures on the captured maps": measures,
        },
        reps,
        warmup=1,
    )
    rows = [[k, fmt(v.median * 1000), fmt(v.median * 1000 / len(paths)), fmt(v.spread, 2)] for k, v in t.items()]
    return md_table(["step (one batch)", "median ms", "ms / photo", "IQR / median"], rows)


def run(
    quick: bool,
    photos: Path | None = None,
    counts: list[int] | None = None,
    batch: int | None = None,
    threads: int = 1,
) -> str:
    """Markdown: the streaming table with its 1,000-photo line, and the batch breakdown."""
    model, size = ("sepvit_test", 64) if quick else ("sepvit_lite", 224)
    batch = batch or (2 if quick else 8)
    counts = counts or ([4, 8] if quick else [32, 128])
    with tempfile.TemporaryDirectory() as tmp:
        if photos is None and not quick and DEFAULT_PHOTOS.is_dir():
            photos = DEFAULT_PHOTOS
        source = "generated 500x375 JPEGs"
        if photos is None:
            photos = generated_photos(Path(tmp) / "photos", max(counts))
        else:
            source = str(photos)
        t0 = time.perf_counter()
        table, line = streaming_table(model, photos, counts, size, batch, threads)
        with num_threads(threads):
            breakdown = breakdown_table(model, photos, size, batch, reps=2 if quick else 5)
    out = [
        "### statistics over many photos",
        conditions(
            threads="per row",
            model=model,
            input=f"{size}x{size}",
            batch=batch,
            photos=source,
            dtype="float32",
            timing="wall-clock, one child process per row",
        ),
        "",
        table,
        "",
        line,
        "",
        "### where one batch's time goes",
        conditions(threads=threads, model=model, input=f"{size}x{size}", batch=batch, repetitions=2 if quick else 5),
        "",
        breakdown,
        "",
        f"(whole section: {time.perf_counter() - t0:.0f} s)",
    ]
    if quick:
        out.append("\n(Quick mode: the tiny test model on a few generated photos; the numbers mean nothing.)")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=None, help=f"folder of photos (default {DEFAULT_PHOTOS})")
    ap.add_argument("--counts", default=None, help="photo counts of the streaming runs, e.g. 32,128")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main runs (default 1)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")] if args.counts else None
    print(run(args.quick, args.photos, counts, args.batch, args.threads))


if __name__ == "__main__":
    main()
