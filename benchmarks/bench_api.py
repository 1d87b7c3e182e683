"""Issue 20's speed targets through the app's API: every attribution method and the faithfulness panel.

    python benchmarks/bench_api.py [--threads 2] [--repeats 3] [--size 224] [--quick]
    python -m benchmarks --only api          # the same, through the benchmark runner

Launches ``app.demo`` in-process on loopback (as ``bench_roundtrip.py``) and calls it through
``gradio_client``, as a user's browser would:

1. ``/explain`` for every method at ``--size`` px (Integrated Gradients with its default steps).
   Each repeat analyses a new photo first (a different crop of the bundled examples, so no cache can
   answer) through ``/analyze`` with the ``random`` method (the cheapest; untimed), then times one
   ``/explain`` call per method, methods in a rotated order. One warm-up photo is not counted.
   Target: <= 2 s each.
2. ``/faithfulness`` with scope "all methods" and the panel's defaults (steps, one ROAD share, no
   sanity check), median over repeats: **cold** on a freshly analysed photo (the panel computes
   every attribution too) and **warm** on the photo whose attributions ``/explain`` just showed
   (the panel reuses them). Target: <= 10 s.

Both wall-clock seconds (what the user waits) and the process's CPU seconds per call (server and
client share the process: all its threads) are printed, with the torch threads and the load average
(wall-clock figures on a shared machine are inflated by the neighbours; CPU seconds much less so).
``--quick`` (the CI smoke mode): two cheap methods, "this method" scope, 4 steps, one repeat, no
warm-up: the code paths, not the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TITLE = "API speed: attributions and the faithfulness panel (issue 20)"

#: Targets of issue 20 (seconds, through the API, at 224 px).
EXPLAIN_TARGET_S = 2.0
PANEL_TARGET_S = 10.0


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _median(v: list[float]) -> str:
    return f"{statistics.median(v):.2f}" if v else "n/a"


def measure(threads: int, repeats: int, size: int, quick: bool) -> str:
    """Launch the app, time the calls, return the markdown section."""
    import torch
    from gradio_client import Client, handle_file

    from benchmarks.bench_roundtrip import crops
    from benchmarks.common import conditions
    from sepvit_viz.explain.attribution import METHODS
    from sepvit_viz.serving import handlers, settings

    torch.set_num_threads(threads)
    import app
    from sepvit_viz import limits

    methods = ["saliency", "gradcam"] if quick else [m for m in METHODS if m != "random"]
    steps = 4 if quick else handlers.FAITH_STEPS
    scope = "this method" if quick else "all methods"
    warmup = 0 if quick else 1
    conds = conditions(threads=threads, input=f"{size}x{size}", repetitions=repeats, warm_up_photos=warmup)
    port = 7900 + os.getpid() % 100
    app.demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        max_file_size=limits.MAX_UPLOAD_BYTES, show_error=True,
    )  # fmt: skip
    explain: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        photos = crops(warmup + 2 * repeats, seed=3)
        with tempfile.TemporaryDirectory() as d:

            def analyse(i: int) -> None:
                path = Path(d) / f"{i}.jpg"
                photos[i].save(path, quality=92)
                client.predict(handle_file(str(path)), resolution=size, method="random", api_name="/analyze")

            def panel() -> None:
                client.predict(
                    target=settings.TOP_PREDICTION, method=methods[0], scope=scope, steps=steps,
                    api_name="/faithfulness",
                )  # fmt: skip

            for r in range(warmup + repeats):
                analyse(r)
                k = r % len(methods)
                for m in methods[k:] + methods[:k]:  # rotated: no method always runs first
                    t = _timed(
                        lambda m=m: client.predict(
                            target=settings.TOP_PREDICTION,
                            method=m,
                            cmap="inferno",
                            opacity=0.6,
                            api_name="/explain",
                        )
                    )
                    if r >= warmup:
                        explain[m].append(t)
                if r >= warmup:
                    warm.append(_timed(panel))  # every attribution was just shown: reused
                    analyse(warmup + repeats + r - warmup)  # a fresh photo: the panel computes them all
                    cold.append(_timed(panel))
    finally:
        app.demo.close()

    def ok(v: list[tuple[float, float]], target: float) -> str:
        if not v:
            return "n/a"
        wall = statistics.median(t[0] for t in v)
        return "yes" if wall <= target else "no"

    rows = [
        f"| method ({size} px) | median s (wall) | median CPU s | <= {EXPLAIN_TARGET_S:g} s (wall) |",
        "|---|---|---|---|",
    ]
    for m in methods:
        v = explain[m]
        rows.append(
            f"| `/explain` {METHODS[m].label} | {_median([t[0] for t in v])} | {_median([t[1] for t in v])} "
            f"| {ok(v, EXPLAIN_TARGET_S)} |"
        )
    prow = [
        "",
        f"| faithfulness panel ({scope}, {steps} steps, ROAD at 50%, no sanity check) | median s (wall) "
        f"| median CPU s | <= {PANEL_TARGET_S:g} s (wall) |",
        "|---|---|---|---|",
    ]
    for label, v in (("cold: every attribution computed by the panel", cold), ("warm: attributions reused", warm)):
        prow.append(
            f"| `/faithfulness` {label} | {_median([t[0] for t in v])} | {_median([t[1] for t in v])} "
            f"| {ok(v, PANEL_TARGET_S)} |"
        )
    return "\n".join(["### api", conds, "", *rows, *prow])


def run(quick: bool, threads: int | None = None, repeats: int | None = None, size: int = 224) -> str:
    """Markdown section for ``python -m benchmarks`` (``quick``: the smoke mode of the module docstring)."""
    import torch

    threads = threads or (1 if quick else torch.get_num_threads())
    return measure(threads, repeats or (1 if quick else 3), size, quick)


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of the server")
    p.add_argument("--repeats", type=int, default=None, help="photos timed (default 3; 1 with --quick)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--quick", action="store_true", help="smoke mode: two methods, one repeat")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    print(measure(args.threads, repeats, args.size, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
