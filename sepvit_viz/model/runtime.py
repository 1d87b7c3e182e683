"""Process-level settings for batch jobs on the CPU: the glibc allocator.

PyTorch's CPU allocator asks glibc ``malloc`` for every tensor. glibc serves blocks above its
mmap threshold (128 KiB to 32 MiB, adaptive) with fresh ``mmap`` pages and hands them back on
``free``; a SepViT forward at batch 32 allocates and frees many 10-40 MB activations, so each of them
page-faults its memory in again. Raising the mmap and trim thresholds keeps freed blocks in the heap
for reuse, which makes large-batch forwards noticeably faster.

The price is memory: the heap keeps what it freed (and fragments), so a long-running server's resident
memory settles far above what it uses. Hence it is opt-in and process-wide, never done on import:
the batch tools (training, held-out evaluation) call :func:`tune_malloc`; the app and the benchmarks
run with glibc's defaults, as a user's process would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from pathlib import Path

__all__ = ["cpu_has_native_bf16", "malloc_settings", "release_free_memory", "tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied: dict[str, int] | None = None


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, loaded once (``find_library`` runs ``ldconfig``: too slow for every request); None
    elsewhere (macOS, Windows, musl, whose ``mallopt``/``malloc_trim`` are absent or no-op stubs)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(mmap_threshold: int = 1 << 30, trim_threshold: int = 256 << 20) -> dict[str, int] | None:
    """Raise glibc's mmap and trim thresholds (bytes); returns what was set, or None where the C
    library is not glibc (macOS, Windows, musl) and nothing changed.

    ``trim_threshold`` bounds how much free memory at the top of the heap is kept rather than given
    back to the system, so a server's resident memory stays at most that far above what it uses.
    Calling it again with the same values does nothing.
    """
    global _applied
    wanted = {"mmap_threshold": int(mmap_threshold), "trim_threshold": int(trim_threshold)}
    if _applied == wanted:
        return _applied
    libc = _glibc()
    if libc is None:
        return None
    mallopt = libc.mallopt
    cap = 2**31 - 1  # mallopt takes a C int
    ok = mallopt(_M_MMAP_THRESHOLD, min(wanted["mmap_threshold"], cap)) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, min(wanted["trim_threshold"], cap)) == 1
    _applied = wanted if ok else None
    return _applied


def malloc_settings() -> str:
    """What :func:`tune_malloc` set in this process, for benchmark conditions."""
    if _applied is None:
        return "default"
    mib = {k: v >> 20 for k, v in _applied.items()}
    return f"tuned (mmap threshold {mib['mmap_threshold']} MiB, trim threshold {mib['trim_threshold']} MiB)"


def release_free_memory() -> bool:
    """Give freed heap memory back to the system (glibc ``malloc_trim(0)``).

    Returns True once trimmed, False where glibc is not available. The app calls it after each
    request that ran the model only when ``SEPVIT_MALLOC_TRIM=1`` (see docs/app.md).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively: its flags name AVX-512 BF16 or AMX BF16.

    Without it (an AVX2-only CPU, or plain AVX-512) bf16 autocast is emulated and far slower than
    float32. Read from the kernel's CPU flags (``cpuinfo``, Linux); where there is no such file the
    answer is False (float32: always correct, never the slow emulated path).
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False
