"""Model-level attention statistics: hand-built maps with known answers, the driver, the plots, the CLI."""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sepvit_viz
from sepvit_viz.__main__ import main
from sepvit_viz.stats import measures as stats
from sepvit_viz.stats import plots as stats_plots
from sepvit_viz.viz.capture import capture_forward
from sepvit_viz.viz.maps import Geometry

RNG = np.random.default_rng(0)
M = {name: i for i, name in enumerate(stats.MEASURE_NAMES)}


def mean_pair_distance(side: int) -> float:
    """Mean Euclidean distance between two cells (with repetition) of a side x side grid, by counting:
    an offset d along one axis occurs (side - |d|) times."""
    c = [side - abs(d) for d in range(-side + 1, side)]
    offsets = range(-side + 1, side)
    total = sum(c[i] * c[j] * math.hypot(dr, dc) for i, dr in enumerate(offsets) for j, dc in enumerate(offsets))
    return total / side**4


def mean_distance_to_centre(side: int) -> float:
    mid = (side - 1) / 2
    return sum(math.hypot(r - mid, c - mid) for r in range(side) for c in range(side)) / side**2


# ------------------------------------------------------------------ hand-built maps, known answers
def test_uniform_attention_over_a_7x7_window():
    geom = Geometry.tiled(7, 7, 7, stride=4)  # one 7x7 window with its token
    L = 50
    dwa = np.full((1, 1, L, L), 1.0 / L)
    got = stats.dwa_measures(dwa, geom)
    # each pixel spreads 49/50 evenly over the window's pixels: the mean pair distance of a 7x7 grid
    assert mean_pair_distance(7) == pytest.approx(3.6094654, abs=1e-6)
    assert got["dwa_distance"][0] == pytest.approx(4 * mean_pair_distance(7), rel=1e-6)
    assert got["token_distance"][0] == pytest.approx(4 * mean_distance_to_centre(7), rel=1e-6)
    assert got["pixel_to_token"][0] == pytest.approx(1 / 50)
    assert got["token_self"][0] == pytest.approx(1 / 50)
    assert got["dwa_entropy"][0] == pytest.approx(math.log(50), rel=1e-6)
    assert got["dwa_entropy_norm"][0] == pytest.approx(1.0, rel=1e-6)


def test_small_windows_by_hand():
    # 2x2 window, uniform over pixels, no token mass: every query sees distances 0, 1, 1, sqrt(2)
    geom = Geometry.tiled(2, 2, 2, stride=8)
    dwa = np.zeros((1, 1, 5, 5))
    dwa[..., 1:] = 0.25
    got = stats.dwa_measures(dwa, geom)
    assert got["dwa_distance"][0] == pytest.approx(8 * (2 + math.sqrt(2)) / 4)
    assert got["pixel_to_token"][0] == 0.0
    # 3x3 window: the token spreads evenly, the centre is cell (1, 1): 4 cells at 1, 4 at sqrt(2), 1 at 0
    geom3 = Geometry.tiled(3, 3, 3, stride=1)
    dwa3 = np.full((1, 1, 10, 10), 0.1)
    assert stats.dwa_measures(dwa3, geom3)["token_distance"][0] == pytest.approx((4 + 4 * math.sqrt(2)) / 9)


def test_one_hot_self_attention_has_distance_zero():
    geom = Geometry.tiled(14, 14, 7, stride=4)  # 2x2 windows
    n, L = 4, 50
    dwa = np.tile(np.eye(L), (n, 2, 1, 1))  # (n, h=2, L, L): every token attends to itself only
    got = stats.dwa_measures(dwa, geom)
    np.testing.assert_allclose(got["dwa_distance"], 0.0)
    np.testing.assert_allclose(got["dwa_entropy"], 0.0, atol=1e-6)
    np.testing.assert_allclose(got["pixel_to_token"], 0.0)
    np.testing.assert_allclose(got["token_self"], 1.0)
    pwa = np.tile(np.eye(n), (2, 1, 1))
    got = stats.pwa_measures(pwa, geom)
    np.testing.assert_allclose(got["pwa_distance"], 0.0)
    np.testing.assert_allclose(got["pwa_entropy_norm"], 0.0, atol=1e-6)
    np.testing.assert_allclose(got["pwa_self"], 1.0)


def test_uniform_pwa_over_a_2x2_grid():
    geom = Geometry.tiled(14, 14, 7, stride=4)  # window centres 28 px apart
    got = stats.pwa_measures(np.full((1, 4, 4), 0.25), geom)
    assert got["pwa_distance"][0] == pytest.approx((0 + 28 + 28 + 28 * math.sqrt(2)) / 4)
    assert got["pwa_entropy_norm"][0] == pytest.approx(1.0)
    assert got["pwa_self"][0] == pytest.approx(0.25)


def test_pwa_window_centres_use_real_pixels_only():
    geom = Geometry.tiled(9, 9, 7, stride=2)  # grid 2x2, window 1 holds real columns 7 and 8 only
    pwa = np.zeros((1, 4, 4))
    pwa[0, :, 1] = 1.0  # every window attends to window 1
    # window 0's centre is cell (3, 3); window 1's real pixels are rows 0..6, cols 7..8: centre (3, 7.5)
    d = stats.pwa_measures(pwa, geom)["pwa_distance"][0]
    centres = np.array([(3, 3), (3, 7.5), (7.5, 3), (7.5, 7.5)])
    expected = np.mean([2 * np.hypot(*(c - centres[1])) for c in centres])
    assert d == pytest.approx(expected)
    assert np.isnan(stats.pwa_measures(np.ones((1, 1, 1)), Geometry.tiled(5, 5, 7))["pwa_entropy_norm"][0])


def softmax_attention(geom: Geometry, heads: int) -> np.ndarray:
    """(n, h, L, L) random softmax DWA whose padded keys get exactly 0, as the model's."""
    (gh, gw), (wh, ww) = geom.grid, geom.window
    n, P, t = gh * gw, wh * ww, int(geom.has_token)
    key_real = np.ones((n, P + t), bool)
    for w in range(n):
        for p in range(P):
            r, c = (w // gw) * wh + p // ww, (w % gw) * ww + p % ww
            key_real[w, p + t] = r < geom.height and c < geom.width
    logits = np.where(key_real[:, None, None, :], RNG.normal(size=(n, heads, P + t, P + t)) * 2, -np.inf)
    a = np.exp(logits - logits.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True)


def reference_dwa(dwa: np.ndarray, geom: Geometry) -> dict[str, np.ndarray]:
    """Loop-by-loop reading of the definitions in the stats module docstring (one image)."""
    (gh, gw), (wh, ww), s = geom.grid, geom.window, geom.stride
    t = int(geom.has_token)
    heads = dwa.shape[1]
    cell = {}
    for w in range(gh * gw):
        for p in range(wh * ww):
            r, c = (w // gw) * wh + p // ww, (w % gw) * ww + p % ww
            if r < geom.height and c < geom.width:
                cell[w, p] = (r, c)
    out = {
        k: np.zeros(heads) for k in ("dwa_distance", "dwa_entropy", "pixel_to_token", "token_distance", "token_self")
    }
    for h in range(heads):
        dist, ent, tok = [], [], []
        for (w, p), (r, c) in cell.items():
            row = dwa[w, h, p + t]
            keys = [(q, cell[w, q]) for q in range(wh * ww) if (w, q) in cell]
            mass = sum(row[q + t] for q, _ in keys)
            dist.append(sum(row[q + t] * s * math.hypot(r - rq, c - cq) for q, (rq, cq) in keys) / mass)
            ent.append(-sum(x * math.log(x) for x in row if x > 0))
            tok.append(row[0] if t else np.nan)
        out["dwa_distance"][h] = np.mean(dist)
        out["dwa_entropy"][h] = np.mean(ent)
        out["pixel_to_token"][h] = np.mean(tok)
        if t:
            tds, selfs = [], []
            for w in range(gh * gw):
                pts = [cell[w, q] for q in range(wh * ww) if (w, q) in cell]
                cr, cc = np.mean(pts, axis=0)
                row = dwa[w, h, 0]
                mass = sum(row[q + 1] for q in range(wh * ww) if (w, q) in cell)
                tds.append(
                    sum(
                        row[q + 1] * s * math.hypot(cell[w, q][0] - cr, cell[w, q][1] - cc)
                        for q in range(wh * ww)
                        if (w, q) in cell
                    )
                    / mass
                )
                selfs.append(row[0])
            out["token_distance"][h], out["token_self"][h] = np.mean(tds), np.mean(selfs)
    return out


@pytest.mark.parametrize("geom", [Geometry.tiled(9, 10, 7, stride=4), Geometry.tiled(5, 6, None, stride=16)])
def test_padded_and_global_blocks_match_a_loop_reference(geom):
    dwa = softmax_attention(geom, heads=2)
    got = stats.dwa_measures(dwa, geom)
    ref = reference_dwa(dwa, geom)
    for k in ("dwa_distance", "dwa_entropy") + (
        ("pixel_to_token", "token_distance", "token_self") if geom.has_token else ()
    ):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, err_msg=k)
    if geom.pad != (0, 0):  # padded query rows are meaningless: whatever they hold must not count
        noisy = dwa.copy()
        real_rows = np.ones(dwa.shape, bool)
        (gh, gw), (wh, ww), t = geom.grid, geom.window, int(geom.has_token)
        for w in range(gh * gw):
            for p in range(wh * ww):
                r, c = (w // gw) * wh + p // ww, (w % gw) * ww + p % ww
                real_rows[w, :, p + t] = r < geom.height and c < geom.width
        noisy[~real_rows] = np.nan
        for k, v in stats.dwa_measures(noisy, geom).items():
            np.testing.assert_allclose(v, got[k], rtol=1e-6, err_msg=k)
    row = stats.block_measures(dwa, None, geom)  # (h, M)
    assert row.shape == (2, len(stats.MEASURES))
    assert np.isnan(row[:, M["pwa_distance"]]).all()
    assert np.isnan(row[:, M["token_self"]]).all() != geom.has_token


def test_batch_axis_gives_the_same_values_as_single_images():
    geom = Geometry.tiled(9, 10, 7, stride=4)
    maps = [softmax_attention(geom, heads=3) for _ in range(2)]
    pwa = RNG.dirichlet(np.ones(4), size=(2, 3, 4))  # (B, h, n, n)
    batch = stats.block_measures(np.stack(maps), pwa, geom)
    assert batch.shape == (2, 3, len(stats.MEASURES))
    for i in range(2):
        np.testing.assert_allclose(batch[i], stats.block_measures(maps[i], pwa[i], geom), rtol=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        stats.dwa_measures(maps[0][:, :, 1:, 1:], geom)


# ------------------------------------------------------------------ the driver on a real (tiny) model
@pytest.fixture(scope="module")
def model() -> sepvit_viz.SepViT:
    torch.manual_seed(0)
    return sepvit_viz.create_model("sepvit_test").eval()


@pytest.fixture()
def photos(tmp_path: Path) -> list[Path]:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    paths = [d / "a.jpg", d / "b.png", d / "sub" / "c.jpg"]
    for i, p in enumerate(paths):
        Image.fromarray(RNG.integers(0, 256, size=(70 + 10 * i, 90, 3), dtype=np.uint8)).save(p)
    return paths


def total_heads(model: sepvit_viz.SepViT) -> int:
    return sum(b.num_heads for b in model.iter_blocks())


def test_records_of_a_forward_give_one_row_per_head(model):
    _, records = capture_forward(model, torch.randn(2, 3, 64, 64))
    rows = stats.head_rows(records)
    assert len(rows) == total_heads(model) == 15
    values = stats.photo_values(records, image=1)
    assert values.shape == (15, len(stats.MEASURES))
    kinds = np.array([r.kind for r in rows])
    windowed = kinds != "global"
    assert np.isfinite(values[:, M["dwa_distance"]]).all()
    assert np.isfinite(values[windowed, M["token_self"]]).all()
    assert np.isnan(values[~windowed][:, [M["token_self"], M["pwa_distance"]]]).all()


def test_batches_do_not_change_the_values(model, photos):
    one = stats.model_stats(model, photos, size=64, batch_size=1)
    three = stats.model_stats(model, photos, size=64, batch_size=2)
    assert one.photos == three.photos == tuple(str(p) for p in photos)
    np.testing.assert_allclose(one.values, three.values, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert one.values.shape == (3, 15, len(stats.MEASURES))
    summ = one.summary()
    assert summ["p50"].shape == (15, len(stats.MEASURES))
    assert (summ["p5"][np.isfinite(summ["p5"])] <= summ["p95"][np.isfinite(summ["p95"])] + 1e-9).all()


def test_driver_refuses_training_mode_and_unreadable_folders(model, photos, tmp_path):
    model.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            stats.model_stats(model, photos, size=64)
    finally:
        model.eval()
    (tmp_path / "empty").mkdir()
    with pytest.raises(stats.StatsInputError, match="no photos"):
        stats.list_photos([tmp_path / "empty"])
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is not a photo")
    with pytest.raises(stats.StatsInputError, match="none of the 1 photo"):
        stats.model_stats(model, [bad], size=64)
    result = stats.model_stats(model, [bad, *photos], size=64)
    assert result.num_photos == 3
    assert result.skipped[0][0] == str(bad) and "text file" in result.skipped[0][1]


def test_cached_stats_follow_the_weights(model, photos):
    stats.clear_cache()
    first = stats.cached_model_stats(model, photos, size=64)
    assert stats.cached_model_stats(model, photos, size=64) is first  # cache hit
    other = sepvit_viz.create_model("sepvit_test").eval()
    other.load_state_dict(model.state_dict())
    assert stats.model_fingerprint(other) == stats.model_fingerprint(model)
    with torch.no_grad():
        next(other.parameters()).add_(0.5)
    assert stats.model_fingerprint(other) != stats.model_fingerprint(model)
    assert stats.cached_model_stats(other, photos, size=64) is not first
    assert stats.cached_model_stats(model, photos, size=64, key="mine") is not first  # keys are the caller's
    stats.clear_cache()


# ------------------------------------------------------------------ plots
def fake_stats(label: str, model: sepvit_viz.SepViT, offset: float = 0.0) -> stats.ModelStats:
    # seeded: the same three photos whatever tests ran before
    _, records = capture_forward(model, torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    acc = stats.StatsAccumulator(label, 64)
    acc.add(records, ["p1", "p2", "p3"])
    result = acc.result()
    result.values += offset
    return result


def scatter_points(fig, prefix: str) -> int:
    ax = fig.axes[0]
    return sum(len(c.get_offsets()) for c in ax.collections if str(c.get_label()).startswith(prefix))


def test_compare_plot_shows_both_checkpoints(model):
    trained = fake_stats("trained", model)
    random_init = fake_stats("random init", model, offset=1.0)
    fig = stats_plots.depth_figure([trained, random_init], "dwa_distance")
    assert scatter_points(fig, "trained ·") == 15  # one dot per head of every block
    assert scatter_points(fig, "random init ·") == 15
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "trained" in legend and "random init" in legend
    # a measure global blocks lack: only the windowed blocks' heads (stages 1-3 DSSA/GSA: 1 + 1 + 1 + 2)
    fig = stats_plots.depth_figure([trained, random_init], "pwa_distance")
    assert scatter_points(fig, "trained ·") == scatter_points(fig, "random init ·") == 5
    kinds = stats_plots.kinds_figure([trained, random_init])
    for ax in kinds.axes:
        labels = {str(c.get_label()).split(" · ")[0] for c in ax.collections}
        assert labels == {"trained", "random init"}


def test_photo_marks_sit_on_the_same_axes(model):
    st = fake_stats("trained", model)
    _, records = capture_forward(model, torch.randn(1, 3, 64, 64))
    marks = stats.photo_values(records)
    fig = stats_plots.depth_figure(st, "token_self", marks=marks)
    (mark,) = [c for c in fig.axes[0].collections if c.get_label() == "this photo"]
    windowed = [r for r in st.rows if r.kind != "global"]
    assert len(mark.get_offsets()) == len(windowed)
    np.testing.assert_allclose(
        np.sort(mark.get_offsets()[:, 1]),
        np.sort(marks[np.isfinite(marks[:, M["token_self"]]), M["token_self"]]),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="rows"):
        stats_plots.depth_figure(st, "token_self", marks=marks[:-1])
    rgb = stats_plots.depth_image(st, "dwa_distance", marks=marks)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


def test_photo_ranks_and_caption(model):
    st = fake_stats("trained", model)
    median_photo = st.summary()["p50"]  # 3 photos: the middle one on every head
    ranks = stats.photo_ranks(st, median_photo)
    # the middle photo ranks 50 where the three differ or all agree; where exactly two agree (a
    # near-uniform PWA's entropy, equal in float32) the tie counts half: 33.3 or 66.7
    ref = np.sort(st.values.astype(np.float64), axis=0)
    two_tied = (ref[0] == ref[1]) ^ (ref[1] == ref[2])
    finite = np.isfinite(ranks) & ~two_tied
    assert finite.sum() >= 60
    np.testing.assert_allclose(ranks[finite], 50.0)
    tied = ranks[two_tied & np.isfinite(ranks)]
    assert np.minimum(abs(tied - 100 / 3), abs(tied - 200 / 3)).max(initial=0) < 1e-9
    assert np.isnan(ranks[:, M["pwa_distance"]][[r.kind == "global" for r in st.rows]]).all()
    assert "on 15 of 15 heads." in stats.typicality_caption(st, median_photo, "dwa_distance")
    odd = median_photo.copy()
    odd[3, M["dwa_distance"]] = 1e6  # far above every reference photo on one head
    assert stats.photo_ranks(st, odd)[3, M["dwa_distance"]] == 100.0
    caption = stats.typicality_caption(st, odd, "dwa_distance")
    assert "on 14 of 15 heads; outside: " in caption and f"{st.rows[3].block_label} head {st.rows[3].head}" in caption
    many = median_photo.copy()
    many[:8, M["dwa_distance"]] = 1e6  # eight heads outside: six are named, the count of the rest said
    caption = stats.typicality_caption(st, many, "dwa_distance")
    assert "on 7 of 15 heads; outside: " in caption and caption.endswith(" and 2 more.")
    assert caption.count(" head ") == 6
    with pytest.raises(ValueError, match="do not fit"):
        stats.photo_ranks(st, odd[:-1])


def test_typicality_uses_the_percentile_bars_the_plot_draws(model):
    import dataclasses

    base = fake_stats("trained", model)
    j = M["dwa_distance"]
    values = np.repeat(base.values[:1], 9, axis=0)  # 9 photos; head 0 takes the values 0, 1, ..., 8
    values[:, 0, j] = np.arange(9)
    st = dataclasses.replace(base, values=values, photos=tuple(f"p{i}" for i in range(9)))
    lo, hi = st.summary()["p5"][0, j], st.summary()["p95"][0, j]  # 0.4 and 7.6, the drawn bar
    assert lo == pytest.approx(0.4) and hi == pytest.approx(7.6)
    photo = values[0].copy()
    heads = f"of {int(np.isfinite(photo[:, j]).sum())} heads"
    for inside in (0.4, 4.0, 7.6):
        photo[0, j] = inside
        assert stats.typicality_caption(st, photo, "dwa_distance").endswith(f"{heads}.")
    for outside in (0.1, 8.0):  # within the photos' min..max, outside the 5-95% bar
        photo[0, j] = outside
        assert f"{heads}; outside: {st.rows[0].block_label} head {st.rows[0].head}." in stats.typicality_caption(
            st, photo, "dwa_distance"
        )


def test_model_tab_view_marks_the_photo_and_says_where_it_stands(model):
    st = fake_stats("trained", model)
    _, records = capture_forward(model, torch.randn(1, 3, 64, 64))
    rgb, caption = stats_plots.model_tab_view(st, "dwa_distance", records)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert "over 3 reference photo(s)" in caption and "of 15 heads" in caption
    assert "Note" not in caption  # same input size
    _, bigger = capture_forward(model, torch.randn(1, 3, 96, 96))
    assert "come from a 96 x 96 px input (width x height" in stats_plots.model_tab_view(st, "dwa_distance", bigger)[1]
    assert "the reference photos' from 64 x 64;" in stats_plots.model_tab_view(st, "dwa_distance", bigger)[1]
    # a photo kept at its aspect (the app's default): width first, as the status line writes it
    _, wide = capture_forward(model, torch.randn(1, 3, 64, 96))  # 64 high, 96 wide
    assert "come from a 96 x 64 px input (width x height" in stats_plots.model_tab_view(st, "dwa_distance", wide)[1]
    # an input size that is not a multiple of the stride: the size given is the one named and compared
    _, odd = capture_forward(model, torch.randn(1, 3, 62, 62))  # 16 stage-1 cells, as for 64
    assert "Note" in stats_plots.model_tab_view(st, "dwa_distance", odd, input_size=(62, 62))[1]
    assert "come from a 62 x 62 px input" in stats_plots.model_tab_view(st, "dwa_distance", odd, input_size=(62, 62))[1]
    _, caption_none = stats_plots.model_tab_view(st, "pwa_distance", None)
    assert caption_none == "PWA mean distance between windows (px) of every head, over 3 reference photo(s)."
    other = sepvit_viz.create_model("sepvit_test", depths=(1, 2, 4, 2)).eval()
    _, foreign = capture_forward(other, torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="another model"):
        stats_plots.model_tab_view(st, "dwa_distance", foreign)


# ------------------------------------------------------------------ the command line
def save_random(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return sepvit_viz.save_checkpoint(sepvit_viz.create_model("sepvit_test"), path)


def test_cli_writes_a_csv_row_for_every_head_of_every_block_of_both_checkpoints(photos, tmp_path):
    a, b = save_random(tmp_path / "first.safetensors", 1), save_random(tmp_path / "second.safetensors", 2)
    bad = photos[0].parent / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    rc = main(
        [
            "stats",
            str(photos[0].parent),
            "--out",
            str(out),
            "--model",
            "sepvit_test",
            "--checkpoint",
            str(a),
            "--compare",
            str(b),
            "--size",
            "64",
            "--batch-size",
            "2",
        ]
    )
    assert rc == 0
    with (out / "stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    model = sepvit_viz.create_model("sepvit_test")
    expected = [(blk.name, h) for blk in model.iter_blocks() for h in range(blk.num_heads)]
    for label in ("first", "second"):
        got = [(r["name"], int(r["head"])) for r in rows if r["checkpoint"] == label]
        assert got == expected
    assert len(rows) == 2 * 15
    assert all(r["photos"] == "3" for r in rows)  # the broken photo is left out
    assert list(rows[0]) == stats_plots.csv_header()
    assert all(r["dwa_distance_p50"] for r in rows)
    assert all(r["token_self_mean"] == "" for r in rows if r["kind"] == "global")
    page = (out / "index.html").read_text()
    assert "broken.jpg" in page and "could not be read" in page
    for name in ["kinds.png", *(f"depth_{m}.png" for m in stats.MEASURE_NAMES)]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"'{name}'" in page
    values = np.load(out / "values.npz")
    assert values["values_0"].shape == values["values_1"].shape == (3, 15, len(stats.MEASURES))


def test_cli_compares_a_checkpoint_with_random_weights_of_its_own_architecture(photos, tmp_path):
    own = save_random(tmp_path / "tiny.safetensors", 3)  # a sepvit_test file; --model stays the default Lite
    out = tmp_path / "out"
    assert (
        main(
            [
                "stats",
                str(photos[0]),
                "--out",
                str(out),
                "--checkpoint",
                str(own),
                "--compare",
                "random",
                "--size",
                "64",
            ]
        )
        == 0
    )
    with (out / "stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["checkpoint"] for r in rows] == ["tiny"] * 15 + ["random init"] * 15
    # the page says which file each label is, so a report read later names the compared weights
    page = (out / "index.html").read_text()
    assert f"tiny = checkpoint {html.escape(str(own))}" in page
    assert "random init = random initial weights (seed 0)" in page
    assert rows[0]["dwa_distance_mean"] != rows[15]["dwa_distance_mean"]


def test_cli_explains_bad_input(tmp_path, capsys, photos):
    (tmp_path / "empty").mkdir()
    assert main(["stats", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--model", "sepvit_test"]) == 2
    assert "no photos" in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    junk.write_text("not weights")
    rc = main(
        ["stats", str(photos[0]), "--out", str(tmp_path / "o"), "--model", "sepvit_test", "--checkpoint", str(junk)]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot load checkpoint junk.safetensors" in err and "Traceback" not in err
    note = tmp_path / "notes.txt"
    note.write_text("hello")
    assert main(["stats", str(note), "--out", str(tmp_path / "o"), "--model", "sepvit_test"]) == 2
    assert "is not a photo" in capsys.readouterr().err
    assert main(["stats", str(photos[0]), "--out", str(tmp_path / "o"), "--model", "sepvit_test", "--size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    test = save_random(tmp_path / "test.safetensors", 0)
    deeper = sepvit_viz.save_checkpoint(
        sepvit_viz.create_model("sepvit_test", depths=(1, 2, 4, 2)), tmp_path / "deeper.safetensors"
    )
    rc = main(
        [
            "stats",
            str(photos[0]),
            "--out",
            str(tmp_path / "o"),
            "--model",
            "sepvit_test",
            "--checkpoint",
            str(test),
            "--compare",
            str(deeper),
            "--size",
            "64",
        ]
    )
    assert rc == 2
    assert "their blocks differ" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_quick_mode_writes_its_tables(photos):
    from benchmarks import bench_stats

    text = bench_stats.run(quick=True, photos=photos[0].parent, counts=[2])
    assert "| photos | batch | torch threads |" in text
    assert "**1,000 photos (extrapolated" in text
    assert "| step (one batch) |" in text and "forward under capture" in text


def test_photos_are_listed_once_and_a_report_inside_a_source_is_not_read_as_photos(photos, tmp_path):
    """A photo named twice counted twice, and a second run read the first run's plots (PNG files under
    --out inside the source folder) as photos."""
    folder = photos[0].parent
    report = folder / "report"
    report.mkdir()
    Image.new("RGB", (40, 30)).save(report / "plot.png")  # what an earlier run left there
    listed = stats.list_photos([photos[0], folder, photos[0]], exclude=report)
    assert sorted(listed) == sorted(photos) and listed[0] == photos[0]
    assert report / "plot.png" in stats.list_photos([folder])  # without exclude it is a photo like any


def test_cli_refuses_an_out_that_is_a_file_before_loading_a_model(tmp_path, capsys, photos):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert main(["stats", str(photos[0]), "--out", str(out), "--model", "sepvit_test"]) == 2
        err = capsys.readouterr().err
        assert "is a file" in err and "Traceback" not in err


def test_out_the_source_itself_or_above_it_still_measures_its_photos(photos, tmp_path, capsys):
    """``stats SRC --out SRC`` (or --out a parent of SRC) said "no photos": everything under --out was
    left out. Now only the report's own plots directly in --out are (and all of a report folder
    inside the source, as before)."""
    folder = photos[0].parent
    Image.new("RGB", (40, 30)).save(folder / "depth_entropy.png")  # what an earlier run left there
    Image.new("RGB", (40, 30)).save(folder / "kinds.png")
    assert sorted(stats.list_photos([folder], exclude=folder)) == sorted(photos)
    assert sorted(stats.list_photos([folder], exclude=tmp_path)) == sorted([*photos, *folder.glob("[dk]*.png")])
    common = ["--model", "sepvit_test", "--size", "64"]
    # --out above the source: its report is not in the source, and the two plots there are photos here
    assert main(["stats", str(folder), "--out", str(tmp_path), *common]) == 0
    assert f"({len(photos) + 2} photo(s)" in capsys.readouterr().out
    assert main(["stats", str(folder), "--out", str(folder), *common]) == 0  # the source itself
    assert f"({len(photos)} photo(s)" in capsys.readouterr().out


def test_bad_settings_are_refused_before_the_out_folder_is_made(photos, tmp_path, capsys):
    """A missing source left an empty --out folder behind; a huge --batch-size or --threads had no
    bound (an out-of-memory kill; torch's "Overflow when unpacking long")."""
    out = tmp_path / "report"
    cases = [
        ([str(tmp_path / "missing")], f"{tmp_path / 'missing'} does not exist"),
        ([str(photos[0]), "--batch-size", "257"], "--batch-size must be 1 to 256, got 257"),
        ([str(photos[0]), "--batch-size", "0"], "--batch-size must be 1 to 256, got 0"),
        ([str(photos[0]), "--threads", "2147483648"], "--threads must be 1 to 1024, got 2147483648"),
        ([str(photos[0]), "--checkpoint", ""], "--checkpoint is empty: name a weights file"),
        ([str(photos[0]), "--compare", ""], "--compare is empty: name a weights file"),
    ]
    for args, says in cases:
        assert main(["stats", *args, "--out", str(out), "--model", "sepvit_test"]) == 2, args
        err = capsys.readouterr().err
        assert f"error: {says}" in err and "Traceback" not in err, err
        assert not out.exists(), args
