"""Class attributions with one verb: ``attribute(model, x, target, method, **options)``.

Captum is the engine for the generic methods; :mod:`sepvit_viz.explain.relevance` adds the SepViT-aware
relevance. Every method returns an :class:`Attribution` whose ``map_hw`` is an (H, W) float32 map at
the resolution of the input tensor (higher = more evidence for ``target``) and whose ``raw`` holds
the method's own values (input-shaped (3, H, W) gradients, a stage's (H_i, W_i) Grad-CAM grid, ...).

Attribution runs its own forward/backward passes on the same preprocessed tensor the maps were
computed from. The generic methods attach no capture hooks, so the model takes its fused attention
path; the SepViT relevance needs the attention probabilities' gradients, so its forward runs under a
per-call :class:`sepvit_viz.viz.capture.AttentionCapture` with ``keep_graph=True`` (explicit path). Call
``model.eval()`` first: dropout or drop-path in training mode would make every pass different.

========================  =========================================  ==============================
method                    what it is                                 map_hw from raw
========================  =========================================  ==============================
saliency                  |d logit_c / d x| (Simonyan et al. 2014)   max over channels
input_x_gradient          x * d logit_c / d x                        sum over channels
integrated_gradients      path integral from a baseline (Sundararajan sum over channels
                          et al. 2017), Gauss-Legendre steps
smoothgrad                Saliency averaged over noisy copies        max over channels
                          (NoiseTunnel, Smilkov et al. 2017)
gradient_shap             expected gradients over black / blurred /  sum over channels
                          noise baselines (Lundberg & Lee 2017)
occlusion                 logit drop when one stage-1 attention      mean over channels
                          window (28 x 28 px) is replaced
gradcam                   Grad-CAM on a stage's NCHW output          bilinear upsampling
sepvit_relevance          gradient-weighted DWA/PWA relevance        bilinear upsampling
                          (:mod:`sepvit_viz.explain.relevance`)
random                    uniform noise: the faithfulness floor      as is
========================  =========================================  ==============================

Stripes: every pixel-gradient map (Saliency, Input x Gradient, Integrated Gradients, SmoothGrad,
GradientSHAP and the SepViT relevance's pixel evidence) carries a comb at 1/4 and 1/2 cycle per
pixel from the stage-1 patch embedding (7 x 7, stride 4; see :func:`destripe`).
``attribute(..., smooth=True)`` filters ``map_hw`` with :func:`destripe` and keeps the raw map in
``extras["map_raw"]``. It is off by default: the filter changes the faithfulness scores, so it is a
display option (see ``docs/attribution.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from sepvit_viz.explain.baselines import BASELINES, DEFAULT_BLUR_SIGMA, make_baseline
from sepvit_viz.explain.faithfulness import check_target, random_map
from sepvit_viz.explain.relevance import DEFAULT_OPTIONS as RELEVANCE_OPTIONS
from sepvit_viz.explain.relevance import cells_to_pixels, sepvit_relevance

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Attribution",
    "MethodInfo",
    "attribute",
    "describe",
    "destripe",
    "list_methods",
    "method_options",
    "occlusion_window",
    "stage_forward_with_tap",
]

Progress = Callable[[float, str], None]


@dataclass
class Attribution:
    """One attribution map.

    Attributes:
        map_hw: (H, W) float32 at input resolution; higher = more evidence for ``target``.
        raw: the method's own values, e.g. (3, H, W) input attributions or an (H_i, W_i) grid.
        method: method name (a key of :data:`METHODS`).
        target: class index explained.
        seconds: wall time of the attribution passes (excluding picking the target).
        extras: method-specific details (options used, convergence delta, grid sizes, ...).
    """

    map_hw: np.ndarray
    raw: np.ndarray
    method: str
    target: int
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodInfo:
    """A method's display label, one-line description, default options and stripe filtering.

    ``destripe``: whether ``attribute`` filters the map with :func:`destripe` by default. False for
    every method: the filter removes the stripes but is not free on the faithfulness measures
    (``docs/attribution.md``), so the map scored and shown by default is the method's own.
    """

    name: str
    label: str
    description: str
    options: dict[str, Any]
    destripe: bool = False


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("saliency", "Saliency", "absolute input gradient of the class logit", {}),
        MethodInfo("input_x_gradient", "Input x Gradient", "input times its gradient", {}),
        MethodInfo(
            "integrated_gradients",
            "Integrated Gradients",
            "gradients integrated along the straight path from a baseline image",
            {
                "steps": 16,
                "baseline": "black",
                "internal_batch_size": 8,
                "precision": "fp32",
                "sigma": DEFAULT_BLUR_SIGMA,
                "seed": 0,
            },
        ),
        MethodInfo(
            "smoothgrad",
            "SmoothGrad",
            "saliency averaged over noisy copies of the image (NoiseTunnel)",
            {"samples": 16, "noise": 0.15, "batch_size": 8, "seed": 0},
        ),
        MethodInfo(
            "gradient_shap",
            "GradientSHAP",
            "expected gradients from black, blurred and noise baselines",
            {"samples": 16, "noise": 0.05, "batch_size": 8, "sigma": DEFAULT_BLUR_SIGMA, "seed": 0},
        ),
        MethodInfo(
            "occlusion",
            "Occlusion (windows)",
            "score drop when one stage-1 attention window is replaced by a baseline",
            {"baseline": "gray", "window": None, "batch_size": 8, "sigma": DEFAULT_BLUR_SIGMA, "seed": 0},
        ),
        MethodInfo(
            "gradcam",
            "Grad-CAM",
            "gradient-weighted channels of one stage's feature map",
            {"stage": -1, "relu": True},
        ),
        MethodInfo(
            "sepvit_relevance",
            "SepViT relevance",
            "class-specific relevance through the DWA and PWA maps of every block",
            dict(RELEVANCE_OPTIONS),
        ),
        MethodInfo("random", "Random", "uniform noise: the floor every method must beat", {"seed": 0}),
    )
}


#: The method the app and :func:`attribute` use when none is given (see ``docs/attribution.md``).
DEFAULT_METHOD = "sepvit_relevance"


def list_methods() -> list[str]:
    """Method names accepted by :func:`attribute`, in display order."""
    return list(METHODS)


def method_options(method: str) -> dict[str, Any]:
    """Default options of ``method`` (a copy; pass changed values as keyword options)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    return dict(METHODS[method].options)


def describe(att: Attribution) -> str:
    """One plain phrase for the settings that change how ``att``'s map reads (its caption's "how"):
    the baseline and steps of Integrated Gradients, the window and fill of Occlusion, the stage of
    Grad-CAM, the draws of SmoothGrad and GradientSHAP; ``""`` for methods without such settings.

    E.g. ``"16 steps from a black image"`` (a black baseline gives dark pixels no attribution).
    """
    o = att.extras.get("options", {})
    if att.method == "integrated_gradients":
        return f"{o['steps']} steps from a {o['baseline']} image"
    if att.method == "occlusion":
        wh, ww = att.extras.get("window_px", (0, 0))
        return f"{wh} x {ww} px windows replaced by a {o['baseline']} fill, one at a time"
    if att.method == "gradcam":
        return f"stage {int(att.extras.get('stage', o.get('stage', -1))) + 1} feature map" + (
            ", positive part" if o.get("relu", True) else ""
        )
    if att.method == "smoothgrad":
        return f"{o['samples']} noisy copies (noise {o['noise']:g} of the input range)"
    if att.method == "gradient_shap":
        return f"{o['samples']} draws from black, blurred and noise baselines"
    return ""


# ------------------------------------------------------------------------------------ helpers
class _Counter:
    """Wraps a forward function to report progress as examples are evaluated.

    Captum offers no progress hook, but every method's cost is its number of forward examples,
    which is known in advance, so counting them gives an honest fraction.
    """

    def __init__(
        self, forward: Callable[[torch.Tensor], torch.Tensor], total: int, desc: str, progress: Progress | None
    ):
        self.forward, self.total, self.desc, self.progress = forward, max(1, total), desc, progress
        self.seen = 0

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.forward(inputs)
        self.seen += inputs.shape[0]
        if self.progress is not None:
            self.progress(min(1.0, self.seen / self.total), self.desc)
        return out


def _reduce(raw: torch.Tensor, how: str) -> np.ndarray:
    """(3, H, W) -> (H, W) float32."""
    if how == "sum":
        out = raw.sum(0)
    elif how == "mean":
        out = raw.mean(0)
    elif how == "max_abs":
        out = raw.abs().amax(0)
    else:
        raise ValueError(f"unknown channel reduction {how!r}")
    return out.detach().float().cpu().numpy().astype(np.float32)


def _upsample(grid: torch.Tensor, stride: int, size: tuple[int, int]) -> np.ndarray:
    """(h, w) cells at ``stride`` -> (H, W) bilinear between cell centres, cell (i, j) on pixel
    (stride i, stride j), where the attention maps put it (:func:`relevance.cells_to_pixels`)."""
    return cells_to_pixels(grid.detach().float(), stride, size).cpu().numpy().astype(np.float32)


def destripe(map_hw: np.ndarray, stride: int = 4) -> np.ndarray:
    """Remove the stride comb of an input-gradient map: separable tent filter of width 2 stride - 1.

    Why: the stage-1 patch embedding is a 7 x 7 convolution with stride 4, so the gradient of any
    score with respect to a pixel is a sum of kernel copies placed every 4 px (the transposed
    convolution's "checkerboard": each 4-px period repeats the same weight profile, and pixels
    under one or two kernel copies alternate). Every pixel-gradient map therefore carries a comb at
    1/4 and 1/2 cycles per pixel: the regular stripes and grid. The tent of width ``2 stride - 1``
    (7 px for SepViT: the kernel's own footprint, and the bilinear interpolation kernel between
    stage-1 cells) is the square of a ``stride``-wide box, whose frequency response
    ``(sin(pi stride f) / (stride sin(pi f)))^2`` is exactly zero at f = k / stride for k = 1..stride-1:
    the comb is removed, detail coarser than the 4-px grid the model resolves is kept. Borders are
    renormalised (the filter averages over the in-image part of its footprint), so a constant map
    stays constant. Nothing is tuned: the width is the architecture's stride.

    map_hw: (H, W). Returns (H, W) float32.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    m = torch.as_tensor(np.asarray(map_hw, dtype=np.float32))
    if m.dim() != 2:
        raise ValueError(f"expected an (H, W) map, got shape {tuple(m.shape)}")
    if stride == 1:
        return m.numpy().copy()
    t = torch.arange(1, stride + 1, dtype=torch.float32)
    k1 = torch.cat([t, t[:-1].flip(0)]) / stride  # (2 stride - 1,) tent
    pad = stride - 1

    def filt(a: torch.Tensor) -> torch.Tensor:
        a = torch.nn.functional.conv2d(a[None, None], k1.view(1, 1, 1, -1), padding=(0, pad))
        return torch.nn.functional.conv2d(a, k1.view(1, 1, -1, 1), padding=(pad, 0))[0, 0]

    return (filt(m) / filt(torch.ones_like(m))).numpy()


def occlusion_window(model: nn.Module, default: int = 28) -> int:
    """Side in input pixels of one stage-1 attention window: window size x stage-1 stride.

    For SepViT: 7 feature cells x stride 4 = 28 px. A feature cell j is centred on input pixel 4 j,
    so with stride = window every occluded patch ``[28 w, 28 w + 28)`` holds the centres of exactly
    one attention window's cells (the maps draw that window from 2 px earlier, around those centres);
    the last row/column of windows is cut by the image edge just as the feature map is padded there.
    Models without blocks get ``default``.
    """
    iter_blocks = getattr(model, "iter_blocks", None)
    if iter_blocks is None:
        return default
    first = next(iter(iter_blocks()), None)
    if first is None:
        return default
    return int(first.window_size) * int(getattr(first, "stride", 4))


def _stem_stride(model: nn.Module, default: int = 4) -> int:
    """Stride in input pixels of the model's first feature map (SepViT: 4); ``default`` otherwise."""
    first = next(iter(getattr(model, "iter_blocks", lambda: [])()), None)
    return int(getattr(first, "stride", default)) if first is not None else default


class _StageTap(nn.Module):
    """SepViT forward with a private identity after one stage, for Captum's layer methods.

    Hooks on ``model.stages[i]`` itself would also fire for other threads' concurrent forwards on
    the same (shared) model; a per-call identity module cannot. (B, 3, H, W) -> logits.
    """

    def __init__(self, model: nn.Module, stage: int) -> None:
        super().__init__()
        self._model = [model]  # a list: do not register the model as a submodule
        self.stage = stage
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self._model[0]
        for i, stage in enumerate(model.stages):
            x = stage(x)  # (B, C_i, H_i, W_i)
            if i == self.stage:
                x = self.tap(x)
        return model.forward_head(model.norm(x.flatten(2).transpose(1, 2)))


def stage_forward_with_tap(model: nn.Module, stage: int) -> _StageTap:
    """A module computing ``model(x)`` whose ``.tap`` sees stage ``stage``'s (B, C, H, W) output."""
    n = len(model.stages)
    if not -n <= stage < n:
        raise ValueError(f"stage must be in 0..{n - 1} (or negative from the end), got {stage}")
    return _StageTap(model, stage % n)


def _check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    defaults = method_options(method)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown options for {method}: {unknown}; accepted: {sorted(defaults)}")
    defaults.update(options)
    return defaults


# ------------------------------------------------------------------------------------ the verb
def attribute(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    method: str = DEFAULT_METHOD,
    *,
    smooth: bool | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Attribution:
    """Attribute class ``target`` of ``model`` on the image ``x`` with ``method``.

    Args:
        model: a classifier (B, 3, H, W) -> (B, num_classes) in eval mode (SepViT for ``gradcam``,
            ``occlusion`` window sizing and ``sepvit_relevance``; any module for the rest).
        x: (1, 3, H, W) preprocessed image (any H, W).
        target: class index in ``0..num_classes - 1``; None explains the top prediction. Anything else
            (a negative index, one past the model's classes, a float) raises ``ValueError``.
        method: one of :func:`list_methods` (default :data:`DEFAULT_METHOD`, the SepViT relevance, as in the app).
        smooth: filter ``map_hw`` with :func:`destripe` (the stride-4 comb of pixel-gradient maps);
            None: the method's default (``METHODS[method].destripe``, False for every method). When
            it filters, the raw map stays in ``extras["map_raw"]``.
        progress: optional ``progress(fraction, desc)`` callback (e.g. to drive ``gr.Progress``).
        **options: method options, see :func:`method_options` (unknown names raise ``ValueError``).

    Returns:
        :class:`Attribution` with ``map_hw`` (H, W), ``raw`` and ``extras``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, 3, H, W), got shape {tuple(x.shape)}")
    if model.training:
        raise ValueError("put the model in eval mode (model.eval()) before attributing")
    opts = _check_options(method, options)
    # the caller may hold inference tensors (made under torch.inference_mode): gradients need a
    # normal tensor, and Captum needs grad mode on
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(method not in ("occlusion", "random"))
        n = getattr(model, "num_classes", None)
        if target is None or not (isinstance(n, int) and n > 0):
            # a model that does not say how many classes it has is asked (one forward)
            with torch.no_grad():
                logits = model(x)
            target = int(logits.argmax(dim=-1).item()) if target is None else check_target(model, target)
            if not 0 <= target < logits.shape[-1]:
                raise ValueError(
                    f"class index {target} is out of range: this model has classes 0 to {logits.shape[-1] - 1}"
                )
        target = check_target(model, target)
        start = time.perf_counter()
        raw, map_hw, extras = _RUNNERS[method](model, x, target, opts, progress)
        seconds = time.perf_counter() - start
    if progress is not None:
        progress(1.0, METHODS[method].label)
    extras = {"options": opts, **extras}
    if METHODS[method].destripe if smooth is None else smooth:
        extras["map_raw"] = np.ascontiguousarray(map_hw, dtype=np.float32)
        map_hw = destripe(map_hw, _stem_stride(model))
    extras["smoothed"] = "map_raw" in extras
    return Attribution(np.ascontiguousarray(map_hw, dtype=np.float32), raw, method, target, seconds, extras)


# ------------------------------------------------------------------------------------ runners
Runner = Callable[[nn.Module, torch.Tensor, int, dict[str, Any], Progress | None], tuple[np.ndarray, np.ndarray, dict]]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _saliency(model, x, target, _opts, progress):
    fwd = _Counter(model, 1, "Saliency", progress)
    raw = Saliency(fwd).attribute(x, target=target, abs=True)[0]
    return _np(raw), _reduce(raw, "max_abs"), {}


def _input_x_gradient(model, x, target, _opts, progress):
    fwd = _Counter(model, 1, "Input x Gradient", progress)
    raw = InputXGradient(fwd).attribute(x, target=target)[0]
    return _np(raw), _reduce(raw, "sum"), {}


def _integrated_gradients(model, x, target, opts, progress):
    steps, ibs = int(opts["steps"]), int(opts["internal_batch_size"])
    if steps < 1 or ibs < 1:
        raise ValueError("steps and internal_batch_size must be >= 1")
    if opts["baseline"] not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {opts['baseline']!r}")
    if opts["precision"] not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {opts['precision']!r}")
    bf16 = opts["precision"] == "bf16"
    base = make_baseline(x, opts["baseline"], sigma=float(opts["sigma"]), seed=int(opts["seed"]))

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(inputs).float()

    # Captum evaluates the steps in chunks of internal_batch_size; the two end points are one more
    # batch of 2, evaluated here (Captum's own convergence delta would run them as two batches of 1)
    fwd = _Counter(forward, steps + 2, "Integrated Gradients", progress)
    raw = IntegratedGradients(fwd).attribute(
        x,
        baselines=base,
        target=target,
        n_steps=steps,
        method="gausslegendre",
        internal_batch_size=ibs,
    )[0]
    with torch.no_grad():
        logits = fwd(torch.cat([x, base]))[:, target]
    gap = float(logits[0] - logits[1])
    return (
        _np(raw),
        _reduce(raw, "sum"),
        {
            # completeness: raw.sum() ~= logit(x) - logit(baseline); Captum's delta, from one batch
            "convergence_delta": abs(float(raw.detach().double().sum()) - gap),
            "logit_gap": gap,
        },
    )


def _smoothgrad(model, x, target, opts, progress):
    samples, bs = int(opts["samples"]), int(opts["batch_size"])
    if samples < 1 or bs < 1:
        raise ValueError("samples and batch_size must be >= 1")
    # noise: standard deviation as a share of the input range (normalised pixels span [-1, 1])
    std = float(opts["noise"]) * float(x.detach().max() - x.detach().min())
    fwd = _Counter(model, samples, "SmoothGrad", progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(opts["seed"]))
        raw = NoiseTunnel(Saliency(fwd)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=samples,
            nt_samples_batch_size=bs,
            stdevs=std,
            target=target,
            abs=True,
        )[0]
    return _np(raw), _reduce(raw, "max_abs"), {"noise_std": std}


def _gradient_shap(model, x, target, opts, progress):
    """Expected gradients (Captum's ``GradientShap`` estimator), with its random draws made here.

    For each of ``samples`` draws: a baseline b picked uniformly from {black, blurred, noise}, an
    input with Gaussian noise x' = x + e, a point p = a x' + (1 - a) b with a ~ U(0, 1); the
    attribution is the mean over draws of grad_p logit_c * (x' - b) (Captum's GradientShap: NoiseTunnel
    over InputBaselineXGradient). Why not Captum's own: it draws the baselines and a from NumPy's
    global generator, so its result depends on global state and batch size. Here every draw comes
    from one generator seeded with ``seed``, sample by sample in a fixed order, so the map is
    reproducible and the same for any batch size (tested); the chunks bound memory.
    """
    samples, bs = int(opts["samples"]), int(opts["batch_size"])
    if samples < 1 or bs < 1:
        raise ValueError("samples and batch_size must be >= 1")
    sigma, seed = float(opts["sigma"]), int(opts["seed"])
    xd = x.detach()
    dist = torch.cat([make_baseline(xd, k, sigma=sigma, seed=seed) for k in ("black", "blurred", "noise")])
    std = float(opts["noise"]) * float(xd.max() - xd.min())
    fwd = _Counter(model, samples, "GradientSHAP", progress)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    which = torch.randint(len(dist), (samples,), generator=gen)
    alpha = torch.rand(samples, generator=gen, dtype=torch.float64).to(x.dtype)
    total = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    for start in range(0, samples, bs):
        n = min(bs, samples - start)
        # the noise one sample at a time: the same draws whatever the chunking
        noise = torch.cat([torch.randn(x.shape, generator=gen, dtype=x.dtype) for _ in range(n)]).to(x.device)
        noisy = xd + noise * std
        base = dist[which[start : start + n]]
        a = alpha[start : start + n].to(x.device).view(-1, 1, 1, 1)
        points = (a * noisy + (1.0 - a) * base).requires_grad_()
        (grads,) = torch.autograd.grad(fwd(points)[:, target].sum(), points)
        total += (grads * (noisy - base)).double().sum(0)
    raw = (total / samples).to(x.dtype)
    return _np(raw), _reduce(raw, "sum"), {"noise_std": std}


def _occlusion(model, x, target, opts, progress):
    H, W = x.shape[-2:]
    side = int(opts["window"] or occlusion_window(model))
    wh, ww = min(side, H), min(side, W)  # Captum refuses windows larger than the image
    base = make_baseline(x, opts["baseline"], sigma=float(opts["sigma"]), seed=int(opts["seed"]))
    gh, gw = -(-H // wh), -(-W // ww)
    fwd = _Counter(model, gh * gw + 1, "Occlusion", progress)
    raw = Occlusion(fwd).attribute(
        x,
        sliding_window_shapes=(x.shape[1], wh, ww),
        strides=(x.shape[1], wh, ww),
        baselines=base,
        target=target,
        perturbations_per_eval=int(opts["batch_size"]),
    )[0]
    # every window's pixels share one value: the window grid is the compact raw result
    window_scores = raw[0, ::wh, ::ww]
    return (
        _np(raw),
        _reduce(raw, "mean"),
        {"window_px": (wh, ww), "window_grid": (gh, gw), "window_scores": _np(window_scores)},
    )


def _gradcam(model, x, target, opts, progress):
    wrapped = stage_forward_with_tap(model, int(opts["stage"]))
    fwd = _Counter(wrapped, 1, "Grad-CAM", progress)
    cam = LayerGradCam(fwd, wrapped.tap).attribute(x, target=target, relu_attributions=bool(opts["relu"]))
    grid = cam[0, 0]  # (H_i, W_i)
    stride = _stem_stride(model) * 2**wrapped.stage  # SepViT's stages halve the map after the stem
    return (
        _np(grid),
        _upsample(grid, stride, tuple(x.shape[-2:])),
        {"stage": wrapped.stage, "grid": tuple(grid.shape)},
    )


def _sepvit_relevance(model, x, target, opts, progress):
    rel = sepvit_relevance(model, x, target, progress=progress, **opts)
    return rel.stage_maps[0], rel.map_hw, {"stage_maps": rel.stage_maps, "logit": rel.logit}


def _random(_model, x, _target, opts, _progress):
    m = random_map(int(x.shape[-2]), int(x.shape[-1]), int(opts["seed"]))
    return m, m, {}


_RUNNERS: dict[str, Runner] = {
    "saliency": _saliency,
    "input_x_gradient": _input_x_gradient,
    "integrated_gradients": _integrated_gradients,
    "smoothgrad": _smoothgrad,
    "gradient_shap": _gradient_shap,
    "occlusion": _occlusion,
    "gradcam": _gradcam,
    "sepvit_relevance": _sepvit_relevance,
    "random": _random,
}
