"""Speed of the attention pipeline: bare forward vs full analysis vs re-render (medians).

    .venv/bin/python benchmarks/bench_pipeline.py [--model sepvit_lite] [--size 224] [--repeats 15] [--quick]
    python -m benchmarks --only pipeline          # through the benchmark runner (``run(quick)``)

Targets (Lite at 224, 2 threads): full analysis <= 300 ms, re-render after a setting change <= 80 ms.
Two tables: wall-clock on 2 threads (the targets' conditions, disturbed by anything else running),
and CPU time of the calling thread on 1 thread (the work itself, robust on a shared machine).

- bare forward: ``model(x)`` on the preprocessed tensor, fused attention, no hooks;
- forward under capture: the same with every tap hooked (explicit attention + copies to numpy);
- full analysis: ``analyze(model, photo)`` (crop, forward under capture, every map of every block at
  the default settings, pooled rollout) plus the default pictures (``pictures()``: the 6 views of
  :mod:`sepvit_viz.viz.views` at model-input size, ``scale=1``);
- maps + pictures: the same from the captured records, without crop and forward;
- re-render, style: colormap and opacity change (maps cached, 6 pictures redrawn);
- re-render, new query: block, head and clicked point change together (maps recomputed, 6 pictures).
Contenders are timed interleaved. Weights do not change timings.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import CPU_1T, WALL_2T, Mode, conditions, fmt, md_table, num_threads, time_interleaved  # noqa: E402
from sepvit_viz.preprocess import to_tensor  # noqa: E402
from sepvit_viz.viz import views  # noqa: E402
from sepvit_viz.viz.capture import AttentionCapture  # noqa: E402
from sepvit_viz.viz.pipeline import Analysis, analyze, load_model, prepare_image  # noqa: E402
from sepvit_viz.viz.views import ViewSettings  # noqa: E402

TITLE = "Attention pipeline: analysis and re-render"
CMAPS = ("inferno", "viridis", "magma", "plasma", "cividis", "turbo")
TARGETS_MS = {
    "full analysis + default pictures": 300,
    "re-render: colormap / opacity": 80,
    "re-render: block + head + point": 80,
}


def photo() -> Image.Image:
    examples = sorted((ROOT / "assets" / "examples").glob("*.jpg"))
    if examples:
        with Image.open(examples[0]) as im:
            return im.convert("RGB")
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))


def pictures(a: Analysis, s: ViewSettings | None = None) -> list[np.ndarray]:
    """The six per-block pictures the CLI writes (tokens, pixel, PWA matrix and row, whole block,
    rollout), drawn by the view layer at model-input size; PWA views are skipped for global blocks."""
    s = (s or ViewSettings()).with_(scale=1)
    out = [views.tokens(a, s), views.pixel(a, s), views.pixel(a, s.with_(through="block")), views.rollout(a, s)]
    if a.records[a.block_index(s.block)].pwa is not None:
        out += [views.pwa_matrix(a, s), views.pwa_row(a, s)]
    return [v.picture for v in out]


def contenders(model: torch.nn.Module, img: Image.Image, size: int) -> dict[str, Callable[[], object]]:
    x = to_tensor(prepare_image(img, size))
    base = analyze(model, img, size=size)
    n_blocks = len(base.records)
    rng = np.random.default_rng(0)
    heads: list = ["max", "min", "mean", 0]
    counter = itertools.count()

    def bare() -> None:
        with torch.inference_mode():
            model(x)

    def captured() -> None:
        with torch.inference_mode(), AttentionCapture(model):
            model(x)

    def full() -> None:
        pictures(analyze(model, img, size=size))

    def maps_only() -> None:
        fresh = Analysis(image=base.image, records=base.records, logits=base.logits, top5=base.top5)
        fresh.precompute()
        pictures(fresh)

    def style() -> None:
        i = next(counter)
        pictures(base, ViewSettings(cmap=CMAPS[i % len(CMAPS)], alpha=0.3 + 0.05 * (i % 10)))

    def query() -> None:
        # a fresh (block, head, cell) each time, so the maps are computed, not taken from the memo
        i = next(counter)
        point = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        pictures(base, ViewSettings(block=(i * 5) % n_blocks, head=heads[i % len(heads)], point=point))

    return {
        "bare forward (fused attention)": bare,
        "forward under capture": captured,
        "full analysis + default pictures": full,
        "maps + pictures only (no forward)": maps_only,
        "re-render: colormap / opacity": style,
        "re-render: block + head + point": query,
    }


def table(
    model: torch.nn.Module, img: Image.Image, size: int, mode: Mode, reps: int, warmup: int, targets: bool
) -> str:
    with num_threads(mode.threads):
        fns = contenders(model, img, size)
        timings = time_interleaved(fns, reps, warmup=warmup, clock=mode.clock)
    bare = timings["bare forward (fused attention)"].median
    rows = []
    for name, t in timings.items():
        target = TARGETS_MS.get(name) if targets else None
        verdict = "" if target is None else f"{target} ({'met' if t.median * 1000 <= target else 'missed'})"
        rows.append([name, fmt(t.median * 1000), fmt(t.spread, 2), fmt(t.median / bare, 2), verdict])
    return md_table(["step", "median ms", "IQR / median", "x bare forward", "target ms"], rows)


def run(quick: bool, model_name: str | None = None, size: int | None = None, repeats: int | None = None) -> str:
    """Markdown: one table per timing mode (see the module docstring). ``quick``: a tiny smoke run."""
    model_name = model_name or ("sepvit_test" if quick else "sepvit_lite")
    size = size or (64 if quick else 224)
    reps, warmup = (2, 1) if quick else (repeats or 15, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, warning = load_model(model_name)
    img = photo()
    out = ["### pipeline"]
    weights = "random weights" if warning else "trained weights"
    for mode in tqdm((WALL_2T, CPU_1T), desc="pipeline bench", unit="mode", file=sys.stderr, disable=quick):
        out.append(
            conditions(
                threads=mode.threads,
                model=model_name,
                input=f"{size}x{size}",
                timing=mode.label,
                repetitions=reps,
                weights=weights,
            )
        )
        out.append("")
        # the targets are stated for Lite at 224
        out.append(table(model, img, size, mode, reps, warmup, model_name == "sepvit_lite" and size == 224))
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(run(args.quick, args.model, args.size, args.repeats))


if __name__ == "__main__":
    main()
