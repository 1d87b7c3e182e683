"""Frozen configuration objects for SepViT and its named variants.

The variant table follows the official SepViT classification code (liwei109/SepViT,
``classification/sepvit.py``) and the paper (Li et al., arXiv 2203.15380):

=========  ====================  ============  ============  =========  ============
variant    channels              depths        heads         params     MACs @224
=========  ====================  ============  ============  =========  ============
lite       32, 64, 128, 256      1, 2, 6, 2    1, 2, 4, 8    3.66M      0.57G
tiny       96, 192, 384, 768     1, 2, 6, 2    3, 6, 12, 24  31.2M      4.5G
small      96, 192, 384, 768     1, 2, 14, 2   3, 6, 12, 24  46.6M      7.5G
base       128, 256, 512, 1024   1, 2, 14, 2   4, 8, 16, 32  82.3M      13.1G
=========  ====================  ============  ============  =========  ============

Window sizes per block repeat a per-stage pattern: stage 1 ``[7]``, stage 2 ``[7, 14]``,
stage 3 ``[7, 14]`` (depth / 2 times) and stage 4 ``[7, 7]``. At the reference size (224) a
block whose window covers the whole feature map is built as a global block (:meth:`SepViTConfig.ref_grid`
<= 1). So stage 1 is DSSA (window 7); in stage 2 DSSA and GSA (window 14 = a 2x2 group of 7x7
windows) alternate, DSSA first; in stage 3 DSSA alternates with global blocks (window 14 covers the
14x14 map); stage 4's blocks are all global.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import operator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["VARIANTS", "SepViTConfig", "block_window_sizes"]


def block_window_sizes(pattern: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """Repeat a stage's window-size pattern to cover ``depth`` blocks.

    >>> block_window_sizes((7, 14), 6)
    (7, 14, 7, 14, 7, 14)
    """
    if not pattern:
        raise ValueError("a window-size pattern needs at least one entry")
    return tuple(pattern[i % len(pattern)] for i in range(depth))


def _whole(value: Any, what: str) -> int:
    """``value`` as an int: an int (numpy's too) or a float holding a whole number; ``ValueError``
    naming ``what`` for anything else (Infinity, NaN, 7.5, a string, ``True``)."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
                return int(value)
    raise ValueError(f"{what} must be a whole number, got {value!r}")


def _whole_tuple(values: Any, what: str) -> tuple[int, ...]:
    """A sequence of whole numbers (:func:`_whole`) as a tuple; ``ValueError`` for anything else."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a list of whole numbers, got {values!r}")
    return tuple(_whole(v, what) for v in values)


@dataclass(frozen=True)
class SepViTConfig:
    """Everything that defines a SepViT network.

    Every field reaches the modules it names
    (``tests/test_model.py::test_every_config_field_reaches_the_modules`` changes each field and
    checks the built model changes accordingly).

    Attributes:
        embed_dims: channels per stage (C1..C4).
        depths: blocks per stage.
        num_heads: attention heads per stage (head dim = C / heads).
        window_patterns: per-stage window-size pattern, repeated over the stage's blocks.
        mlp_ratio: hidden width of the block MLP relative to C.
        qkv_bias: bias on the DWA qkv and PWA qk projections.
        num_classes: classifier outputs (0 = no head, ``forward`` returns pooled features).
        in_chans: input image channels.
        patch_size: kernel of the first (stride 4) overlapping patch embedding.
        ref_img_size: resolution that fixes each block's learned window-token grid and whether
            a block is a windowed block (several windows there) or a global one (a single window
            there), exactly as the official code does at 224.
        layer_norm_eps: eps of the LayerNorms inside blocks and of the final norm.
        embed_norm_eps: eps of the patch-embedding and window-token LayerNorms. The official code
            builds those with ``nn.LayerNorm(dim)`` (eps 1e-5) while blocks get eps 1e-6.
        drop_rate: dropout on MLP/projection outputs and after patch embedding.
        attn_drop_rate: dropout on attention probabilities (DWA and PWA).
        drop_path_rate: stochastic depth, rising linearly over all blocks to this value.

    Raises ``ValueError`` (naming the field) for a value no SepViT can be built from: a count or size
    that is not a whole number (Infinity, NaN, 7.5, a string), a stage with no block or no window
    size, stages of different lengths, channels not a multiple of heads, a non-positive window,
    MLP ratio or eps, a dropout rate outside 0..1, an even ``patch_size``. Whole-number floats
    (``7.0``) and lists become ints and tuples.
    """

    embed_dims: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 6, 2)
    num_heads: tuple[int, ...] = (1, 2, 4, 8)
    window_patterns: tuple[tuple[int, ...], ...] = ((7,), (7, 14), (7, 14), (7, 7))
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_classes: int = 1000
    in_chans: int = 3
    patch_size: int = 7
    ref_img_size: int = 224
    layer_norm_eps: float = 1e-6
    embed_norm_eps: float = 1e-5
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        # Normalise lists (e.g. from JSON) into tuples so the config stays hashable and frozen.
        # Checkpoint metadata is untrusted: Infinity, NaN or an empty window pattern must fail here with
        # a ValueError naming the field, not as an OverflowError or an empty max() further on.
        for key in ("embed_dims", "depths", "num_heads"):
            object.__setattr__(self, key, _whole_tuple(getattr(self, key), key))
        patterns = self.window_patterns
        if isinstance(patterns, (str, bytes)) or not hasattr(patterns, "__iter__"):
            raise ValueError(f"window_patterns must be a list of lists of window sizes, got {patterns!r}")
        object.__setattr__(self, "window_patterns", tuple(_whole_tuple(p, "window_patterns") for p in patterns))
        for key in ("num_classes", "in_chans", "patch_size", "ref_img_size"):
            object.__setattr__(self, key, _whole(getattr(self, key), key))
        for key in ("mlp_ratio", "layer_norm_eps", "embed_norm_eps", "drop_rate", "attn_drop_rate", "drop_path_rate"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
            object.__setattr__(self, key, float(value))
        if self.mlp_ratio <= 0 or self.layer_norm_eps <= 0 or self.embed_norm_eps <= 0:
            raise ValueError("mlp_ratio, layer_norm_eps and embed_norm_eps must be positive")
        for key in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be within 0..1, got {getattr(self, key)}")
        object.__setattr__(self, "name", str(self.name))
        n = len(self.depths)
        if n == 0 or not (len(self.embed_dims) == len(self.num_heads) == len(self.window_patterns) == n):
            raise ValueError(
                "embed_dims, depths, num_heads and window_patterns need one entry per stage, got "
                f"{len(self.embed_dims)}, {n}, {len(self.num_heads)}, {len(self.window_patterns)}"
            )
        for i, (c, h) in enumerate(zip(self.embed_dims, self.num_heads)):
            if c <= 0 or h <= 0 or c % h:
                raise ValueError(f"stage {i + 1}: channels {c} must be a positive multiple of heads {h}")
        if any(d <= 0 for d in self.depths):
            raise ValueError(f"every stage needs at least one block, got depths {self.depths}")
        empty = [i + 1 for i, p in enumerate(self.window_patterns) if not p]
        if empty:
            raise ValueError(f"every stage needs at least one window size; stage(s) {empty} have none")
        if any(w <= 0 for p in self.window_patterns for w in p):
            raise ValueError(f"window sizes must be positive, got {self.window_patterns}")
        if self.num_classes < 0 or self.in_chans <= 0 or self.patch_size <= 0 or self.ref_img_size < 32:
            raise ValueError("num_classes >= 0, in_chans > 0, patch_size > 0 and ref_img_size >= 32 required")
        if self.patch_size % 2 == 0:
            # the stem pads k // 2, so stage 1 is ceil(H / 4) only for an odd kernel; the official code's
            # unpadded patch_size 2 / 4 stem is another layout, not built here
            raise ValueError(f"patch_size must be odd (7 in every released SepViT), got {self.patch_size}")

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def num_features(self) -> int:
        """Channels of the pooled feature vector (last stage)."""
        return self.embed_dims[-1]

    def stage_window_sizes(self, stage: int) -> tuple[int, ...]:
        """Window size of every block of ``stage`` (0-based)."""
        return block_window_sizes(self.window_patterns[stage], self.depths[stage])

    def ref_grid(self, stage: int, window: int) -> int:
        """Windows per side of a block at the reference resolution (official: ``(224//4//2**s)//ws``)."""
        return (self.ref_img_size // 4 // 2**stage) // window

    def replace(self, **changes: Any) -> SepViTConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["window_patterns"] = [list(p) for p in self.window_patterns]
        for k in ("embed_dims", "depths", "num_heads"):
            d[k] = list(d[k])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SepViTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SepViTConfig fields: {unknown}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> SepViTConfig:
        return cls.from_dict(json.loads(s))

    @classmethod
    def from_official(cls, official: dict[str, Any], **overrides: Any) -> SepViTConfig:
        """Build a config from the official constructor's argument names.

        Accepts ``embed_dims, num_heads, depths, ws, num_classes, patch_size, mlp_ratios,
        qkv_bias, img_size, in_chans, drop_rate, attn_drop_rate, drop_path_rate``. ``ws`` holds the
        full per-block list of each stage (as the official configs write it, e.g.
        ``[[7], [7, 14], [7, 14, 7, 14, 7, 14], [7, 7]]``).
        """
        mlp = official.get("mlp_ratios", [4.0])
        if len(set(float(m) for m in mlp)) != 1:
            raise ValueError(f"per-stage MLP ratios must be equal here, got {mlp}")
        allowed = {
            "embed_dims",
            "num_heads",
            "depths",
            "ws",
            "num_classes",
            "patch_size",
            "mlp_ratios",
            "qkv_bias",
            "img_size",
            "in_chans",
            "drop_rate",
            "attn_drop_rate",
            "drop_path_rate",
            "qk_scale",
        }
        unknown = sorted(set(official) - allowed)
        if unknown:
            raise ValueError(f"unknown official SepViT arguments: {unknown}")
        if official.get("qk_scale") is not None:
            raise ValueError("a custom qk_scale is not supported (all released configs use head_dim**-0.5)")
        kwargs: dict[str, Any] = dict(
            embed_dims=official["embed_dims"],
            num_heads=official["num_heads"],
            depths=official["depths"],
            window_patterns=official.get("ws", [[7], [7, 14], [7, 14], [7, 7]]),
            num_classes=official.get("num_classes", 1000),
            patch_size=official.get("patch_size", 7),
            mlp_ratio=float(mlp[0]),
            qkv_bias=bool(official.get("qkv_bias", False)),
            ref_img_size=official.get("img_size", 224),
            in_chans=official.get("in_chans", 3),
            drop_rate=official.get("drop_rate", 0.0),
            attn_drop_rate=official.get("attn_drop_rate", 0.0),
            drop_path_rate=official.get("drop_path_rate", 0.0),
            name="official",
        )
        kwargs.update(overrides)
        return cls(**kwargs)


#: Named variants. ``test`` is the official-mini geometry of ``../shared/reference``: small enough for
#: fast tests, yet it has every block kind (DSSA, GSA, global).
VARIANTS: dict[str, SepViTConfig] = {
    "sepvit_test": SepViTConfig(
        embed_dims=(16, 32, 64, 128), depths=(1, 2, 2, 2), num_heads=(1, 1, 2, 4), name="sepvit_test"
    ),
    "sepvit_lite": SepViTConfig(
        embed_dims=(32, 64, 128, 256), depths=(1, 2, 6, 2), num_heads=(1, 2, 4, 8), name="sepvit_lite"
    ),
    "sepvit_tiny": SepViTConfig(
        embed_dims=(96, 192, 384, 768), depths=(1, 2, 6, 2), num_heads=(3, 6, 12, 24), name="sepvit_tiny"
    ),
    "sepvit_small": SepViTConfig(
        embed_dims=(96, 192, 384, 768), depths=(1, 2, 14, 2), num_heads=(3, 6, 12, 24), name="sepvit_small"
    ),
    "sepvit_base": SepViTConfig(
        embed_dims=(128, 256, 512, 1024), depths=(1, 2, 14, 2), num_heads=(4, 8, 16, 32), name="sepvit_base"
    ),
}
