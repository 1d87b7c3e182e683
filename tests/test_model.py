"""The SepViT model: variants, geometry at any input size, taps, fused/watched agreement."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import sepvit_viz
from sepvit_viz import SepViTConfig, create_model, feature_sizes, list_models
from sepvit_viz.model.attention import AttentionTap
from sepvit_viz.model.windows import window_geometry, window_partition, window_reverse

torch.set_num_threads(1)


def _watch(model):
    """Forward hooks on every tap; returns (records dict name -> (probs, geometry), handles)."""
    records, handles = {}, []
    for block in model.iter_blocks():
        for kind in ("dwa", "pwa"):
            tap = getattr(block.attn, f"{kind}_tap", None)
            if tap is not None:
                handles.append(
                    tap.register_forward_hook(
                        lambda m, args, out, key=f"{block.name}.{kind}": records.__setitem__(key, (out, args[1]))
                    )
                )
    return records, handles


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = create_model("sepvit_test", num_classes=10).eval()
    # perturb window tokens and norms so that every parameter matters in comparisons
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "window_tokens" in name or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def test_registry_lists_every_variant():
    assert set(list_models()) == {"sepvit_test", "sepvit_lite", "sepvit_tiny", "sepvit_small", "sepvit_base"}
    with pytest.raises(ValueError, match="unknown model"):
        create_model("sepvit_huge")


@pytest.mark.parametrize("name", ["sepvit_test", "sepvit_lite", "sepvit_tiny", "sepvit_small", "sepvit_base"])
def test_every_variant_gives_logits_of_the_right_shape(name):
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "params_m", "macs_g"),
    [("sepvit_lite", 3.66, 0.57), ("sepvit_tiny", 31.2, 4.5), ("sepvit_small", 46.6, 7.5), ("sepvit_base", 82.3, 13.1)],
)
def test_published_parameter_and_mac_counts(name, params_m, macs_g):
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(name).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - params_m) / params_m < 0.005, params
    model.set_fused_attn(False)  # count the explicit matmuls
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    macs = counter.get_total_flops() / 2 / 1e9  # flop_counter reports 2 per multiply-accumulate
    assert abs(macs - macs_g) / macs_g < 0.03, macs


def test_block_kinds_follow_the_official_configs():
    model = create_model("sepvit_lite")
    kinds = [(b.stage, b.kind, b.window_size) for b in model.iter_blocks()]
    assert kinds == [
        (0, "dssa", 7),
        (1, "dssa", 7),
        (1, "gsa", 14),
        (2, "dssa", 7),
        (2, "global", 14),
        (2, "dssa", 7),
        (2, "global", 14),
        (2, "dssa", 7),
        (2, "global", 14),
        (3, "global", 7),
        (3, "global", 7),
    ]
    table = {r.name: r for r in model.block_table(224)}
    assert table["stages.0.blocks.0"].dwa_shape == (64, 1, 50, 50)
    assert table["stages.0.blocks.0"].pwa_shape == (1, 64, 64)
    assert table["stages.1.blocks.1"].dwa_shape == (4, 2, 197, 197)
    assert table["stages.2.blocks.1"].dwa_shape == (1, 4, 196, 196)
    assert table["stages.2.blocks.1"].pwa_shape is None
    # at 448 stage 1 has a 16x16 grid of windows
    assert model.block_table(448)[0].grid == (16, 16)


def test_window_tokens_are_zero_initialised_one_per_window():
    model = create_model("sepvit_tiny")
    block = next(model.iter_blocks())
    assert block.window_tokens.shape == (1, 64, 1, 96)
    assert torch.count_nonzero(block.window_tokens) == 0


@pytest.mark.parametrize("size", [(224, 224), (200, 320), (97, 131), (32, 48), (448, 448)])
def test_any_input_size_fused_and_watched_agree(tiny, size):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        fused = tiny(x)
        records, handles = _watch(tiny)
        try:
            watched = tiny(x)
        finally:
            for h in handles:
                h.remove()
    assert torch.allclose(fused, watched, atol=1e-5), (fused - watched).abs().max()
    expected = tiny.block_table(size)
    dwa = [r for k, r in records.items() if k.endswith(".dwa")]
    assert len(dwa) == len(expected)
    for row in expected:
        probs, geom = records[f"{row.name}.dwa"]
        assert tuple(probs.shape[1:]) == row.dwa_shape
        assert geom.grid == row.grid and geom.pad == row.pad
        if row.pwa_shape is None:
            assert f"{row.name}.pwa" not in records
        else:
            assert tuple(records[f"{row.name}.pwa"][0].shape[1:]) == row.pwa_shape


def test_attention_rows_sum_to_one_and_padding_gets_no_weight(tiny):
    records, handles = _watch(tiny)
    try:
        with torch.no_grad():
            tiny(torch.randn(2, 3, 100, 132))  # stage 1: 25x33 cells -> padded to 28x35
    finally:
        for h in handles:
            h.remove()
    padded_seen = False
    for key, (probs, geom) in records.items():
        assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5), key
        assert (probs >= 0).all()
        if key.endswith(".dwa") and geom.has_token and (geom.pad[0] or geom.pad[1]):
            padded_seen = True
            # key columns of padded pixels must hold exactly zero weight
            real = torch.ones(1, geom.height, geom.width, 1)
            mask = window_partition(real, geom)[0, :, :, 0] > 0.5  # (n, P)
            cols = torch.cat([torch.ones(mask.shape[0], 1, dtype=torch.bool), mask], dim=1)
            pad_weight = probs.masked_fill(cols[None, :, None, None, :], 0.0)
            assert pad_weight.abs().max() == 0, key
            assert (~cols).any()
    assert padded_seen


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = create_model("sepvit_test", num_classes=5).train()
    model(torch.randn(2, 3, 224, 224)).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_window_tokens_get_gradients_at_other_grids_too():
    model = create_model("sepvit_test", num_classes=5).train()
    model(torch.randn(1, 3, 160, 200)).sum().backward()
    block = next(model.iter_blocks())
    assert block.window_tokens.grad is not None and block.window_tokens.grad.abs().sum() > 0


def test_token_grid_mapping_rule():
    model = create_model("sepvit_test")
    block = next(model.iter_blocks())
    with torch.no_grad():
        block.window_tokens.copy_(torch.randn_like(block.window_tokens))
    assert block.tokens_for((8, 8)) is block.window_tokens  # the reference grid is used as it is
    bigger = block.tokens_for((16, 16))
    assert bigger.shape == (1, 256, 1, 16)
    # a constant token grid stays constant under the mapping
    with torch.no_grad():
        block.window_tokens.fill_(0.25)
    assert torch.allclose(block.tokens_for((3, 5)), torch.full((1, 15, 1, 16), 0.25), atol=1e-6)
    # bilinear with align_corners=False, pinned by hand: a ramp over the 8 reference columns,
    # enlarged to 16 columns, samples column j at x = (j + 0.5) * 8 / 16 - 0.5, clamped to [0, 7]
    # (nearest or align_corners=True would give other values)
    ramp = torch.arange(8.0).repeat(8)  # token (r, c) = c, raster order
    with torch.no_grad():
        block.window_tokens.copy_(ramp.view(1, 64, 1, 1).expand(1, 64, 1, 16))
    got = block.tokens_for((16, 16)).view(16, 16, 16)[..., 0]
    expected_cols = ((torch.arange(16.0) + 0.5) * 0.5 - 0.5).clamp(0, 7)
    assert torch.allclose(got, expected_cols.expand(16, 16), atol=1e-6)
    # shrinking is antialiased: it equals the antialiased resize and differs from the plain one
    with torch.no_grad():
        block.window_tokens.copy_(torch.randn_like(block.window_tokens))
    grid = block.window_tokens.reshape(1, 8, 8, 16).permute(0, 3, 1, 2)
    smaller = block.tokens_for((3, 5)).reshape(3, 5, 16).permute(2, 0, 1)
    aa = torch.nn.functional.interpolate(grid, size=(3, 5), mode="bilinear", align_corners=False, antialias=True)[0]
    plain = torch.nn.functional.interpolate(grid, size=(3, 5), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(smaller, aa, atol=1e-6) and not torch.allclose(smaller, plain, atol=1e-3)


def test_padded_pixels_do_not_reach_other_windows_through_pwa():
    """PWA mixes pixel p of every window; where p is padding in one window it must add nothing."""
    from sepvit_viz.model.attention import SeparableAttention
    from sepvit_viz.model.windows import pad_mask

    torch.manual_seed(0)
    geom = window_geometry(10, 13, 7, True)  # 2x2 windows, 4 padded rows and 1 padded column
    mask = pad_mask(geom)  # (n, P)
    assert mask is not None and not mask.all()
    for heads in (1, 2):
        attn = SeparableAttention(16, heads).eval()
        y = torch.randn(2, geom.num_windows, 1 + geom.window_pixels, 16)
        noisy = y.clone()
        noisy[:, :, 1:][:, ~mask] = 100 * torch.randn_like(noisy[:, :, 1:][:, ~mask])
        with torch.no_grad():
            clean_out, noisy_out = attn._pwa(y, geom, mask), attn._pwa(noisy, geom, mask)
        # real pixels are the same whatever the padded ones hold (the padded ones are cropped later)
        assert torch.allclose(clean_out[:, mask], noisy_out[:, mask], atol=1e-5), heads
        # and the mask is what protects them: without it the noise leaks in
        with torch.no_grad():
            leaky = attn._pwa(noisy, geom, None)
        assert not torch.allclose(clean_out[:, mask], leaky[:, mask], atol=1e-2), heads


def test_single_head_pwa_matches_the_general_formula_in_float32_and_under_autocast():
    """One head takes a single batched GEMM; it must equal the per-head einsum of the other heads'
    path, and under bf16 autocast keep the shortcut in float32 as that path does."""
    from sepvit_viz.model.attention import SeparableAttention

    torch.manual_seed(0)
    geom = window_geometry(14, 21, 7, True)
    attn = SeparableAttention(16, 1).eval()
    y = torch.randn(2, geom.num_windows, 1 + geom.window_pixels, 16)

    def general(y: torch.Tensor) -> torch.Tensor:
        g = attn.token_act(attn.token_norm(y[:, :, 0]))
        q, k = attn.pwa_qk(g).chunk(2, dim=-1)
        a = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)  # (B, n, n)
        feats = y[:, :, 1:]
        return torch.einsum("bnm,bmpc->bnpc", a, feats) + feats

    with torch.no_grad():
        torch.testing.assert_close(attn._pwa(y, geom, None), general(y), rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attn._pwa(y, geom, None)
    assert out.dtype == torch.float32  # the shortcut was not rounded to bf16
    torch.testing.assert_close(out, general(y), rtol=0.05, atol=0.05)


def test_fused_window_copies_equal_partition_concat_and_reverse_add():
    from sepvit_viz.model.windows import add_windows_back, windows_with_tokens

    torch.manual_seed(0)
    for H, W in ((14, 21), (10, 13)):  # whole windows, then padding at the bottom and right
        geom = window_geometry(H, W, 7, True)
        x = torch.randn(2, H, W, 5)
        tokens = torch.randn(1, geom.num_windows, 1, 5)
        expected = torch.cat([tokens.expand(2, -1, -1, -1), window_partition(x, geom)], dim=2)
        assert torch.equal(windows_with_tokens(x, tokens, geom), expected)
        windows = torch.randn(2, geom.num_windows, geom.window_pixels, 5)
        summed = add_windows_back(x, windows, geom)
        # reference written out cell by cell: pixel (i, j) of window (r, c) lands on row r*7+i, col c*7+j
        expected = x.clone()
        for w in range(geom.num_windows):
            r, c = divmod(w, geom.grid[1])
            for p in range(geom.window_pixels):
                row, col = r * 7 + p // 7, c * 7 + p % 7
                if row < H and col < W:
                    expected[:, row, col] += windows[:, w, p]
        assert summed.is_contiguous() and torch.allclose(summed, expected, atol=1e-6)


def test_partition_and_reverse_are_inverse_with_padding():
    x = torch.randn(2, 10, 13, 3)
    geom = window_geometry(10, 13, 7, True)
    assert geom.grid == (2, 2) and geom.pad == (4, 1)
    windows = window_partition(x, geom)
    assert windows.shape == (2, 4, 49, 3)
    assert torch.equal(window_reverse(windows, geom), x)
    # raster order of windows and of pixels inside a window
    assert geom.window_of(8, 12) == (3, 1 * 7 + 5)
    assert torch.equal(windows[:, 3, 1 * 7 + 5], x[:, 8, 12])


def test_forward_surface_and_feature_info(tiny):
    x = torch.randn(1, 3, 200, 320)
    with torch.no_grad():
        tokens = tiny.forward_features(x)
        sizes = feature_sizes(200, 320)
        assert tokens.shape == (1, sizes[3][0] * sizes[3][1], 128)
        assert torch.allclose(tiny.forward_head(tokens), tiny(x), atol=1e-6)
        assert tiny.forward_head(tokens, pre_logits=True).shape == (1, 128)
        final, inters = tiny.forward_intermediates(x)
        assert torch.allclose(final, tokens, atol=1e-6)
        for info, feat, (h, w) in zip(tiny.feature_info, inters, sizes):
            assert feat.shape == (1, info["num_chs"], h, w)
            assert info["reduction"] * h >= 200 > info["reduction"] * (h - 1)
        only = tiny.forward_intermediates(x, indices=[1], intermediates_only=True)
        assert len(only) == 1 and torch.allclose(only[0], inters[1], atol=1e-6)
        # negative indices count from the end; NHWC is the same maps, channels last
        last = tiny.forward_intermediates(x, indices=[-1], output_fmt="NHWC", intermediates_only=True)
        assert torch.allclose(last[0], inters[3].permute(0, 2, 3, 1), atol=1e-6)
        # stopping early returns the stopping stage's own tokens (the final norm is for stage 4's width)
        early, early_inters = tiny.forward_intermediates(x, indices=[1], stop_early=True)
        assert torch.allclose(early, inters[1].flatten(2).transpose(1, 2), atol=1e-6)
        assert len(early_inters) == 1
    for bad in ([5], [-5], 0, 5):
        with pytest.raises(ValueError, match="within"):
            tiny.forward_intermediates(x, indices=bad)


def test_every_config_field_reaches_the_modules():
    base = sepvit_viz.VARIANTS["sepvit_test"]
    ref = create_model("sepvit_test")

    def build(**kw):
        return sepvit_viz.SepViT(base.replace(**kw))

    wide = build(embed_dims=(8, 16, 32, 64))
    assert [s.patch_embed.proj.out_channels for s in wide.stages] == [8, 16, 32, 64]
    assert [s.blocks[0].attn.qkv.in_features for s in wide.stages] == [8, 16, 32, 64]
    assert wide.head.in_features == wide.norm.normalized_shape[0] == 64
    assert len(list(build(depths=(2, 2, 2, 2)).iter_blocks())) == 8
    assert next(build(num_heads=(2, 2, 2, 4)).iter_blocks()).num_heads == 2
    assert [b.window_size for b in build(window_patterns=((7,), (14, 7), (7, 14), (7, 7))).iter_blocks()][1:3] == [
        14,
        7,
    ]
    assert build(mlp_ratio=2.0).stages[0].blocks[0].mlp.fc1.out_features == 32
    assert build(qkv_bias=False).stages[0].blocks[0].attn.qkv.bias is None
    assert build(num_classes=3).head.out_features == 3
    assert build(in_chans=1).stages[0].patch_embed.proj.in_channels == 1
    assert build(patch_size=5).stages[0].patch_embed.proj.kernel_size == (5, 5)
    assert next(build(ref_img_size=448).iter_blocks()).window_tokens.shape[1] == 256
    assert build(layer_norm_eps=1e-3).norm.eps == 1e-3
    eps_model = build(embed_norm_eps=1e-3)
    assert eps_model.stages[0].patch_embed.norm.eps == 1e-3
    # the window-token LayerNorm of PWA takes the official code's eps from the same field
    assert {b.attn.token_norm.eps for b in eps_model.iter_blocks() if b.kind != "global"} == {1e-3}
    assert build(drop_rate=0.3).stages[0].blocks[0].mlp.drop.p == 0.3
    assert build(attn_drop_rate=0.2).stages[0].blocks[0].attn.attn_drop.p == 0.2
    assert list(build(drop_path_rate=0.5).iter_blocks())[-1].drop_path.prob == pytest.approx(0.5)
    covered = {
        "embed_dims",
        "depths",
        "num_heads",
        "window_patterns",
        "mlp_ratio",
        "qkv_bias",
        "num_classes",
        "in_chans",
        "patch_size",
        "ref_img_size",
        "layer_norm_eps",
        "embed_norm_eps",
        "drop_rate",
        "attn_drop_rate",
        "drop_path_rate",
        "name",
    }
    assert covered == {f.name for f in dataclasses.fields(SepViTConfig)}
    assert ref.config.name == "sepvit_test"


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="multiple of heads"):
        SepViTConfig(embed_dims=(32, 64, 130, 256))
    with pytest.raises(ValueError, match="one entry per stage"):
        SepViTConfig(depths=(1, 2, 3))
    cfg = SepViTConfig.from_json(sepvit_viz.VARIANTS["sepvit_lite"].to_json())
    assert cfg == sepvit_viz.VARIANTS["sepvit_lite"]


def test_taps_are_the_only_visualisation_seam():
    model = create_model("sepvit_test")
    taps = [n for n, m in model.named_modules() if isinstance(m, AttentionTap)]
    # one DWA tap per block, one PWA tap per windowed block
    n_blocks = len(list(model.iter_blocks()))
    n_windowed = sum(b.kind != "global" for b in model.iter_blocks())
    assert len(taps) == n_blocks + n_windowed
    assert all(n.endswith((".attn.dwa_tap", ".attn.pwa_tap")) for n in taps)


def test_bf16_inference_path_tracks_float32(tiny):
    from sepvit_viz.model.inference import predict

    torch.manual_seed(3)
    x = torch.randn(4, 3, 96, 96)
    fp32, bf16 = predict(tiny, x), predict(tiny, x, bf16=True)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    # bf16 keeps about 3 significant digits: the logits must track float32 closely but not exactly
    corr = torch.corrcoef(torch.stack([fp32.flatten(), bf16.flatten()]))[0, 1]
    assert corr > 0.99, corr
    assert not torch.equal(fp32, bf16)


def test_an_even_stem_kernel_is_refused():
    """The stem pads k // 2: only an odd kernel gives stage 1 = ceil(H / 4), as the block table assumes
    (the official code's unpadded patch_size 4 stem is another layout)."""
    from sepvit_viz.model.config import SepViTConfig

    with pytest.raises(ValueError, match="patch_size must be odd"):
        SepViTConfig.from_official(
            {"embed_dims": [32, 64, 128, 256], "num_heads": [1, 2, 4, 8], "depths": [1, 2, 6, 2], "patch_size": 4}
        )


def test_a_forward_on_the_meta_device_traces_shapes():
    """Shape and FLOP tracing on "meta" crashed for one-head PWA blocks (Lite's stage 1): autocast
    has no state to ask for that device."""
    with torch.device("meta"):
        model = create_model("sepvit_test", num_classes=10).eval()
    out = model(torch.empty(2, 3, 64, 64, device="meta"))
    assert out.shape == (2, 10) and out.device.type == "meta"
