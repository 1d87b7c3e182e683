"""Deletion and insertion curves and ROAD: how faithful is an attribution map to the model?

Given a photo ``x``, a class ``c`` and an attribution map ``s`` (H, W), rank the pixels from most to
least attributed (ties broken by raster index, so the ranking is deterministic). With ``S`` steps and
``k_i = round(i / S * H * W)`` pixels for ``i = 0..S``:

* deletion: ``x_i`` = ``x`` with its top-``k_i`` pixels replaced by the baseline ``b``. A faithful
  map destroys the class quickly: **low** area under the curve.
* insertion: ``x_i`` = ``b`` with the top-``k_i`` pixels of ``x`` put back. A faithful map recovers
  the class quickly: **high** area under the curve.

The curve is ``p_i = softmax(model(x_i))[c]`` over the fractions ``f_i = k_i / (H * W)`` and the area
is the trapezoid rule over ``f`` in [0, 1] (Petsiuk et al., RISE, BMVC 2018). A pixel means all of
its channels. The default fill is the photo's mean colour. The blurred fill (``baseline="blurred"``)
is the reference the SepViT relevance's step 7 reads along its removal path, so curves with that fill
favour it by construction: it is the relevance's *tuning* measure (``docs/attribution.md``), and
:mod:`sepvit_viz.explain.scorecard` never counts it in a verdict.

:func:`road` removes pixels by noisy linear imputation instead (ROAD, Rong et al., ICML 2022), which
leaves no sharp mask edge whose shape could carry the class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sepvit_viz.explain.baselines import DEFAULT_BLUR_SIGMA, make_baseline

__all__ = [
    "ROAD_FRACTIONS",
    "Curves",
    "RoadScores",
    "auc",
    "check_target",
    "curves_for",
    "deletion_insertion",
    "deletion_insertion_fills",
    "noisy_linear_imputation",
    "pixel_order",
    "random_map",
    "road",
    "step_counts",
]

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


def check_target(model: nn.Module, target: Any) -> int:
    """``target`` as a class index of ``model``, or a ``ValueError`` that says what is wrong.

    A class index is a whole number (Python or NumPy int, or a one-element integer tensor such as
    ``logits.argmax()``; not a bool or a float) in
    ``0..num_classes - 1``, ``num_classes`` being the model's attribute of that name (SepViT has one).
    Negative indices are refused (``logits[:, -1]`` would silently be the last class); for a model
    without ``num_classes`` the upper bound is checked against its logits when they are scored.
    """
    if isinstance(target, torch.Tensor) and target.numel() == 1 and not target.dtype.is_floating_point:
        target = target.item()
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
        raise ValueError(f"the class index must be a whole number, got {target!r}")
    target = int(target)
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0 and not 0 <= target < n:
        raise ValueError(f"class index {target} is out of range: this model has classes 0 to {n - 1}")
    if target < 0:
        raise ValueError(f"class index {target} is out of range: class indices start at 0")
    return target


def _scores(model: nn.Module, batch: torch.Tensor, target: int, score: str) -> torch.Tensor:
    logits = model(batch)
    if not 0 <= target < logits.shape[-1]:
        raise ValueError(f"class index {target} is out of range: this model has classes 0 to {logits.shape[-1] - 1}")
    if score == "prob":
        return logits.float().softmax(dim=-1)[:, target]
    return logits.float()[:, target]


def _checked_map(model: nn.Module, x: torch.Tensor, saliency_hw: Any, target: Any, score: str) -> np.ndarray:
    """The input checks shared by :func:`deletion_insertion`, :func:`deletion_insertion_fills` and
    :func:`road`; returns the map as a detached float64 (H, W) array.

    x must be one image (1, C, H, W); ``saliency_hw`` an (H, W) array or tensor (a tensor that
    requires grad is detached: the measures only read its order); ``target`` a class index of
    ``model`` (:func:`check_target`); ``score`` ``"prob"`` or ``"logit"``.
    """
    check_target(model, target)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got shape {tuple(x.shape)}")
    if isinstance(saliency_hw, torch.Tensor):
        saliency_hw = saliency_hw.detach().cpu().numpy()
    s = np.asarray(saliency_hw, dtype=np.float64)
    H, W = x.shape[-2:]
    if s.shape != (H, W):
        raise ValueError(f"attribution map {s.shape} does not match the image {(H, W)}")
    if score not in ("prob", "logit"):
        raise ValueError(f"score must be 'prob' or 'logit', got {score!r}")
    return s


def _rank_image(saliency_hw: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) position of every pixel in :func:`pixel_order` (0 = most attributed)."""
    order = pixel_order(saliency_hw)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return torch.from_numpy(rank).view(1, 1, *x.shape[-2:]).to(x.device)


@torch.inference_mode()
def deletion_insertion_fills(
    model: nn.Module,
    x: torch.Tensor,
    saliency_hw: np.ndarray,
    target: int,
    *,
    fills: Sequence[str | torch.Tensor] = ("mean", "noise"),
    steps: int = 32,
    sigma: float = DEFAULT_BLUR_SIGMA,
    score: str = "prob",
    batch_size: int = 16,
    shared: dict[Any, float] | None = None,
    progress: Progress | None = None,
) -> list[Curves]:
    """Deletion and insertion curves of one map for several fills, in shared batched forwards.

    Same curves as :func:`deletion_insertion` once per fill (``fills``: names or tensors shaped like
    ``x``; one :class:`Curves` per fill, same order), to float tolerance (tested against a
    one-image-at-a-time reference), at less cost: every image of every curve goes into one list,
    evaluated ``batch_size`` at a time under ``torch.inference_mode``, and the end points, which do
    not depend on the map (deletion at 0 and insertion at 100% are ``x`` itself; deletion at 100% and
    insertion at 0 are the fill), are evaluated once: ``2 + F`` images for ``F`` fills instead of
    ``4 F``, so ``F (2 S - 2) + F + 1`` forwards for ``S`` steps instead of ``2 F (S + 1)``.

    ``shared``: a dict the caller keeps across calls **for one (model, x, target, score, sigma)**
    (e.g. every method of one photo in a scorecard): the end points' scores are stored in it under
    ``"x"`` and ``("fill", name)`` and not evaluated again (tensor fills are never shared). None:
    nothing is shared between calls.
    """
    smap = _checked_map(model, x, saliency_hw, target, score)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not fills:
        raise ValueError("need at least one fill")
    H, W = x.shape[-2:]
    bases = []
    for fill in fills:
        base = make_baseline(x, fill, sigma=sigma) if isinstance(fill, str) else fill.to(x)
        if base.shape != x.shape:
            raise ValueError(f"baseline shape {tuple(base.shape)} does not match the image {tuple(x.shape)}")
        bases.append(base)
    rank_t = _rank_image(smap, x)
    counts = step_counts(H * W, steps)
    fractions = counts / float(H * W)
    last = len(counts) - 1
    memo = shared if shared is not None else {}

    # every curve point names the image it needs: "x", ("fill", name) or a (fill index, kind, k) job
    def point_key(j: int, deletion: bool, i: int) -> Any:
        named = isinstance(fills[j], str)
        if (deletion and i == 0) or (not deletion and i == last):
            return "x"
        if (deletion and i == last) or (not deletion and i == 0):
            return ("fill", fills[j]) if named else ("fill", j, id(bases[j]))
        return (j, deletion, int(counts[i]))

    keys = [[[point_key(j, d, i) for i in range(len(counts))] for d in (True, False)] for j in range(len(fills))]
    # each image once, in curve order, unless a caller's earlier call already scored it
    jobs = [
        k for k in dict.fromkeys(k for per_fill in keys for per_kind in per_fill for k in per_kind) if k not in memo
    ]
    named_index = {f: j for j, f in reversed(list(enumerate(fills))) if isinstance(f, str)}

    def job_image(key: Any) -> tuple[int, bool, int]:
        """(fill index, deletion?, pixels taken) producing the image of ``key``."""
        if key == "x":
            return 0, True, 0  # deletion of no pixel: x itself
        if key[0] == "fill":
            j = named_index[key[1]] if len(key) == 2 else key[1]
            return j, True, H * W  # deletion of every pixel: the fill itself
        return key

    local: dict[Any, float] = {}
    for start in range(0, len(jobs), batch_size):
        chunk = [job_image(k) for k in jobs[start : start + batch_size]]
        ks = torch.tensor([k for _, _, k in chunk], device=x.device).view(-1, 1, 1, 1)
        top = (rank_t < ks).to(x.dtype)  # (b, 1, H, W): 1 on the top-k pixels
        is_del = torch.tensor([d for _, d, _ in chunk], device=x.device).view(-1, 1, 1, 1)
        # deletion keeps x outside the top-k; insertion keeps x inside it
        keep_x = torch.where(is_del, 1.0 - top, top)
        base = torch.cat([bases[j] for j, _, _ in chunk])
        batch = keep_x * x + (1.0 - keep_x) * base
        for key, v in zip(jobs[start : start + batch_size], _scores(model, batch, target, score).cpu().numpy()):
            local[key] = float(v)
        if progress is not None:
            progress(min(1.0, (start + len(chunk)) / len(jobs)), "deletion / insertion")
    for key, v in local.items():
        if key == "x" or (key[0] == "fill" and len(key) == 2):
            memo[key] = v
    out = []
    for j, fill in enumerate(fills):
        dk, ik = keys[j]
        deletion = np.array([local[k] if k in local else memo[k] for k in dk], dtype=np.float64)
        insertion = np.array([local[k] if k in local else memo[k] for k in ik], dtype=np.float64)
        out.append(
            Curves(
                fractions=fractions,
                deletion=deletion,
                insertion=insertion,
                deletion_auc=auc(fractions, deletion),
                insertion_auc=auc(fractions, insertion),
                target=int(target),
                extras={"steps": steps, "score": score, "baseline": fill if isinstance(fill, str) else "tensor"},
            )
        )
    return out


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    saliency_hw: np.ndarray,
    target: int,
    *,
    steps: int = 32,
    baseline: str | torch.Tensor = "mean",
    sigma: float = DEFAULT_BLUR_SIGMA,
    score: str = "prob",
    batch_size: int = 16,
    progress: Progress | None = None,
) -> Curves:
    """Deletion and insertion curves of ``saliency_hw`` for class ``target``.

    Args:
        model: maps (B, C, H, W) to (B, num_classes) logits; put it in eval mode first.
        x: (1, C, H, W) preprocessed image.
        saliency_hw: (H, W) attribution at image resolution (higher = more important); an array or
            a tensor (detached: only its order is read).
        target: class index.
        steps: number of equal steps from 0 to all pixels (S; the curves have S + 1 points).
        baseline: ``"mean"`` (the photo's mean colour, default), ``"noise"``, ``"black"``, ``"gray"``,
            ``"blurred"`` (the SepViT relevance's tuning reference) or a tensor shaped like ``x``
            (what deleted pixels become and what insertion starts from).
        sigma: blur strength in pixels for the blurred baseline.
        score: ``"prob"`` (softmax probability, default) or ``"logit"``.
        batch_size: images per forward pass (memory stays flat in ``steps``).
        progress: optional ``progress(fraction, desc)`` callback.

    Returns:
        :class:`Curves` with both curves and their areas. The curves' shared end points (``x`` and
        the fill) are evaluated once each: ``2 S`` forwards (:func:`deletion_insertion_fills`).
    """
    (curves,) = deletion_insertion_fills(
        model,
        x,
        saliency_hw,
        target,
        fills=(baseline,),
        steps=steps,
        sigma=sigma,
        score=score,
        batch_size=batch_size,
        progress=progress,
    )
    return curves


def curves_for(model: nn.Module, x: torch.Tensor, attribution: Any, **kwargs: Any) -> Curves:
    """Curves of an :class:`sepvit_viz.explain.attribution.Attribution` (its ``map_hw`` and ``target``) on ``x``.

    ``kwargs`` go to :func:`deletion_insertion` (``steps``, ``baseline``, ``batch_size``, ``progress``, ...).
    """
    return deletion_insertion(model, x, attribution.map_hw, attribution.target, **kwargs)


# ------------------------------------------------------------------------------ ROAD
#: Neighbour weights of ROAD's noisy linear imputation (Rong et al., ICML 2022): 1/6 for the four
#: direct neighbours, 1/12 for the four diagonal ones (they sum to 1 inside the image).
_ROAD_KERNEL = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])

#: Removal fractions of :func:`road` (ROAD's paper uses 10% to 90%).
ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


def _neighbour_sum(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> weighted sum of each pixel's in-image neighbours (zero outside the image)."""
    C = t.shape[1]
    k = _ROAD_KERNEL.to(t).view(1, 1, 3, 3).expand(C, 1, 3, 3)
    return torch.nn.functional.conv2d(t, k, padding=1, groups=C)


def _pyramid_fill(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A smooth first guess for the removed pixels: push-pull over a 2x pyramid of known-pixel means.

    x: (B, C, H, W); known: (B, 1, H, W) in {0, 1}. Returns (B, C, H, W) equal to ``x`` where known.
    """
    import torch.nn.functional as F

    if known.all() or min(x.shape[-2:]) < 2:
        fill = (x * known).sum((-2, -1), keepdim=True) / known.sum((-2, -1), keepdim=True).clamp_min(1)
        return torch.where(known.bool(), x, fill.expand_as(x))
    s = F.avg_pool2d(x * known, 2, ceil_mode=True)
    w = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse = _pyramid_fill(s / w.clamp_min(1e-12), (w > 0).to(x.dtype))
    up = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(known.bool(), x, up)


def _cg_harmonic(x: torch.Tensor, mf: torch.Tensor, v: torch.Tensor, iters: int, tol: float) -> torch.Tensor:
    """Jacobi-preconditioned conjugate gradients for ROAD's system on the removed pixels ``mf`` = 1.

    ``A v = d v - N(v mf)`` on removed pixels (N: :func:`_neighbour_sum`, d: the in-image weight sum),
    ``b = N(x (1 - mf))``; A is symmetric positive definite when every hole touches a known pixel.
    x, v (first guess): (B, C, H, W); mf: (B, 1, H, W) float. Returns the removed pixels' values
    (zero elsewhere) after at most ``iters`` iterations or a relative residual ``tol``.
    """
    d = _neighbour_sum(torch.ones_like(mf))

    def apply(t: torch.Tensor) -> torch.Tensor:
        return (d * t - _neighbour_sum(t * mf)) * mf

    b = _neighbour_sum(x * (1.0 - mf)) * mf
    v = v * mf
    r = b - apply(v)
    z = r / d
    p = z.clone()
    rz = (r * z).sum((-2, -1), keepdim=True)
    b_norm = b.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    for _ in range(iters):
        # an image stops once all its channels are within tol; the others go on. Images of a
        # batch are independent systems, so a batch of masks gives each image exactly the
        # iterations it would get alone (ROAD batches its masks: tested against one at a time)
        active = (r.norm(dim=(-2, -1), keepdim=True) > tol * b_norm).flatten(1).any(1).view(-1, 1, 1, 1)
        if not bool(active.any()):
            break
        ap = apply(p)
        alpha = rz / (p * ap).sum((-2, -1), keepdim=True).clamp_min(1e-30)
        alpha = torch.where(active, alpha, torch.zeros_like(alpha))
        v = v + alpha * p
        r = r - alpha * ap
        z = r / d
        rz_new = (r * z).sum((-2, -1), keepdim=True)
        p = torch.where(active, z + (rz_new / rz.clamp_min(1e-30)) * p, p)
        rz = torch.where(active, rz_new, rz)
    return v


def _impute(x: torch.Tensor, known: torch.Tensor, iters: int, tol: float) -> torch.Tensor:
    """Coarse-to-fine solve: the half-size problem's solution, upsampled, starts this level's CG."""
    import torch.nn.functional as F

    if known.all():
        return x
    # per image (a batch holds several masks): an image with no known pixel at this level starts
    # from the pyramid fill, as it would alone; an image with every pixel known is left as it is by
    # the CG (its mask is empty)
    none_known = ~known.flatten(1).bool().any(1)
    if min(x.shape[-2:]) <= 16 or bool(none_known.all()):
        guess = _pyramid_fill(x, known)
    else:
        w = F.avg_pool2d(known, 2, ceil_mode=True)
        xs = F.avg_pool2d(x * known, 2, ceil_mode=True) / w.clamp_min(1e-12)
        coarse = _impute(xs, (w > 0.5).to(x.dtype), iters, tol)  # a coarse cell is known when mostly known
        guess = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if bool(none_known.any()):
            guess[none_known] = _pyramid_fill(x[none_known], known[none_known])
    mf = 1.0 - known
    return x * known + _cg_harmonic(x, mf, guess, iters, tol) * mf


def noisy_linear_imputation(
    x: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.02,
    seed: int | Sequence[int] = 0,
    max_iter: int = 20,
    tol: float = 1e-4,
) -> torch.Tensor:
    """ROAD's imputation: every removed pixel becomes the weighted mean of its 8 neighbours, plus noise.

    Solves, per image and channel, the sparse linear system ``sum_n w_n (v_p - v_n) = 0`` for every
    removed pixel p over its in-image neighbours n (weights 1/6 direct, 1/12 diagonal; known
    neighbours are fixed at the photo's values) by Jacobi-preconditioned conjugate gradients,
    coarse to fine (each level starts from the upsampled half-size solution; at most ``max_iter``
    iterations per level, or a relative residual ``tol``), then adds Gaussian noise of std ``noise``
    (normalised units: 0.02 is 1% of the pixel range) to the removed pixels only. Removing pixels
    this way leaves no sharp mask edge whose shape could carry the class (the "class leak" of plain
    fills that ROAD removes). The solve is approximate: see ``tests/test_faithfulness.py`` for the
    measured gap to the converged solution.

    x: (B, C, H, W) images; removed: (B, 1, H, W) or (H, W) bool mask (True = remove).
    seed: one seed for the whole batch's noise, or one per image (then image b gets the noise it
    would get alone with ``seed[b]``: how :func:`road` batches its masks).
    Returns (B, C, H, W), equal to ``x`` outside ``removed``.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x.shape)}")
    m = removed.to(x.device).bool()
    m = m.view(1, 1, *m.shape) if m.dim() == 2 else m
    if m.dim() != 4 or m.shape[-2:] != x.shape[-2:] or m.shape[1] != 1:
        raise ValueError(f"mask {tuple(removed.shape)} does not fit the images {tuple(x.shape)}")
    mf = m.expand(x.shape[0], 1, *x.shape[-2:]).to(x.dtype)
    v = _impute(x, 1.0 - mf, max_iter, tol)
    if isinstance(seed, int):
        gen = torch.Generator(device="cpu").manual_seed(seed)
        eps = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    else:
        if len(seed) != x.shape[0]:
            raise ValueError(f"{len(seed)} seeds for {x.shape[0]} images")
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seed]
        eps = torch.cat([torch.randn((1, *x.shape[1:]), generator=g, dtype=x.dtype) for g in gens])
    return v + eps.to(x.device) * noise * mf


@dataclass(frozen=True)
class RoadScores:
    """ROAD (Remove And Debias) scores of one attribution map on one image.

    Attributes:
        fractions: (K,) shares of pixels removed.
        morf: (K,) class score with the *most* relevant share removed (imputed): lower is better.
        lerf: (K,) class score with the *least* relevant share removed: higher is better.
        morf_mean, lerf_mean: means over the fractions (the summary scores).
        target: the class index scored.
    """

    fractions: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray
    morf_mean: float
    lerf_mean: float
    target: int


@torch.inference_mode()
def road(
    model: nn.Module,
    x: torch.Tensor,
    saliency_hw: np.ndarray,
    target: int,
    *,
    fractions: tuple[float, ...] = ROAD_FRACTIONS,
    noise: float = 0.02,
    seed: int = 0,
    score: str = "prob",
    max_iter: int = 20,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> RoadScores:
    """ROAD (Rong et al., ICML 2022): remove a share of pixels by noisy linear imputation, re-score.

    Most-relevant-first (MoRF, lower is better) and least-relevant-first (LeRF, higher is better)
    for every share in ``fractions``; the pixel order is :func:`pixel_order` (LeRF: reversed).
    No retraining (ROAD's point: the imputation does not leak the mask's shape, so the model can be
    scored as it is). x: (1, C, H, W); saliency_hw: (H, W) array or tensor. Other arguments as
    :func:`noisy_linear_imputation` and :func:`deletion_insertion`.

    The ``2 K`` masks (K shares) are imputed and scored ``batch_size`` at a time; mask ``i`` (MoRF
    shares first, then LeRF) gets noise seed ``seed + i`` and its own CG stopping, so the scores
    equal one-mask-at-a-time imputation to float tolerance (tested).
    """
    smap = _checked_map(model, x, saliency_hw, target, score)
    if not fractions or not all(0.0 < f < 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1), got {fractions}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    H, W = x.shape[-2:]
    rank_t = _rank_image(smap, x)
    ks = [round(f * H * W) for f in fractions]
    masks = [rank_t < k for k in ks] + [rank_t >= H * W - k for k in ks]  # MoRF then LeRF
    out = np.empty(len(masks))
    for start in range(0, len(masks), batch_size):
        chunk = torch.cat(masks[start : start + batch_size])  # (b, 1, H, W)
        b = chunk.shape[0]
        xi = noisy_linear_imputation(
            x.expand(b, -1, -1, -1),
            chunk,
            noise=noise,
            seed=[seed + i for i in range(start, start + b)],
            max_iter=max_iter,
        )
        out[start : start + b] = _scores(model, xi, target, score).cpu().numpy()
        if progress is not None:
            progress((start + b) / len(masks), "ROAD")
    n = len(ks)
    return RoadScores(
        fractions=np.asarray(fractions, dtype=np.float64),
        morf=out[:n],
        lerf=out[n:],
        morf_mean=float(out[:n].mean()),
        lerf_mean=float(out[n:].mean()),
        target=int(target),
    )
