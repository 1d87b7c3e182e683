"""Image preprocessing: the one contract shared by the model, the teacher, the app and the CLI.

The distilled student inherits the teacher's (EfficientNet-Lite0, TensorFlow style) normalisation:
mean = std = 0.5 per channel, i.e. ``(x - 0.5) / 0.5`` on [0, 1] pixels, with bicubic resizing.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sepvit_viz.imageio import to_rgb

__all__ = ["CROP_PCT", "INTERPOLATION", "MEAN", "STD", "denormalize", "preprocess", "resize_center_crop", "to_tensor"]

MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
#: Evaluation crop: resize the short side to size / CROP_PCT, then take the centre size x size.
CROP_PCT: float = 0.875
INTERPOLATION = Image.Resampling.BICUBIC


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> normalised float tensor (1, 3, H, W); other modes become RGB as the app makes them
    (:func:`sepvit_viz.imageio.to_rgb`: transparency flattened on white, 16-bit scaled)."""
    arr = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (t - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation: (..., 3, H, W) -> [0, 1]."""
    mean = torch.tensor(MEAN, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def resize_center_crop(image: Image.Image, size: int = 224, crop_pct: float = CROP_PCT) -> Image.Image:
    """Resize the short side to ``size / crop_pct`` (bicubic), then centre-crop ``size x size``."""
    if size <= 0 or not (0 < crop_pct <= 1):
        raise ValueError(f"size must be positive and crop_pct in (0, 1], got {size}, {crop_pct}")
    image = to_rgb(image)
    w, h = image.size
    short = max(1, round(size / crop_pct))
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), INTERPOLATION)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def preprocess(image: Image.Image, size: int = 224, crop_pct: float = CROP_PCT) -> torch.Tensor:
    """PIL image (any mode) -> (1, 3, size, size) normalised tensor, the evaluation transform."""
    return to_tensor(resize_center_crop(image, size, crop_pct))
