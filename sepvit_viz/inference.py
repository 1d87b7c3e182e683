"""Inference helpers: an opt-in bfloat16 path for CPUs with native bf16 support."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

__all__ = ["autocast", "cpu_supports_bf16", "predict"]


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def autocast(bf16: bool) -> Iterator[None]:
    """``torch.autocast('cpu', bfloat16)`` when ``bf16`` is True, otherwise nothing."""
    if bf16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """Float32 logits (B, classes) of ``model`` on ``x`` (B, 3, H, W), optionally under bf16 autocast."""
    with autocast(bf16):
        out = model(x)
    return out.float()
