"""The SepViT-aware relevance: its definition (against the project's rollout) and its properties."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from sepvit_viz import create_model, feature_sizes
from sepvit_viz.explain.baselines import gaussian_blur
from sepvit_viz.explain.relevance import (
    modulation_weights,
    percentile_rank,
    sepvit_relevance,
    to_pixels_by_gradient,
    two_scale_order,
    unpool,
    weighted_attention,
)
from sepvit_viz.viz import maps as M

GOLDEN = Path(__file__).with_name("golden") / "sepvit_test_relevance.npz"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("sepvit_test", num_classes=10).eval()


def _image(h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, h, w, generator=g)


def _taps_unwatched(model) -> bool:
    return all(
        not b.attn.dwa_tap._forward_hooks and not getattr(b.attn, "pwa_tap", b.attn.dwa_tap)._forward_hooks
        for b in model.iter_blocks()
    )


@pytest.mark.parametrize("size", [(64, 64), (100, 132)])
def test_relevance_is_seed_times_project_rollout(model, size):
    """stage-1 relevance == seed @ maps.rollout_matrix(gradient-weighted maps): the definition."""
    x = _image(*size)
    rel = sepvit_relevance(model, x, 3)
    w = weighted_attention(model, x, 3)
    seed, blocks = w.seed, w.blocks
    as_maps = [
        M.BlockAttention(
            dwa=b.dwa.numpy()[:, None],  # (n, 1, L, L): one fused head
            pwa=None if b.pwa is None else b.pwa.numpy()[None],
            geometry=b.geometry,
            stage=b.stage,
        )
        for b in blocks
    ]
    R = M.rollout_matrix(as_maps, residual=0.5, self_weight=0.5)  # (N4, N1)
    expected = (seed.numpy().ravel() @ R).reshape(feature_sizes(*size)[0])
    np.testing.assert_allclose(rel.stage_maps[0], expected, rtol=1e-4, atol=1e-9 * seed.sum().item())


def test_unpool_is_the_rollout_pooling_matrix():
    u = torch.rand(4, 5, dtype=torch.float64)
    for src in [(7, 9), (8, 10)]:
        P = M.pooling_matrix(src, (4, 5))
        np.testing.assert_allclose(unpool(u, src).numpy().ravel(), u.numpy().ravel() @ P, rtol=1e-12)


def test_seed_is_each_tokens_share_of_the_logit(model):
    x = _image(64, 64)
    w = weighted_attention(model, x, 5)
    logit, seed = w.logit, w.seed
    with torch.no_grad():
        z = model.forward_features(x)[0]  # (N, C)
        share = (z @ model.head.weight[5]) / z.shape[0]
    np.testing.assert_allclose(seed.numpy().ravel(), share.clamp_min(0).numpy(), rtol=1e-4, atol=1e-7)
    # the shares (with their negative parts) add up to the logit minus the bias
    assert float(share.sum()) + model.head.bias[5].item() == pytest.approx(logit, rel=1e-4, abs=1e-6)


def test_conservation_and_sign(model):
    rel = sepvit_relevance(model, _image(100, 132), 2)
    total = rel.seed.sum()
    assert total > 0
    for m in rel.stage_maps:
        assert m.min() >= 0
        assert m.sum() == pytest.approx(total, rel=1e-5)
    assert rel.map_hw.shape == (100, 132) and rel.map_hw.min() >= 0
    assert [m.shape for m in rel.stage_maps] == feature_sizes(100, 132)


def test_full_residual_is_the_pooled_seed(model):
    """residual = 1 ignores attention: the seed (a last-stage CAM) pooled down to stage 1."""
    x = _image(64, 64)
    rel = sepvit_relevance(model, x, 2, residual=1.0)
    u = torch.from_numpy(rel.seed).double()
    sizes = feature_sizes(64, 64)
    for s in (2, 1, 0):
        u = unpool(u, sizes[s])
    np.testing.assert_allclose(rel.stage_maps[0], u.numpy(), rtol=1e-5)
    # with attention it is a different map
    assert not np.allclose(sepvit_relevance(model, x, 2).stage_maps[0], rel.stage_maps[0], rtol=1e-3)


def test_class_specific(model):
    x = _image(64, 64)
    a = sepvit_relevance(model, x, 1).map_hw
    b = sepvit_relevance(model, x, 8).map_hw
    a, b = a / a.sum(), b / b.sum()
    assert np.abs(a - b).sum() > 0.05


def test_a_class_index_outside_the_model_is_refused(model):
    x = _image(64, 64)
    for bad in (-1, 10, 2.0):  # -1 would silently be the last class
        with pytest.raises(ValueError, match="class index"):
            sepvit_relevance(model, x, bad)
        with pytest.raises(ValueError, match="class index"):
            weighted_attention(model, x, bad)
    assert sepvit_relevance(model, x, 9).target == 9


def test_gradient_weighted_maps_are_row_stochastic(model):
    blocks = weighted_attention(model, _image(100, 132), 0).blocks
    assert [b.geometry.has_token for b in blocks] == [
        row.pwa_shape is not None for row in model.block_table((100, 132))
    ]
    for b in blocks:
        assert b.dwa.min() >= 0
        torch.testing.assert_close(b.dwa.sum(-1), torch.ones(b.dwa.shape[:-1], dtype=torch.float64))
        if b.pwa is not None:
            torch.testing.assert_close(b.pwa.sum(-1), torch.ones(b.pwa.shape[:-1], dtype=torch.float64))


def test_hooks_are_removed_and_fused_path_restored(model):
    x = _image(64, 64)
    with torch.no_grad():
        before = model(x)
    sepvit_relevance(model, x, 0)
    assert _taps_unwatched(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)


def _model_state(model) -> dict[str, tuple]:
    """Every module's attribute names and hook counts: what a call could leave behind on the model."""
    return {
        name: (
            sorted(vars(m)),
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(getattr(m, "_forward_hooks_with_kwargs", {})),
        )
        for name, m in model.named_modules()
    }


def test_a_forward_that_raises_leaves_no_hooks_and_no_state(model):
    x = _image(64, 64)
    before = _model_state(model)
    good = sepvit_relevance(model, x, 0, sharp=None).map_hw
    assert _model_state(model) == before

    def boom(*_):
        raise RuntimeError("boom in stage 3")

    h = model.stages[2].register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            sepvit_relevance(model, x, 0)
    finally:
        h.remove()
    assert _taps_unwatched(model) and _model_state(model) == before
    # nothing of the failed call lingers into the next one
    np.testing.assert_array_equal(sepvit_relevance(model, x, 0, sharp=None).map_hw, good)


def test_two_threads_computing_relevance_at_once_get_their_own_maps(model):
    """Both forwards wait for each other before stage 2, so both calls' hooks are registered while
    each thread's taps of stages 2-4 fire: each call must keep only its own thread's tensors."""
    inputs = [_image(64, 64, seed=2), _image(56, 84, seed=3)]
    expected = [sepvit_relevance(model, x, 1, sharp=None) for x in inputs]
    barrier = threading.Barrier(2, timeout=30)

    def meet(*_) -> None:  # returns None: a pre-hook's result would replace the stage's input
        barrier.wait()

    gate = model.stages[1].register_forward_pre_hook(meet)
    results: list = [None, None]
    errors: list = []

    def work(i: int) -> None:
        try:
            results[i] = sepvit_relevance(model, inputs[i], 1, sharp=None)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        gate.remove()
    assert not errors, errors
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got.map_hw, want.map_hw)
        for g, w in zip(got.stage_maps, want.stage_maps):
            np.testing.assert_array_equal(g, w)
        assert got.extras["blocks"] == want.extras["blocks"]
    assert _taps_unwatched(model)


def test_another_threads_forward_does_not_leak_into_the_relevance(model):
    """A plain forward of another thread during the relevance's forward (while its hooks are on)."""
    x, other = _image(64, 64), _image(96, 96, seed=5)
    want = weighted_attention(model, x, 2)
    done = threading.Event()

    def other_forward(*_) -> None:
        if threading.current_thread() is threading.main_thread() and not done.is_set():
            done.set()
            worker = threading.Thread(target=lambda: model(other))
            worker.start()
            worker.join(60)

    gate = model.stages[1].register_forward_pre_hook(other_forward)
    try:
        got = weighted_attention(model, x, 2)
    finally:
        gate.remove()
    assert done.is_set()
    assert [b.name for b in got.blocks] == [b.name for b in want.blocks]
    for g, w in zip(got.blocks, want.blocks):
        torch.testing.assert_close(g.dwa, w.dwa, rtol=0, atol=0)
        if w.pwa is not None:
            torch.testing.assert_close(g.pwa, w.pwa, rtol=0, atol=0)
    torch.testing.assert_close(got.seed, want.seed, rtol=0, atol=0)
    assert _taps_unwatched(model)


def test_options_checked_and_nearest_upsampling(model):
    x = _image(64, 64)
    with pytest.raises(ValueError):
        sepvit_relevance(model, x, 0, residual=1.5)
    with pytest.raises(ValueError):
        sepvit_relevance(model, x, 0, upsample="cubic")
    with pytest.raises(ValueError):
        sepvit_relevance(model, x, 0, modulation=-1.0)
    with pytest.raises(ValueError):
        sepvit_relevance(model, x, 0, reference="mean")
    rel = sepvit_relevance(model, x, 0, upsample="nearest", modulation=0.0, sharp=None)
    # nearest: every stage-1 cell covers the 4 x 4 pixels around its centre (4 i, 4 j), as every other map does
    np.testing.assert_allclose(rel.map_hw[::4, ::4], rel.stage_maps[0], rtol=1e-6)
    assert np.ptp(rel.map_hw[2:6, 2:6]) == 0 and np.ptp(rel.map_hw[:2, :2]) == 0
    np.testing.assert_array_equal(rel.map_hw, M.to_image(rel.stage_maps[0], 4, rel.map_hw.shape))


def test_gradient_input_rule_conserves_each_cell():
    """upsample='gradient': each stage-1 cell's relevance goes to its pixels, in proportion to weight."""
    r = torch.zeros(5, 6, dtype=torch.float64)
    r[2, 3] = 1.0
    weight = torch.ones(20, 24, dtype=torch.float64)
    weight[8, 12] = 100.0  # the pixel under cell (2, 3)'s centre contributed most
    out = to_pixels_by_gradient(r, weight)
    assert out.sum().item() == pytest.approx(1.0, rel=1e-9)
    assert out.argmax().item() == 8 * 24 + 12
    # only the 7 x 7 footprint of that cell (rows 5..11, cols 9..15) receives anything
    nz = torch.nonzero(out > 1e-12)
    assert nz[:, 0].min() >= 5 and nz[:, 0].max() <= 11 and nz[:, 1].min() >= 9 and nz[:, 1].max() <= 15


def test_gradient_upsampling_keeps_the_total(model):
    rel = sepvit_relevance(model, _image(100, 132), 4, upsample="gradient", modulation=0.0, sharp=None)
    assert rel.map_hw.shape == (100, 132) and rel.map_hw.min() >= 0
    assert rel.map_hw.sum() == pytest.approx(rel.seed.sum(), rel=1e-4)


def test_pixel_map_is_upsampled_stage_map_times_modulation(model):
    """Step 6 against an independent computation of e = sum_c dy/dx * (x - blur(x)) by autograd."""
    x = _image(100, 132)
    rel = sepvit_relevance(model, x, 6, modulation=2.0, sigma=1.0, reference="blurred", sharp=None)
    plain = sepvit_relevance(model, x, 6, modulation=0.0, sharp=None)
    xg = x.clone().requires_grad_()
    model(xg)[0, 6].backward()
    e = (xg.grad[0] * (x[0] - gaussian_blur(x, 10.0)[0])).sum(0)
    g = gaussian_blur(e.clamp_min(0)[None, None], 1.0)[0, 0]
    w = 1.0 + g / g.mean()
    np.testing.assert_allclose(rel.map_hw, plain.map_hw * w.numpy() ** 2, rtol=2e-3, atol=1e-9)
    np.testing.assert_allclose(rel.stage_maps[0], plain.stage_maps[0], rtol=1e-6)  # attention part unchanged
    # the zero reference is input x gradient
    rz = sepvit_relevance(model, x, 6, modulation=1.0, sigma=0.0, reference="zero", sharp=None)
    wz = 1.0 + (xg.grad[0] * x[0]).sum(0).clamp_min(0)
    wz = 1.0 + (wz - 1.0) / (wz - 1.0).mean()
    np.testing.assert_allclose(rz.map_hw, plain.map_hw * wz.numpy(), rtol=2e-3, atol=1e-9)


def test_modulation_weights_properties():
    gx = torch.tensor([[-1.0, 0.0, 2.0], [4.0, -3.0, 0.0]], dtype=torch.float64)
    w = modulation_weights(gx, 0.0)
    # negative evidence counts as none; w = 1 + g / mean(g), so w >= 1 and mean(w) == 2
    np.testing.assert_allclose(w.numpy(), [[1, 1, 3], [5, 1, 1]])  # mean(g) = 1
    ws = modulation_weights(torch.randn(30, 40), 2.0)
    assert ws.min() >= 1.0 and float(ws.mean()) == pytest.approx(2.0, rel=1e-5)
    # no positive evidence at all: the modulation is the identity
    assert torch.equal(modulation_weights(-torch.rand(5, 6), 1.0), torch.ones(5, 6))


def test_modulation_orders_pixels_by_evidence_inside_a_cell(model):
    """Where the attention relevance is flat (nearest upsampling), pixels rank by their evidence."""
    x = _image(64, 64)
    rel = sepvit_relevance(model, x, 1, upsample="nearest", modulation=1.0, sigma=0.0, sharp=None)
    plain = sepvit_relevance(model, x, 1, upsample="nearest", modulation=0.0, sharp=None)
    ratio = rel.map_hw / np.maximum(plain.map_hw, 1e-30)
    assert ratio.min() >= 1.0 - 1e-5 and ratio.max() > 1.5
    w = weighted_attention(model, x, 1, reference="blurred").input_grad_x.clamp_min(0).numpy()
    cell = (slice(8, 12), slice(8, 12))
    assert np.argsort(ratio[cell].ravel()).tolist()[-1] == int(np.argmax(w[cell].ravel()))


# ------------------------------------------------------------------------------ step 7
def test_percentile_rank_breaks_ties_by_raster_index():
    m = torch.tensor([[0.5, 2.0], [0.5, -1.0]])
    np.testing.assert_allclose(percentile_rank(m).numpy(), [[0.75, 1.0], [0.5, 0.25]])


def test_two_scale_order_by_hand():
    smooth = torch.tensor([[4.0, 3.0, 2.0, 1.0]])  # q = [1, .75, .5, .25]
    sharp = torch.tensor([[0.0, 5.0, 0.0, 9.0]])  # q = [.5, .75, .25, 1] (tied zeros: raster order)
    # delta 0: max = [1, .75, .5, 1]: pixel 0, then 3 (tie: raster), 1, 2
    np.testing.assert_allclose(two_scale_order(smooth, sharp, 0.0).numpy(), [[4.0, 2.0, 1.0, 3.0]])
    # delta 0.1: [.9, .75, .4, 1]: pixel 3, 0, 1, 2
    np.testing.assert_allclose(two_scale_order(smooth, sharp, 0.1).numpy(), [[3.0, 2.0, 1.0, 4.0]])
    # delta 0.3: [.7, .75, .25, 1]: pixel 3, 1, 0, 2 -- the sharp order alone, as for delta 1
    np.testing.assert_allclose(two_scale_order(smooth, sharp, 0.3).numpy(), [[2.0, 3.0, 1.0, 4.0]])
    np.testing.assert_allclose(two_scale_order(smooth, sharp, 1.0).numpy(), [[2.0, 3.0, 1.0, 4.0]])
    # agreeing orders change nothing
    assert torch.equal(two_scale_order(smooth, smooth * 10, 0.2), smooth)


def test_two_scale_order_with_leading_pixels_by_hand():
    smooth = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.5]])  # q = [1, .8, .6, .4, .2]
    sharp = torch.tensor([[0.0, 1.0, 3.0, 2.0, -9.0]])  # pixel 4 was taken: lowest; q = [.4, .6, 1, .8, .2]
    # pixel 4 leads; the rest by max(q(smooth) - .2, q(sharp)) = [.8, .6, 1, .8]: pixel 2, 0, 3 (tie: raster), 1
    got = two_scale_order(smooth, sharp, 0.2, first=torch.tensor([4]))
    np.testing.assert_allclose(got.numpy(), [[2.0, 0.5, 3.0, 1.0, 4.0]])


def test_step7_permutes_the_step6_map_and_puts_the_sharp_evidence_first(model):
    """Against independent pieces: step 5's map U (no modulation), e by autograd, step 6's map M."""
    x = _image(96, 128)
    delta = 0.1
    fused = sepvit_relevance(model, x, 3, sharp=delta, rounds=1).map_hw
    m6 = sepvit_relevance(model, x, 3, sharp=None).map_hw
    u = sepvit_relevance(model, x, 3, modulation=0.0, sharp=None).map_hw
    xg = x.clone().requires_grad_()
    model(xg)[0, 3].backward()
    e = (xg.grad[0] * (x[0] - gaussian_blur(x, 10.0)[0])).sum(0).numpy()
    # the same values (histogram and total), in another order
    np.testing.assert_allclose(np.sort(fused.ravel()), np.sort(m6.ravel()), rtol=1e-6)
    assert not np.array_equal(fused, m6)
    # the top delta share of the fused order is the top of S = U * e
    k = int(delta * fused.size)
    top_fused = set(np.argsort(-fused.ravel(), kind="stable")[: k - 5].tolist())
    top_sharp = set(np.argsort(-(u * e).ravel(), kind="stable")[:k].tolist())
    assert len(top_fused & top_sharp) >= 0.97 * len(top_fused)
    with pytest.raises(ValueError, match="sharp"):
        sepvit_relevance(model, x, 3, sharp=1.5)


def test_step7_with_one_round_is_the_two_scale_order_of_independent_pieces(model):
    x = _image(96, 128)
    m6 = torch.from_numpy(sepvit_relevance(model, x, 3, sharp=None).map_hw).double()
    u = torch.from_numpy(sepvit_relevance(model, x, 3, modulation=0.0, sharp=None).map_hw).double()
    xg = x.clone().requires_grad_()
    model(xg)[0, 3].backward()
    e = (xg.grad[0] * (x[0] - gaussian_blur(x, 10.0)[0])).sum(0).double()
    # round 1 takes the top delta of S = U * e; the rest follow the fused order with them ranked last
    s = (u * e).ravel()
    k = round(0.1 * s.numel())
    first = torch.from_numpy(np.argsort(-s.numpy(), kind="stable")[:k].copy())
    s[first] = -1e300
    expected = two_scale_order(m6, s.reshape(u.shape), 0.1, first=first).float().numpy()
    got = sepvit_relevance(model, x, 3, sharp=0.1, rounds=1).map_hw
    assert np.mean(np.isclose(got, expected, rtol=1e-5, atol=1e-9)) > 0.995  # near-ties of e may swap a few


def test_step7_rounds_reread_the_evidence_with_the_taken_pixels_blurred_away(model):
    """Round 2's chunk is the top of U * e(x_1), x_1 = the photo with round 1's chunk blurred away."""
    x = _image(96, 128)
    H, W = x.shape[-2:]
    delta, target = 0.1, 3
    u = torch.from_numpy(sepvit_relevance(model, x, target, modulation=0.0, sharp=None).map_hw).double()
    ref = gaussian_blur(x, 10.0)

    def e_at(xr):
        xg = xr.clone().requires_grad_()
        model(xg)[0, target].backward()
        return (xg.grad[0] * (xr[0] - ref[0])).sum(0).double()

    k = round(delta * H * W)
    half = round(k / 2)
    s1 = (u * e_at(x)).ravel()
    chunk1 = np.argsort(-s1.numpy(), kind="stable")[:half]
    taken = torch.zeros(H * W, dtype=torch.bool)
    taken[torch.from_numpy(chunk1)] = True
    x1 = torch.where(taken.view(1, 1, H, W), ref, x)
    s2 = (u * e_at(x1)).ravel().clone()
    s2[taken] = -torch.inf
    chunk2 = np.argsort(-s2.numpy(), kind="stable")[: k - half]

    got = sepvit_relevance(model, x, target, sharp=delta, rounds=2).map_hw
    order = np.argsort(-got.ravel(), kind="stable")
    m6 = sepvit_relevance(model, x, target, sharp=None).map_hw
    np.testing.assert_allclose(np.sort(got.ravel()), np.sort(m6.ravel()), rtol=1e-6)  # a permutation of M
    tol = 3  # near-ties of M's values may swap a few pixels at the chunk borders
    assert len(set(order[:half].tolist()) & set(chunk1.tolist())) >= half - tol
    assert len(set(order[half:k].tolist()) & set(chunk2.tolist())) >= (k - half) - tol
    # the re-read changed the order: round 2's chunk is not the next pixels of the one-read order
    one_read = np.argsort(-sepvit_relevance(model, x, target, sharp=delta, rounds=1).map_hw.ravel(), kind="stable")
    assert len(set(one_read[half:k].tolist()) & set(chunk2.tolist())) < 0.9 * (k - half)


@pytest.mark.parametrize("rounds", [0, -1, 1.5, True])
def test_step7_rounds_must_be_a_positive_integer(model, rounds):
    with pytest.raises(ValueError, match="rounds"):
        sepvit_relevance(model, _image(64, 64), 0, sharp=0.1, rounds=rounds)


# ------------------------------------------------------------------------------ golden arrays
def golden_input() -> torch.Tensor:
    """A deterministic (1, 3, 96, 128) input (no RNG, no file): smooth ramps with a bright square.

    96 x 128 pads the stage-1 map (24 x 32 cells) to whole 7 x 7 windows."""
    y, x = np.mgrid[0:96, 0:128].astype(np.float32)
    img = np.stack([np.sin(x / 9.0) * np.cos(y / 13.0), (x - y) / 112.0, np.cos((x + 2 * y) / 17.0)])
    img[:, 30:54, 70:98] = 1.5
    return torch.from_numpy(img)[None]


def golden_relevance() -> dict[str, np.ndarray]:
    """The arrays the relevance golden file holds: ``sepvit_test`` (seed 0, 10 classes) on
    :func:`golden_input`, class 3: the default map (steps 1-7) as ``attribute`` gives it, steps 1-6
    (``sharp=None``), the stage maps and the seed."""
    from sepvit_viz.explain.attribution import attribute

    torch.manual_seed(0)
    model = create_model("sepvit_test", num_classes=10).eval()
    x = golden_input()
    out = {"attribute.map": attribute(model, x, 3, "sepvit_relevance").map_hw}
    rel = sepvit_relevance(model, x, 3, sharp=None)
    out["steps1-6.map"] = rel.map_hw
    out["seed"] = rel.seed
    for s, m in enumerate(rel.stage_maps):
        out[f"stage{s}"] = m
    return out


def test_relevance_matches_the_golden_arrays():
    """Pins the relevance maps. Regenerate only after a deliberate change of the relevance's definition:
    ``python -c "from tests.test_relevance import write_golden; write_golden()"`` (from the repository
    root). The file was written by the hook manager that preceded :class:`AttentionCapture`'s
    ``keep_graph`` mode; the capture had to reproduce it."""
    got = golden_relevance()
    with np.load(GOLDEN) as z:
        assert sorted(z.files) == sorted(got)
        for k, v in got.items():
            # the thread count changes float32 summation order: up to 2e-5 of the map's maximum
            np.testing.assert_allclose(v, z[k], rtol=1e-4, atol=1e-4 * float(np.abs(z[k]).max()), err_msg=k)


def write_golden() -> None:  # pragma: no cover - a maintenance helper
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **golden_relevance())
