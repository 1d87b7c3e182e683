"""Depthwise separable self-attention (DWA + PWA) with named probability taps.

Shapes (axis letters as in :mod:`sepvit_viz.model.windows`): B batch, n windows, L = P (+1 with the window
token) tokens of one window, h heads, d = C / h channels per head.

The model knows nothing about visualisation: attention probabilities simply pass through two
identity modules, ``dwa_tap`` and ``pwa_tap``, together with the window geometry, so that forward
hooks can watch them. When nothing watches a tap, DWA runs through
``scaled_dot_product_attention``, or for small windows (``_SMALL_WINDOW`` tokens or fewer, more under
bfloat16) through a plain matmul and softmax that is faster there; the probabilities are then never kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sepvit_viz.model.layers import Linear
from sepvit_viz.model.windows import WindowGeometry

__all__ = ["AttentionTap", "SeparableAttention"]

# Windows of at most this many tokens take the matmul path when unwatched (see ``_dwa``); in
# bfloat16 (autocast) the matmul path also beats the fused kernel up to _SMALL_WINDOW_BF16 tokens
# (GSA groups and stage-3 global blocks, L = 196-197).
_SMALL_WINDOW = 64
_SMALL_WINDOW_BF16 = 256


class AttentionTap(nn.Module):
    """Identity on attention probabilities: ``tap(probs, geometry) -> probs``.

    It exists so that hooks can catch the probabilities by module name
    (``stages.{i}.blocks.{j}.attn.dwa_tap`` / ``.pwa_tap``); a forward hook receives
    ``args = (probs, geometry)``, ``probs`` (B, n, h, L, L) at ``dwa_tap`` and (B, h, n, n) at
    ``pwa_tap`` (softmax rows, axis letters as in the module docstring).
    """

    def forward(self, probs: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:  # noqa: ARG002
        return probs

    def is_watched(self) -> bool:
        """True when a hook is registered on this tap (``register_forward_hook`` / ``_pre_hook``).

        Global module hooks (``torch.nn.modules.module.register_module_forward_hook``) are not
        looked for (torch has no public way to list them): to watch every tap with one, set
        ``attn.fused_attn = False`` on the blocks first.
        """
        return bool(self._forward_hooks or self._forward_pre_hooks)


class SeparableAttention(nn.Module):
    """DWA inside each window (window token at index 0), then PWA across windows.

    Follows the official SepViT code, including its two inner shortcuts that the paper's equations
    do not show: ``Y = A_dw V + U`` after DWA and ``O = A_pw F + F`` after PWA. A global block
    (``with_pwa=False``) is plain multi-head attention over the whole map plus the first shortcut.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        with_pwa: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        token_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.with_pwa = with_pwa
        # fast path when unwatched; set False to always build the probability tensors
        self.fused_attn = True
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.dwa_tap = AttentionTap()
        if with_pwa:
            self.token_norm = nn.LayerNorm(dim, eps=token_norm_eps)
            self.token_act = nn.GELU()
            self.pwa_qk = Linear(dim, dim * 2, bias=qkv_bias)
            self.pwa_tap = AttentionTap()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _dwa(self, u: torch.Tensor, geom: WindowGeometry, key_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, n, L, C) normalised tokens -> (B, n, L, C) DWA output plus the inner shortcut."""
        B, n, L, C = u.shape
        h, d = self.num_heads, self.head_dim
        # windows fold into the batch: 4-D (B*n, h, L, d) views let SDPA use its fused CPU kernel
        q, k, v = self.qkv(u).view(B * n, L, 3, h, d).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        mask = None
        if key_mask is not None:  # (n, L), True = real key -> (B*n, 1, 1, L)
            mask = key_mask[None].expand(B, n, L).reshape(B * n, 1, 1, L)
        if self.fused_attn and not self.dwa_tap.is_watched():
            limit = _SMALL_WINDOW_BF16 if q.dtype == torch.bfloat16 else _SMALL_WINDOW
            if limit >= L and not self.training and mask is None:
                # Small windows (7x7 + token): two batched matmuls and a softmax on contiguous heads beat the
                # fused CPU kernel, whose tiling is made for long sequences (bench_model, DWA rows).
                if h > 1:  # heads interleave in the qkv rows: gather each head's (L, d) block once
                    q, k, v = (t.contiguous() for t in (q, k, v))
                # (one head: q, k, v are plain strided matrices that the batched GEMM reads in place)
                attn = torch.matmul(q, k.transpose(-2, -1)).mul_(self.scale).softmax(dim=-1)
                y = torch.matmul(attn, v)
            else:
                y = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=self.attn_drop.p if self.training else 0.0
                )
        else:
            # the same products as the small-window fast path (contiguous heads, scale applied in
            # place), so that watching costs little more than the probability tensors themselves
            if h > 1:
                q, k, v = (t.contiguous() for t in (q, k, v))
            attn = torch.matmul(q, k.transpose(-2, -1)).mul_(self.scale)
            if mask is not None:
                attn = attn.masked_fill_(~mask, float("-inf"))
            attn = self.dwa_tap(attn.softmax(dim=-1).view(B, n, h, L, L), geom)  # (B, n, h, L, L)
            y = torch.matmul(self.attn_drop(attn).view(B * n, h, L, L), v)
        # (B*n, h, L, d) -> (B, n, L, C) plus the shortcut, in one pass: the head-major product is read
        # through a transposed view instead of being copied to token-major order first
        return (u.view(B * n, L, h, d) + y.transpose(1, 2)).reshape(B, n, L, C)

    def _pwa(self, y: torch.Tensor, geom: WindowGeometry, pixel_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, n, 1 + P, C) DWA output -> (B, n, P, C): windows mix the same position across windows."""
        B, n, L, C = y.shape
        tokens, feats = y[:, :, 0], y[:, :, 1:]  # (B, n, C), (B, n, P, C)
        if pixel_mask is not None:
            # padded pixels must not leak into other windows through V
            feats = feats * pixel_mask[None, :, :, None].to(feats.dtype)
        g = self.token_act(self.token_norm(tokens))
        q, k = self.pwa_qk(g).view(B, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        attn = self.attn_drop(self.pwa_tap(attn, geom))  # (B, h, n, n)
        if self.num_heads == 1:
            # one head: every window's (P, C) block is one row of a (B, n, P*C) matrix (a strided view
            # of y), so the mix and the shortcut are a single batched GEMM: feats + A @ feats
            rows = feats.reshape(B, n, (L - 1) * C)
            # (autocast exists only for real devices: a shape trace on "meta" has none to ask about)
            if rows.device.type != "meta" and torch.is_autocast_enabled(rows.device.type):
                # autocast would run baddbmm, shortcut included, in bf16: keep the shortcut's precision
                # as the multi-head path does (bf16 product, float32 sum)
                return (torch.bmm(attn[:, 0], rows) + rows).view(B, n, L - 1, C)
            return torch.baddbmm(rows, attn[:, 0], rows).view(B, n, L - 1, C)
        v = feats.reshape(B, n, L - 1, self.num_heads, self.head_dim)
        out = torch.einsum("bhnm,bmphd->bnphd", attn, v).reshape(B, n, L - 1, C)
        return out + feats

    def forward(
        self,
        u: torch.Tensor,
        geom: WindowGeometry,
        key_mask: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """u: (B, n, L, C) normalised window tokens + pixels -> (B, n, P, C) projected pixels.

        key_mask: (n, L) True where a key is real (window token and unpadded pixels), or None.
        pixel_mask: (n, P) True where a pixel is real, or None.
        """
        y = self._dwa(u, geom, key_mask)
        if self.with_pwa:
            y = self._pwa(y, geom, pixel_mask)
        return self.proj_drop(self.proj(y))
