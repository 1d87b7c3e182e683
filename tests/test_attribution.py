"""Captum adapters on the tiny SepViT: completeness, batching, geometry, windows, the common API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepvit_viz import create_model, feature_sizes
from sepvit_viz.explain.attribution import (
    METHODS,
    attribute,
    list_methods,
    method_options,
    occlusion_window,
    stage_forward_with_tap,
)
from sepvit_viz.explain.baselines import make_baseline


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("sepvit_test", num_classes=10).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 3, 64, 64)


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("baseline", ["black", "blurred", "noise"])
def test_integrated_gradients_completeness(model, image, baseline):
    a = attribute(model, image, 3, "integrated_gradients", steps=32, baseline=baseline)
    base = make_baseline(image, baseline)
    with torch.no_grad():
        gap = float(model(image)[0, 3] - model(base)[0, 3])
    # completeness: attributions sum to f(x) - f(baseline), checked here independently of Captum
    assert abs(float(a.raw.sum()) - gap) < 1e-2 * max(abs(gap), 0.1)
    assert a.extras["convergence_delta"] < 1e-2 * max(abs(gap), 0.1)
    assert a.extras["logit_gap"] == pytest.approx(gap, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(a.map_hw, a.raw.sum(0), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_bf16_option(model, image):
    """bf16 autocast is an opt-in speed option: completeness still holds to about a percent."""
    ref = attribute(model, image, 3, "integrated_gradients", steps=16)
    a = attribute(model, image, 3, "integrated_gradients", steps=16, precision="bf16")
    gap = a.extras["logit_gap"]
    assert gap == pytest.approx(ref.extras["logit_gap"], rel=0.05, abs=0.02)
    assert abs(float(a.raw.sum()) - gap) == pytest.approx(a.extras["convergence_delta"], abs=1e-4)
    assert a.extras["convergence_delta"] < 0.05 * max(abs(gap), 0.1)
    assert np.corrcoef(a.map_hw.ravel(), ref.map_hw.ravel())[0, 1] > 0.95
    with pytest.raises(ValueError):
        attribute(model, image, 3, "integrated_gradients", precision="fp16")


def test_integrated_gradients_independent_of_internal_batch_size(model, image):
    maps = [attribute(model, image, 5, "integrated_gradients", steps=12, internal_batch_size=b).raw for b in (1, 5, 12)]
    for m in maps[1:]:
        np.testing.assert_allclose(m, maps[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_gradcam_grid_matches_stage_geometry_at_odd_size(model, stage):
    x = torch.randn(1, 3, 100, 132)
    a = attribute(model, x, 2, "gradcam", stage=stage)
    expected = feature_sizes(100, 132)[stage]
    assert a.raw.shape == expected == a.extras["grid"]
    # the same as every block of that stage sees
    table = [row for row in model.block_table((100, 132)) if row.stage == stage]
    assert all(row.feature_size == expected for row in table)
    assert a.map_hw.shape == (100, 132)
    assert (a.map_hw >= 0).all() and (a.raw >= 0).all()  # ReLU by default
    # each cell's value sits on its centre pixel (stride i, stride j), where the attention maps put it
    s = 4 * 2**stage
    h, w = expected
    np.testing.assert_allclose(a.map_hw[: s * (h - 1) + 1 : s, : s * (w - 1) + 1 : s], a.raw, rtol=1e-5, atol=1e-7)


def test_cells_to_pixels_centres_each_cell_on_its_pixel():
    from sepvit_viz.explain.relevance import cells_to_pixels
    from sepvit_viz.viz import maps

    grid = torch.zeros(3, 5)
    grid[1, 2] = 1.0
    up = cells_to_pixels(grid, 4, (10, 18))
    assert up.shape == (10, 18) and up[4, 8] == 1.0 and up.max() == 1.0
    assert up[4].tolist()[4:13] == [0.0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0.0]  # linear between centres
    near = cells_to_pixels(grid, 4, (10, 18), "nearest")
    np.testing.assert_array_equal(near.numpy(), maps.to_image(grid.numpy(), 4, (10, 18)))  # as the maps draw it
    with pytest.raises(ValueError, match="unknown upsampling"):
        cells_to_pixels(grid, 4, (10, 18), "bicubic")


def test_gradcam_wrapper_is_the_model(model):
    x = torch.randn(1, 3, 100, 132)
    with torch.no_grad():
        ref = model(x)
        for s in range(4):
            torch.testing.assert_close(stage_forward_with_tap(model, s)(x), ref)


def test_gradcam_matches_hand_computation(model, image):
    a = attribute(model, image, 4, "gradcam", stage=2, relu=False)
    feats: list[torch.Tensor] = []
    wrapped = stage_forward_with_tap(model, 2)
    wrapped.tap.register_forward_hook(lambda m, i, o: feats.append(o))
    logit = wrapped(image)[0, 4]
    (g,) = torch.autograd.grad(logit, feats[0])
    cam = (g.mean(dim=(2, 3), keepdim=True) * feats[0]).sum(1)[0]
    np.testing.assert_allclose(a.raw, cam.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_occlusion_patches_align_with_stage1_windows(model):
    H, W = 100, 132
    x = torch.randn(1, 3, H, W)
    side = occlusion_window(model)
    first = next(model.iter_blocks())
    assert side == first.window_size * 4 == 28
    a = attribute(model, x, 1, "occlusion", baseline="gray")
    stage1 = model.block_table((H, W))[0]
    assert a.extras["window_grid"] == stage1.grid == (4, 5)
    # every stage-1 window (28 x 28 px from the origin, cut at the border) holds a single value
    for r in range(4):
        for c in range(5):
            patch = a.map_hw[28 * r : 28 * r + 28, 28 * c : 28 * c + 28]
            assert np.ptp(patch) == 0
    # and that value is the logit drop when exactly that window goes grey (here window (3, 4))
    occluded = x.clone()
    occluded[..., 84:100, 112:132] = 0.0
    with torch.no_grad():
        drop = float(model(x)[0, 1] - model(occluded)[0, 1])
    assert a.map_hw[99, 131] == pytest.approx(drop, rel=1e-4, abs=1e-6)
    assert a.extras["window_scores"].shape == (4, 5)


def test_saliency_is_absolute_gradient(model, image):
    a = attribute(model, image, 7, "saliency")
    x = image.clone().requires_grad_()
    (g,) = torch.autograd.grad(model(x)[0, 7], x)
    np.testing.assert_allclose(a.raw, g.abs()[0].numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(a.map_hw, g.abs()[0].amax(0).numpy(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_a_map_at_image_resolution(model, method):
    x = torch.randn(1, 3, 60, 76)
    calls: list[float] = []
    a = attribute(model, x, 6, method, progress=lambda f, d: calls.append(f))
    assert a.map_hw.shape == (60, 76) and a.map_hw.dtype == np.float32
    assert np.isfinite(a.map_hw).all() and np.isfinite(a.raw).all()
    assert a.method == method and a.target == 6
    assert calls and calls[-1] == 1.0 and all(0 <= f <= 1 for f in calls)
    assert _no_hooks(model) and not model.training


def test_target_defaults_to_top_prediction(model, image):
    with torch.no_grad():
        top = int(model(image).argmax())
    assert attribute(model, image, None, "saliency").target == top


def test_options_are_checked(model, image):
    assert set(method_options("integrated_gradients")) >= {"steps", "baseline", "internal_batch_size"}
    assert "self_weight" in method_options("sepvit_relevance")
    with pytest.raises(ValueError, match="unknown options"):
        attribute(model, image, 0, "saliency", steps=3)
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute(model, image, 0, "lrp")
    with pytest.raises(ValueError):
        attribute(model, image, 0, "integrated_gradients", baseline="purple")
    assert list_methods()[0] == "saliency" and "random" in list_methods()


def test_class_index_outside_the_model_is_refused(model, image):
    """-1 used to explain the last class silently (and report target -1), 10 of 10 classes raised
    Captum's IndexError; both are now a ValueError that names the classes the model has."""
    for bad in (-1, 10, 2.0, True):
        with pytest.raises(ValueError, match="class index"):
            attribute(model, image, bad, "saliency")
    assert attribute(model, image, np.int64(3), "gradcam").target == 3
    assert attribute(model, image, torch.tensor(4), "saliency").target == 4  # e.g. logits.argmax()


def test_a_model_without_num_classes_is_asked_how_many_it_has(image):
    """A plain classifier (no ``num_classes``): a class one past its logits raised Captum's
    IndexError for six methods, and the random map explained a class that does not exist."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    net(image)  # materialise the lazy layer
    net.eval()
    assert not hasattr(net, "num_classes")
    for method in ("saliency", "integrated_gradients", "occlusion", "smoothgrad", "input_x_gradient", "random"):
        if method not in METHODS:
            continue
        with pytest.raises(ValueError, match="classes 0 to 4"):
            attribute(net, image, 5, method)
        assert attribute(net, image, 4, method).target == 4
    assert attribute(net, image, None, "saliency").target == int(net(image).argmax())


def test_requires_eval_mode(model, image):
    model.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            attribute(model, image, 0, "saliency")
    finally:
        model.eval()


def test_noise_methods_are_seeded_and_leave_global_rng_alone(model, image):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = attribute(model, image, 2, "smoothgrad", samples=4, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = attribute(model, image, 2, "smoothgrad", samples=4, seed=7)
    c = attribute(model, image, 2, "smoothgrad", samples=4, seed=8)
    np.testing.assert_array_equal(a.raw, b.raw)
    assert not np.array_equal(a.raw, c.raw)


def test_gradient_shap_is_reproducible_and_the_same_for_any_batch_size(model, image):
    """The draws come from one seeded generator, sample by sample: the same map for any chunking
    (Captum's own drew from NumPy's global generator, anew in each chunk), the same map on every call."""
    maps = [attribute(model, image, 2, "gradient_shap", samples=12, batch_size=b).raw for b in (1, 5, 12)]
    for m in maps[1:]:
        np.testing.assert_allclose(m, maps[0], rtol=1e-4, atol=1e-6)
    again = attribute(model, image, 2, "gradient_shap", samples=12, batch_size=5).raw
    np.testing.assert_array_equal(again, maps[1])
    other = attribute(model, image, 2, "gradient_shap", samples=12, seed=1).raw
    assert not np.allclose(other, maps[0])


def test_gradient_shap_estimates_what_captum_estimates(model, image):
    """Same estimator as Captum's GradientShap (NoiseTunnel over InputBaselineXGradient): with many
    draws the two maps agree."""
    from captum.attr import GradientShap

    ours = attribute(model, image, 2, "gradient_shap", samples=256, batch_size=64)
    dist = torch.cat([make_baseline(image, k) for k in ("black", "blurred", "noise")])
    np.random.seed(0)
    torch.manual_seed(0)
    total = torch.zeros_like(image)
    for _ in range(4):
        total += (
            GradientShap(model)
            .attribute(image, baselines=dist, n_samples=64, stdevs=ours.extras["noise_std"], target=2)
            .detach()
        )
    theirs = (total / 4)[0].numpy()
    # measured 0.996; leaving out the baseline in (x' - b) gives 0.966
    assert np.corrcoef(ours.raw.ravel(), theirs.ravel())[0, 1] > 0.99
    # and the estimate moves with the draws far less than its signal: a second seed correlates as well
    second = attribute(model, image, 2, "gradient_shap", samples=256, batch_size=64, seed=5).map_hw
    assert np.corrcoef(ours.map_hw.ravel(), second.ravel())[0, 1] > 0.9


@pytest.mark.parametrize(("method", "option", "sizes"), [
    ("occlusion", "batch_size", (1, 3, 64)),
    ("smoothgrad", "batch_size", (1, 3, 8)),
    ("integrated_gradients", "internal_batch_size", (1, 4, 16)),
])  # fmt: skip
def test_batched_maps_equal_unbatched(model, image, method, option, sizes):
    """Batching is a speed option only: the map is the one-at-a-time map to float tolerance."""
    extra = {"samples": 8} if method == "smoothgrad" else {}
    maps = [attribute(model, image, 4, method, **{option: b}, **extra).raw for b in sizes]
    for m in maps[1:]:
        np.testing.assert_allclose(m, maps[0], rtol=1e-4, atol=1e-6)


def test_inference_mode_input(model):
    with torch.inference_mode():
        x = torch.randn(1, 3, 56, 56)
        a = attribute(model, x, 0, "input_x_gradient")
    assert np.isfinite(a.map_hw).all() and np.abs(a.map_hw).sum() > 0


# ------------------------------------------------------------------------------ stripes
def _comb_ratio(m: np.ndarray, stride: int = 4) -> float:
    """Power at 1/stride cycles per pixel (both axes) over the mean power of nearby frequencies."""
    a = np.asarray(m, dtype=np.float64)
    a = a - a.mean()
    p = np.abs(np.fft.fft2(a)) ** 2
    n = a.shape[0]
    k = n // stride
    out = []
    for spec in (p.sum(0), p.sum(1)):
        near = np.r_[k - 4 : k - 1, k + 2 : k + 5]
        out.append(spec[k] / spec[near].mean())
    return max(out)


def test_destripe_removes_the_stride_comb_and_keeps_smooth_maps():
    from sepvit_viz.explain.attribution import destripe

    n = 64
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    smooth = np.exp(-((yy - 30) ** 2 + (xx - 20) ** 2) / 200.0)
    comb = np.cos(2 * np.pi * xx / 4) + np.cos(np.pi * yy)  # periods 4 and 2 px: the stride-4 harmonics
    out = destripe(smooth + 0.3 * comb, 4)
    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(out[inner], destripe(smooth, 4)[inner], atol=1e-5)  # the comb is gone exactly
    assert np.abs(destripe(smooth, 4) - smooth).max() < 0.05  # a smooth map barely moves
    np.testing.assert_allclose(destripe(np.full((9, 7), 2.5), 4), 2.5, rtol=1e-6)  # borders renormalised
    np.testing.assert_array_equal(destripe(smooth, 1), smooth.astype(np.float32))


def test_saliency_stripes_come_from_the_stride4_patch_embedding(model):
    from sepvit_viz.explain.attribution import destripe

    # the cause: a strided convolution's input gradient repeats the kernel every 4 px, whatever the photo
    torch.manual_seed(3)
    x = torch.randn(1, 3, 64, 64)
    a = attribute(model, x, 1, "saliency", smooth=True)
    raw = a.extras["map_raw"]
    assert _comb_ratio(raw) > 2.5  # a comb at 1/4 cycle per pixel in the raw gradient
    assert _comb_ratio(a.map_hw) < 1.5  # none in the map shown
    # the same comb in the gradient pushed back through the stage-1 patch embedding alone, from
    # white-noise gradients on its output: its power depends on the pixel's position modulo 4 (each
    # pixel sits under one or two kernel copies, at different taps): the architecture, not the photo
    proj = model.stages[0].patch_embed.proj
    with torch.enable_grad():
        xi = torch.randn(16, 3, 64, 64, requires_grad=True)
        y = proj(xi)
        (g,) = torch.autograd.grad(y, xi, torch.randn_like(y))
    power = g.pow(2).mean((0, 1)).numpy()  # (64, 64) expected squared gradient per pixel
    assert _comb_ratio(power) > 5.0
    assert _comb_ratio(destripe(power, 4)) < 1.5


def test_smoothing_is_one_option_away_and_the_raw_map_is_kept(model, image):
    raw = attribute(model, image, 2, "integrated_gradients", steps=8)  # default: the method's own map
    shown = attribute(model, image, 2, "integrated_gradients", steps=8, smooth=True)
    assert shown.extras["smoothed"] and not raw.extras["smoothed"] and "map_raw" not in raw.extras
    np.testing.assert_allclose(shown.extras["map_raw"], raw.map_hw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shown.map_hw, destripe_(raw.map_hw), rtol=1e-5, atol=1e-6)
    assert not any(m.destripe for m in METHODS.values())  # not free on the measures: off by default
    assert METHODS["integrated_gradients"].options["steps"] == 16


def destripe_(m: np.ndarray) -> np.ndarray:
    from sepvit_viz.explain.attribution import destripe

    return destripe(m, 4)


def test_default_method_is_a_method():
    from sepvit_viz.explain.attribution import DEFAULT_METHOD

    assert DEFAULT_METHOD in METHODS and DEFAULT_METHOD != "random"


def test_the_library_default_is_the_apps_default(model, image):
    from sepvit_viz.explain.attribution import DEFAULT_METHOD

    assert attribute(model, image, 2).method == DEFAULT_METHOD == "sepvit_relevance"


def test_describe_names_the_settings_that_change_how_a_map_reads(model, image):
    """The app's caption said only "Integrated Gradients": not that it integrates from a black image
    (dark pixels then get no attribution), nor Occlusion's window and fill or Grad-CAM's stage."""
    from sepvit_viz.explain.attribution import describe

    ig = attribute(model, image, 1, "integrated_gradients", steps=4, baseline="blurred")
    assert describe(ig) == "4 steps from a blurred image"
    assert describe(attribute(model, image, 1, "integrated_gradients", steps=4)) == "4 steps from a black image"
    occ = attribute(model, image, 1, "occlusion")
    side = min(occlusion_window(model), image.shape[-1])  # cut to the 64 px image
    assert describe(occ) == f"{side} x {side} px windows replaced by a gray fill, one at a time"
    assert describe(attribute(model, image, 1, "gradcam", stage=0)).startswith("stage 1 feature map")
    assert describe(attribute(model, image, 1, "saliency")) == ""
