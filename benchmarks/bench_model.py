"""Model speed: sepvit-viz's SepViT against vit-pytorch's, watching overhead, bfloat16, variants, scaling.

Areas (each prints its conditions and a markdown table of medians and same-run ratios):

1. **vs vit-pytorch** (issue 2): SepViT-Lite at 224, float32, 2 threads, in one run: vit-pytorch's
   ``vit_pytorch.sep_vit.SepViT`` with its README "Lite" config against this project's Lite
   (unwatched, fused attention). Throughput at batch 32, latency at batch 1. Targets: >= 1.6x the
   throughput, <= 0.45x the latency. A 1-thread CPU-time cross-check follows (thread CPU time is
   barely affected by other processes on a shared machine, wall-clock at 2 threads is).
1b. **Where the batch-1 time goes**: torch.profiler self time per forward, grouped by kind of op
   (GEMMs, convolutions, attention products, softmax, norms, copies, element-wise, the rest), for
   both models.
1c. **Compiled**: the same two models eager and under ``torch.compile`` with weight freezing
   (``sepvit_viz.model.inference.compile_for_inference``), both batch sizes, compile time included.
2. **Watching overhead**: forward hooks on every ``dwa_tap``/``pwa_tap`` that keep the probability
   tensors vs no hooks (target <= 10%).
3. **bfloat16**: ``torch.autocast("cpu", dtype=torch.bfloat16)`` (also with channels_last input)
   vs float32 throughput (target >= 2x), and top-1 agreement with float32 on held-out photos when
   trained weights exist.
4. **Variants**: throughput and latency of Lite, Tiny, Small, Base at 224 and 448.
5. **Scaling**: Lite latency and MACs at 224 -> 448 -> 896, with a plot (``scaling.png``).

vit-pytorch is optional (``benchmarks/requirements-bench.txt``, installed with ``--no-deps``): when
it is missing the comparison rows say "not installed". Its package ``__init__`` imports torchvision,
which this project never installs, so ``sep_vit.py`` is loaded from its file directly.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import sepvit_viz
from benchmarks.common import (
    CPU_1T,
    WALL_2T,
    Mode,
    Timing,
    conditions,
    cpu_flags,
    fmt,
    md_table,
    num_threads,
    time_interleaved,
)
from sepvit_viz.viz.capture import AttentionCapture

TITLE = "Model speed"

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VAL_DIR = REPO.parent / "shared" / "data" / "val" / "imagenette"

# vit-pytorch README "SepViT-Lite" example (window_size and dim_head are accepted but ignored there)
VIT_PYTORCH_LITE = {
    "num_classes": 1000,
    "dim": 32,
    "dim_head": 32,
    "heads": (1, 2, 4, 8),
    "depth": (1, 2, 6, 2),
    "window_size": 7,
}
TARGET_THROUGHPUT = 1.6  # ours / vit-pytorch, batch 32
TARGET_LATENCY = 0.45  # ours / vit-pytorch, batch 1
TARGET_WATCH = 0.10  # watched / unwatched - 1
TARGET_BF16 = 2.0  # bf16 / fp32 throughput
VARIANTS = ("sepvit_lite", "sepvit_tiny", "sepvit_small", "sepvit_base")
NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class Settings:
    modes: tuple[Mode, ...]  # every timed area is measured in each mode (threads + clock)
    img: int
    tput_batch: int
    tput_reps: int
    lat_reps: int
    watch_batches: tuple[int, ...]
    watch_reps: int
    bf16_batch: int
    bf16_reps: int
    bf16_photos: int  # held-out photos for the bf16 top-1 agreement (0: skip)
    variants: tuple[str, ...]
    variant_sizes: tuple[int, ...]
    variant_batch: int
    variant_reps: int
    scaling_sizes: tuple[int, ...]
    scaling_reps: int
    slow_modes: tuple[Mode, ...] = ()  # modes for the variants and scaling areas (default: ``modes``)

    @property
    def sweep_modes(self) -> tuple[Mode, ...]:
        return self.slow_modes or self.modes


FULL = Settings(
    modes=(WALL_2T, CPU_1T),
    img=224,
    tput_batch=32,
    tput_reps=5,
    lat_reps=11,
    watch_batches=(1, 8),
    watch_reps=7,
    bf16_batch=32,
    bf16_reps=5,
    bf16_photos=1000,
    variants=VARIANTS,
    variant_sizes=(224, 448),
    variant_batch=2,
    variant_reps=3,
    scaling_sizes=(224, 448, 896),
    scaling_reps=5,
    # variants and scaling are timed in CPU time only: on a shared 2-core machine 2-thread wall-clock
    # runs are 10-100x slower than the work itself and would take the whole run's time budget
    slow_modes=(CPU_1T,),
)
# CI smoke run: the same code paths with tiny batches and repetitions, Lite only, 1 thread
QUICK = Settings(
    modes=(CPU_1T,),
    img=224,
    tput_batch=2,
    tput_reps=2,
    lat_reps=2,
    watch_batches=(1,),
    watch_reps=2,
    bf16_batch=2,
    bf16_reps=2,
    bf16_photos=0,
    variants=("sepvit_lite",),
    variant_sizes=(224, 448),
    variant_batch=2,
    variant_reps=1,
    scaling_sizes=(224, 448, 896),
    scaling_reps=1,
)


# ------------------------------------------------------------------------------------------ models
def load_vit_pytorch_sepvit() -> type[torch.nn.Module]:
    """vit-pytorch's ``SepViT`` class, loaded from ``vit_pytorch/sep_vit.py`` (ImportError if absent)."""
    spec = importlib.util.find_spec("vit_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("vit-pytorch is not installed")
    if importlib.util.find_spec("einops") is None:
        raise ImportError("einops (needed by vit-pytorch) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "sep_vit.py"
    mod_spec = importlib.util.spec_from_file_location("_bench_vit_pytorch_sep_vit", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.SepViT


def vit_pytorch_lite() -> torch.nn.Module | None:
    """vit-pytorch's README Lite in eval mode, or None when vit-pytorch is not installed."""
    try:
        cls = load_vit_pytorch_sepvit()
    except ImportError:
        return None
    torch.manual_seed(0)
    return cls(**VIT_PYTORCH_LITE).eval()


def ours(name: str = "sepvit_lite") -> torch.nn.Module:
    torch.manual_seed(0)
    model = sepvit_viz.create_model(name).eval()
    model.set_fused_attn(True)
    return model


def params_m(model: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"


def gmacs(model: torch.nn.Module, size: int) -> float:
    """Multiply-accumulates (G) of one forward at ``size`` x ``size`` (explicit attention counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    fused = [b.attn.fused_attn for b in model.iter_blocks()] if hasattr(model, "iter_blocks") else None
    if fused is not None:
        model.set_fused_attn(False)  # count attention matmuls (the flop counter may not know SDPA)
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.zeros(1, 3, size, size))
    finally:
        if fused is not None:
            for b, f in zip(model.iter_blocks(), fused):
                b.attn.fused_attn = f
    return counter.get_total_flops() / 2e9


def _forward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode():
            return model(x)

    return call


def _ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else float("nan")


def _met(value: float, target: float, higher_is_better: bool) -> str:
    if value != value:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "**met**" if ok else "**not met**"


def _spread(t: Timing) -> str:
    s = t.spread
    return "n/a" if s != s else f"{100 * s:.0f}%"


def measure(mode: Mode, fns: dict[str, Callable[[], object]], reps: int) -> dict[str, Timing]:
    """Interleaved timing of ``fns`` under ``mode`` (threads and clock), after one warm-up round."""
    with num_threads(mode.threads):
        return time_interleaved(fns, reps, clock=mode.clock)


def _modes(s: Settings, sweep: bool = False) -> str:
    return " and ".join(f"{m.label}" for m in (s.sweep_modes if sweep else s.modes))


# ------------------------------------------------------------------------------------ 1. vs vit-pytorch
def _float32_conditions(s: Settings, **extra: object) -> str:
    """Conditions line of the float32 throughput (batch ``s.tput_batch``) and latency (batch 1) tables."""
    return conditions(
        threads=_modes(s),
        input=f"{s.img}x{s.img}",
        dtype="float32",
        batch=f"{s.tput_batch} (throughput) and 1 (latency)",
        repetitions=f"{s.tput_reps} (throughput) / {s.lat_reps} (latency), interleaved, after 1 warm-up",
        **extra,
    )


def compare_vit_pytorch(s: Settings, vp_factory: Callable[[], torch.nn.Module | None] = vit_pytorch_lite) -> str:
    ours_m, vp = ours(), vp_factory()
    cond = _float32_conditions(s)
    xb, x1 = torch.randn(s.tput_batch, 3, s.img, s.img), torch.randn(1, 3, s.img, s.img)
    rows, verdicts = [], []
    for mode in s.modes:
        tput_fns, lat_fns = {"ours": _forward(ours_m, xb)}, {"ours": _forward(ours_m, x1)}
        if vp is not None:
            tput_fns["vp"], lat_fns["vp"] = _forward(vp, xb), _forward(vp, x1)
        tput, lat = measure(mode, tput_fns, s.tput_reps), measure(mode, lat_fns, s.lat_reps)
        ips = {k: s.tput_batch / t.median for k, t in tput.items()}
        ms = {k: 1e3 * t.median for k, t in lat.items()}
        if vp is None:
            rows.append(
                [
                    mode.label,
                    "vit-pytorch SepViT (README Lite)",
                    NOT_INSTALLED,
                    NOT_INSTALLED,
                    NOT_INSTALLED,
                    "1.00",
                    "1.00",
                ]
            )
            r_t = r_l = float("nan")
        else:
            r_t, r_l = _ratio(ips["ours"], ips["vp"]), _ratio(ms["ours"], ms["vp"])
            rows.append(
                [
                    mode.label,
                    "vit-pytorch SepViT (README Lite)",
                    params_m(vp),
                    f"{fmt(ips['vp'])} ({_spread(tput['vp'])})",
                    f"{fmt(ms['vp'])} ({_spread(lat['vp'])})",
                    "1.00",
                    "1.00",
                ]
            )
            verdicts.append(
                f"{mode.label}: throughput ratio {fmt(r_t)} (target >= {TARGET_THROUGHPUT}: "
                f"{_met(r_t, TARGET_THROUGHPUT, True)}), latency ratio {fmt(r_l)} (target <= {TARGET_LATENCY}: "
                f"{_met(r_l, TARGET_LATENCY, False)})."
            )
        na = vp is None
        rows.append(
            [
                mode.label,
                "sepvit-viz Lite (fused, unwatched)",
                params_m(ours_m),
                f"{fmt(ips['ours'])} ({_spread(tput['ours'])})",
                f"{fmt(ms['ours'])} ({_spread(lat['ours'])})",
                NOT_INSTALLED if na else fmt(r_t),
                NOT_INSTALLED if na else fmt(r_l),
            ]
        )
    table = md_table(
        [
            "measured as",
            "model",
            "params",
            f"throughput b{s.tput_batch} (img/s) (IQR)",
            "latency b1 (ms) (IQR)",
            "throughput ratio",
            "latency ratio",
        ],
        rows,
    )
    if vp is None:
        verdicts = [f"vit-pytorch: {NOT_INSTALLED} (`pip install --no-deps -r benchmarks/requirements-bench.txt`)."]
    notes = (
        "Ratios are ours / vit-pytorch, from the same run. IQR = inter-quartile range / median, a noise "
        "indicator. With 1 thread, img/s and ms are CPU time of the work itself, which other processes on a "
        "shared machine barely disturb; 2-thread wall-clock figures include waiting for the CPU."
    )
    return "\n".join(
        [
            "### SepViT-Lite vs vit-pytorch's SepViT (float32)",
            cond,
            "",
            table,
            "",
            *[f"- {v}" for v in verdicts],
            "",
            notes,
        ]
    )


# ------------------------------------------------------------------------------------ 1b. breakdown
#: (category, op-name substrings): the profiler's leaf ops grouped by the kind of work; first match wins
OP_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("linear layers (GEMM)", ("_linear_pointwise", "aten::addmm", "aten::mm", "mkl_linear")),
    ("convolutions", ("convolution", "conv2d", "conv_depthwise")),
    ("attention products (bmm, fused SDPA)", ("aten::bmm", "aten::baddbmm", "scaled_dot_product")),
    ("softmax", ("softmax",)),
    # vit-pytorch normalises channels by hand (var, sqrt): counted as the norm it is
    ("normalisation (layer norm; var, sqrt)", ("layer_norm", "aten::var", "aten::sqrt", "aten::rsqrt")),
    ("copies (layout, concatenation, padding)", ("aten::copy_", "aten::cat", "constant_pad", "aten::index")),
    (
        "element-wise (add, mul, GELU, ...)",
        ("aten::add", "aten::mul", "aten::gelu", "aten::div", "aten::sub", "masked_fill", "aten::mean", "aten::sum"),
    ),
)
OTHER_OPS = "other ops (views, allocation, dispatch)"
#: every category, in table order
CATEGORY_NAMES: tuple[str, ...] = (*(c for c, _ in OP_CATEGORIES), OTHER_OPS)


def op_category(name: str) -> str:
    """The :data:`OP_CATEGORIES` entry a profiler op name falls in, else :data:`OTHER_OPS`."""
    for category, keys in OP_CATEGORIES:
        if any(k in name for k in keys):
            return category
    return OTHER_OPS


def profile_forward(model: torch.nn.Module, x: torch.Tensor, runs: int) -> tuple[dict[str, float], int, float]:
    """Self CPU time per forward by category (ms), aten/oneDNN calls per forward, profiled wall ms per forward.

    The profiler reads the calling thread's clock around every op; the work the op hands to the other
    OpenMP thread is inside that span, so the categories add up to the wall time spent in ops.
    """
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(x)  # warm-up outside the trace
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(runs):
                model(x)
            wall = (time.perf_counter() - t0) / runs
    by_cat = dict.fromkeys(CATEGORY_NAMES, 0.0)
    calls = 0
    for ev in prof.key_averages():
        by_cat[op_category(ev.key)] += ev.self_cpu_time_total / 1e3 / runs
        calls += ev.count
    return by_cat, calls // runs, 1e3 * wall


def latency_breakdown(s: Settings, vp_factory: Callable[[], torch.nn.Module | None] = vit_pytorch_lite) -> str:
    """Where a batch-1 forward spends its time, by kind of op, for both models (torch.profiler)."""
    models = {"sepvit-viz Lite": ours(), "vit-pytorch SepViT (README Lite)": vp_factory()}
    runs = s.lat_reps * 2
    x = torch.randn(1, 3, s.img, s.img)
    cond = conditions(
        threads="2 threads, wall-clock (profiled)",
        input=f"{s.img}x{s.img}",
        dtype="float32",
        batch=1,
        repetitions=f"{runs} profiled forwards after 1 warm-up",
    )
    prof: dict[str, tuple[dict[str, float], int, float] | None] = {}
    with num_threads(2):
        for name, m in models.items():
            prof[name] = None if m is None else profile_forward(m, x, runs)
    outside, total = "outside ops (Python, module calls, profiler)", "**profiled wall time per forward**"
    ms = {  # per model: ms per forward of every row
        name: None if p is None else {**p[0], outside: p[2] - sum(p[0].values()), total: p[2]}
        for name, p in prof.items()
    }
    rows = []
    for label in (*CATEGORY_NAMES, outside, total):
        cells = [label]
        for v in ms.values():
            cells += [NOT_INSTALLED, ""] if v is None else [fmt(v[label]), f"{100 * v[label] / v[total]:.0f}%"]
        rows.append(cells)
    rows.append(
        [
            "op calls per forward (nested calls included)",
            *[v for p in prof.values() for v in (str(p[1]) if p else NOT_INSTALLED, "")],
        ]
    )
    headers = ["work"] + [h for n in models for h in (f"{n} (ms)", "share")]
    return "\n".join(
        [
            "### Where the batch-1 time goes (torch.profiler, self time by kind of op)",
            cond,
            "",
            md_table(headers, rows),
            "",
            "Profiling adds a few microseconds per op, so these walls are above the unprofiled latency table's. "
            "An op's time includes the share of its work done by the second OpenMP thread.",
        ]
    )


# ------------------------------------------------------------------------------------ 1c. compiled
COMPILED_LABELS = {
    "vp": "vit-pytorch SepViT (README Lite), eager",
    "vp_c": "vit-pytorch SepViT (README Lite), compiled",
    "ours": "sepvit-viz Lite, eager",
    "ours_c": "sepvit-viz Lite, compiled",
}


def _compiled(model: torch.nn.Module, inputs: list[torch.Tensor]) -> tuple[torch.nn.Module, float]:
    """``compile_for_inference(model)``, compiled now for every input shape; with the seconds it took."""
    from sepvit_viz.model.inference import compile_for_inference

    compiled = compile_for_inference(model)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x in inputs:
            compiled(x)
    return compiled, time.perf_counter() - t0


def compiled_comparison(s: Settings, vp_factory: Callable[[], torch.nn.Module | None] = vit_pytorch_lite) -> str:
    """Both models eager and under torch.compile (freezing), float32, batch 1 and the throughput batch.

    Inductor's CPU kernels take their thread count when they are generated, so every timing mode
    compiles afresh under its own thread setting.
    """
    title = "### Compiled inference: `sepvit_viz.model.inference.compile_for_inference` (torch.compile, freezing)"
    if s is QUICK:
        return f"{title}\nSkipped in quick mode: compiling takes minutes (tests/test_runtime.py checks its logits)."
    import torch._dynamo

    ours_m, vp = ours(), vp_factory()
    xb, x1 = torch.randn(s.tput_batch, 3, s.img, s.img), torch.randn(1, 3, s.img, s.img)
    cond = _float32_conditions(
        s, compiler=f"torch.compile(dynamic=False, freezing=True), inductor, torch {torch.__version__}"
    )
    rows, verdicts = [], []
    for mode in s.modes:
        torch._dynamo.reset()
        models, compile_s = {"ours": ours_m}, {}
        with num_threads(mode.threads):
            models["ours_c"], compile_s["ours_c"] = _compiled(ours_m, [x1, xb])
            if vp is not None:
                models["vp"] = vp
                models["vp_c"], compile_s["vp_c"] = _compiled(vp, [x1, xb])
        tput = measure(mode, {k: _forward(m, xb) for k, m in models.items()}, s.tput_reps)
        lat = measure(mode, {k: _forward(m, x1) for k, m in models.items()}, s.lat_reps)
        ips = {k: s.tput_batch / t.median for k, t in tput.items()}
        ms = {k: 1e3 * t.median for k, t in lat.items()}
        for k in (k for k in COMPILED_LABELS if k in models):
            rows.append(
                [
                    mode.label,
                    COMPILED_LABELS[k],
                    f"{fmt(ips[k])} ({_spread(tput[k])})",
                    f"{fmt(ms[k])} ({_spread(lat[k])})",
                    fmt(_ratio(ips[k], ips["vp"])) if vp is not None else NOT_INSTALLED,
                    fmt(_ratio(ms[k], ms["vp"])) if vp is not None else NOT_INSTALLED,
                    f"{compile_s[k]:.0f}" if k in compile_s else "",
                ]
            )
        if vp is not None:
            r_l, r_t = _ratio(ms["ours_c"], ms["vp"]), _ratio(ips["ours_c"], ips["vp"])
            verdicts.append(
                f"{mode.label}: compiled Lite vs eager vit-pytorch: latency ratio {fmt(r_l)} (target <= "
                f"{TARGET_LATENCY}: {_met(r_l, TARGET_LATENCY, False)}), throughput ratio {fmt(r_t)} (target >= "
                f"{TARGET_THROUGHPUT}: {_met(r_t, TARGET_THROUGHPUT, True)}). Both compiled: latency ratio "
                f"{fmt(_ratio(ms['ours_c'], ms['vp_c']))}, throughput ratio {fmt(_ratio(ips['ours_c'], ips['vp_c']))}. "
                f"Compiling our Lite cuts its own latency by {100 * (1 - _ratio(ms['ours_c'], ms['ours'])):.0f}%."
            )
    table = md_table(
        [
            "measured as",
            "model",
            f"throughput b{s.tput_batch} (img/s) (IQR)",
            "latency b1 (ms) (IQR)",
            "throughput / vit-pytorch eager",
            "latency / vit-pytorch eager",
            "compile (s, both shapes)",
        ],
        rows,
    )
    notes = (
        "Compiled inference is opt-in and for predictions only: the app and the capture of attention maps run "
        "the eager model, whose taps hooks can watch. The eager rows repeat the comparison above in this run."
    )
    return "\n".join([title, cond, "", table, "", *[f"- {v}" for v in verdicts], "", notes])


# ------------------------------------------------------------------------------------ 2. watching
def watch_overhead(s: Settings) -> str:
    model = ours()
    explicit = ours()
    explicit.set_fused_attn(False)
    watched = ours()
    kept: list[torch.Tensor] = []
    cond = conditions(
        threads=_modes(s),
        model="sepvit_lite",
        input=f"{s.img}x{s.img}",
        dtype="float32",
        repetitions=f"{s.watch_reps} interleaved per batch size",
    )
    rows = []
    try:
        for mode in s.modes:
            for batch in s.watch_batches:
                x = torch.randn(batch, 3, s.img, s.img)

                def watched_call(x: torch.Tensor = x) -> None:
                    # the library's one hook manager, keeping every map as a tensor (no copy)
                    with AttentionCapture(watched, keep_graph=True) as cap, torch.inference_mode():
                        watched(x)
                    kept[:] = [t.probs for t in cap.tensors]

                t = measure(
                    mode,
                    {"fused": _forward(model, x), "explicit": _forward(explicit, x), "watched": watched_call},
                    s.watch_reps,
                )
                n_maps = len(kept)
                mb = sum(m.numel() * m.element_size() for m in kept) / 2**20
                over = t["watched"].median / t["fused"].median - 1
                over_x = t["watched"].median / t["explicit"].median - 1
                rows.append(
                    [
                        mode.label,
                        batch,
                        fmt(1e3 * t["fused"].median),
                        fmt(1e3 * t["explicit"].median),
                        fmt(1e3 * t["watched"].median),
                        f"{n_maps} maps, {mb:.1f} MiB",
                        f"{100 * over:+.1f}% {_met(over, TARGET_WATCH, False)}",
                        f"{100 * over_x:+.1f}%",
                    ]
                )
    finally:
        kept.clear()
    table = md_table(
        [
            "measured as",
            "batch",
            "unwatched, fused (ms)",
            "unwatched, explicit (ms)",
            "watched: hooks keep every map (ms)",
            "kept",
            f"watched vs fused (target <= {100 * TARGET_WATCH:.0f}%)",
            "watched vs explicit",
        ],
        rows,
    )
    note = (
        "'explicit' is the unwatched forward with `set_fused_attn(False)` (softmax path, no hooks): "
        "it separates the cost of building the probability tensors from the cost of the hooks themselves."
    )
    return "\n".join(
        ["### Watching every attention map (forward hooks on every dwa_tap / pwa_tap)", cond, "", table, "", note]
    )


# ------------------------------------------------------------------------------------ 3. bfloat16
def _bf16_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    return call


def bf16_agreement(limit: int) -> str:
    """Top-1 agreement of bf16 autocast with fp32 on held-out photos, with the trained checkpoint."""
    from sepvit_viz.model.weights import DEFAULT_CHECKPOINT

    if not limit:
        return "bf16 top-1 agreement with float32: skipped in quick mode."
    if not DEFAULT_CHECKPOINT.is_file():
        return f"bf16 top-1 agreement with float32: no trained weights yet (`{DEFAULT_CHECKPOINT.name}` missing)."
    if not VAL_DIR.is_dir():
        return f"bf16 top-1 agreement with float32: held-out photos not found ({VAL_DIR})."
    from sepvit_viz.training.data import load_eval_set, normalize_uint8

    model = sepvit_viz.create_model("sepvit_lite", pretrained=True).eval()
    imgs, _, _ = load_eval_set(VAL_DIR, size=224, limit=limit)
    agree = n = 0
    with num_threads(2), torch.inference_mode():
        for i in range(0, len(imgs), 50):
            x = normalize_uint8(imgs[i : i + 50])
            p32 = model(x).argmax(-1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                p16 = model(x).argmax(-1)
            agree += int((p32 == p16).sum())
            n += len(x)
    rate = agree / max(n, 1)
    return (
        f"bf16 top-1 agreement with float32 (trained Lite, {n} held-out photos, "
        f"`{VAL_DIR.relative_to(REPO.parent)}`): {100 * rate:.1f}% (target >= 99%: {_met(rate, 0.99, True)})."
    )


def bf16_speed(s: Settings) -> str:
    model = ours()
    flags = cpu_flags()
    isa = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "none listed"
    cond = conditions(
        threads=_modes(s),
        model="sepvit_lite",
        input=f"{s.img}x{s.img}",
        batch=s.bf16_batch,
        cpu_bf16_instructions=isa,
        repetitions=f"{s.bf16_reps} interleaved",
    )
    x = torch.randn(s.bf16_batch, 3, s.img, s.img)
    xcl = x.contiguous(memory_format=torch.channels_last)
    labels = {"fp32": "float32", "bf16": "bf16 autocast", "bf16_cl": "bf16 autocast + channels_last input"}
    rows = []
    for mode in s.modes:
        t = measure(
            mode,
            {"fp32": _forward(model, x), "bf16": _bf16_call(model, x), "bf16_cl": _bf16_call(model, xcl)},
            s.bf16_reps,
        )
        base = t["fp32"].median
        for k, label in labels.items():
            sp = base / t[k].median
            rows.append(
                [
                    mode.label,
                    label,
                    f"{fmt(s.bf16_batch / t[k].median)} ({_spread(t[k])})",
                    fmt(sp),
                    "" if k == "fp32" else _met(sp, TARGET_BF16, True),
                ]
            )
    with torch.inference_mode():
        ref = model(x[:4]).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x[:4]).float()
    diff = float((ref - low).abs().max())
    table = md_table(
        [
            "measured as",
            "path",
            f"throughput b{s.bf16_batch} (img/s) (IQR)",
            "speed-up vs float32",
            f"target >= {TARGET_BF16:g}x",
        ],
        rows,
    )
    return "\n".join(
        [
            "### bfloat16 inference (opt-in `torch.autocast('cpu', dtype=torch.bfloat16)`)",
            cond,
            "",
            table,
            "",
            f"- Max |logit difference| bf16 vs float32 (random-init weights, 4 random inputs): {diff:.3g}.",
            f"- {bf16_agreement(s.bf16_photos)}",
        ]
    )


# ------------------------------------------------------------------------------------ 4. variants
def variants(s: Settings) -> str:
    models = {name: ours(name) for name in s.variants}
    lat_reps = 2 * s.variant_reps + 1
    cond = conditions(
        threads=_modes(s, sweep=True),
        dtype="float32",
        batch=f"{s.variant_batch} (throughput) and 1 (latency)",
        repetitions=f"{s.variant_reps} (throughput) / {lat_reps} (latency), variants interleaved",
    )
    macs = {(n, z): gmacs(m, z) for n, m in models.items() for z in s.variant_sizes}
    rows = []
    for mode in s.sweep_modes:
        for size in s.variant_sizes:
            xb, x1 = torch.randn(s.variant_batch, 3, size, size), torch.randn(1, 3, size, size)
            tput = measure(mode, {n: _forward(m, xb) for n, m in models.items()}, s.variant_reps)
            lat = measure(mode, {n: _forward(m, x1) for n, m in models.items()}, lat_reps)
            for n, m in models.items():
                rows.append(
                    [
                        mode.label,
                        n.removeprefix("sepvit_").capitalize(),
                        size,
                        params_m(m),
                        fmt(macs[n, size]),
                        fmt(s.variant_batch / tput[n].median),
                        fmt(1e3 * lat[n].median),
                    ]
                )
    table = md_table(
        [
            "measured as",
            "variant",
            "input",
            "params",
            "GMACs / image",
            f"throughput b{s.variant_batch} (img/s)",
            "latency b1 (ms)",
        ],
        rows,
    )
    return "\n".join(["### Every variant at 224 and 448 (float32, fused, unwatched)", cond, "", table])


# ------------------------------------------------------------------------------------ 5. scaling
def scaling(s: Settings, out_dir: Path | None) -> str:
    model = ours()
    sizes = s.scaling_sizes
    cond = conditions(
        threads=_modes(s, sweep=True),
        model="sepvit_lite",
        dtype="float32",
        batch=1,
        repetitions=f"{s.scaling_reps} interleaved across sizes",
    )
    xs = {size: torch.randn(1, 3, size, size) for size in sizes}
    macs = {size: gmacs(model, size) for size in sizes}
    grid = {size: model.block_table(size)[0].grid for size in sizes}
    base = sizes[0]
    rows, curves = [], {}
    for mode in s.sweep_modes:
        t = measure(mode, {size: _forward(model, xs[size]) for size in sizes}, s.scaling_reps)
        curves[mode.label] = [1e3 * t[z].median for z in sizes]
        for size in sizes:
            rows.append(
                [
                    mode.label,
                    f"{size}x{size}",
                    f"{grid[size][0]}x{grid[size][1]}",
                    fmt((size / base) ** 2),
                    fmt(macs[size]),
                    fmt(macs[size] / macs[base]),
                    fmt(1e3 * t[size].median),
                    fmt(t[size].median / t[base].median),
                ]
            )
    table = md_table(
        [
            "measured as",
            "input",
            "stage-1 windows",
            f"pixels (x {base})",
            "GMACs",
            f"MACs (x {base})",
            "latency b1 (ms)",
            f"latency (x {base})",
        ],
        rows,
    )
    lines = [
        "### How Lite's cost grows with input size",
        cond,
        "",
        table,
        "",
        "PWA is quadratic in the number of windows (stage 1 has (side / 28)^2 windows), so MACs grow faster "
        "than the pixel count at large inputs.",
    ]
    if out_dir is not None:
        path = plot_scaling(sizes, curves, [macs[z] for z in sizes], Path(out_dir) / "scaling.png")
        lines.append(f"\n![SepViT-Lite latency and MACs vs input size]({path.name})")
    return "\n".join(lines)


def plot_scaling(sizes, curves: dict[str, list[float]], macs: list[float], path: Path) -> Path:
    """Latency (one line per timing mode) and MACs against input side, log-log, with 'linear in pixels'."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax_t, ax_m = fig.subplots(1, 2)
    colors = ("tab:blue", "tab:orange", "tab:green")
    for (label, ys), c in zip(curves.items(), colors):
        ax_t.plot(sizes, ys, "o-", color=c, label=label)
        ax_t.plot(sizes, [ys[0] * (z / sizes[0]) ** 2 for z in sizes], ":", color=c, alpha=0.6)
    ax_m.plot(sizes, macs, "o-", color="tab:purple", label="SepViT-Lite")
    ax_m.plot(sizes, [macs[0] * (z / sizes[0]) ** 2 for z in sizes], ":", color="gray", label="linear in pixels")
    ax_t.plot([], [], ":", color="gray", label="linear in pixels")
    for ax, ylabel in ((ax_t, "latency, batch 1 (ms)"), (ax_m, "GMACs / image")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(sizes), [str(z) for z in sizes])
        ax.minorticks_off()
        ax.set_xlabel("input side (px)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    ax_t.set_title("Latency (float32, shared CPU)", fontsize=10)
    ax_m.set_title("Multiply-accumulates", fontsize=10)
    fig.suptitle("SepViT-Lite: cost vs input size", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# ------------------------------------------------------------------------------------ entry point
def run(quick: bool = False, out_dir: str | Path | None = None) -> str:
    """All model-speed areas as markdown. ``out_dir``: where ``scaling.png`` goes (None: benchmarks/)."""
    s = QUICK if quick else FULL
    out = Path(out_dir) if out_dir is not None else HERE
    parts = []
    for area in (
        compare_vit_pytorch,
        latency_breakdown,
        compiled_comparison,
        watch_overhead,
        bf16_speed,
        variants,
        scaling,
    ):
        print(f"[bench_model] {area.__name__} ...", file=sys.stderr, flush=True)
        parts.append(area(s, out) if area is scaling else area(s))
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
