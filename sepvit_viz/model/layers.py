"""Building blocks shared by every stage: patch embedding, positional conv, MLP, drop path."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DropPath", "Linear", "Mlp", "OverlapPatchEmbed", "PosConv", "onednn_linear_available"]

#: oneDNN's fused linear (+ exact GELU) for float32 CPU inference without autograd: OPT-IN, because it
#: calls a private op (``torch.ops.mkldnn._linear_pointwise``) that a torch upgrade may change or
#: remove. ``SEPVIT_ONEDNN_LINEAR=1`` (read at import) or ``layers.ONEDNN_LINEAR = True`` turns it on;
#: without the op, or off, every call takes ``F.linear`` (the safe fallback, tested). Whether it pays
#: off depends on the CPU and batch size: measure with ``benchmarks/bench_fastpaths.py``.
ONEDNN_LINEAR = os.environ.get("SEPVIT_ONEDNN_LINEAR", "0") == "1"


def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN's pointwise-fused linear op (CPU builds normally do)."""
    return _onednn()[0]


@functools.cache
def _onednn() -> tuple[bool, bool, Callable[[], object]]:
    """(fused linear op present, oneDNN computes bf16 natively, current dispatch mode getter), probed
    once, on the first opted-in call: nothing private is touched unless the opt-in is on."""
    try:
        linear = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        linear = False
    try:  # oneDNN's bf16 kernels need AVX-512 or AMX; an AVX2-only CPU has none and the fused op raises
        bf16 = linear and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    try:  # a dispatch mode (FlopCounterMode, fake tensors) must see plain aten ops
        from torch.utils._python_dispatch import _get_current_dispatch_mode as mode
    except ImportError:  # pragma: no cover - a torch without it: never take the fast path then
        linear = False

        def mode() -> object:
            return True

    return linear, bf16, mode


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) with an optional exact GELU after it.

    (..., in) -> (..., out): ``F.linear`` then ``F.gelu``. Opt-in (:data:`ONEDNN_LINEAR`), float32 CPU
    inference without autograd calls oneDNN's linear with the bias and the erf GELU fused into the
    matrix multiply instead (aten's ``addmm`` first copies the broadcast bias into the whole output);
    results agree to float32 rounding. Anything needing gradients takes the aten path either way.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, gelu: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.gelu = gelu

    def _fast_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """The dtype oneDNN should compute in, or None for the aten path (always, unless opted in)."""
        if not ONEDNN_LINEAR or torch.compiler.is_compiling():  # the checks below would break a dynamo graph
            return None
        has_linear, has_bf16, dispatch_mode = _onednn()
        if not (
            has_linear
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and self.weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
            and dispatch_mode() is None
        ):
            return None
        if torch.is_autocast_enabled("cpu"):
            # bf16 autocast: what autocast would do (bf16 in, bf16 out), on the fused kernel
            bf16 = torch.get_autocast_dtype("cpu") == torch.bfloat16
            return torch.bfloat16 if bf16 and has_bf16 else None
        return torch.float32 if x.dtype == torch.float32 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._fast_dtype(x)
        if dtype is not None:
            w, b = self.weight, self.bias
            if dtype != torch.float32:
                x, w = x.to(dtype), w.to(dtype)
                b = b.to(dtype) if b is not None else None
            if self.gelu:
                return torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y) if self.gelu else y

    def extra_repr(self) -> str:
        return super().extra_repr() + (", gelu=True" if self.gelu else "")


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: Conv2d then LayerNorm over channels.

    (B, C_in, H, W) -> (B, C, H', W') with H' = floor((H + 2 * (k // 2) - k) / stride) + 1.
    Stage 1: kernel 7, stride 4, padding 3; stages 2-4: kernel 3, stride 2, padding 1.
    """

    def __init__(self, in_chans: int, embed_dim: int, kernel: int, stride: int, eps: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        # LayerNorm over channels in channels-last layout, returned as NCHW
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PosConv(nn.Module):
    """Conditional positional encoding (CPVT's PEG): ``x + DWConv3x3(x)``; (B, C, H, W) -> same."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x)


class Mlp(nn.Module):
    """Linear -> GELU (exact, fused into ``fc1``) -> Linear, (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden, gelu=True)
        self.fc2 = Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.fc1(x))))


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        self.prob = float(prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"prob={self.prob}"
