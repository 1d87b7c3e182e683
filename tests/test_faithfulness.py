"""Deletion / insertion curves on hand-made models whose curves can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sepvit_viz.explain.baselines import gaussian_blur, make_baseline
from sepvit_viz.explain.faithfulness import (
    auc,
    curves_for,
    deletion_insertion,
    deletion_insertion_fills,
    noisy_linear_imputation,
    pixel_order,
    random_map,
    road,
    step_counts,
)


class SumModel(nn.Module):
    """logits = [sum of pixels inside ``region``, 0]: class 0's evidence is exactly those pixels."""

    def __init__(self, region: torch.Tensor | None = None) -> None:
        super().__init__()
        self.region = region

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.region is None else x * self.region
        total = s.flatten(1).sum(1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


X = torch.tensor([[3.0, 1.0], [0.0, 2.0]]).view(1, 1, 2, 2)
MAP = np.array([[0.9, 0.1], [0.5, 0.7]])  # order: (0,0)=3, (1,1)=2, (1,0)=0, (0,1)=1


def test_hand_made_curves_logit():
    cur = deletion_insertion(SumModel(), X, MAP, 0, steps=4, baseline=torch.zeros_like(X), score="logit")
    np.testing.assert_allclose(cur.fractions, [0, 0.25, 0.5, 0.75, 1.0])
    # deletion removes 3, then 2, then 0, then 1; insertion adds them back in that order
    np.testing.assert_allclose(cur.deletion, [6, 3, 1, 1, 0])
    np.testing.assert_allclose(cur.insertion, [0, 3, 5, 5, 6])
    # trapezoids of width 1/4: (4.5 + 2 + 1 + 0.5) / 4 and (1.5 + 4 + 5 + 5.5) / 4
    assert cur.deletion_auc == pytest.approx(2.0)
    assert cur.insertion_auc == pytest.approx(4.0)


def test_hand_made_curves_probability():
    cur = deletion_insertion(SumModel(), X, MAP, 0, steps=4, baseline=torch.zeros_like(X))
    sig = [1 / (1 + math.exp(-v)) for v in (6, 3, 1, 1, 0)]
    np.testing.assert_allclose(cur.deletion, sig, rtol=1e-6)
    # class 1 is the complement
    other = deletion_insertion(SumModel(), X, MAP, 1, steps=4, baseline=torch.zeros_like(X))
    np.testing.assert_allclose(other.deletion, 1 - np.array(sig), rtol=1e-6)


def test_class_index_outside_the_model_is_refused():
    """-1 used to score the last class silently (``logits[:, -1]``); one past the logits raised a bare
    IndexError. Both measures now refuse them with a ValueError, also for a model without
    ``num_classes`` (SumModel has 2 logits)."""
    from sepvit_viz.explain.faithfulness import check_target

    base = torch.zeros_like(X)
    for bad in (-1, 2):
        with pytest.raises(ValueError, match="class index"):
            deletion_insertion(SumModel(), X, MAP, bad, steps=2, baseline=base)
        with pytest.raises(ValueError, match="class index"):
            road(SumModel(), X, MAP, bad, fractions=(0.5,))
    net = nn.Linear(2, 3)
    net.num_classes = 3
    with pytest.raises(ValueError, match="classes 0 to 2"):
        check_target(net, 3)
    assert check_target(net, np.int64(2)) == 2


def test_baseline_tensor_replaces_pixels():
    base = torch.full_like(X, 10.0)
    cur = deletion_insertion(SumModel(), X, MAP, 0, steps=4, baseline=base, score="logit")
    # deleting a pixel puts 10 in its place: 6 -> 6 - 3 + 10 -> ... -> 40
    np.testing.assert_allclose(cur.deletion, [6, 13, 21, 31, 40])
    np.testing.assert_allclose(cur.insertion, [40, 33, 25, 15, 6])


def test_batch_size_does_not_change_curves():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 9, 11)
    m = np.random.default_rng(1).random((9, 11))
    a = deletion_insertion(SumModel(), x, m, 0, steps=7, batch_size=1)
    b = deletion_insertion(SumModel(), x, m, 0, steps=7, batch_size=5)
    np.testing.assert_allclose(a.deletion, b.deletion, rtol=1e-6)
    np.testing.assert_allclose(a.insertion, b.insertion, rtol=1e-6)


def test_blurred_baseline_of_constant_image_is_flat():
    x = torch.full((1, 3, 12, 17), 0.25)
    m = random_map(12, 17, seed=3)
    cur = deletion_insertion(SumModel(), x, m, 0, steps=5, score="logit", baseline="blurred")
    np.testing.assert_allclose(cur.deletion, cur.deletion[0], rtol=1e-5)
    np.testing.assert_allclose(cur.insertion, cur.deletion[0], rtol=1e-5)


def test_right_map_beats_random_floor():
    H = W = 16
    region = torch.zeros(1, 1, H, W)
    region[..., 2:7, 9:14] = 1.0
    torch.manual_seed(0)
    x = torch.rand(1, 3, H, W) + 0.5  # positive evidence inside the region
    model = SumModel(region)
    good = deletion_insertion(model, x, region[0, 0].numpy(), 0, steps=16, baseline="black", score="logit")
    rand = deletion_insertion(model, x, random_map(H, W, seed=0), 0, steps=16, baseline="black", score="logit")
    assert good.deletion_auc < rand.deletion_auc
    assert good.insertion_auc > rand.insertion_auc


def test_pixel_order_ties_follow_raster_order():
    np.testing.assert_array_equal(pixel_order(np.zeros((3, 4))), np.arange(12))
    np.testing.assert_array_equal(pixel_order(np.array([[0.0, 2.0], [2.0, 1.0]])), [1, 2, 3, 0])


def test_step_counts_and_auc():
    np.testing.assert_array_equal(step_counts(10, 4), [0, 2, 5, 8, 10])
    assert auc(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert auc(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        step_counts(10, 0)


def test_gaussian_blur_keeps_mass_and_constants():
    x = torch.zeros(1, 1, 41, 41)
    x[..., 20, 20] = 1.0
    y = gaussian_blur(x, sigma=2.0)
    assert y.sum().item() == pytest.approx(1.0, rel=1e-5)  # far from the border: nothing lost
    assert y[..., 20, 20].item() < 0.1 and y[..., 20, 22].item() > 0  # spread out
    c = torch.full((1, 3, 5, 7), 0.3)
    torch.testing.assert_close(gaussian_blur(c, sigma=10.0), c)


def test_baseline_kinds_in_normalised_space():
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(make_baseline(x, "black"), torch.full_like(x, -1.0))  # (0 - 0.5) / 0.5
    torch.testing.assert_close(make_baseline(x, "gray"), torch.zeros_like(x))
    noise = make_baseline(x, "noise", seed=1)
    assert noise.min() >= -1 and noise.max() <= 1 and noise.std() > 0.3
    torch.testing.assert_close(noise, make_baseline(x, "noise", seed=1))
    with pytest.raises(ValueError):
        make_baseline(x, "purple")


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        deletion_insertion(SumModel(), X, np.zeros((3, 3)), 0)
    with pytest.raises(ValueError):
        deletion_insertion(SumModel(), X, np.full((2, 2), np.nan), 0)
    with pytest.raises(ValueError):
        deletion_insertion(SumModel(), torch.cat([X, X]), MAP, 0)


def test_inference_tensors_and_progress():
    with torch.inference_mode():
        x = torch.randn(1, 3, 6, 6)
    seen: list[float] = []
    deletion_insertion(SumModel(), x, random_map(6, 6), 0, steps=6, batch_size=4, progress=lambda f, d: seen.append(f))
    # 14 curve points, 12 images (x and the fill, the curves' shared end points, once each): 3 batches of 4
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 3


def test_curves_for_an_attribution_object():
    class Attr:
        map_hw = MAP
        target = 0

    cur = curves_for(SumModel(), X, Attr(), steps=4, baseline=torch.zeros_like(X), score="logit")
    np.testing.assert_allclose(cur.deletion, [6, 3, 1, 1, 0])
    assert cur.target == 0


# ------------------------------------------------------------------------------ untuned fills and ROAD
def test_default_fill_is_the_untuned_mean_colour():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 6, 6)
    m = random_map(6, 6, seed=4)
    a = deletion_insertion(SumModel(), x, m, 0, steps=3, score="logit")
    b = deletion_insertion(SumModel(), x, m, 0, steps=3, score="logit", baseline=make_baseline(x, "mean"))
    np.testing.assert_allclose(a.deletion, b.deletion, rtol=1e-6)
    assert a.extras["baseline"] == "mean"


def test_mean_baseline_is_the_image_mean_colour():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7)
    b = make_baseline(x, "mean")
    torch.testing.assert_close(b, x.mean(dim=(-2, -1), keepdim=True).expand_as(x))


def _ramp(h: int = 24, w: int = 24) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([0.05 * xx - 0.5, 0.03 * yy + 0.02 * xx, -0.04 * yy])[None]  # (1, 3, h, w), linear


def test_imputation_keeps_known_pixels_and_fills_a_linear_image_exactly():
    # a linear image is its own 8-neighbour weighted mean inside the image: the exact solution is the image
    x = _ramp()
    hole = torch.zeros(24, 24, dtype=torch.bool)
    hole[6:18, 5:15] = True
    v = noisy_linear_imputation(x, hole, noise=0.0, max_iter=500, tol=1e-7)
    torch.testing.assert_close(v[..., ~hole], x[..., ~hole])  # known pixels untouched
    torch.testing.assert_close(v, x, atol=1e-4, rtol=0)
    # the noise goes to the removed pixels only, reproducibly
    n1 = noisy_linear_imputation(x, hole, noise=0.5, seed=3, max_iter=500)
    n2 = noisy_linear_imputation(x, hole, noise=0.5, seed=3, max_iter=500)
    torch.testing.assert_close(n1, n2)
    torch.testing.assert_close(n1[..., ~hole], x[..., ~hole])
    assert float((n1 - v)[..., hole].std()) > 0.3


def test_imputation_default_is_close_to_the_converged_solve():
    # the default (20 iterations per pyramid level) on a 90% removal in one blob: the solve is
    # approximate (documented), but far closer to the exact solution than its smooth first guess
    torch.manual_seed(0)
    x = gaussian_blur(torch.randn(1, 3, 96, 96), 3.0) * 3
    yy, xx = np.mgrid[:96, :96]
    order = pixel_order(-((yy - 40) ** 2 + (xx - 50) ** 2).astype(np.float64))
    hole = torch.zeros(96 * 96, dtype=torch.bool)
    hole[torch.from_numpy(order[: int(0.9 * 96 * 96)])] = True
    hole = hole.view(96, 96)
    exact = noisy_linear_imputation(x, hole, noise=0.0, max_iter=3000, tol=1e-8)
    fast = noisy_linear_imputation(x, hole, noise=0.0)
    guess = noisy_linear_imputation(x, hole, noise=0.0, max_iter=0)
    gap = float((fast - exact)[..., hole].abs().mean())
    assert gap < 0.05  # 2.5% of the pixel range (normalised inputs span 2)
    assert gap < float((guess - exact)[..., hole].abs().mean()) / 2


class TemplateModel(nn.Module):
    """Class 0's logit is the match of the top-left quadrant with a checkerboard; class 1's is 0.

    Only that quadrant matters, and only its fine pattern: mean colour, uniform noise and ROAD's
    smooth imputation all destroy the evidence where they replace it.
    """

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        t = torch.zeros(1, 3, size, size)
        q = size // 2
        t[..., :q, :q] = (torch.arange(q)[:, None] + torch.arange(q)[None, :]) % 2 * 2.0 - 1.0
        self.register_buffer("template", t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.template).flatten(1).sum(1) / self.template.abs().sum() * 8.0
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def _template_photo(seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return TemplateModel(size).template * 0.8 + 0.2 * torch.randn(1, 3, size, size, generator=g)


def test_road_ranks_the_one_region_the_model_reads():
    model = TemplateModel()
    x = _template_photo(0)
    right = np.zeros((32, 32))
    right[:16, :16] = 1.0
    right += 0.01 * np.random.default_rng(0).random((32, 32))  # break ties inside the quadrant
    good = road(model, x, right, 0)
    bad = road(model, x, -right, 0)  # the quadrant last
    rand = road(model, x, random_map(32, 32, seed=1), 0)
    assert good.morf_mean < rand.morf_mean < bad.morf_mean  # removing the quadrant first kills the class
    assert good.lerf_mean > rand.lerf_mean > bad.lerf_mean  # removing the rest first keeps it
    # 30% removed covers the quadrant (25%): the class is at chance (0.5) from there on
    assert good.morf.shape == (5,) and np.allclose(good.morf[1:], 0.5, atol=0.05) and good.morf[0] > 0.6
    with pytest.raises(ValueError):
        road(model, x, right, 0, fractions=(0.0, 0.5))
    with pytest.raises(ValueError):
        road(model, x, np.zeros((3, 3)), 0)


@pytest.mark.parametrize("fill", ["mean", "noise"])
def test_untuned_fills_rank_the_one_region_the_model_reads(fill):
    model = TemplateModel()
    x = _template_photo(1)
    right = np.zeros((32, 32))
    right[:16, :16] = 1.0
    good = deletion_insertion(model, x, right, 0, steps=8, baseline=fill)
    rand = deletion_insertion(model, x, random_map(32, 32, seed=2), 0, steps=8, baseline=fill)
    assert good.deletion_auc < rand.deletion_auc and good.insertion_auc > rand.insertion_auc


# ------------------------------------------------------------------------------ batched == one at a time
class _Counting(nn.Module):
    """Wraps a model and counts the images it is asked to score."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.model(x)


def _reference_curve(model, x, smap, target, base, steps):
    """Deletion and insertion written out independently: one image per forward, the pixel order by hand."""
    H, W = x.shape[-2:]
    flat = np.asarray(smap, dtype=np.float64).ravel()
    order = sorted(range(H * W), key=lambda p: (-flat[p], p))  # most attributed first, ties by raster index
    dele, ins = [], []
    for i in range(steps + 1):
        k = round(i / steps * H * W)
        top = torch.zeros(H * W)
        top[order[:k]] = 1.0
        top = top.view(1, 1, H, W)
        with torch.no_grad():
            d = model(x * (1 - top) + base * top).softmax(-1)[0, target]
            n = model(base * (1 - top) + x * top).softmax(-1)[0, target]
        dele.append(float(d))
        ins.append(float(n))
    return np.array(dele), np.array(ins)


def test_batched_curves_of_several_fills_equal_one_image_at_a_time():
    """The panel's batched curves (every fill in shared batches, the end points evaluated once and
    shared between maps) equal an independent one-image-per-forward reference on a tiny SepViT."""
    from sepvit_viz import create_model

    torch.manual_seed(0)
    model = _Counting(create_model("sepvit_test", num_classes=6).eval())
    x = torch.randn(1, 3, 32, 32)
    tensor_fill = torch.randn(1, 3, 32, 32)
    maps = [random_map(32, 32, seed=5), np.random.default_rng(2).normal(size=(32, 32)).round(1)]  # the second has ties
    fills = ("mean", "noise", tensor_fill)
    steps, shared = 6, {}
    for n, smap in enumerate(maps):
        model.images = 0
        got = deletion_insertion_fills(model, x, smap, 4, fills=fills, steps=steps, batch_size=5, shared=shared)
        # forwards: 2 (S - 1) interior points per fill, plus x, the named fills (first map only: shared
        # afterwards) and the tensor fill (never shared)
        assert model.images == len(fills) * 2 * (steps - 1) + (1 + 2 if n == 0 else 0) + 1
        for fill, c in zip(fills, got):
            base = make_baseline(x, fill) if isinstance(fill, str) else tensor_fill
            d, i = _reference_curve(model.model, x, smap, 4, base, steps)
            np.testing.assert_allclose(c.deletion, d, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(c.insertion, i, rtol=1e-5, atol=1e-6)
            assert c.deletion_auc == pytest.approx(auc(c.fractions, d), abs=1e-6)
            assert c.insertion_auc == pytest.approx(auc(c.fractions, i), abs=1e-6)
    assert set(shared) == {"x", ("fill", "mean"), ("fill", "noise")}
    # the one-fill verb is the same computation
    one = deletion_insertion(model.model, x, maps[0], 4, steps=steps, baseline="noise", batch_size=1)
    np.testing.assert_allclose(
        one.deletion,
        _reference_curve(model.model, x, maps[0], 4, make_baseline(x, "noise"), steps)[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_batched_road_equals_one_mask_at_a_time():
    """ROAD's masks imputed and scored in batches give the one-at-a-time scores: every image keeps its
    own noise seed and its own CG stopping (the masks converge at different iterations here)."""
    from sepvit_viz import create_model

    torch.manual_seed(0)
    model = create_model("sepvit_test", num_classes=6).eval()
    x = gaussian_blur(torch.randn(1, 3, 40, 40), 2.0) * 2
    smap = random_map(40, 40, seed=3)
    fractions = (0.05, 0.4, 0.9)
    for max_iter in (20, 400):  # 400: every system converges to tol, each at its own iteration
        got = road(model, x, smap, 2, fractions=fractions, batch_size=4, max_iter=max_iter)
        order = pixel_order(smap)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        rank = torch.from_numpy(rank).view(40, 40)
        ks = [round(f * 1600) for f in fractions]
        masks = [rank < k for k in ks] + [rank >= 1600 - k for k in ks]
        ref = []
        for i, mask in enumerate(masks):
            xi = noisy_linear_imputation(x, mask, seed=i, max_iter=max_iter)
            with torch.no_grad():
                ref.append(float(model(xi).softmax(-1)[0, 2]))
        np.testing.assert_allclose(np.r_[got.morf, got.lerf], ref, rtol=1e-5, atol=1e-6)


def test_batched_imputation_stops_each_image_on_its_own():
    # seeded: each image's stop is a residual-vs-tol comparison; fixed data keeps it away from a
    # run-dependent borderline where batched and single rounding could stop at different iterations
    g = torch.Generator().manual_seed(0)
    x = _ramp(32, 32).expand(3, -1, -1, -1).clone() + 0.3 * torch.randn(3, 3, 32, 32, generator=g)
    holes = torch.zeros(3, 1, 32, 32, dtype=torch.bool)
    holes[0, 0, 10:12, 10:12] = True  # tiny: converges in a few iterations
    holes[1, 0, 2:30, 3:29] = True  # large: needs many
    holes[2, 0, 1:31, 1:31] = True  # larger still, cut by one known row
    holes[2, 0, 16, :] = False
    for iters in (3, 30, 500):
        # a loose tol: an image that went on iterating past its own stop would differ visibly
        batch = noisy_linear_imputation(x, holes, noise=0.1, seed=[7, 8, 9], max_iter=iters, tol=3e-2)
        for b in range(3):
            alone = noisy_linear_imputation(x[b : b + 1], holes[b, 0], noise=0.1, seed=7 + b, max_iter=iters, tol=3e-2)
            torch.testing.assert_close(batch[b : b + 1], alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="seeds"):
        noisy_linear_imputation(x, holes, seed=[1, 2])


def test_measures_accept_a_map_that_requires_grad():
    """The shared input checks detach a tensor map (the scorecard may hand one over), and every measure
    scores under inference mode (no graph is built, whatever the map)."""
    modes = []

    class Recording(TemplateModel):
        def forward(self, x):
            modes.append(torch.is_inference_mode_enabled())
            return super().forward(x)

    model = Recording()
    x = _template_photo(0)
    m = torch.rand(32, 32, requires_grad=True)
    a = deletion_insertion(model, x, m, 0, steps=4)
    b = deletion_insertion(model, x, m.detach().numpy(), 0, steps=4)
    np.testing.assert_array_equal(a.deletion, b.deletion)
    r = road(model, x, m, 0, fractions=(0.5,))
    assert r.morf_mean == road(model, x, m.detach().numpy(), 0, fractions=(0.5,)).morf_mean
    for bad in (np.zeros((3, 3)), torch.zeros(3, 3)):
        with pytest.raises(ValueError, match="does not match"):
            road(model, x, bad, 0)
        with pytest.raises(ValueError, match="does not match"):
            deletion_insertion(model, x, bad, 0)
    with pytest.raises(ValueError, match="score"):
        road(model, x, m, 0, score="logits")
    assert modes and all(modes)
