r"""SepViT-aware relevance: class-specific, gradient-weighted relevance through DWA and PWA.

Generic attribution methods see SepViT as a black box; attention rollout (:func:`sepvit_viz.viz.maps.rollout`)
sees its attention but not the class. This relevance follows the class evidence *through the
network's own token mixing*: Chefer et al.'s gradient-weighted attention ("Generic Attention-model
Explainability", ICCV 2021) carried through the project's SepViT rollout, with a class seed from
the pooling head instead of a CLS row.

Definition (one image x, class c, logit y_c; every convention not named here is the rollout's):

1. **Seed at stage 4.** The head is ``y_c = w_c . mean_t z_t + b_c`` over the N4 final tokens z_t
   (after the final norm), so token t contributes exactly ``grad_{z_t} y_c . z_t = (w_c . z_t) / N4``.
   The seed is its positive part: ``r[t] = max(0, grad_{z_t} y_c . z_t)``.
2. **Gradient-weighted attention.** Every attention map A (DWA: (L, L) per window and head; PWA:
   (n, n) per head) with gradient G = dy_c / dA becomes ``Abar = mean_heads (G * A)^+`` (only where
   attention raised the class score), normalised per query row: ``Ahat = Abar / (Abar 1)``. A row
   with no positive entry keeps its relevance (identity row).
3. **Per block**, exactly :func:`sepvit_viz.viz.maps.block_operator` on these maps: each inner shortcut
   counts as attention to itself, ``Ahat' = (1 - s) Ahat + s I`` (``self_weight`` s = 0.5) for DWA and
   for PWA, and query (a, p) -> key (b, q) weighs ``C = Ahat'_pw[a, b] m_b[p] Ahat'_dw[b][p, q] m_b[q]``
   (m = real-pixel mask; the window-token column is dropped: its input is a learned parameter, not
   the photo). With the outer residual, ``R = rho I + (1 - rho) diag(C 1)^-1 C`` (``residual`` rho =
   0.5). A global block has its one DWA map. MLPs mix no tokens; the positional conv is identity.
4. **Between stages** the patch embedding is the rollout's pooling matrix
   (:func:`sepvit_viz.viz.maps.pooling_matrix`: a stage-(s+1) cell draws from its 3 x 3 footprint on
   stage s with tent weights (1/2, 1, 1/2) per axis, clipped and renormalised), applied separably.
5. Relevance flows from outputs (queries) to inputs (keys): ``u <- u R`` block by block, from the
   seed at the last block back to the first block's input (H_1, W_1), then to pixels, cell (i, j)
   centred on pixel (4 i, 4 j) like every other map (:func:`cells_to_pixels`): bilinear between cell
   centres (``upsample="bilinear"``, default), each pixel its nearest cell's value (``"nearest"``), or
   an input-layer rule (``"gradient"``, :func:`to_pixels_by_gradient`: each stage-1 cell hands its
   relevance to the pixels under its 7 x 7 kernel in proportion to their positive contribution
   ``e`` of step 6).
6. **Pixel-level modulation** (the stage-1 grid is 4 px coarse; the class evidence inside a cell is
   not uniform). Each pixel's contribution is the first-order change of the class logit when its
   detail is removed, ``e = sum_channels dy_c/dx * (x - x_ref)``, with ``x_ref`` the photo blurred
   with sigma 10 px (``reference="blurred"``, default; ``"zero"`` gives input x gradient); the same
   backward pass gives it. The pixel map is multiplied by ``w^gamma`` with
   ``w = 1 + g / mean(g)``, ``g = blur_sigma(max(0, e))`` (:func:`modulation_weights`; ``modulation``
   gamma = 2, ``sigma`` = 1 px): where the attention relevance is equal, pixels that carry more
   positive evidence come first. ``modulation = 0`` leaves step 5's map unchanged. The blurred
   reference is also the deletion/insertion baseline (:mod:`sepvit_viz.explain.faithfulness`): a pixel's
   ``e`` is what blurring it away removes to first order.

   ``e`` carries the stride-4 gradient comb of the patch embedding, which is where this map's stripes
   come from; ``attribute(..., "sepvit_relevance", smooth=True)`` filters them
   (:func:`sepvit_viz.explain.attribution.destripe`), which changes the faithfulness scores
   (``docs/attribution.md``).

7. **Two-scale pixel order, read along the removal path** (``sharp`` = delta, default 0.03;
   ``rounds`` = R, default 2; ``sharp=None`` skips the step). Step 6's map M is smooth at the scale
   of its attention cells, and a smooth map orders whole regions: revealing them on the blurred photo
   restores the class fast (insertion), but when the evidence is spread over several places,
   blurring one region away leaves the class standing (deletion). The sharp map ``S = U * e``
   (U: step 5's upsampled attention relevance, e: step 6's signed pixel contributions, no
   smoothing) orders single pixels by their own evidence inside the relevant regions. First-order
   evidence is read on the whole photo, though: once its strongest pixels are gone, the class rests
   on the redundant places whose evidence looked small while the strongest were there. So the first
   delta share of the pixels is taken in R equal chunks (:func:`evidence_along_path`): chunk r is the
   top of ``S_r = U * e_r`` among the pixels not yet taken, where ``e_r`` is e read on the photo with
   every pixel taken so far replaced by step 6's reference, the blurred photo by default (``e_1 = e``;
   each further round is one more forward and backward pass). The other pixels follow in the order of
   ``max(q(M) - delta, q(S_R))``, with percentile ranks ``q`` (1 for a map's top pixel, 1/N for its
   last) and the taken pixels ranked last in ``S_R``: the two orders interleave. The map keeps M's
   values, reassigned in this order (the k-th pixel of the fused order gets M's k-th largest
   value), so its histogram and total are M's.

   **Tuned, not scored, on this measure.** The defaults of steps 6 and 7 (modulation, ``sigma``,
   ``sharp``, ``rounds``) were tuned on deletion / insertion curves whose fill is the blurred
   reference that step 7 reads along its path, so those curves favour this method and are not
   evidence for it. The untuned measures (mean and noise fills, ROAD) and the model-randomisation
   sanity check are in ``docs/attribution.md`` and ``benchmarks/bench_attribution.py``.

So the stage maps are ``seed @ R_rollout`` where ``R_rollout`` is :func:`sepvit_viz.viz.maps.rollout_matrix`
built from the gradient-weighted maps (a test checks exactly this). Properties (tested): class
specific; non-negative; every factor is row-stochastic, so the stage maps conserve the seed's total
(``stage_maps[s].sum() == seed.sum()``); with ``residual = 1`` it is the seed pooled down to stage 1
(a class activation map of the last stage); without step 7 the pixel map is the upsampled stage-1
map times ``w^gamma`` (tested against an independent autograd computation of ``e``), with ``w >= 1``:
the modulation never lowers the relevance the attention assigned, and where that is zero it stays
zero. Step 7 only permutes that map's values (same sorted values, tested), and its chunks are the
tops of ``U * e_r`` recomputed by independent autograd on the partly blurred photo (tested).

Attention with gradients needs the explicit attention path: the forward runs under
:class:`sepvit_viz.viz.capture.AttentionCapture` with ``keep_graph=True``, the project's one hook manager,
created per call: it hooks every ``attn.dwa_tap`` / ``attn.pwa_tap`` for that forward only, keeps only
the calling thread's tensors (hooks also fire for other threads' forwards on a shared model) and
removes the hooks afterwards, also when the forward raises. Nothing is stored on the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sepvit_viz.explain.faithfulness import check_target, pixel_order
from sepvit_viz.model.windows import WindowGeometry, pad_mask, window_partition, window_reverse
from sepvit_viz.viz.capture import AttentionCapture, TapTensor
from sepvit_viz.viz.maps import pixel_cells

__all__ = [
    "DEFAULT_OPTIONS",
    "Relevance",
    "Weighted",
    "WeightedBlock",
    "evidence_along_path",
    "modulation_weights",
    "percentile_rank",
    "sepvit_relevance",
    "to_pixels_by_gradient",
    "two_scale_order",
    "unpool",
    "weighted_attention",
]

Progress = Callable[[float, str], None]

#: Default options of :func:`sepvit_relevance` (and of ``attribute(..., "sepvit_relevance")``).
DEFAULT_OPTIONS: dict[str, Any] = {
    "self_weight": 0.5,
    "residual": 0.5,
    "upsample": "bilinear",
    "modulation": 2.0,
    "sigma": 1.0,
    "reference": "blurred",
    "sharp": 0.03,
    "rounds": 2,
}


@dataclass
class Relevance:
    """Result of :func:`sepvit_relevance`.

    Attributes:
        map_hw: (H, W) float32 relevance at input resolution (non-negative).
        stage_maps: per stage s, the (H_s, W_s) relevance at the input of the stage's first block
            (after undoing all of the stage's blocks); ``stage_maps[0]`` is the finest.
        seed: (H_4, W_4) stage-4 token relevance from the head (step 1).
        target: the class explained.
        logit: the class logit y_c.
    """

    map_hw: np.ndarray
    stage_maps: list[np.ndarray]
    seed: np.ndarray
    target: int
    logit: float
    extras: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ operators
def _pool_axis(n_dst: int, n_src: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """(n_dst, n_src) row-stochastic footprints of a kernel-3, stride-2, padding-1 conv along one axis.

    Tent taps (1/2, 1, 1/2), clipped at the borders and renormalised: with stride 2 every source
    cell is then covered equally (the rollout's convention, :func:`sepvit_viz.viz.maps.pooling_matrix`).
    """
    m = torch.zeros(n_dst, n_src, dtype=dtype, device=device)
    for i in range(n_dst):
        for k, tap in enumerate((0.5, 1.0, 0.5)):
            j = 2 * i - 1 + k
            if 0 <= j < n_src:
                m[i, j] = tap
    return m / m.sum(1, keepdim=True)


def unpool(u: torch.Tensor, src: tuple[int, int]) -> torch.Tensor:
    """Relevance on a coarse (hd, wd) stage map -> the finer (hs, ws) map it was embedded from.

    Equals ``u.ravel() @ maps.pooling_matrix(src, (hd, wd))`` (each coarse cell hands its relevance
    to its clipped 3 x 3 footprint with tent weights), computed separably: ``Ry^T u Rx``.
    """
    hd, wd = u.shape
    ry, rx = _pool_axis(hd, src[0], u.dtype, u.device), _pool_axis(wd, src[1], u.dtype, u.device)
    return ry.t() @ u @ rx


def _weighted(probs: torch.Tensor, grad: torch.Tensor | None, head_dim: int) -> torch.Tensor:
    """Abar = mean over heads of (grad * A)^+ ; zero when the map got no gradient."""
    if grad is None:
        return torch.zeros_like(probs).mean(head_dim)
    return (grad * probs).clamp_min(0).mean(head_dim)


def _row_normalised(abar: torch.Tensor) -> torch.Tensor:
    """(..., Q, Q) Abar -> Ahat = Abar / (Abar 1), with identity rows where a row of Abar is all zero."""
    eye = torch.eye(abar.shape[-1], dtype=abar.dtype, device=abar.device)
    rows = abar.sum(-1, keepdim=True)
    return torch.where(rows > 0, abar / rows.clamp_min(1e-30), eye.expand_as(abar))


def _with_self(a: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) A + weight I over the last two axes (a shortcut counted as attention to itself)."""
    return (1.0 - weight) * a + weight * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)


@dataclass
class WeightedBlock:
    """One block's gradient-weighted, row-normalised attention for one image (step 2).

    dwa: (n, L, L) Ahat of DWA (window token at index 0 when ``geometry.has_token``);
    pwa: (n, n) Ahat of PWA, or None for a global block.
    """

    name: str
    stage: int
    geometry: WindowGeometry
    dwa: torch.Tensor
    pwa: torch.Tensor | None


def _undo_block(u_hw: torch.Tensor, wb: WeightedBlock, self_weight: float, residual: float) -> torch.Tensor:
    """Relevance on a block's (H, W) output cells -> on its (H, W) input cells: ``u R`` (step 3)."""
    g = wb.geometry
    H, W = u_hw.shape
    t = int(g.has_token)
    dw = _with_self(wb.dwa, self_weight)[:, t:, t:]  # (n, P, P): pixel queries -> pixel keys
    n = dw.shape[0]
    real_mask = pad_mask(g, u_hw.device)
    real = (
        torch.ones(dw.shape[:2], dtype=dw.dtype, device=dw.device) if real_mask is None else real_mask.to(dw.dtype)
    )  # (n, P)
    dw = dw * real[:, None, :]  # padded keys carry nothing
    pw = torch.eye(n, dtype=dw.dtype, device=dw.device) if wb.pwa is None else _with_self(wb.pwa, self_weight)  # (n, n)
    rowsum = pw @ (dw.sum(2) * real)  # (n, P): C 1 for every query (a, p)
    u = window_partition(u_hw.to(dw.dtype)[None, :, :, None], g)[0, :, :, 0]  # (n, P), padding = 0
    v = u / rowsum.clamp_min(1e-12)
    w = (pw.t() @ v) * real  # PWA: position p of query window a draws from window b (real pixels only)
    out = torch.einsum("bp,bpq->bq", w, dw)  # DWA inside window b
    mixed = residual * u + (1.0 - residual) * out
    return window_reverse(mixed[None, :, :, None], g)[0, :, :, 0].reshape(H, W)


class Weighted(NamedTuple):
    """What one forward and one backward pass give (steps 1 and 2), float64 tensors.

    target, logit: the class and its logit; seed: (H4, W4) stage-4 relevance; blocks: every block's
    gradient-weighted maps in forward order; input_grad_x: (H, W) pixel contributions
    ``sum_channels(dy_c/dx * (x - x_ref))`` with :func:`weighted_attention`'s reference: zeros (its
    default, input x gradient) or the blurred photo (step 6, :data:`DEFAULT_OPTIONS`).
    """

    target: int
    logit: float
    seed: torch.Tensor
    blocks: list[WeightedBlock]
    input_grad_x: torch.Tensor


def weighted_attention(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    reference: str = "zero",
    x_ref: torch.Tensor | None = None,
) -> Weighted:
    """Steps 1 and 2: one forward and one backward pass under this call's own capture (``keep_graph``).

    ``x``: the model input (1, 3, H, W); ``target``: class index, None = the top class. ``reference``:
    step 6's reference for :attr:`Weighted.input_grad_x`, ``"zero"`` (the default here: input x
    gradient) or ``"blurred"`` (the photo blurred with sigma 10 px, what :func:`sepvit_relevance` and
    :data:`DEFAULT_OPTIONS` use). ``x_ref``: the reference image (1, 3, H, W) when the caller already
    has it; else made from ``reference``. Returns a :class:`Weighted`; raises ``ValueError`` for a
    ``target`` that is not a class index of ``model``.
    """
    if target is not None:  # a negative index would silently explain the last class
        target = check_target(model, target)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_()
        with AttentionCapture(model, keep_graph=True) as cap:
            z = model.forward_features(x)  # (1, N4, C4) after the final norm
            logits = model.forward_head(z)
        taps = cap.tensors  # every DWA and PWA firing, in forward order, still in the graph
        target = int(logits[0].argmax()) if target is None else int(target)
        probs = [t.probs for t in taps]
        grads = torch.autograd.grad(logits[0, target], [x, z, *probs], allow_unused=True)
    with torch.no_grad():
        gx = _contribution(grads[0], x.detach(), _reference_image(x, reference) if x_ref is None else x_ref)
        grads = grads[1:]
        sizes = _stage_sizes(model, taps)
        seed = (grads[0][0] * z[0]).sum(-1).clamp_min(0).reshape(sizes[-1]).double()
        by_block: dict[int, dict[str, WindowGeometry | torch.Tensor]] = {}
        order: list[nn.Module] = []
        for r, g in zip(taps, grads[1:]):
            if id(r.block) not in by_block:
                by_block[id(r.block)] = {}
                order.append(r.block)
            head_dim = 1 if r.kind == "dwa" else 0
            a = r.probs[0].double()
            abar = _weighted(a, None if g is None else g[0].double(), head_dim)
            by_block[id(r.block)][r.kind] = _row_normalised(abar)
            if r.kind == "dwa":  # every block has DWA; its geometry is the block's
                by_block[id(r.block)]["geometry"] = r.geometry
        blocks = [
            WeightedBlock(
                b.name, b.stage, by_block[id(b)]["geometry"], by_block[id(b)]["dwa"], by_block[id(b)].get("pwa")
            )
            for b in order
        ]
    return Weighted(target, float(logits.detach()[0, target]), seed, blocks, gx)


def _reference_image(x: torch.Tensor, reference: str) -> torch.Tensor:
    """Step 6's reference for ``x`` (1, 3, H, W): zeros, or the photo blurred with sigma 10 px."""
    from sepvit_viz.explain.baselines import DEFAULT_BLUR_SIGMA, gaussian_blur

    x = x.detach()
    return torch.zeros_like(x) if reference == "zero" else gaussian_blur(x, DEFAULT_BLUR_SIGMA)


def _contribution(grad: torch.Tensor, x: torch.Tensor, x_ref: torch.Tensor) -> torch.Tensor:
    """(H, W) ``sum_channels grad * (x - x_ref)`` from (1, 3, H, W) tensors, float64."""
    return (grad[0] * (x[0] - x_ref[0])).sum(0).double()


def cells_to_pixels(grid: torch.Tensor, stride: int, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(h, w) values of feature cells at ``stride`` -> (H, W) pixels, cell (i, j) centred on input pixel
    (stride i, stride j) as in every attention map (:mod:`sepvit_viz.viz.maps`).

    ``"bilinear"``: linear between cell centres, the edge cells' values beyond the outer centres;
    ``"nearest"``: each pixel takes the value of the cell whose centre is nearest
    (:func:`sepvit_viz.viz.maps.to_image`).
    """
    h, w = grid.shape[-2:]
    H, W = size
    if mode == "nearest":
        rows = torch.as_tensor(pixel_cells(H, stride, h), device=grid.device)
        cols = torch.as_tensor(pixel_cells(W, stride, w), device=grid.device)
        return grid.index_select(-2, rows).index_select(-1, cols)
    if mode != "bilinear":
        raise ValueError(f"unknown upsampling {mode!r}; use 'bilinear' or 'nearest'")
    # align_corners=True on (h - 1) * stride + 1 samples puts sample stride * i exactly on cell i
    up = F.interpolate(
        grid.float()[None, None], size=((h - 1) * stride + 1, (w - 1) * stride + 1), mode="bilinear", align_corners=True
    )[0]
    up = F.pad(up, (0, max(W - up.shape[-1], 0), 0, max(H - up.shape[-2], 0)), mode="replicate")
    return up[0, :H, :W].to(grid.dtype)


def _tent_kernel(stride: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """(1, 1, K, K) separable triangle, K = 2 * stride - 1: linear interpolation between cell centres."""
    t = torch.arange(1, stride + 1, dtype=dtype, device=device)
    k1 = torch.cat([t, t[:-1].flip(0)]) / stride
    return (k1[:, None] * k1[None, :])[None, None]


def to_pixels_by_gradient(r: torch.Tensor, weight: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Input-layer rule: hand each stage-1 cell's relevance to the pixels under its kernel.

    r: (h, w) cell relevance; weight: (H, W) non-negative pixel weights (positive input x gradient).
    Cell (i, j) sits on pixel (stride i, stride j) (kernel 2 stride - 1 = 7, padding stride - 1 = 3);
    pixel p receives ``sum_cells r(c) k(c, p) w(p) / sum_p' k(c, p') w(p')`` with tent weights k, so
    every cell's relevance is conserved and spread in proportion to what each pixel contributed.
    Returns (H, W).
    """
    H, W = weight.shape
    h, w = r.shape
    k = _tent_kernel(stride, r.dtype, r.device)
    pad = stride - 1
    # a small floor keeps cells whose pixels have no positive contribution spread evenly
    wt = weight.to(r.dtype) + 1e-3 * float(weight.mean().clamp_min(1e-30)) + 1e-30
    denom = F.conv2d(wt[None, None], k, stride=stride, padding=pad)[0, 0]  # (h, w)
    op = (H - ((h - 1) * stride - 2 * pad + k.shape[-1]), W - ((w - 1) * stride - 2 * pad + k.shape[-1]))
    spread = F.conv_transpose2d((r / denom)[None, None], k, stride=stride, padding=pad, output_padding=op)[0, 0]
    return spread * wt


# ------------------------------------------------------------------------------ the relevance
def sepvit_relevance(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    *,
    self_weight: float = DEFAULT_OPTIONS["self_weight"],
    residual: float = DEFAULT_OPTIONS["residual"],
    upsample: str = DEFAULT_OPTIONS["upsample"],
    modulation: float = DEFAULT_OPTIONS["modulation"],
    sigma: float = DEFAULT_OPTIONS["sigma"],
    reference: str = DEFAULT_OPTIONS["reference"],
    sharp: float | None = DEFAULT_OPTIONS["sharp"],
    rounds: int = DEFAULT_OPTIONS["rounds"],
    progress: Progress | None = None,
) -> Relevance:
    """Class relevance of a SepViT for one image, as defined in the module docstring.

    Args:
        model: a SepViT (``iter_blocks``, ``stages``, ``forward_features``, ``forward_head``) in eval mode.
        x: (1, 3, H, W) preprocessed image, any H, W.
        target: class index; None explains the top prediction.
        self_weight: weight s of each inner shortcut against its attention, in [0, 1].
        residual: weight rho of each block's outer residual, in [0, 1].
        upsample: stage-1 cells to pixels, ``"bilinear"``, ``"nearest"`` or ``"gradient"`` (step 5).
        modulation: exponent gamma of the pixel-level modulation (step 6); 0 turns it off.
        sigma: Gaussian smoothing in pixels of the modulation's input contribution (step 6).
        reference: ``"blurred"`` (the photo blurred with sigma 10 px) or ``"zero"``: the contribution of
            a pixel is ``dy_c/dx . (x - reference)`` (step 6; also the ``"gradient"`` rule's weights).
        sharp: share delta in [0, 1] of the pixels ranked first by their own evidence (step 7); None
            keeps step 6's map as it is.
        rounds: number R of readings of the pixel evidence along the removal path in step 7 (1: read
            once, on the photo; each further round costs one forward and backward pass).
        progress: optional ``progress(fraction, desc)`` callback.

    Returns:
        :class:`Relevance`.
    """
    for name, value in (("self_weight", self_weight), ("residual", residual)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if upsample not in ("bilinear", "nearest", "gradient"):
        raise ValueError(f"upsample must be 'bilinear', 'nearest' or 'gradient', got {upsample!r}")
    if reference not in ("zero", "blurred"):
        raise ValueError(f"reference must be 'zero' or 'blurred', got {reference!r}")
    if sharp is not None and not 0.0 <= sharp <= 1.0:
        raise ValueError(f"sharp must be in [0, 1] or None, got {sharp}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    if modulation < 0 or sigma < 0:
        raise ValueError(f"modulation and sigma must be >= 0, got {modulation} and {sigma}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, 3, H, W), got shape {tuple(x.shape)}")
    if model.training:
        raise ValueError("put the model in eval mode (model.eval()) before attributing")
    H, W = x.shape[-2:]
    x_ref = _reference_image(x, reference)  # made once: steps 6 and 7 both read it
    target, logit, seed, blocks, gx = weighted_attention(model, x, target, x_ref=x_ref)
    if progress is not None:
        progress(0.7, "SepViT relevance: forward and backward")
    with torch.no_grad():
        n_stages = max(b.stage for b in blocks) + 1
        sizes = [next((b.geometry.height, b.geometry.width) for b in blocks if b.stage == s) for s in range(n_stages)]
        u = seed
        stage_maps: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * n_stages
        for s in reversed(range(n_stages)):
            for wb in reversed([b for b in blocks if b.stage == s]):
                u = _undo_block(u, wb, self_weight, residual)
            stage_maps[s] = u.float().cpu().numpy()
            if s > 0:
                u = unpool(u, sizes[s - 1])
        if upsample == "gradient":
            up = to_pixels_by_gradient(u, gx.clamp_min(0)).float()
        else:
            up = cells_to_pixels(u.float(), 4, (H, W), upsample)
        pixel_map = up * modulation_weights(gx, sigma).pow(modulation).to(up.dtype) if modulation > 0 else up
        if sharp is not None:
            if progress is not None and rounds > 1:
                progress(0.8, "SepViT relevance: re-reading the pixel evidence")
            first, sharp_map = evidence_along_path(model, x, x_ref, target, up, gx, sharp, rounds)
            pixel_map = two_scale_order(pixel_map, sharp_map.to(up.dtype), sharp, first=first)
    if progress is not None:
        progress(1.0, "SepViT relevance")
    return Relevance(
        map_hw=pixel_map.cpu().numpy().astype(np.float32),
        stage_maps=stage_maps,
        seed=seed.float().cpu().numpy(),
        target=target,
        logit=logit,
        extras={
            "self_weight": self_weight,
            "residual": residual,
            "upsample": upsample,
            "modulation": modulation,
            "sigma": sigma,
            "reference": reference,
            "sharp": sharp,
            "rounds": rounds,
            "blocks": len(blocks),
        },
    )


def percentile_rank(m: torch.Tensor) -> torch.Tensor:
    """Map -> same-shape ranks in (0, 1]: 1 for the largest value, 1/N for the smallest.

    The order is :func:`sepvit_viz.explain.faithfulness.pixel_order` (ties by raster index), the one the
    deletion and insertion curves use.
    """
    return _ranks(_order(m), m)


def _order(m: torch.Tensor) -> torch.Tensor:
    """Flat pixel indices of ``m`` from most to least attributed (:func:`pixel_order`)."""
    return torch.from_numpy(pixel_order(m.detach().cpu().numpy()))


def _ranks(order: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Percentile ranks (1 first, 1/N last) of the pixels of ``like`` visited in ``order``."""
    n = order.numel()
    rank = torch.empty(n, dtype=torch.float64)
    rank[order] = torch.arange(n, dtype=torch.float64)
    return (1.0 - rank / n).reshape(like.shape).to(like.device)


def two_scale_order(
    smooth: torch.Tensor, sharp_map: torch.Tensor, delta: float, first: torch.Tensor | None = None
) -> torch.Tensor:
    """Step 7: ``smooth``'s values reassigned to its pixels in the order of ``max(q(smooth) - delta, q(sharp))``.

    smooth, sharp_map: (H, W). first: optional flat pixel indices that lead the order as given (the
    chunks of :func:`evidence_along_path`); the other pixels follow in the fused order. Returns (H, W)
    with the same sorted values as ``smooth``; without ``first`` its pixel order puts the top ``delta``
    share of ``sharp_map`` first, then interleaves the two orders.
    """
    smooth_order = _order(smooth)  # sorted once: it gives both q(smooth) and the values to hand out
    order = _order(torch.maximum(_ranks(smooth_order, smooth) - delta, percentile_rank(sharp_map)))
    if first is not None and first.numel():
        taken = torch.zeros(order.numel(), dtype=torch.bool)
        taken[first] = True
        order = torch.cat([first, order[~taken[order]]])
    flat = smooth.reshape(-1)
    out = torch.empty_like(flat)
    out[order] = flat[smooth_order]
    return out.reshape(smooth.shape)


def evidence_along_path(
    model: nn.Module,
    x: torch.Tensor,
    x_ref: torch.Tensor,
    target: int,
    weight: torch.Tensor,
    e: torch.Tensor,
    delta: float,
    rounds: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 7's pixels read first: the top ``delta`` share of ``S = weight * e`` in ``rounds`` chunks.

    x, x_ref: (1, 3, H, W) photo and step 6's reference; weight: (H, W) step 5's attention relevance U;
    e: (H, W) step 6's pixel contributions on the photo itself (round 1 reuses them).
    Round r takes the next chunk (an equal share of the ``delta * H * W`` pixels) from the top of
    ``S_r = U * e_r`` among the pixels not yet taken, where ``e_r`` is the contribution on the photo
    with every pixel taken so far replaced by the reference: what the class still rests on once that
    evidence is gone.
    Returns (first, sharp_map): the flat indices of the taken pixels in order (delta * H * W of them)
    and the last round's S (H, W), with the taken pixels at the dtype's lowest value, for the fused
    order of the rest.
    """
    H, W = e.shape
    sizes = np.diff(np.round(np.linspace(0, delta * H * W, rounds + 1)).astype(np.int64))
    taken = torch.zeros(H * W, dtype=torch.bool, device=e.device)
    chunks: list[torch.Tensor] = []
    floor = -torch.finfo(weight.dtype).max  # below every reading: taken pixels sort last (finite for pixel_order)
    for r, size in enumerate(sizes):
        if r > 0:
            x_r = torch.where(taken.view(1, 1, H, W), x_ref, x.detach())
            e = _contribution_at(model, x_r, target, x_ref)
        s = (weight * e.to(weight.dtype)).reshape(-1).clone()
        s[taken] = floor
        chunk = _order(s.reshape(H, W))[: int(size)].to(e.device)
        taken[chunk] = True
        chunks.append(chunk)
    s[taken] = floor
    return torch.cat(chunks), s.reshape(H, W)


def _contribution_at(model: nn.Module, x: torch.Tensor, target: int, x_ref: torch.Tensor) -> torch.Tensor:
    """(H, W) ``sum_channels dy_c/dx * (x - x_ref)`` at ``x`` (1, 3, H, W): one plain forward and backward."""
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_()
        (grad,) = torch.autograd.grad(model(xg)[0, target], xg)
    return _contribution(grad, x, x_ref)


def modulation_weights(gx: torch.Tensor, sigma: float) -> torch.Tensor:
    """Step 6: (H, W) weights ``w = 1 + g / mean(g)`` from a pixel contribution map ``gx`` (H, W).

    ``g = blur_sigma(max(0, gx))`` (Gaussian, ``sigma`` pixels; 0 = no blur): a pixel that contributed
    like an average pixel doubles its relevance, one that contributed nothing keeps it. ``w >= 1`` and
    ``mean(w) = 2`` exactly; a map with no positive contribution gives ``w = 1`` everywhere.
    """
    from sepvit_viz.explain.baselines import gaussian_blur

    g = gx.clamp_min(0).float()[None, None]
    g = gaussian_blur(g, sigma)[0, 0] if sigma > 0 else g[0, 0]
    mean = float(g.mean())
    return 1.0 + g / mean if mean > 0 else torch.ones_like(g)


def _stage_sizes(model: nn.Module, records: list[TapTensor]) -> list[tuple[int, int]]:
    """Feature-map size of every stage, read from the recorded geometries (checked for gaps)."""
    sizes: dict[int, tuple[int, int]] = {}
    for r in records:
        sizes[r.block.stage] = (r.geometry.height, r.geometry.width)
    n = len(model.stages)
    if sorted(sizes) != list(range(n)):
        raise ValueError(f"attention was recorded for stages {sorted(sizes)} of {n}: is every tap reachable?")
    return [sizes[s] for s in range(n)]
