"""Inference helpers: opt-in fast paths for plain (unwatched) predictions.

* :func:`autocast` / :func:`predict` (``bf16=True``): bfloat16 autocast for CPUs with native bf16.
* :func:`compile_for_inference`: ``torch.compile`` with weight freezing, for batch-1 latency.

Both are for predictions only. Capturing attention maps, attributions and training use the eager
model: a compiled graph runs the taps' hooks as they were at compile time, and frozen weights are
constants of the graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

__all__ = ["autocast", "compile_for_inference", "cpu_supports_bf16", "predict"]


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


def compile_for_inference(
    model: nn.Module, *, freezing: bool = True, dynamic: bool = False, backend: str = "inductor"
) -> nn.Module:
    """``torch.compile`` a model in eval mode for unwatched inference; returns the compiled module.

    The whole forward is one inductor graph: Python dispatch goes and the element-wise work around
    the attention is fused; ``benchmarks/bench_model.py`` ("Compiled inference") measures the gain.
    ``freezing`` lets inductor treat the weights as constants (pre-packed for oneDNN, constant-folded):
    the compiled module then ignores later changes to the weights, and it must be called under
    ``torch.no_grad()`` or ``torch.inference_mode()`` (:func:`predict` does). Compilation happens on
    the first call (tens of seconds on a 2-core CPU, a C++ compiler is needed) and again for every new
    input shape unless ``dynamic=True``.

    Args:
        model: a SepViT (any module) in eval mode; it is not modified.
        freezing: inline the weights as constants (faster; weights must not change afterwards).
        dynamic: compile one graph for all input shapes instead of one per shape.
        backend: a ``torch.compile`` backend; ``freezing`` applies to ``"inductor"`` only (tests use
            ``"aot_eager"``: the same tracing and graph, no C++ compilation).

    Raises:
        ValueError: when the model is in training mode.
    """
    if model.training:
        raise ValueError("compile_for_inference is for eval-mode models: call model.eval() first")
    if backend == "inductor":
        return torch.compile(model, dynamic=dynamic, options={"freezing": freezing})
    return torch.compile(model, dynamic=dynamic, backend=backend)
