"""What a user waits for: one ``/analyze`` round trip of the launched app, and where its time goes.

    .venv/bin/python benchmarks/bench_roundtrip.py [--repeats 10] [--size 224] [--method sepvit_relevance]

Launches ``app.demo`` on loopback and calls ``/analyze`` through ``gradio_client`` with a different
photo each time (random crops of the bundled examples, so the result cache cannot answer): upload,
forward under capture, the attribution and the pictures the page shows, download of the answer.
Then the same steps in-process, timed one by one (median ms). The issue's target: a round trip at
224 px within 300 ms. Prints Markdown with the machine's load, which these wall-clock figures depend on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from sepvit_viz.serving import cache, handlers, models, photos, settings  # noqa: E402


def crops(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` different 400 x 400 crops of the example photos."""
    rng = np.random.default_rng(seed)
    srcs = [Image.open(p).convert("RGB") for p in photos.example_photos()]
    out = []
    for i in range(n):
        src = srcs[i % len(srcs)]
        side = min(400, *src.size)
        x0, y0 = (int(rng.integers(0, max(1, v - side + 1))) for v in src.size)
        out.append(src.crop((x0, y0, x0 + side, y0 + side)))
    return out


def round_trips(repeats: int, size: int, method: str) -> list[float]:
    """Seconds of each ``/analyze`` call through gradio_client (one warm-up call not counted)."""
    from gradio_client import Client, handle_file

    import app
    from sepvit_viz import limits

    port = 7800 + os.getpid() % 100
    app.demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        max_file_size=limits.MAX_UPLOAD_BYTES, show_error=False,
    )  # fmt: skip
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        times = []
        with tempfile.TemporaryDirectory() as d:
            for i, img in enumerate(crops(repeats + 1, seed=1)):
                path = Path(d) / f"{i}.jpg"
                img.save(path, quality=92)
                start = time.perf_counter()
                client.predict(handle_file(str(path)), resolution=size, method=method, api_name="/analyze")
                if i:
                    times.append(time.perf_counter() - start)
        return times
    finally:
        app.demo.close()


def steps(repeats: int, size: int, method: str) -> dict[str, list[float]]:
    """Seconds of each step of ``handlers.analyze``, in-process, on fresh photos."""
    entry = models.MODELS.get(models.MODEL_DEFAULT)
    s = settings.Settings(method=method, resolution=size)
    out: dict[str, list[float]] = {}
    for img in crops(repeats, seed=2):
        cache.RESULTS.clear()
        t: dict[str, float] = {}
        a = time.perf_counter()
        fwd = handlers.run_forward(entry, img, size)
        t["forward under capture"] = time.perf_counter() - a
        session = handlers.Session.of(fwd)
        a = time.perf_counter()
        handlers._attribution(session, entry, method, session.top1)
        t[f"attribution ({method})"] = time.perf_counter() - a
        a = time.perf_counter()
        handlers._attribution_view(session, s)
        handlers._tokens(session, s)
        handlers._pwa_row(session, s)
        handlers._compare_views(session, s)
        t["pictures /analyze returns (attribution, tokens, PWA row, compare pair)"] = time.perf_counter() - a
        a = time.perf_counter()
        handlers.after_analysis(session, s)
        t["secondary views (private event after /analyze)"] = time.perf_counter() - a
        for k, v in t.items():
            out.setdefault(k, []).append(v)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--method", default=settings.DEFAULT_METHOD)
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    rt = round_trips(args.repeats, args.size, args.method)
    parts = steps(args.repeats, args.size, args.method)
    print(f"| step ({args.size} px, {args.repeats} photos) | median ms |")
    print("|---|---|")
    print(f"| `/analyze` round trip through gradio_client | {statistics.median(rt) * 1e3:.0f} |")
    for k, v in parts.items():
        print(f"| {k} | {statistics.median(v) * 1e3:.0f} |")
    print(f"\nload average (1 min) at start {load:.2f} on {os.cpu_count()} logical cores; target: round trip <= 300 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
