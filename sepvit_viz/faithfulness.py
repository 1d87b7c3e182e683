"""Deletion and insertion curves: how faithful is an attribution map to the model?

Given a photo ``x``, a class ``c`` and an attribution map ``s`` (H, W), rank the pixels from most to
least attributed (ties broken by raster index, so the ranking is deterministic). With ``S`` steps and
``k_i = round(i / S * H * W)`` pixels for ``i = 0..S``:

* deletion: ``x_i`` = ``x`` with its top-``k_i`` pixels replaced by the baseline ``b`` (a blurred copy
  of ``x`` by default). A faithful map destroys the class quickly: **low** area under the curve.
* insertion: ``x_i`` = ``b`` with the top-``k_i`` pixels of ``x`` put back. A faithful map recovers
  the class quickly: **high** area under the curve.

The curve is ``p_i = softmax(model(x_i))[c]`` over the fractions ``f_i = k_i / (H * W)`` and the area
is the trapezoid rule over ``f`` in [0, 1] (Petsiuk et al., RISE, BMVC 2018). A blurred baseline
(rather than black) avoids rewarding maps for the sharp edges that deletion itself would create.
A pixel means all of its channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .baselines import DEFAULT_BLUR_SIGMA, make_baseline

__all__ = ["Curves", "auc", "curves_for", "deletion_insertion", "pixel_order", "random_map", "step_counts"]

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of one attribution map on one image.

    Attributes:
        fractions: (S + 1,) share of pixels removed (deletion) or revealed (insertion), 0 to 1.
        deletion, insertion: (S + 1,) class score at each fraction.
        deletion_auc: area under the deletion curve (lower is better).
        insertion_auc: area under the insertion curve (higher is better).
        target: the class index scored.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    target: int
    extras: dict[str, object] = field(default_factory=dict)


def pixel_order(saliency_hw: np.ndarray) -> np.ndarray:
    """(H, W) map -> (H * W,) flat pixel indices, most attributed first; ties by raster index."""
    s = np.asarray(saliency_hw, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("the attribution map holds NaN or infinite values")
    # stable sort of the negated map: descending values, equal values keep raster order
    return np.argsort(-s.ravel(), kind="stable")


def step_counts(num_pixels: int, steps: int) -> np.ndarray:
    """(steps + 1,) pixel counts ``round(i / steps * num_pixels)``, from 0 to ``num_pixels``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return np.round(np.linspace(0, num_pixels, steps + 1)).astype(np.int64)


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under ``values`` over ``fractions`` (both 1-D, same length)."""
    f, v = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if f.shape != v.shape or f.ndim != 1 or len(f) < 2:
        raise ValueError(f"need two 1-D arrays of equal length >= 2, got {f.shape} and {v.shape}")
    return float(np.sum((f[1:] - f[:-1]) * (v[1:] + v[:-1]) / 2))


def random_map(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uniform random (H, W) attribution: the floor every real method must beat."""
    return np.random.default_rng(seed).random((height, width)).astype(np.float32)


def _scores(model: nn.Module, batch: torch.Tensor, target: int, score: str) -> torch.Tensor:
    logits = model(batch)
    if score == "prob":
        return logits.float().softmax(dim=-1)[:, target]
    return logits.float()[:, target]


@torch.inference_mode()
def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    saliency_hw: np.ndarray,
    target: int,
    *,
    steps: int = 32,
    baseline: str | torch.Tensor = "blurred",
    sigma: float = DEFAULT_BLUR_SIGMA,
    score: str = "prob",
    batch_size: int = 16,
    progress: Progress | None = None,
) -> Curves:
    """Deletion and insertion curves of ``saliency_hw`` for class ``target``.

    Args:
        model: maps (B, C, H, W) to (B, num_classes) logits; put it in eval mode first.
        x: (1, C, H, W) preprocessed image.
        saliency_hw: (H, W) attribution at image resolution (higher = more important).
        target: class index.
        steps: number of equal steps from 0 to all pixels (S; the curves have S + 1 points).
        baseline: ``"blurred"`` (default), ``"black"``, ``"gray"``, ``"noise"`` or a tensor shaped
            like ``x`` (what deleted pixels become and what insertion starts from).
        sigma: blur strength in pixels for the blurred baseline.
        score: ``"prob"`` (softmax probability, default) or ``"logit"``.
        batch_size: images per forward pass (memory stays flat in ``steps``).
        progress: optional ``progress(fraction, desc)`` callback.

    Returns:
        :class:`Curves` with both curves and their areas.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got shape {tuple(x.shape)}")
    H, W = x.shape[-2:]
    if tuple(np.shape(saliency_hw)) != (H, W):
        raise ValueError(f"attribution map {np.shape(saliency_hw)} does not match the image {(H, W)}")
    if score not in ("prob", "logit"):
        raise ValueError(f"score must be 'prob' or 'logit', got {score!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    base = make_baseline(x, baseline, sigma=sigma) if isinstance(baseline, str) else baseline.to(x)
    if base.shape != x.shape:
        raise ValueError(f"baseline shape {tuple(base.shape)} does not match the image {tuple(x.shape)}")

    # rank[p] = position of pixel p in the order; pixel p is "in" at step i when rank[p] < k_i
    order = pixel_order(saliency_hw)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    rank_t = torch.from_numpy(rank).view(1, 1, H, W).to(x.device)
    counts = step_counts(H * W, steps)
    fractions = counts / float(H * W)

    # both curves share one list of images: deletion steps first, then insertion steps
    jobs = [("deletion", int(k)) for k in counts] + [("insertion", int(k)) for k in counts]
    scores = np.empty(len(jobs), dtype=np.float64)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        ks = torch.tensor([k for _, k in chunk], device=x.device).view(-1, 1, 1, 1)
        top = (rank_t < ks).to(x.dtype)  # (b, 1, H, W): 1 on the top-k pixels
        is_del = torch.tensor([kind == "deletion" for kind, _ in chunk], device=x.device).view(-1, 1, 1, 1)
        # deletion keeps x outside the top-k; insertion keeps x inside it
        keep_x = torch.where(is_del, 1.0 - top, top)
        batch = keep_x * x + (1.0 - keep_x) * base
        scores[start : start + len(chunk)] = _scores(model, batch, target, score).cpu().numpy()
        if progress is not None:
            progress(min(1.0, (start + len(chunk)) / len(jobs)), "deletion / insertion")
    n = len(counts)
    deletion, insertion = scores[:n], scores[n:]
    return Curves(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=auc(fractions, deletion),
        insertion_auc=auc(fractions, insertion),
        target=int(target),
        extras={"steps": steps, "score": score, "baseline": baseline if isinstance(baseline, str) else "tensor"},
    )


def curves_for(model: nn.Module, x: torch.Tensor, attribution: Any, **kwargs: Any) -> Curves:
    """Curves of an :class:`sepvit_viz.attribution.Attribution` (its ``map_hw`` and ``target``) on ``x``.

    ``kwargs`` go to :func:`deletion_insertion` (``steps``, ``baseline``, ``batch_size``, ``progress``, ...).
    """
    return deletion_insertion(model, x, attribution.map_hw, attribution.target, **kwargs)
