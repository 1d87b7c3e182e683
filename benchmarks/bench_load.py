"""Load and memory benchmark of the launched app, on loopback only, every loop bounded.

Four tables (markdown), each with its targets:

1. **Concurrent users**: the app (``app.demo``, with its own queue settings) launched on 127.0.0.1;
   8 ``gradio_client`` users x 20 requests each on ``/analyze`` (quick: 2 x 2), every request a
   different photo (random crops of the bundled examples, so the result cache cannot answer): errors,
   answered count, p50 / p95 / max latency. Target: 0 errors, every request answered.
2. **Queue full**: the app in a child process with ``SEPVIT_CONCURRENCY=1 SEPVIT_QUEUE_SIZE=2``; one
   slow request (Integrated Gradients) occupies the worker, then a burst of simultaneous requests
   arrives: the ones over the queue limit must get gradio's clean "Queue is full" answer (no hang, no
   crash), and the app must answer a request after the burst.
3. **Memory over a long run**: 300 analyses in a row (quick: 20) through one client after a warm-up
   (64 analyses: four times the result cache's capacity) that fills the app's bounded caches:
   resident memory growth (psutil RSS of this process, which hosts the server), sampled every 50
   analyses with glibc's heap in use / free but held (``mallinfo2``: fragmentation shows as growing
   "free"), open matplotlib figures, hooks left on the models, files left in Gradio's upload cache,
   models loaded during the run (a changed checkpoint file, counted apart). Target: growth < 50 MB,
   0 figures, 0 hooks.
4. **Integrated Gradients at the largest allowed resolution**: peak resident memory of a fresh process
   (``resource.getrusage().ru_maxrss``) that loads the app's model and runs the app's default
   Integrated Gradients at ``sepvit_viz.validation.MAX_RESOLUTION``. Stated bound: 2 GiB.

Usage::

    .venv/bin/python benchmarks/bench_load.py            # full (about an hour on 2 shared cores)
    .venv/bin/python benchmarks/bench_load.py --quick    # a smoke run (about a minute)
    .venv/bin/python benchmarks/bench_load.py --parts memory               # only the long run
    .venv/bin/python benchmarks/bench_load.py --parts users,queue,ig       # the others
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import conditions, fmt, md_table  # noqa: E402

TITLE = "Load and memory"
RSS_GROWTH_TARGET_MB = 50.0
IG_PEAK_BOUND_MB = 2048.0
HOST = "127.0.0.1"


# ------------------------------------------------------------------------------------ helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _malloc_mb() -> tuple[float, float]:
    """(in use, free but held) MB of glibc's heap arenas (``mallinfo2``); NaN where unavailable.

    A growing "free but held" figure with a flat "in use" one is allocator fragmentation, not a leak.
    """
    import ctypes

    class _MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return float("nan"), float("nan")
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class PhotoMaker:
    """Distinct photos on demand: random crops (and flips) of the bundled examples, as JPEG files."""

    def __init__(self, folder: Path, seed: int = 0) -> None:
        from PIL import Image

        from sepvit_viz.serving import photos

        self.folder = folder
        self.rng = random.Random(seed)
        self.sources = [Image.open(p).convert("RGB") for p in photos.example_photos()]
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self) -> str:
        from PIL import Image

        with self.lock:
            self.count += 1
            n = self.count
            src = self.sources[self.rng.randrange(len(self.sources))]
            w, h = src.size
            cw, ch = self.rng.randint(w * 3 // 5, w), self.rng.randint(h * 3 // 5, h)
            x, y = self.rng.randint(0, w - cw), self.rng.randint(0, h - ch)
            flip = self.rng.random() < 0.5
        img = src.crop((x, y, x + cw, y + ch))
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = self.folder / f"photo_{n:05d}.jpg"
        img.save(path, quality=90)
        return str(path)


def _client(url: str) -> Any:
    """A gradio_client session on ``url``: no analytics calls, outputs not downloaded, patient timeouts
    (on a loaded machine the default 20 s upload timeout would measure the client, not the app)."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False, httpx_kwargs={"timeout": 600})


def _launch_in_process() -> tuple[Any, str]:
    """Launch ``app.demo`` (its own queue / concurrency settings) on loopback without blocking."""
    import app
    from sepvit_viz import limits
    from sepvit_viz.serving import handlers

    # the tables were measured with glibc's malloc_trim after every model request (the recommended
    # SEPVIT_MALLOC_TRIM=1 of a long-running Space); SEPVIT_MALLOC_TRIM=0 measures without it
    handlers.MALLOC_TRIM = os.environ.get("SEPVIT_MALLOC_TRIM", "1") == "1"
    port = _free_port()
    app.demo.launch(
        server_name=HOST,
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=limits.MAX_UPLOAD_BYTES,
        show_error=False,
        state_session_capacity=limits.STATE_SESSIONS,  # as app.main()
    )
    return app.demo, f"http://{HOST}:{port}/"


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app process exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the app did not open port {port} within {timeout:.0f} s")


# ------------------------------------------------------------------------------------ 1. users
def concurrent_users(url: str, photos: PhotoMaker, users: int, requests: int) -> dict[str, Any]:
    """``users`` threads, each its own gradio_client session, ``requests`` sequential /analyze calls."""
    from gradio_client import handle_file

    latencies: list[float] = []
    errors: list[str] = []
    answered = 0
    lock = threading.Lock()
    clients = [_client(url) for _ in range(users)]
    start = threading.Barrier(users)

    def user(client: Any) -> None:
        nonlocal answered
        start.wait(timeout=120)
        for _ in range(requests):
            path = photos()
            t0 = time.perf_counter()
            try:
                status, top5, *_ = client.predict(photo=handle_file(path), api_name="/analyze")
                ok = "Model:" in status and len(top5.get("confidences", [])) == 5
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    answered += 1
                    if not ok:
                        errors.append(f"malformed answer: {str(status)[:80]}")
            except Exception as e:  # counted, reported; the benchmark goes on
                with lock:
                    errors.append(f"{type(e).__name__}: {str(e)[:120]}")
            finally:
                Path(path).unlink(missing_ok=True)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    wall = time.perf_counter() - t0
    return {
        "users": users,
        "requests": users * requests,
        "answered": answered,
        "errors": errors,
        "p50": _percentile(latencies, 0.5),
        "p95": _percentile(latencies, 0.95),
        "max": max(latencies, default=float("nan")),
        "wall": wall,
        "throughput": answered / wall if wall else float("nan"),
    }


# ------------------------------------------------------------------------------------ 2. queue full
def queue_full(photos: PhotoMaker, burst: int) -> dict[str, Any]:
    """A child app with 1 worker and a queue of 2; a slow request, then ``burst`` at once."""
    from gradio_client import handle_file

    port = _free_port()
    env = {**os.environ, "SEPVIT_CONCURRENCY": "1", "SEPVIT_QUEUE_SIZE": "2", "OMP_NUM_THREADS": "1"}
    env.setdefault("SEPVIT_MALLOC_TRIM", "1")
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        env=env,
        cwd=str(ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,  # a file, not a pipe: an unread pipe can fill and stall the child
    )
    outcomes: list[str] = []
    try:
        _wait_for_port(port, proc)
        url = f"http://{HOST}:{port}/"
        slow_client = _client(url)
        # /analyze runs no attribution (the attribution tab draws it when shown): the slow request is
        # Integrated Gradients at 448 px through /explain, on an analysis made first
        slow_client.predict(photo=handle_file(photos()), resolution=448, api_name="/analyze")
        slow = slow_client.submit(target="top", method="integrated_gradients", api_name="/explain")
        time.sleep(1.0)  # let the slow one start running
        clients = [_client(url) for _ in range(burst)]
        files = [photos() for _ in range(burst)]
        gate = threading.Barrier(burst)
        lock = threading.Lock()

        def one(client: Any, path: str) -> None:
            gate.wait(timeout=60)
            t0 = time.perf_counter()
            try:
                client.predict(photo=handle_file(path), api_name="/analyze")
                outcome = "answered"
            except Exception as e:
                text = str(e)
                outcome = "queue full" if "queue is full" in text.lower() else f"{type(e).__name__}: {text[:100]}"
            with lock:
                outcomes.append(f"{outcome}|{time.perf_counter() - t0:.2f}")

        threads = [threading.Thread(target=one, args=(c, f), daemon=True) for c, f in zip(clients, files)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        slow_ok = "Integrated Gradients" in str(slow.result(timeout=600)[1])
        after = _client(url).predict(photo=handle_file(photos()), api_name="/analyze")
        after_ok = "Model:" in str(after[0])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    kinds = [o.split("|")[0] for o in outcomes]
    full_times = [float(o.split("|")[1]) for o in outcomes if o.startswith("queue full")]
    return {
        "burst": burst,
        "answered": kinds.count("answered"),
        "queue_full": kinds.count("queue full"),
        "other": [k for k in kinds if k not in ("answered", "queue full")],
        "slow_ok": slow_ok,
        "after_ok": after_ok,
        "busy_answer_s": max(full_times, default=float("nan")),
    }


def serve(port: int) -> None:
    """Child mode: launch the app (settings from the environment) on loopback and block."""
    import app
    from sepvit_viz import limits

    app.demo.launch(
        server_name=HOST,
        server_port=port,
        quiet=True,
        max_file_size=limits.MAX_UPLOAD_BYTES,
        show_error=False,
        state_session_capacity=limits.STATE_SESSIONS,
    )


# ------------------------------------------------------------------------------------ 3. memory
def _hooks_left() -> int:
    from sepvit_viz.serving import models

    n = 0
    for entry in list(models.MODELS._entries.values()):
        for model in list(entry.replicas.queue):
            for m in model.modules():
                n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                n += len(getattr(m, "_backward_pre_hooks", {}))
    return n


def _figures_open() -> int:
    from matplotlib import _pylab_helpers
    from matplotlib.figure import Figure

    gc.collect()
    with warnings.catch_warnings():  # isinstance() on some lazily imported module proxies warns
        warnings.simplefilter("ignore")
        figures = sum(isinstance(o, Figure) for o in gc.get_objects())
    return _pylab_helpers.Gcf.get_num_fig_managers() + figures


def _cache_files() -> tuple[int, float]:
    """(files, MB) in Gradio's upload / output cache folder (what ``delete_cache`` prunes)."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder())
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files) / 2**20


def long_run(url: str, photos: PhotoMaker, n: int, warmup: int, every: int = 50) -> dict[str, Any]:
    from gradio_client import handle_file

    from sepvit_viz.serving import cache, models, photos

    client = _client(url)
    errors: list[str] = []

    def one() -> float:
        path = photos()
        t0 = time.perf_counter()
        try:
            client.predict(photo=handle_file(path), api_name="/analyze")
        except Exception as e:
            errors.append(f"{type(e).__name__}: {str(e)[:100]}")
        finally:
            Path(path).unlink(missing_ok=True)
        return time.perf_counter() - t0

    for _ in range(warmup):
        one()
    keys0 = set(models.MODELS._entries)
    gc.collect()
    rss0, (files0, mb0) = _rss_mb(), _cache_files()
    samples = [rss0]
    heap = [_malloc_mb()]
    points = [0]
    times = []
    every = max(1, min(every, n))
    for i in range(n):
        times.append(one())
        if (i + 1) % every == 0 or i + 1 == n:
            gc.collect()
            samples.append(_rss_mb())
            heap.append(_malloc_mb())
            points.append(i + 1)
    gc.collect()
    rss1 = _rss_mb()
    files1, mb1 = _cache_files()
    # the app reloads the default model when its file changes (a training job rewriting it): count
    # those loads and their parameter memory apart, they are not a leak of the request path
    new_entries = [e for k, e in models.MODELS._entries.items() if k not in keys0]
    reload_mb = (
        sum(p.numel() * p.element_size() for e in new_entries for m in list(e.replicas.queue) for p in m.parameters())
        / 2**20
    )
    return {
        "model_loads": len(new_entries),
        "model_load_mb": reload_mb,
        "n": n,
        "warmup": warmup,
        "cache_capacity": cache.RESULTS.capacity,
        "rss0": rss0,
        "rss1": rss1,
        "growth": rss1 - rss0,
        "peak_growth": max(samples) - rss0,
        "samples": samples,
        "points": points,
        "heap": heap,
        "results_held": len(cache.RESULTS._data),
        "errors": errors,
        "figures": _figures_open(),
        "hooks": _hooks_left(),
        "files_added": files1 - files0,
        "cache_mb_added": mb1 - mb0,
        "median_s": statistics.median(times) if times else float("nan"),
    }


# ------------------------------------------------------------------------------------ 3b. sessions
def _analyses_held() -> tuple[int, float]:
    """(number, MB of arrays) of the app's forward results alive in this process (states + cache)."""
    import numpy as np

    from sepvit_viz.serving import handlers

    gc.collect()
    seen: dict[int, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for o in gc.get_objects():
            if isinstance(o, handlers.Forward) and id(o) not in seen:
                arrays = [o.image, o.probs] + [a for r in o.records for a in (r.dwa, r.pwa) if a is not None]
                seen[id(o)] = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)) / 2**20
    return len(seen), sum(seen.values())


def many_sessions(url: str, photos: PhotoMaker, sessions: int, resolution: int) -> dict[str, Any]:
    """``sessions`` new gradio_client sessions, one analysis each at ``resolution``: what stays resident.

    Each session's ``gr.State`` keeps its analysis (attention of every block) until the state's
    time-to-live or Gradio's ``state_session_capacity`` evicts it, or the app's byte budget for
    sessions (``SEPVIT_SESSIONS_MB``) releases it; API clients send no heartbeat, so closing them frees
    nothing earlier. At 448 px a few analyses fill the result cache's byte budget, so the arrays
    measured at the end are those of a full cache plus the sessions'.
    """
    from gradio_client import handle_file

    errors: list[str] = []
    gc.collect()
    rss0 = _rss_mb()
    samples = [rss0]
    for _ in range(sessions):
        path = photos()
        try:
            _client(url).predict(photo=handle_file(path), resolution=resolution, api_name="/analyze")
        except Exception as e:
            errors.append(f"{type(e).__name__}: {str(e)[:100]}")
        finally:
            Path(path).unlink(missing_ok=True)
        gc.collect()
        samples.append(_rss_mb())
    rss1 = _rss_mb()
    live, held = _analyses_held()
    from sepvit_viz.serving import cache

    return {
        "live_forwards": live,
        "held_mb": held,
        "budget_mb": cache.SESSIONS.max_bytes / 2**20,
        "sessions_mb": cache.SESSIONS.nbytes / 2**20,
        "released": cache.SESSIONS.released,
        "cache_budget_mb": (cache.RESULTS.max_bytes or 0) / 2**20,
        "cache_mb": cache.RESULTS.nbytes / 2**20,
        "sessions": sessions,
        "resolution": resolution,
        "rss0": rss0,
        "rss1": rss1,
        "per_session": (rss1 - rss0) / max(sessions, 1),
        "samples": samples,
        "errors": errors,
    }


# ------------------------------------------------------------------------------------ 4. IG memory
def _vm_hwm_mb() -> float:
    """Peak resident memory since the last reset (``VmHWM`` of /proc/self/status), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def ig_child(resolution: int) -> None:
    """Child mode: the app's model, the app's default Integrated Gradients at ``resolution``; JSON out."""
    import torch
    from PIL import Image

    from sepvit_viz.explain.attribution import attribute, method_options
    from sepvit_viz.preprocess import preprocess
    from sepvit_viz.serving import models, photos

    torch.set_num_threads(1)
    entry = models.MODELS.get(models.MODEL_DEFAULT)
    x = preprocess(Image.open(photos.example_photos()[0]), resolution)
    with entry.borrow() as model, torch.no_grad():
        model(x)
    gc.collect()
    # reset the kernel's peak-RSS mark (VmHWM) so loading and imports do not count; fall back to
    # ru_maxrss (a lifetime peak) where /proc does not allow it
    try:
        Path("/proc/self/clear_refs").write_text("5")
        peak_of = _vm_hwm_mb
    except OSError:
        peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
    base = _rss_mb()
    t0 = time.perf_counter()
    with entry.borrow() as model:
        att = attribute(model, x, None, "integrated_gradients")
    seconds = time.perf_counter() - t0
    peak = peak_of()
    print(
        json.dumps(
            {
                "resolution": resolution,
                "options": {k: v for k, v in method_options("integrated_gradients").items() if k != "sigma"},
                "replicas": entry.replicas.qsize(),
                "base_mb": base,
                "peak_mb": peak,
                "seconds": seconds,
                "delta": att.extras.get("convergence_delta"),
            }
        )
    )


def ig_memory(resolution: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEPVIT_CONCURRENCY": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--ig-child", str(resolution)],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ report
def _ok(flag: bool) -> str:
    return "**pass**" if flag else "**FAIL**"


def _users_md(load: dict[str, Any]) -> str:
    rows = [
        [
            f"{load['users']} x {load['requests'] // load['users']}",
            f"{load['answered']} / {load['requests']}",
            len(load["errors"]),
            fmt(load["p50"]),
            fmt(load["p95"]),
            fmt(load["max"]),
            fmt(load["wall"]),
            fmt(load["throughput"]),
            _ok(not load["errors"] and load["answered"] == load["requests"]),
        ]
    ]
    md = "### Concurrent users on `/analyze`\n" + md_table(
        ["users x requests", "answered", "errors", "p50 s", "p95 s", "max s", "wall s", "answers / s", "target"], rows
    )
    if load["errors"]:
        md += "\nErrors: " + "; ".join(sorted(set(load["errors"]))[:5])
    return md


def _memory_md(mem: dict[str, Any]) -> str:
    ok = (
        mem["growth"] - mem["model_load_mb"] < RSS_GROWTH_TARGET_MB
        and mem["figures"] == 0
        and mem["hooks"] == 0
        and not mem["errors"]
    )
    head = (
        f"### {mem['n']} analyses in a row (after {mem['warmup']} warm-up; the result cache holds "
        f"{mem['cache_capacity']} entries)\n"
    )
    rows = [
        [
            fmt(mem["rss0"], 4),
            fmt(mem["rss1"], 4),
            fmt(mem["growth"]),
            fmt(mem["peak_growth"]),
            mem["figures"],
            mem["hooks"],
            len(mem["errors"]),
            f"{mem['files_added']} ({mem['cache_mb_added']:.1f} MB)",
            fmt(mem["median_s"]),
            _ok(ok),
        ]
    ]
    return (
        head
        + md_table(
            [
                "RSS after warm-up MB",
                "RSS at end MB",
                "growth MB",
                "largest growth MB",
                "open figures",
                "hooks left",
                "errors",
                "cache files added",
                "median s",
                "target (< 50 MB, 0, 0)",
            ],
            rows,
        )
        + f"\nModels loaded during the run (checkpoint file changed): {mem['model_loads']}, "
        + f"{mem['model_load_mb']:.0f} MB of parameters (not counted against the target)."
        + "\n\nRSS after n analyses (n = 0 is the end of the warm-up), with glibc's heap (in use / free but held):\n\n"
        + md_table(
            ["analyses", "RSS MB", "growth MB", "heap in use MB", "heap free MB"],
            [
                [n, fmt(r, 4), fmt(r - mem["rss0"]), fmt(h[0], 4), fmt(h[1], 4)]
                for n, r, h in zip(mem.get("points", []), mem["samples"], mem.get("heap", []))
            ],
        )
        + f"\nResult-cache entries held at the end: {mem.get('results_held', 'n/a')} (capacity {mem['cache_capacity']})."
    )


def _sessions_md(sess: dict[str, Any]) -> str:
    # the bound: the users' analyses within their budget (plus the one in use, never released) and
    # the result cache within its own; every forward alive is held by one or both
    largest = sess["held_mb"] / max(sess["live_forwards"], 1) if sess["live_forwards"] else 0.0
    bound = sess["budget_mb"] + largest + sess["cache_budget_mb"]
    ok = (
        not sess["errors"]
        and sess["sessions_mb"] <= sess["budget_mb"] + largest
        and sess["cache_mb"] <= sess["cache_budget_mb"]
        and sess["held_mb"] <= bound
    )
    return (
        f"### New sessions, one analysis each at {sess['resolution']} px (state kept per session)\n"
        + md_table(
            [
                "sessions",
                "RSS before MB",
                "RSS after MB",
                "RSS MB per session",
                "analyses alive",
                "their arrays MB",
                "sessions' arrays MB (budget)",
                "released",
                "result cache MB (budget)",
                "errors",
                "target (arrays within the budgets)",
            ],
            [
                [
                    sess["sessions"],
                    fmt(sess["rss0"], 4),
                    fmt(sess["rss1"], 4),
                    fmt(sess["per_session"]),
                    sess["live_forwards"],
                    fmt(sess["held_mb"], 4),
                    f"{sess['sessions_mb']:.0f} ({sess['budget_mb']:.0f})",
                    sess["released"],
                    f"{sess['cache_mb']:.0f} ({sess['cache_budget_mb']:.0f})",
                    len(sess["errors"]),
                    _ok(ok),
                ]
            ],
        )
        + "\nRSS samples MB: "
        + ", ".join(f"{x:.0f}" for x in sess["samples"])
    )


def _queue_md(q: dict[str, Any]) -> str:
    ok = q["queue_full"] >= 1 and not q["other"] and q["slow_ok"] and q["after_ok"]
    rows = [
        [
            q["burst"],
            q["answered"],
            q["queue_full"],
            len(q["other"]),
            fmt(q["busy_answer_s"]),
            q["slow_ok"],
            q["after_ok"],
            _ok(ok),
        ]
    ]
    md = "### Queue limit (child app: 1 worker, queue of 2, one slow request running)\n" + md_table(
        [
            "burst",
            "answered",
            "'Queue is full' answers",
            "other errors",
            "slowest busy answer s",
            "slow request done",
            "answers after burst",
            "target",
        ],
        rows,
    )
    if q["other"]:
        md += "\nOther errors: " + "; ".join(q["other"][:5])
    return md


def _ig_md(ig: dict[str, Any]) -> str:
    rows = [
        [
            ", ".join(f"{k}={v}" for k, v in ig["options"].items()),
            fmt(ig["base_mb"], 4),
            fmt(ig["peak_mb"], 4),
            fmt(ig["peak_mb"] - ig["base_mb"], 4),
            fmt(ig["seconds"]),
            f"peak < {IG_PEAK_BOUND_MB:.0f} MB",
            _ok(ig["peak_mb"] < IG_PEAK_BOUND_MB),
        ]
    ]
    return f"### Integrated Gradients at the largest allowed input ({ig['resolution']} px, fresh process)\n" + md_table(
        ["options", "RSS before MB", "peak RSS MB", "rise MB", "seconds (1 thread)", "bound", "target"], rows
    )


def _part(name: str, fn: Any, render: Any) -> str:
    """Run one part; a failure becomes a FAIL line so the other parts' numbers survive."""
    t0 = time.perf_counter()
    try:
        md = render(fn())
    except Exception as e:
        md = f"### {name}\n**FAIL**: {type(e).__name__}: {str(e)[:300]}"
    print(f"[bench_load] {name} done in {time.perf_counter() - t0:.0f} s\n{md}\n", file=sys.stderr, flush=True)
    return md


PARTS = ("users", "memory", "sessions", "queue", "ig")


def run(
    quick: bool = False,
    *,
    users: int | None = None,
    requests: int | None = None,
    serial: int | None = None,
    warmup: int | None = None,
    sessions: int | None = None,
    parts: tuple[str, ...] = PARTS,
    sample_every: int | None = None,
) -> str:
    """Run the chosen ``parts`` and return the markdown report (``quick``: small counts, same checks,
    no child-process parts; the keyword counts override either mode's)."""
    from sepvit_viz import limits
    from sepvit_viz.serving import cache, photos, settings
    from sepvit_viz.validation import MAX_RESOLUTION

    users = users or (2 if quick else 8)
    per_user = requests or (2 if quick else 20)
    serial = serial or (20 if quick else 300)
    # the warm-up fills the bounded caches: the result cache (a forward and an attribution per
    # analysis), the model's replicas, Gradio's per-session state and the allocator's arenas
    warmup = warmup or (5 if quick else max(40, 4 * cache.RESULTS.capacity))
    every = sample_every or (max(1, serial // 4) if quick else 50)
    burst = 6 if quick else 10
    n_sessions = sessions or (3 if quick else 12)
    if quick:
        parts = tuple(p for p in parts if p not in ("queue", "ig"))
    out = (
        ["Quick mode: small counts; the queue and Integrated Gradients parts (child processes) are skipped."]
        if quick
        else []
    )
    out.append(
        conditions(
            app_concurrency=limits.CONCURRENCY,
            app_queue_size=limits.QUEUE_SIZE,
            resolution=limits.DEFAULT_RESOLUTION,
            method=settings.DEFAULT_METHOD,
            parts="+".join(parts),
        )
    )
    with tempfile.TemporaryDirectory(prefix="sepvit_bench_load_") as tmp:
        photos = PhotoMaker(Path(tmp))
        if {"users", "memory", "sessions"} & set(parts):
            demo, url = _launch_in_process()
            try:
                if "users" in parts:
                    out.append(_part("users", lambda: concurrent_users(url, photos, users, per_user), _users_md))
                if "memory" in parts:
                    out.append(_part("memory", lambda: long_run(url, photos, serial, warmup, every), _memory_md))
                if "sessions" in parts:
                    out.append(
                        _part("sessions", lambda: many_sessions(url, photos, n_sessions, MAX_RESOLUTION), _sessions_md)
                    )
            finally:
                demo.close()
        if "queue" in parts:
            out.append(_part("queue", lambda: queue_full(photos, burst), _queue_md))
    if "ig" in parts:
        out.append(_part("integrated gradients", lambda: ig_memory(MAX_RESOLUTION), _ig_md))
    return "\n\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--ig-child", type=int, metavar="RES", help=argparse.SUPPRESS)
    parser.add_argument("--sessions-only", type=int, metavar="N", help="only the new-sessions part, N sessions")
    for name in ("users", "requests", "serial", "warmup", "sessions"):
        parser.add_argument(f"--{name}", type=int, help=f"override the {name} count")
    parser.add_argument("--sample-every", type=int, help="RSS sample every N analyses of the long run (default 50)")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all)",
    )
    args = parser.parse_args()
    if args.sessions_only:
        from sepvit_viz.validation import MAX_RESOLUTION

        with tempfile.TemporaryDirectory(prefix="sepvit_bench_load_") as tmp:
            demo, url = _launch_in_process()
            try:
                sess = many_sessions(url, PhotoMaker(Path(tmp)), args.sessions_only, MAX_RESOLUTION)
                print(json.dumps(sess))
                print(_sessions_md(sess))
            finally:
                demo.close()
    elif args.serve:
        serve(args.serve)
    elif args.ig_child:
        ig_child(args.ig_child)
    else:
        counts = {k: getattr(args, k) for k in ("users", "requests", "serial", "warmup", "sessions")}
        parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
        unknown = set(parts) - set(PARTS)
        if unknown:
            parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
        print(run(quick=args.quick, parts=parts, sample_every=args.sample_every, **counts))


if __name__ == "__main__":
    main()
