"""Maps on hand-built attention tensors whose answers can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sepvit_viz.viz import maps
from sepvit_viz.viz.maps import BlockAttention, Geometry

RNG = np.random.default_rng(0)


def random_attention(
    geom: Geometry, heads: int, rng: np.random.Generator = RNG
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax DWA (n, h, L, L) with padded keys at exactly 0, and PWA (h, n, n) when windowed."""
    n, P = geom.grid[0] * geom.grid[1], geom.window[0] * geom.window[1]
    t = int(geom.has_token)
    logits = rng.normal(size=(n, heads, P + t, P + t))
    real = maps._pixel_mask(geom)  # (n, P)
    key_real = np.concatenate([np.ones((n, t), bool), real], axis=1)
    logits = np.where(key_real[:, None, None, :], logits, -np.inf)
    dwa = np.exp(logits - logits.max(-1, keepdims=True))
    dwa /= dwa.sum(-1, keepdims=True)
    if not t:
        return dwa, None
    pl = rng.normal(size=(heads, n, n))
    pwa = np.exp(pl) / np.exp(pl).sum(-1, keepdims=True)
    return dwa, pwa


def cell_of(geom: Geometry, window: int, pixel: int) -> tuple[int, int]:
    gr, gc = divmod(window, geom.grid[1])
    pr, pc = divmod(pixel, geom.window[1])
    return gr * geom.window[0] + pr, gc * geom.window[1] + pc


# ------------------------------------------------------------------ geometry and coordinates
def test_geometry_mirror_matches_model_geometry():
    from sepvit_viz.model.windows import window_geometry

    for h, w, win in [(5, 6, 3), (56, 56, 7), (29, 15, 14), (7, 7, None)]:
        mine = Geometry.tiled(h, w, win, stride=8)
        theirs = window_geometry(h, w, win, win is not None, 8)
        for f in ("height", "width", "window", "grid", "pad", "has_token", "stride"):
            assert getattr(mine, f) == getattr(theirs, f), f


def test_tile_windows_inverts_partition_and_crops_padding():
    geom = Geometry.tiled(5, 7, 3)  # grid 2x3, pad (1, 2)
    fmap = np.arange(35.0).reshape(5, 7)
    padded = np.full((6, 9), -1.0)
    padded[:5, :7] = fmap
    win = maps._untile_inverse(padded, geom)
    assert win.shape == (6, 9)
    # window 1 (row 0, col 1) pixel 4 (its centre) is feature cell (1, 4)
    assert win[1, 4] == fmap[1, 4]
    np.testing.assert_array_equal(maps.tile_windows(win, geom), fmap)


@pytest.mark.parametrize("image_size", [(20, 24), (18, 23), (17, 21)])
def test_points_map_to_the_right_window_at_odd_sizes(image_size):
    # 5x6 feature map at stride 4 (ceil(17/4) = 5, ceil(21/4) = 6), windows of 3 -> grid 2x2 with padding
    geom = Geometry.tiled(5, 6, 3, stride=4)
    assert geom.pad == (1, 0)
    hi, wi = image_size
    for y in range(hi):
        for x in range(wi):
            r, c = min((y + 2) // 4, 4), min((x + 2) // 4, 5)  # the cell whose centre (4 r, 4 c) is nearest
            assert maps.window_at(geom, (y, x), image_size) == (r // 3) * 2 + c // 3
    # the bottom window row holds only two feature rows (3, 4): from pixel 4 * 3 - 2 to the image's edge
    assert maps.window_box(geom, 2, image_size) == (10, 0, hi, 10)
    assert maps.window_box(geom, 1, image_size) == (0, 10, 10, wi)
    with pytest.raises(ValueError):
        maps.window_at(geom, (hi, 0), image_size)


def test_to_image_draws_each_cell_around_its_centre():
    fmap = np.array([[1.0, 2.0], [3.0, 4.0]])
    img = maps.to_image(fmap, 4, (7, 6))
    assert img.shape == (7, 6)
    # cell 0 is centred on pixel 0 (its upper half falls off the image), cell 1 on pixel 4
    assert (
        (img[:2, :2] == 1).all() and (img[:2, 2:] == 2).all() and (img[2:, :2] == 3).all() and (img[2:, 2:] == 4).all()
    )
    assert maps.cell_edges(2, 4, 7).tolist() == [0, 2, 7]
    assert maps.cell_box(Geometry.tiled(2, 2, 2, stride=4), (1, 0), (7, 6)) == (2, 0, 7, 2)
    # an image larger than the cells repeats the border instead of failing
    assert maps.to_image(fmap, 1, (3, 3))[2, 2] == 4


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_cells_are_drawn_where_the_patch_embeddings_put_them(stage):
    """The placement convention, checked against the model: the input pixels that a feature cell's
    patch-embedding chain reads (its gradient) are centred on (s i, s j), and the maps draw the cell
    over the pixels around that centre: cell_at picks it there and to_image puts its value there."""
    import torch

    import sepvit_viz

    model = sepvit_viz.create_model("sepvit_test").eval()
    x = torch.zeros(1, 3, 96, 160, requires_grad=True)
    fmap = x
    for k in range(stage + 1):
        fmap = model.stages[k].patch_embed.proj(fmap)  # the convolutions alone: position, not content
    h, w = fmap.shape[-2:]
    stride = 4 * 2**stage
    geom = Geometry.tiled(h, w, 1, stride=stride)
    for i, j in {(h // 2, w // 2), (1, 1), (h - 2, w - 2)}:
        if not (0 < i < h - 1 and 0 < j < w - 1):
            continue  # an interior cell: a border cell's footprint is cut by the padding
        (grad,) = torch.autograd.grad(fmap[0, :, i, j].sum(), x, retain_graph=True)
        weight = grad[0].abs().sum(0).numpy()
        ys, xs = np.nonzero(weight)
        centre = ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2)
        assert centre == (stride * i, stride * j)
        assert maps.cell_at(geom, centre, (96, 160)) == (i, j)
        one = np.zeros((h, w))
        one[i, j] = 1.0
        img = maps.to_image(one, stride, (96, 160))
        y0, x0, y1, x1 = maps.cell_box(geom, (i, j), (96, 160))
        assert img[stride * i, stride * j] == 1.0 and img.sum() == (y1 - y0) * (x1 - x0) == stride * stride
        assert img[y0:y1, x0:x1].all()  # drawn exactly over its box
        assert (y0 + y1 - 1) / 2 == stride * i - 0.5  # the s x s pixels nearest the centre (s even)


def test_grid_lines_windows_and_gsa_subwindows():
    geom = Geometry.tiled(28, 28, 14, stride=8)
    ys, xs = maps.grid_lines(geom)  # between cells 13 and 14, centred on pixels 104 and 112
    assert ys.tolist() == [108] and xs.tolist() == [108]
    ys, xs = maps.grid_lines(geom, subdivide=2)
    assert ys.tolist() == [52, 108, 164] and xs.tolist() == [52, 108, 164]
    odd = Geometry.tiled(15, 15, 7, stride=4)  # 3x3 windows, last one partly padding
    assert maps.grid_lines(odd, (58, 60))[0].tolist() == [26, 54]


# ------------------------------------------------------------------ head fusion
def test_fuse_heads_index_mean_max_min():
    a = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 4.0), np.full((2, 2), 7.0)], axis=0)
    assert maps.fuse_heads(a, 1, axis=0)[0, 0] == 4.0
    assert maps.fuse_heads(a, "mean", axis=0)[0, 0] == 4.0
    assert maps.fuse_heads(a, "max", axis=0)[0, 0] == 7.0
    assert maps.fuse_heads(a, "min", axis=0)[0, 0] == 1.0
    with pytest.raises(ValueError):
        maps.fuse_heads(a, 3, axis=0)
    with pytest.raises(ValueError):
        maps.fuse_heads(a, "median", axis=0)


# ------------------------------------------------------------------ view 1: window tokens
def test_one_hot_token_row_lights_exactly_one_pixel_block():
    geom = Geometry.tiled(5, 6, 3, stride=4)
    n, P, h = 4, 9, 2
    dwa = np.zeros((n, h, P + 1, P + 1))
    dwa[3, 0, 0, 1 + 5] = 1.0  # window 3 (bottom right), head 0, token -> pixel 5 = (1, 2) -> cell (4, 5)
    dwa[3, 1, 0, 1 + 0] = 1.0  # head 1 looks at pixel 0 -> cell (3, 3)
    img = maps.token_map(dwa, geom, head=0, image_size=(18, 23))
    assert img.shape == (18, 23)
    lit = np.argwhere(img > 0)
    # cell (4, 5) is centred on pixel (16, 20): rows 14..17 (cut by the image at 18), columns 18..22
    assert lit[:, 0].min() == 14 and lit[:, 0].max() == 17
    assert lit[:, 1].min() == 18 and lit[:, 1].max() == 22
    assert img.sum() == pytest.approx(4 * 5)
    mean = maps.token_map(dwa, geom, head="mean", image_size=(20, 24))
    assert mean[17, 21] == pytest.approx(0.5) and mean[13, 13] == pytest.approx(0.5)
    assert np.count_nonzero(mean) == 6 * 6 + 4 * 4  # the last cell runs to the image's edge
    assert maps.token_map(dwa, geom, head="max", image_size=(20, 24))[13, 13] == 1.0
    assert maps.token_map(dwa, geom, head="min", image_size=(20, 24)).max() == 0.0


def test_token_self_map_fills_each_window():
    geom = Geometry.tiled(4, 4, 2, stride=2)
    dwa = np.zeros((4, 1, 5, 5))
    dwa[:, 0, 0, 0] = [0.1, 0.2, 0.3, 0.4]
    vals, img = maps.token_self_map(dwa, geom)
    assert vals.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert img[0, 0] == pytest.approx(0.1) and img[0, 7] == pytest.approx(0.2) and img[7, 7] == pytest.approx(0.4)


def test_token_map_refuses_global_blocks_and_received_map_works():
    geom = Geometry.tiled(3, 3, None, stride=1)
    dwa = np.zeros((1, 1, 9, 9))
    dwa[0, 0, :, 4] = 1.0  # every pixel attends to the centre
    with pytest.raises(ValueError, match="no window token"):
        maps.token_map(dwa, geom)
    rec = maps.received_map(dwa, geom)
    assert rec[1, 1] == 1.0 and rec.sum() == 1.0


def test_received_map_leaves_padded_query_rows_out():
    """Padded query rows exist in the tensor but are meaningless: they must not count. Here they all
    look at one key, so counting them would light that key up."""
    geom = Geometry.tiled(3, 3, 2, stride=1)  # 2x2 windows of 2x2, one padded row and column
    dwa, _ = random_attention(geom, heads=1, rng=np.random.default_rng(3))
    real = maps._pixel_mask(geom)  # (n, P)
    t = 1
    for w in range(geom.grid[0] * geom.grid[1]):
        for p in np.flatnonzero(~real[w]):
            dwa[w, 0, p + t, :] = 0.0
            dwa[w, 0, p + t, t + int(np.flatnonzero(real[w])[0])] = 1.0  # all on the first real key
    got = maps.received_map(dwa, geom, 0)
    # by hand: per window, the mean over its REAL pixel queries of each key's weight
    want = np.zeros((geom.grid[0] * geom.grid[1], 4))
    for w in range(want.shape[0]):
        queries = np.flatnonzero(real[w])
        want[w] = dwa[w, 0, queries + t, t:].mean(axis=0)
    np.testing.assert_allclose(got, maps.tile_windows(want, geom), rtol=1e-12)
    # the bottom-right window holds one real pixel: it receives exactly its own query's weight
    assert got[2, 2] == pytest.approx(dwa[3, 0, 1, 1])


# ------------------------------------------------------------------ view 2: pixel query
def test_pixel_query_lights_its_window_only():
    geom = Geometry.tiled(5, 6, 3, stride=4)
    dwa, _ = random_attention(geom, 2)
    q = maps.pixel_query(dwa, geom, (13, 22), head=1, image_size=(18, 23))  # cell (3, 5): window 3
    assert q.cell == (3, 5) and q.window == 3
    a, p = 3, 0 * 3 + 2
    expect = dwa[a, 1, p + 1]
    assert q.token_weight == pytest.approx(expect[0])
    assert q.box == (10, 10, 18, 23)  # from cell 3's first pixel (4 * 3 - 2) to the image's edge
    y0, x0, y1, x1 = q.box
    outside = q.heat.copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any()
    # each cell's block carries its key's probability
    for k in range(9):
        r, c = cell_of(geom, a, k)
        if r < 5 and c < 6:
            assert q.heat[r * 4, c * 4] == pytest.approx(expect[1 + k])
    # real keys + token sum to 1 (padded keys are exactly 0)
    assert q.token_weight + q.heat[::4, ::4].sum() == pytest.approx(1.0)


def test_pixel_query_in_a_gsa_group_covers_the_14x14_group():
    geom = Geometry.tiled(28, 28, 14, stride=8)
    dwa = np.full((4, 1, 197, 197), 1.0 / 197)
    q = maps.pixel_query(dwa, geom, (200, 10))
    assert q.window == 2 and q.box == (108, 0, 224, 108)  # cell 14 is centred on pixel 112
    assert np.count_nonzero(q.heat) == (224 - 108) * 108


# ------------------------------------------------------------------ view 3: PWA
def test_pwa_row_lights_the_right_windows():
    geom = Geometry.tiled(6, 9, 3, stride=2)  # 2x3 windows
    pwa = np.zeros((2, 6, 6))
    pwa[0, 4, 2] = 0.75
    pwa[0, 4, 3] = 0.25
    pwa[1, 4, 4] = 1.0
    img = maps.pwa_row_map(pwa, geom, 4, head=0)
    assert img.shape == (12, 18)
    # window 2: cells (0..2, 6..8), pixels rows 0..4 and columns 11..17 (cell j centred on pixel 2 j)
    assert (img[0:5, 11:18] == 0.75).all() and (img[5:12, 0:5] == 0.25).all()
    assert img.sum() == pytest.approx(0.75 * 35 + 0.25 * 35)
    fused = maps.pwa_row_map(pwa, geom, 4, head="max")
    assert (fused[5:12, 5:11] == 1.0).all() and (fused[0:5, 11:18] == 0.75).all()  # max over heads
    assert maps.window_at(geom, (7, 8)) == 4
    np.testing.assert_array_equal(maps.pwa_matrix(pwa, "mean"), pwa.mean(0))
    with pytest.raises(ValueError):
        maps.pwa_row_map(pwa, geom, 6)


def test_dssa_gsa_pairs_follow_the_block_order():
    kinds = [(0, "dssa"), (1, "dssa"), (1, "gsa"), (2, "dssa"), (2, "gsa"), (2, "dssa"), (2, "global"), (3, "global")]
    assert maps.dssa_gsa_pairs(kinds) == [(1, 2), (3, 4)]


# ------------------------------------------------------------------ view 5: composed block attention
def brute_force_composed(dwa, pwa, geom, alpha):
    """Dense M over padded positions, built entry by entry from the definition."""
    n, h, L, _ = dwa.shape
    t = int(geom.has_token)
    P = L - t
    real = maps._pixel_mask(geom)
    M = np.zeros((h, n, P, n, P))
    tok = np.zeros((h, n, P))
    for j in range(h):
        for a in range(n):
            for p in range(P):
                for b in range(n):
                    apw = (1 - alpha) * pwa[j, a, b] + alpha * (a == b) if pwa is not None else float(a == b)
                    apw *= real[b, p]
                    if t:
                        tok[j, a, p] += apw * (1 - alpha) * dwa[b, j, p + t, 0]
                    for q in range(P):
                        adw = (1 - alpha) * dwa[b, j, p + t, q + t] + alpha * (p == q)
                        M[j, a, p, b, q] += apw * adw * real[b, q]
    return M, tok


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8])
def test_composed_query_matches_the_definition_with_padding(alpha):
    geom = Geometry.tiled(4, 5, 3, stride=4)  # 2x2 windows, pad (2, 1)
    dwa, pwa = random_attention(geom, 2)
    M, tok = brute_force_composed(dwa, pwa, geom, alpha)
    size = (16, 20)
    for point in [(0, 0), (5, 9), (13, 18), (15, 11)]:
        q = maps.composed_query(dwa, pwa, geom, point, head="mean", self_weight=alpha, image_size=size)
        a, p = maps._cell_index(geom, q.cell)
        expect = maps.tile_windows(M[:, a, p].mean(0), geom)
        np.testing.assert_allclose(q.feature, expect, atol=1e-12)
        assert q.token_mass == pytest.approx(tok[:, a, p].mean())
        assert q.feature.sum() + q.token_mass + q.lost_mass == pytest.approx(1.0)
        assert q.lost_mass >= -1e-12
        q1 = maps.composed_query(dwa, pwa, geom, point, head=1, self_weight=alpha, image_size=size)
        np.testing.assert_allclose(q1.feature, maps.tile_windows(M[1, a, p], geom), atol=1e-12)
        qmax = maps.composed_query(dwa, pwa, geom, point, head="max", self_weight=alpha, image_size=size)
        np.testing.assert_allclose(qmax.feature, maps.tile_windows(M[:, a, p].max(0), geom), atol=1e-12)


def test_composed_query_without_padding_has_no_lost_mass_and_identity_is_a_point():
    geom = Geometry.tiled(6, 6, 3, stride=1)
    dwa, pwa = random_attention(geom, 1)
    q = maps.composed_query(dwa, pwa, geom, (4, 1))
    assert q.lost_mass == pytest.approx(0.0, abs=1e-12)
    eye_dwa = np.broadcast_to(np.eye(10), (4, 1, 10, 10)).copy()
    eye_pwa = np.eye(4)[None]
    q = maps.composed_query(eye_dwa, eye_pwa, geom, (4, 1), self_weight=0.3)
    assert q.feature[4, 1] == pytest.approx(1.0) and q.feature.sum() == pytest.approx(1.0)


def test_composed_query_global_block_is_the_dwa_row_with_its_shortcut():
    geom = Geometry.tiled(3, 4, None)
    dwa, _ = random_attention(geom, 2)
    q = maps.composed_query(dwa, None, geom, (1, 2), self_weight=0.5)
    expect = 0.5 * dwa[0, :, 6].mean(0)
    expect[6] += 0.5
    np.testing.assert_allclose(q.feature.reshape(-1), expect, atol=1e-12)
    assert q.token_mass == 0.0 and q.lost_mass == pytest.approx(0.0, abs=1e-12)


def test_composed_mixed_map_leaves_the_own_cell_out_and_sums_to_one():
    """The whole-block view's readable form (issue 19 item 4): the query's own cell set to 0, the other
    cells rescaled to sum 1, the own cell's share reported."""
    geom = Geometry.tiled(4, 5, 3, stride=4)  # 2x2 windows, pad (2, 1)
    dwa, pwa = random_attention(geom, 2)
    size = (16, 20)
    for point in [(0, 0), (5, 9), (15, 11)]:
        q = maps.composed_query(dwa, pwa, geom, point, self_weight=0.5, image_size=size)
        r, c = q.cell
        share = q.feature[r, c] / q.feature.sum()
        assert q.self_share == pytest.approx(share) and share > 0.25  # the shortcuts alone give 0.25
        mixed = q.mixed[:: geom.stride, :: geom.stride]  # back to feature cells
        assert mixed[r, c] == 0.0 and mixed.sum() == pytest.approx(1.0, abs=1e-6)
        rest = q.feature.copy()
        rest[r, c] = 0
        np.testing.assert_allclose(mixed, rest / rest.sum(), rtol=1e-5)
    # identity attention mixes nothing in: all zero, the own cell holds everything
    eye_dwa = np.broadcast_to(np.eye(10), (4, 1, 10, 10)).copy()
    q = maps.composed_query(eye_dwa, np.eye(4)[None], Geometry.tiled(6, 6, 3), (4, 1))
    assert q.self_share == pytest.approx(1.0) and not q.mixed.any()
    assert maps.leave_out_cell(np.zeros((2, 2)), (0, 0))[1] == 0.0


def test_block_operator_matches_composed_rows():
    geom = Geometry.tiled(4, 5, 3)
    dwa, pwa = random_attention(geom, 1)  # one head: fusing first equals composing per head
    block = BlockAttention(dwa, pwa, geom, stage=0)
    apply, rowsum = maps.block_operator(block, "mean", 0.5)
    dense = apply(np.eye(20))
    for r in range(4):
        for c in range(5):
            q = maps.composed_query(dwa, pwa, geom, (r, c), self_weight=0.5)
            np.testing.assert_allclose(dense[r * 5 + c], q.feature.reshape(-1), atol=1e-12)
    np.testing.assert_allclose(rowsum, dense.sum(1), atol=1e-12)


# ------------------------------------------------------------------ view 6: rollout
def test_pooling_matrix_is_the_conv_footprint():
    P = maps.pooling_matrix((5, 5), (3, 3), weights="uniform")
    np.testing.assert_allclose(P.sum(1), 1.0)
    row = P[4].reshape(5, 5)  # centre output (1, 1) reads input rows/cols 1..3
    assert np.count_nonzero(row) == 9 and row[1:4, 1:4].min() == pytest.approx(1 / 9)
    corner = P[0].reshape(5, 5)  # (0, 0) reads rows/cols 0..1 (the rest is zero padding)
    assert np.count_nonzero(corner) == 4 and corner[0, 0] == pytest.approx(1 / 4)
    tent = maps.pooling_matrix((5, 5), (3, 3))
    np.testing.assert_allclose(tent.sum(1), 1.0)
    np.testing.assert_allclose(tent[4].reshape(5, 5)[1:4, 2], [0.125, 0.25, 0.125])
    # away from the borders every fine cell is covered equally (no checkerboard)
    big = maps.pooling_matrix((16, 16), (8, 8)).sum(0).reshape(16, 16)
    np.testing.assert_allclose(big[2:-2, 2:-2], 0.25)
    # at the edges (as documented): per axis 2/3, 7/12 for the first two cells, 1/4 for the last one
    axis = np.sqrt(np.diag(big))[[0, 1, 5, 15]]
    np.testing.assert_allclose(axis, [2 / 3, 7 / 12, 1 / 2, 1 / 4])
    v = RNG.random((3, 64))
    np.testing.assert_allclose(maps._pool_left(v, (16, 16), (8, 8)), v @ maps.pooling_matrix((16, 16), (8, 8)))


def two_stage_blocks(seed: int, identity: bool = False) -> list[BlockAttention]:
    rng = np.random.default_rng(seed)
    g0 = Geometry.tiled(7, 9, 3, stride=4)  # 3x3 windows, padded (2, 0)
    g0b = Geometry.tiled(7, 9, 6, stride=4)  # "GSA" 2x2 groups, padded
    g1 = Geometry.tiled(4, 5, None, stride=8)  # global, next stage
    out = []
    for stage, g in [(0, g0), (0, g0b), (1, g1)]:
        dwa, pwa = random_attention(g, 2, rng)
        if identity:
            L = dwa.shape[-1]
            dwa = np.broadcast_to(np.eye(L), dwa.shape).copy()
            pwa = None if pwa is None else np.broadcast_to(np.eye(pwa.shape[-1]), pwa.shape).copy()
        out.append(BlockAttention(dwa, pwa, g, stage))
    return out


@pytest.mark.parametrize("head", ["mean", "max", "min"])
def test_rollout_rows_sum_to_one_and_pooled_is_their_mean(head):
    blocks = two_stage_blocks(1)
    R = maps.rollout_matrix(blocks, head=head)
    assert R.shape == (20, 63)
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-12)
    assert (R >= -1e-15).all()
    pooled = maps.rollout(blocks, head=head, image_size=(27, 35))
    np.testing.assert_allclose(pooled.tokens.reshape(-1), R.mean(0), atol=1e-12)
    assert pooled.heat.shape == (27, 35) and pooled.cell is None
    pt = maps.rollout(blocks, head=head, point=(17, 26), image_size=(27, 35))  # stage-2 cell (2, 3), centre (16, 24)
    assert pt.cell == (2, 3)
    np.testing.assert_allclose(pt.tokens.reshape(-1), R[2 * 5 + 3], atol=1e-12)


def test_rollout_of_identity_attention_is_identity_within_a_stage_and_pooling_across():
    blocks = two_stage_blocks(2, identity=True)
    R_stage = maps.rollout_matrix(blocks, end=1)
    np.testing.assert_allclose(R_stage, np.eye(63), atol=1e-12)
    R = maps.rollout_matrix(blocks)
    np.testing.assert_allclose(R, maps.pooling_matrix((7, 9), (4, 5)), atol=1e-12)


def test_rollout_residual_one_ignores_attention_and_zero_follows_it():
    blocks = two_stage_blocks(3)
    np.testing.assert_allclose(maps.rollout_matrix(blocks[:2], residual=1.0), np.eye(63), atol=1e-12)
    # residual 0, one block: exactly the renormalised composed operator
    apply, rowsum = maps.block_operator(blocks[0], "mean", 0.5)
    C = apply(np.eye(63)) / rowsum[:, None]
    np.testing.assert_allclose(maps.rollout_matrix(blocks[:1], residual=0.0), C, atol=1e-12)
    with pytest.raises(ValueError):
        maps.rollout(blocks, end=3)


def test_rollout_in_float32_matches_float64():
    blocks = two_stage_blocks(4)
    r64 = maps.rollout(blocks, point=(9, 30), image_size=(27, 35))
    r32 = maps.rollout(blocks, point=(9, 30), image_size=(27, 35), dtype=np.float32)
    assert r32.tokens.dtype == np.float32
    np.testing.assert_allclose(r32.tokens, r64.tokens, atol=1e-6)
    assert r32.tokens.sum() == pytest.approx(1.0, abs=1e-5)
