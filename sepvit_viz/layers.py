"""Building blocks shared by every stage: patch embedding, positional conv, MLP, drop path."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath", "Mlp", "OverlapPatchEmbed", "PosConv"]


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
    """Linear -> GELU -> Linear, (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


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
