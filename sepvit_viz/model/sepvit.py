"""SepViT: Separable Vision Transformer (Li et al., arXiv 2203.15380), as its official code defines it.

Four stages at strides 4, 8, 16, 32. Each stage: overlapping patch embedding, then blocks; the
conditional positional encoding (PEG) runs once, after the first block of the stage. A block is

* DSSA (window 7): DWA inside each window with one learnable token per window, PWA across windows;
* GSA (window 14 = a 2x2 group of 7x7 windows): the same, per group;
* global: a block that holds a single window at the reference resolution (224) has, as in the
  official code, no window token and no PWA: plain multi-head attention over the whole map. It stays
  global at every input size (that is what it was trained as).

Any input size works: feature maps are zero-padded at the bottom/right to a whole number of windows,
padded keys get no attention weight (masked before the softmax), padded pixels are zeroed before
they can reach other windows through PWA, and the output is cropped back.

Window tokens learned on one window grid (the grid at ``config.ref_img_size``) are mapped to another
grid like a position embedding: the (gh0, gw0, C) token grid is resized bilinearly
(``align_corners=False``, antialiased when shrinking) to (gh, gw). At the reference grid they are
used as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sepvit_viz.model.attention import SeparableAttention
from sepvit_viz.model.config import VARIANTS, SepViTConfig
from sepvit_viz.model.layers import DropPath, Linear, Mlp, OverlapPatchEmbed, PosConv
from sepvit_viz.model.windows import WindowGeometry, add_windows_back, pad_mask, window_geometry, windows_with_tokens
from sepvit_viz.viz.geometry import block_label

__all__ = ["BlockInfo", "SepViT", "SepViTBlock", "SepViTStage", "create_model", "feature_sizes", "list_models"]


def feature_sizes(height: int, width: int, num_stages: int = 4) -> list[tuple[int, int]]:
    """Feature-map size of every stage for an input of ``height x width``.

    Stage 1 (kernel 7, stride 4, padding 3) gives ceil(H / 4); each later stage (kernel 3, stride 2,
    padding 1) halves with ceil.
    """
    sizes = []
    h, w = -(-height // 4), -(-width // 4)
    for _ in range(num_stages):
        sizes.append((h, w))
        h, w = -(-h // 2), -(-w // 2)
    return sizes


@dataclass(frozen=True)
class BlockInfo:
    """One row of :meth:`SepViT.block_table`: what a block does at a given input size.

    feature_size: (H_i, W_i) of the stage's map; grid: (gh, gw) windows; pad: (rows, cols) padded at
    the bottom / right; dwa_shape: (n, h, L, L) per image (n windows, h heads, L tokens of a window,
    its token included); pwa_shape: (h, n, n), None for a global block (no PWA).
    """

    name: str
    stage: int
    index: int
    kind: str
    window_size: int
    feature_size: tuple[int, int]
    grid: tuple[int, int]
    pad: tuple[int, int]
    num_heads: int
    dwa_shape: tuple[int, int, int, int]
    pwa_shape: tuple[int, int, int] | None

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``stage 2 · block 2 · GSA (w=14, 2x2 groups)`` (the capture records'
        label: :func:`sepvit_viz.viz.geometry.block_label`)."""
        return block_label(self.stage, self.index, self.kind, self.window_size, self.grid, self.feature_size)


class SepViTBlock(nn.Module):
    """One SepViT block: windowed separable attention (or global attention) then an MLP.

    ``forward(x, H, W)``: (B, H*W, C) -> (B, H*W, C).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        *,
        stage: int,
        index: int,
        ref_grid: int,
        kind: str,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
        token_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.stage, self.index = stage, index
        self.name = f"stages.{stage}.blocks.{index}"
        self.kind = kind
        self.window_size = window_size
        self.num_heads = num_heads
        self.stride = 4 * 2**stage
        self.ref_grid = ref_grid
        windowed = kind != "global"
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SeparableAttention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            with_pwa=windowed,
            attn_drop=attn_drop,
            proj_drop=drop,
            token_norm_eps=token_norm_eps,
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        # one learnable token per window of the reference grid, zero-initialised (paper, Sec. 3.1)
        self.window_tokens = nn.Parameter(torch.zeros(1, ref_grid * ref_grid, 1, dim)) if windowed else None

    def geometry(self, height: int, width: int) -> WindowGeometry:
        """How this block tiles an ``height x width`` feature map."""
        if self.kind == "global":
            return window_geometry(height, width, None, False, self.stride)
        return window_geometry(height, width, self.window_size, True, self.stride)

    def tokens_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Window tokens for a (gh, gw) grid: (1, gh*gw, 1, C), resized from the reference grid."""
        assert self.window_tokens is not None
        g0 = self.ref_grid
        if grid == (g0, g0):
            return self.window_tokens
        C = self.window_tokens.shape[-1]
        t = self.window_tokens.reshape(1, g0, g0, C).permute(0, 3, 1, 2)
        shrink = grid[0] < g0 or grid[1] < g0
        # resized in float32: the antialiased CPU kernel has no bfloat16 / float16 version
        t = F.interpolate(t.float(), size=grid, mode="bilinear", align_corners=False, antialias=shrink)
        t = t.to(self.window_tokens.dtype)
        return t.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], 1, C)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        geom = self.geometry(H, W)
        if self.kind == "global":
            x = x + self.drop_path(self.attn(self.norm1(x).unsqueeze(1), geom).squeeze(1))
        else:
            tokens = self.tokens_for(geom.grid).to(x.dtype)
            u = self.norm1(windows_with_tokens(x.view(B, H, W, C), tokens, geom))  # (B, n, 1 + P, C)
            pixel_mask = pad_mask(geom, x.device)
            key_mask = None
            if pixel_mask is not None:
                key_mask = torch.cat([pixel_mask.new_ones(pixel_mask.shape[0], 1), pixel_mask], dim=1)
            out = self.drop_path(self.attn(u, geom, key_mask, pixel_mask))  # (B, n, P, C)
            x = add_windows_back(x.view(B, H, W, C), out, geom).view(B, N, C)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"stage={self.stage}, index={self.index}, kind={self.kind}, window_size={self.window_size}"


class SepViTStage(nn.Module):
    """Patch embedding, blocks, and the PEG after the first block. (B, C_in, H, W) -> (B, C, H', W')."""

    def __init__(self, patch_embed: OverlapPatchEmbed, blocks: Sequence[SepViTBlock], dim: int, drop: float) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.pos_drop = nn.Dropout(drop)
        self.blocks = nn.ModuleList(blocks)
        self.pos_conv = PosConv(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Tokens stay channels-last throughout: (B, N, C) memory is (B, H, W, C), and the NCHW maps
        # handed to the convolutions are permuted views of it (channels_last strides), which oneDNN
        # convolves as they are. No layout copy is made around the PEG or between stages.
        x = self.patch_embed(x)
        H, W = x.shape[-2:]
        x = self.pos_drop(_as_tokens(x))  # (B, N, C)
        for j, block in enumerate(self.blocks):
            x = block(x, H, W)
            if j == 0:  # official code: PEG after the first block, not before it
                x = _as_tokens(self.pos_conv(_as_nchw(x, H, W)))
        return _as_nchw(x, H, W)


def _as_nchw(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C, H, W) map, a channels_last view of the same memory when possible."""
    B, _, C = x.shape
    return x.reshape(B, height, width, C).permute(0, 3, 1, 2)


class SepViT(nn.Module):
    """The Separable Vision Transformer. ``forward``: (B, 3, H, W) -> (B, num_classes) for any H, W."""

    def __init__(self, config: SepViTConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        self.num_features = config.num_features
        # (device given: the model can be built on the meta device, e.g. to check a checkpoint's shapes)
        dpr = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        stages, cursor, in_chans = [], 0, config.in_chans
        self.feature_info: list[dict[str, object]] = []
        for s, (dim, depth, heads) in enumerate(zip(config.embed_dims, config.depths, config.num_heads)):
            if s == 0:
                embed = OverlapPatchEmbed(in_chans, dim, config.patch_size, 4, config.embed_norm_eps)
            else:
                embed = OverlapPatchEmbed(in_chans, dim, 3, 2, config.embed_norm_eps)
            windows = config.stage_window_sizes(s)
            smallest = min(config.window_patterns[s])
            blocks = []
            for j, w in enumerate(windows):
                ref_grid = config.ref_grid(s, w)
                kind = "global" if ref_grid <= 1 else ("dssa" if w == smallest else "gsa")
                blocks.append(
                    SepViTBlock(
                        dim,
                        heads,
                        w,
                        stage=s,
                        index=j,
                        ref_grid=max(ref_grid, 1),
                        kind=kind,
                        mlp_ratio=config.mlp_ratio,
                        qkv_bias=config.qkv_bias,
                        drop=config.drop_rate,
                        attn_drop=config.attn_drop_rate,
                        drop_path=dpr[cursor + j],
                        eps=config.layer_norm_eps,
                        token_norm_eps=config.embed_norm_eps,
                    )
                )
            stages.append(SepViTStage(embed, blocks, dim, config.drop_rate))
            self.feature_info.append({"num_chs": dim, "reduction": 4 * 2**s, "module": f"stages.{s}"})
            cursor += depth
            in_chans = dim
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(config.num_features, eps=config.layer_norm_eps)
        self.head = Linear(config.num_features, config.num_classes) if config.num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that an optimiser should not decay (window tokens)."""
        return {n for n, _ in self.named_parameters() if n.endswith("window_tokens")}

    # ---------------------------------------------------------------- blocks and their geometry
    def iter_blocks(self) -> Iterator[SepViTBlock]:
        for stage in self.stages:
            yield from stage.blocks  # type: ignore[misc]

    def set_fused_attn(self, enabled: bool) -> None:
        """Allow (True, default) or forbid the fused attention path when no hook watches."""
        for block in self.iter_blocks():
            block.attn.fused_attn = enabled

    def block_table(self, img_size: tuple[int, int] | int = 224) -> list[BlockInfo]:
        """What every block does for an input of ``img_size`` (H, W): kind, grid, padding, shapes."""
        H, W = (img_size, img_size) if isinstance(img_size, int) else img_size
        sizes = feature_sizes(H, W, len(self.stages))
        rows = []
        for block in self.iter_blocks():
            fh, fw = sizes[block.stage]
            g = block.geometry(fh, fw)
            L = g.window_pixels + int(g.has_token)
            rows.append(
                BlockInfo(
                    name=block.name,
                    stage=block.stage,
                    index=block.index,
                    kind=block.kind,
                    window_size=block.window_size,
                    feature_size=(fh, fw),
                    grid=g.grid,
                    pad=g.pad,
                    num_heads=block.num_heads,
                    dwa_shape=(g.num_windows, block.num_heads, L, L),
                    pwa_shape=(block.num_heads, g.num_windows, g.num_windows) if g.has_token else None,
                )
            )
        return rows

    # ---------------------------------------------------------------- timm-style forward surface
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N4, C4) last-stage tokens after the final norm."""
        for stage in self.stages:
            x = stage(x)
        return self.norm(_as_tokens(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, C) tokens -> mean-pooled (B, C) (``pre_logits``) or logits (B, num_classes)."""
        x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs as (B, C_i, H_i, W_i) maps (or (B, H_i, W_i, C_i) with ``output_fmt='NHWC'``).

        indices: an int n takes the last n stages, a sequence takes those stage indices, None all.
        norm: apply the final norm to the last stage's map when it is returned.
        stop_early: run only up to the last stage asked for.
        intermediates_only: return the maps alone (and run only up to the last stage asked for).
        Returns the intermediates alone, or (tokens, intermediates): the final tokens after the final
        norm, or with ``stop_early`` before the last stage, that stage's (B, N_i, C_i) tokens unnormed.

        Raises:
            ValueError: for an int count outside 1..num_stages, a stage index outside
                -num_stages..num_stages-1, an empty selection, or an ``output_fmt`` other than
                ``"NCHW"`` / ``"NHWC"``.
        """
        n = len(self.stages)
        if indices is None:
            take = list(range(n))
        elif isinstance(indices, int):
            if not 0 < indices <= n:
                raise ValueError(f"indices as a count must be within 1..{n}, got {indices}")
            take = list(range(n - indices, n))
        else:
            if any(not -n <= i < n for i in indices):  # negative indices count from the end, as in Python
                raise ValueError(f"stage indices must be within -{n}..{n - 1}, got {list(indices)}")
            take = sorted({i % n for i in indices})
        if not take:
            raise ValueError("no stage index given")
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be NCHW or NHWC, got {output_fmt!r}")
        last = max(take) if (stop_early or intermediates_only) else n - 1
        outs = []
        for i, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if i in take:
                y = x
                if norm and i == n - 1:
                    y = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                outs.append(y.permute(0, 2, 3, 1) if output_fmt == "NHWC" else y)
        if intermediates_only:
            return outs
        tokens = _as_tokens(x)
        # the final norm belongs to the last stage's width: a forward stopped earlier returns raw tokens
        return (self.norm(tokens) if last == n - 1 else tokens), outs


def _as_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map -> (B, H*W, C) tokens (a view when the map is channels_last)."""
    B, C = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(B, -1, C)


# -------------------------------------------------------------------- registry
def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(VARIANTS)


def create_model(
    name: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    checkpoint_path: str | None = None,
    **overrides: object,
) -> SepViT:
    """Build a named variant; ``overrides`` replace config fields (e.g. ``drop_path_rate=0.1``).

    pretrained: load the project's distilled checkpoint for this variant (only ``sepvit_lite`` has one).
    checkpoint_path: load this safetensors/``.pt`` file instead (strict; clear errors on mismatch).
    num_classes: with weights whose classifier has another class count, every weight but the
    classifier is loaded and ``head`` starts fresh (0: no head, ``forward`` returns pooled features).
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    cfg = VARIANTS[name]
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if overrides:
        cfg = cfg.replace(**overrides)
    model = SepViT(cfg)
    if pretrained or checkpoint_path:
        from sepvit_viz.model.weights import default_checkpoint_for, load_weights_into

        path = checkpoint_path or default_checkpoint_for(name)
        load_weights_into(model, path, new_head_if_classes_differ=num_classes is not None)
    return model
