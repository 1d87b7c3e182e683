"""Does an opt-in private fast path pay? Lite at 224, fused oneDNN linear vs aten, thread CPU time.

    .venv/bin/python benchmarks/bench_fastpaths.py [--batches 1,16] [--repeats 12]

A private torch op may stay in the library only as an opt-in that gains at least 10% somewhere
(``sepvit_viz.model.layers.ONEDNN_LINEAR``). Interleaved repeats on one thread (CPU time of the calling
thread, robust on a shared machine); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sepvit_viz import create_model  # noqa: E402
from sepvit_viz.model import layers  # noqa: E402
from sepvit_viz.model.weights import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402


def measure(batch: int, repeats: int) -> tuple[float, float]:
    """(fused ms, aten ms): median thread CPU time of one Lite forward at 224."""
    model = load_checkpoint(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.is_file() else create_model("sepvit_lite")
    model.eval()
    x = torch.randn(batch, 3, 224, 224)
    times: dict[bool, list[float]] = {True: [], False: []}
    saved = layers.ONEDNN_LINEAR
    try:
        with torch.inference_mode():
            for flag in (True, False):
                layers.ONEDNN_LINEAR = flag
                model(x)  # warm-up
            for _ in range(repeats):
                for flag in (True, False):
                    layers.ONEDNN_LINEAR = flag
                    start = time.thread_time()
                    model(x)
                    times[flag].append(time.thread_time() - start)
    finally:
        layers.ONEDNN_LINEAR = saved
    return statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,16")
    p.add_argument("--repeats", type=int, default=12)
    args = p.parse_args(argv)
    if not layers.onednn_linear_available():
        print("this torch build has no oneDNN fused linear: nothing to compare")
        return 0
    torch.set_num_threads(1)
    print("| batch | oneDNN fused linear, ms | aten F.linear, ms | gain of the fused path |")
    print("|---|---|---|---|")
    for b in (int(v) for v in args.batches.split(",")):
        fused, aten = measure(b, args.repeats)
        print(f"| {b} | {fused:.1f} | {aten:.1f} | {1 - fused / aten:+.0%} |")
    print(f"\ntorch {torch.__version__}; 1 thread; thread CPU time; median of {args.repeats} interleaved repeats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
