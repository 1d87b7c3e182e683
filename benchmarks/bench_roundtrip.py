"""What a user waits for: one ``/analyze`` round trip of the launched app, and where its time goes.

    .venv/bin/python benchmarks/bench_roundtrip.py [--repeats 10] [--size 224] [--method sepvit_relevance] [--quick]

Launches ``app.demo`` on loopback and calls ``/analyze`` through ``gradio_client`` with a different
photo each time (random crops of the bundled examples, so the result cache cannot answer): upload,
forward under capture, the pictures of the page's first tab (window tokens: the token map and the
pixel view, all the page shows after an analysis), the answer's message, and the two JPEG files
(about 35 kB each) fetched over one kept-alive HTTP connection, as a page fetches them to show them.
That round trip is what the issue's target (300 ms at 224 px) is about. The
client's own work is in it too: gradio_client builds an httpx client per request (loading the
certificate store each time), a cost a browser does not have. A second row lets gradio_client fetch
the files itself (``download_files=True``: a new HTTP client per file), on other photos of the same
run, to show what that client adds.

The page fires two private events after it (``after_analysis``: captions and dropdowns, nothing
drawn; ``show_tab_after_analysis``: nothing on the first tab) that ``gradio_client`` cannot call; they
are timed in-process. The other tabs are drawn when the user opens them: the same draws are timed
through their public endpoints (``/explain`` for the attribution tab, ``/cross_window``, ``/compare``),
each on the analysis just made, and in-process.

Every row gives the median and the interquartile range of wall-clock ms and, beside them, the median
CPU ms of this process (server and client are both in it; several threads count several times), which
other work on the machine disturbs much less. Prints Markdown with the machine's load.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from sepvit_viz.serving import cache, handlers, models, page, photos, settings  # noqa: E402
from sepvit_viz.serving import session as session_mod  # noqa: E402

#: (wall seconds, CPU seconds) of each repeat of one step, by the step's row label.
Timings = dict[str, list[tuple[float, float]]]

ROUND_TRIP = (
    "`/analyze` round trip through gradio_client, pictures fetched on one connection: "
    "**all the page shows** (first tab, window tokens)"
)
ROUND_TRIP_CLIENT_FETCH = "the same, gradio_client downloading the pictures itself (a new HTTP client per file)"


def fetch_pictures(http: Any, result: Any) -> int:
    """GET every file an endpoint returned (``download_files=False`` answers: dicts with a ``url``)
    on ``http`` (an ``httpx.Client``: one kept-alive connection, as a page has); returns the bytes."""
    total = 0
    stack = [result]
    while stack:
        item = stack.pop()
        if isinstance(item, dict) and item.get("url"):
            r = http.get(item["url"])
            r.raise_for_status()
            total += len(r.content)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


def crops(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` different photos: random crops (three quarters of the side or more) of the example photos,
    every other one mirrored, so that no two are the same picture (the result cache cannot answer)."""
    rng = np.random.default_rng(seed)
    srcs = [Image.open(p).convert("RGB") for p in photos.example_photos()]
    out = []
    for i in range(n):
        src = srcs[i % len(srcs)]
        side = int(rng.integers(min(src.size) * 3 // 4, min(src.size) + 1 - 8))
        x0, y0 = (int(rng.integers(0, v - side + 1)) for v in src.size)
        crop = src.crop((x0, y0, x0 + side, y0 + side))
        out.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if (i // len(srcs)) % 2 else crop)
    return out


def timed(out: Timings, label: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, its wall and process CPU seconds appended to ``out[label]``."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    out.setdefault(label, []).append((time.perf_counter() - wall, time.process_time() - cpu))
    return value


def round_trips(repeats: int, size: int, method: str) -> Timings:
    """Each ``/analyze`` call through gradio_client, then the public endpoints that draw the other tabs
    on that analysis (one warm-up photo not counted)."""
    from gradio_client import Client, handle_file

    import app
    from sepvit_viz import limits

    port = 7800 + os.getpid() % 100
    app.demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        max_file_size=limits.MAX_UPLOAD_BYTES, show_error=False,
    )  # fmt: skip
    out: Timings = {}
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        downloader = Client(f"http://127.0.0.1:{port}/", verbose=False)  # gradio_client's own download
        http = httpx.Client()
        with tempfile.TemporaryDirectory() as d:
            photos_ = crops(2 * (repeats + 1), seed=1)
            for i, (img, other) in enumerate(zip(photos_[::2], photos_[1::2])):
                path, other_path = Path(d) / f"{i}.jpg", Path(d) / f"{i}b.jpg"
                img.save(path, quality=92)
                other.save(other_path, quality=92)
                got: Timings = {}
                pictures = timed(got, ROUND_TRIP, lambda p=path: fetch_pictures(http, client.predict(
                    handle_file(str(p)), resolution=size, method=method, api_name="/analyze")))  # fmt: skip
                assert pictures > 10_000, "the round trip fetched no pictures"
                timed(got, ROUND_TRIP_CLIENT_FETCH, lambda p=other_path: downloader.predict(
                    handle_file(str(p)), resolution=size, method=method, api_name="/analyze"))  # fmt: skip
                on_demand = {
                    f"opening the attribution tab: `/explain` ({method})": dict(
                        target="top", method=method, api_name="/explain"),
                    "opening the cross-window tab: `/cross_window`": dict(api_name="/cross_window"),
                    "opening the compare tab: `/compare`": dict(api_name="/compare"),
                }  # fmt: skip
                for label, kwargs in on_demand.items():  # on the analysis `client` just made
                    timed(got, label, lambda kw=kwargs: fetch_pictures(http, client.predict(**kw)))
                if i:  # the first photo warms the server up
                    for k, v in got.items():
                        out.setdefault(k, []).extend(v)
        return out
    finally:
        app.demo.close()


def encode(picture: np.ndarray, fmt: str) -> bytes:
    """``picture`` encoded as Gradio encodes an output picture in ``fmt`` (Pillow's defaults)."""
    with io.BytesIO() as buf:
        Image.fromarray(picture).save(buf, fmt)
        return buf.getvalue()


def steps(repeats: int, size: int, method: str) -> Timings:
    """Each step of the page's path, in-process, on fresh photos: /analyze's, the events after it, the
    other tabs' draws, and Gradio's encoding of one map (the format it is sent in against PNG)."""
    out: Timings = {}

    def run() -> None:
        for img in crops(repeats, seed=2):
            cache.RESULTS.clear()
            photo_steps(out, img, settings.Settings(method=method, resolution=size))

    # in a worker thread, as the server runs its handlers: on this machine the attribution ran 3-15x
    # slower (CPU time) on the main thread than on another, under the same load
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()
    return out


def photo_steps(out: Timings, img: Image.Image, s: settings.Settings) -> None:
    """The steps of :func:`steps` for one photo, timed into ``out``."""
    entry = models.MODELS.get(models.MODEL_DEFAULT)
    fwd = timed(out, "/analyze: forward under capture", lambda: session_mod.run_forward(entry, img, s.resolution))
    session = session_mod.Session.of(fwd)
    tok, _ = timed(out, "/analyze: token map and pixel view", lambda: handlers._token_views(session, s))
    timed(out, "follow-up event `after_analysis` (captions, dropdowns)", lambda: handlers.after_analysis(session, s))
    timed(out, "follow-up event `show_tab_after_analysis` (first tab: nothing)",
          lambda: handlers.show_tab_after_analysis(session, s))  # fmt: skip
    timed(out, f"attribution tab: the attribution ({s.method})",
          lambda: handlers._attribution(session, entry, s.method, session.top1))  # fmt: skip
    for tab in ("attribution", "pwa", "compare"):
        label = f"{tab} tab: its pictures" + (" (the attribution above reused)" if tab == "attribution" else "")
        timed(out, label, lambda t=tab: handlers.show_tab(session, s.with_(tab=t)))
    for fmt in (page.PHOTO_FORMAT, "png"):
        timed(out, f"Gradio's encoding of the token map as {fmt}", lambda f=fmt: encode(tok.picture, f))


def _row(label: str, values: list[tuple[float, float]]) -> str:
    wall = sorted(w * 1e3 for w, _ in values)
    q1, _, q3 = statistics.quantiles(wall, n=4) if len(wall) > 1 else (wall[0],) * 3
    cpu = statistics.median(c * 1e3 for _, c in values)
    return f"| {label} | {statistics.median(wall):.0f} | {q1:.0f}-{q3:.0f} | {cpu:.0f} |"


TITLE = "What a user waits for: the /analyze round trip (issue 18)"


def report(repeats: int, size: int, method: str) -> str:
    """The Markdown table of :func:`round_trips` and :func:`steps`, with the load and the target."""
    load = os.getloadavg()[0]
    rt = round_trips(repeats, size, method)
    parts = steps(repeats, size, method)
    lines = [f"| step ({size} px, {repeats} photos) | median ms | IQR ms | median CPU ms |", "|---|---|---|---|"]
    lines += [_row(label, values) for label, values in rt.items()]
    lines.append("| *in-process* | | | |")
    lines += [_row(label, values) for label, values in parts.items()]
    lines.append(
        f"\nload average (1 min) at start {load:.2f} on {os.cpu_count()} logical cores; target: the `/analyze` "
        "round trip (all the page shows after an analysis) <= 300 ms. The other tabs are drawn when opened "
        "(round trips of their endpoints above). CPU ms: this process, server and client, all threads."
    )
    return "\n".join(lines)


def run(quick: bool) -> str:
    """Markdown section for ``python -m benchmarks`` (``quick``: 2 photos, a smoke run)."""
    return "### roundtrip\n\n" + report(2 if quick else 20, 224, settings.DEFAULT_METHOD)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--method", default=settings.DEFAULT_METHOD)
    p.add_argument("--quick", action="store_true", help="3 photos (a smoke run; the figures are rough)")
    args = p.parse_args(argv)
    print(report(3 if args.quick else args.repeats, args.size, args.method))
    return 0


if __name__ == "__main__":
    sys.exit(main())
