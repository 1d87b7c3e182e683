"""Timing helpers shared by the benchmark scripts: interleaved timing, medians, conditions, tables.

Rules every benchmark here follows (the machine is small and usually shared):

* both sides of a comparison are timed in the same run, interleaved (A, B, A, B, ... with the
  order rotated every round so neither side always runs first), after a warm-up;
* figures are medians; comparisons are same-run ratios of medians;
* every table names its conditions (:func:`conditions`): CPU, threads, torch version, input size,
  batch, repetitions, and the machine's load while it ran.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CPU_1T",
    "WALL_2T",
    "Mode",
    "Timing",
    "conditions",
    "cpu_model",
    "fmt",
    "load_average",
    "md_table",
    "num_threads",
    "time_interleaved",
]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform's guess), plus the logical core count."""
    name = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} logical cores)"


def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def load_average() -> str:
    """1-minute load average (a hint of how shared the machine was), or 'n/a'."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(n)``, restoring the previous setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def conditions(**extra: object) -> str:
    """One markdown line naming the conditions: CPU, torch, threads, load, plus ``extra`` fields.

    ``threads`` (optional) overrides the thread description (default: torch's current count).
    """
    import torch

    threads = extra.pop("threads", torch.get_num_threads())
    bits = [f"CPU: {cpu_model()}", f"torch {torch.__version__}", f"threads: {threads}"]
    bits += [f"{k.replace('_', ' ')} {v}" for k, v in extra.items()]
    from sepvit_viz.model.runtime import malloc_settings

    bits.append(f"glibc malloc {malloc_settings()}")
    bits.append(f"load avg (1 min) at start {load_average()}")
    return "Conditions: " + "; ".join(bits) + "."


@dataclass(frozen=True)
class Mode:
    """How to time: torch threads and which clock."""

    label: str
    threads: int
    clock: Callable[[], float]


# The conditions: 2 threads, wall-clock (disturbed by anything else running on the machine).
WALL_2T = Mode("2 threads, wall-clock", 2, time.perf_counter)
# Robust on a shared machine: 1 thread, CPU time of the calling thread (the work itself).
CPU_1T = Mode("1 thread, thread CPU time", 1, time.thread_time)


@dataclass
class Timing:
    """Wall-clock samples (seconds) of one contender."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def spread(self) -> float:
        """Inter-quartile range relative to the median (0.1 = 10%), a noise indicator."""
        if len(self.samples) < 4:
            return float("nan")
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    reps: int,
    warmup: int = 1,
    inner: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time every callable ``reps`` times, interleaved, after ``warmup`` untimed rounds.

    Round r runs the contenders in the order rotated by r (A B C, B C A, C A B, ...). One sample is
    the mean over ``inner`` back-to-back calls (use it for very short calls). ``clock``: wall-clock
    by default; ``time.thread_time`` measures CPU time of the calling thread, which other processes
    barely disturb, and equals the work done when torch runs on 1 thread.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out = {name: Timing() for name in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = fns[name]
            t0 = clock()
            for _ in range(inner):
                fn()
            out[name].samples.append((clock() - t0) / inner)
    return out


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits ('n/a' for NaN/None)."""
    if x is None or x != x:  # NaN
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; a ``|`` inside a header or cell is escaped (``\\|``) so it stays text."""

    def cell(value: object) -> str:
        return re.sub(r"(?<!\\)\|", r"\\|", str(value))

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
