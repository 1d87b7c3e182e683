"""The visual contract: what a user chose is what the picture shows.

Golden map arrays on ``sepvit_test`` pin the maps; every setting a map depends on is part of its memo
key (a stale map after a change of head, window or point fails here); the brightest region of a view
is the one the user chose (window, pixel), read from the picture's pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sepvit_viz
from sepvit_viz.validation import SettingsError
from sepvit_viz.viz import maps, render, views
from sepvit_viz.viz.pipeline import Analysis, MapKey, analyze
from sepvit_viz.viz.views import ViewSettings

GOLDEN = Path(__file__).with_name("golden") / "sepvit_test_maps.npz"
GRAY = dict(cmap="gray", alpha=1.0)  # picture brightness == heat, for reading maps off pictures


def golden_photo() -> Image.Image:
    """A deterministic photo: smooth colour ramps with a bright square (no RNG, no file)."""
    y, x = np.mgrid[0:80, 0:100]
    rgb = np.stack([x * 2.5, y * 3.0, (x + y) * 1.4], axis=-1)
    rgb[20:40, 50:70] = 255
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    torch.manual_seed(0)
    model = sepvit_viz.create_model("sepvit_test").eval()
    return analyze(model, golden_photo(), size=(128, 192), precompute=False)


def golden_maps(a: Analysis) -> dict[str, np.ndarray]:
    """The maps the golden file holds: every block's token map, a pixel query, a PWA row and the
    composed view at one point and head 0 / the mean, and the pooled rollout."""
    out = {}
    for i, r in enumerate(a.records):
        out[f"{i}.token.mean"] = a.token_map(i, "mean")
        out[f"{i}.token.0"] = a.token_map(i, 0)
        out[f"{i}.pixel"] = a.pixel_query(i, (40, 70), "max").heat
        out[f"{i}.composed"] = a.composed(i, (40, 70), "mean").heat
        if r.pwa is not None:
            out[f"{i}.pwa_row"] = a.pwa_map(i, r.geometry.num_windows - 1, 0)
    out["rollout"] = a.rollout().heat
    return out


def test_maps_match_the_golden_arrays(analysis):
    """A regression pin, not the definition of right: the arrays were written from these maps after
    test_maps had checked each definition against hand-worked values and an independent recomputation
    from the attention weights; this catches any unintended change of a map. Regenerate after a deliberate change of a map's definition:
    ``python -c "from tests.test_views import write_golden; write_golden()"``."""
    got = golden_maps(analysis.fresh())
    with np.load(GOLDEN) as z:
        assert sorted(z.files) == sorted(got)
        for k, v in got.items():
            np.testing.assert_allclose(v, z[k], rtol=1e-4, atol=1e-6, err_msg=k)


def write_golden() -> None:  # pragma: no cover - a maintenance helper
    torch.manual_seed(0)
    model = sepvit_viz.create_model("sepvit_test").eval()
    a = analyze(model, golden_photo(), size=(128, 192), precompute=False)
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **golden_maps(a))


# ------------------------------------------------------------------------------------ memo keys
def test_every_setting_changes_the_memo_key(analysis):
    """Each call with another head, point cell, window or weight gets its own key; asked in any order,
    every memoised map equals the pure function's answer (a key that ignored a setting would hand back
    the map of the previous setting)."""
    a = analysis.fresh()
    blk = next(
        i for i, r in enumerate(a.records) if r.pwa is not None and r.num_heads > 1 and r.geometry.num_windows > 1
    )
    b = a.blocks[blk]
    geom, size = b.geometry, a.size
    heads: list[maps.HeadSelect] = ["mean", 0, "max", 1, "min"]
    points = [(5, 5), (120, 180), (60, 90)]
    for h in heads:
        np.testing.assert_allclose(a.token_map(blk, h), maps.token_map(b.dwa, geom, h, size), rtol=1e-6)
        np.testing.assert_allclose(a.pwa_matrix(blk, h), maps.pwa_matrix(b.pwa, h), rtol=1e-6)
        for w in range(geom.num_windows):
            np.testing.assert_allclose(a.pwa_map(blk, w, h), maps.pwa_row_map(b.pwa, geom, w, h, size), rtol=1e-6)
        for p in points:
            cell_point = tuple(c * geom.stride for c in a.cell_at(blk, p))
            np.testing.assert_array_equal(
                a.pixel_query(blk, p, h).heat, maps.pixel_query(b.dwa, geom, cell_point, h, size).heat
            )
            for sw in (0.0, 0.5):
                np.testing.assert_allclose(
                    a.composed(blk, p, h, sw).heat,
                    maps.composed_query(b.dwa, b.pwa, geom, cell_point, h, sw, size).heat,
                    rtol=1e-5,
                )
    for head in ("mean", "max"):
        for residual in (0.3, 0.7):
            want = maps.rollout(a.blocks, head=head, residual=residual, image_size=size).heat
            np.testing.assert_allclose(a.rollout(head=head, residual=residual).heat, want, rtol=1e-4, atol=1e-7)
    keys = a.memo_keys
    assert len(keys) == len(set(keys))
    n = geom.num_windows
    kinds = {k.kind: sum(1 for q in keys if q.kind == k.kind) for k in keys}
    assert kinds["pwa_row"] == len(heads) * n
    assert kinds["pixel"] == len(heads) * len(points)
    assert kinds["composed"] == len(heads) * len(points) * 2
    assert kinds["rollout"] == 4
    assert MapKey("pwa_row", blk, 0, n - 1) in keys and MapKey("pwa_row", blk, 1, n - 1) in keys


# ------------------------------------------------------------------------------------ pictures
def with_diagonal_pwa(a: Analysis, self_weight: float = 0.9) -> Analysis:
    """``a`` with every PWA replaced by "each window looks mostly at itself": the row of window w is
    then brightest on window w, so a picture of it shows which window was chosen."""
    records = []
    for r in a.records:
        if r.pwa is not None:
            n = r.pwa.shape[-1]
            pwa = np.full_like(r.pwa, (1 - self_weight) / max(n - 1, 1))
            pwa[..., np.arange(n), np.arange(n)] = self_weight
            r = dataclasses.replace(r, pwa=pwa)
        records.append(r)
    return Analysis(a.image, records, a.logits, a.top5, a.model_name)


def brightest_window(view: views.View, a: Analysis, block: int) -> int:
    """The window whose interior is brightest in the picture (borders skipped: lines and the box)."""
    geom = a.records[block].geometry
    k, (top, left) = view.scale, view.origin
    grey = view.picture.astype(float).mean(axis=2)
    means = []
    for w in range(geom.num_windows):
        y0, x0, y1, x1 = a.window_box(block, w)
        inner = grey[top + y0 * k + 4 : top + y1 * k - 4, left + x0 * k + 4 : left + x1 * k - 4]
        means.append(inner.mean())
    return int(np.argmax(means))


def test_the_cross_window_view_lights_the_chosen_window(analysis):
    a = with_diagonal_pwa(analysis)
    for blk in (i for i, r in enumerate(a.records) if r.pwa is not None):
        n = a.records[blk].geometry.num_windows
        for w in range(n):
            v = views.pwa_row(a, ViewSettings(block=blk, window=w, **GRAY))
            assert brightest_window(v, a, blk) == w, (blk, w)
            assert f"window {w} (outlined)" in v.caption or f"group {w} (outlined)" in v.caption


def test_a_click_becomes_the_window_under_it(analysis):
    """Picture pixel -> model pixel (View.to_model) -> window (Analysis.window_at): the window drawn."""
    a = with_diagonal_pwa(analysis)
    blk = next(i for i, r in enumerate(a.records) if r.pwa is not None and r.geometry.num_windows > 1)
    first = views.pwa_row(a, ViewSettings(block=blk, **GRAY))
    for w in range(a.records[blk].geometry.num_windows):
        y0, x0, y1, x1 = a.window_box(blk, w)
        top, left = first.origin  # the photo starts below the title band
        click = (left + (x0 + x1) // 2 * first.scale, top + (y0 + y1) // 2 * first.scale)  # (x, y) on the picture
        chosen = a.window_at(blk, first.to_model(*click))
        assert chosen == w
        assert brightest_window(views.pwa_row(a, ViewSettings(block=blk, window=chosen, **GRAY)), a, blk) == w
    assert first.to_model(a.size[1] * first.scale + 5, 3) is None  # the colour bar is not the photo


def test_the_pixel_view_lights_only_the_clicked_pixels_window(analysis):
    a = analysis.fresh()
    blk = next(i for i, r in enumerate(a.records) if r.has_token and r.geometry.num_windows > 1)
    for point in [(3, 3), (120, 180)]:
        v = views.pixel(a, ViewSettings(block=blk, point=point, **GRAY))
        w = a.window_at(blk, point)
        y0, x0, y1, x1 = a.window_box(blk, w)
        outside = v.heat.copy()
        outside[y0:y1, x0:x1] = 0
        assert outside.max() == 0 and v.heat[y0:y1, x0:x1].max() > 0
        assert brightest_window(v, a, blk) == w


def test_a_head_change_changes_the_picture(analysis):
    a = analysis.fresh()
    blk = next(
        i for i, r in enumerate(a.records) if r.pwa is not None and r.num_heads > 1 and r.geometry.num_windows > 1
    )
    pics = [views.pwa_row(a, ViewSettings(block=blk, head=h, window=1)).heat for h in (0, 1, 0)]
    assert not np.array_equal(pics[0], pics[1]) and np.array_equal(pics[0], pics[2])
    pix = [views.pixel(a, ViewSettings(block=blk, head=h, point=(70, 100))).heat for h in (0, 1)]
    assert not np.array_equal(*pix)


def photo_pixels(v: views.View) -> np.ndarray:
    """The photo part of a view's picture, one sample per model pixel (each upscaled pixel's centre):
    (H, W, 3) uint8."""
    (top, left), k, (h, w) = v.origin, v.scale, v.size
    return v.picture[top + k // 2 : top + h * k : k, left + k // 2 : left + w * k : k]


def with_distinct_heads(a: Analysis) -> Analysis:
    """``a`` with each head's attention reweighted by its own random positive factors (rows renormalised,
    so padded keys keep probability 0): the untrained model's heads can be all alike, these are not."""
    rng = np.random.default_rng(1)
    records = []
    for r in a.records:
        dwa = r.dwa * rng.uniform(0.2, 1.8, size=r.dwa.shape).astype(r.dwa.dtype)
        pwa = None if r.pwa is None else r.pwa * rng.uniform(0.2, 1.8, size=r.pwa.shape).astype(r.pwa.dtype)
        records.append(
            dataclasses.replace(
                r,
                dwa=dwa / dwa.sum(-1, keepdims=True),
                pwa=None if pwa is None else pwa / pwa.sum(-1, keepdims=True),
            )
        )
    return Analysis(a.image, records, a.logits, a.top5, a.model_name)


def test_every_head_is_the_map_drawn(analysis):
    """Head N of every block (the last one included) is head N's map in the token, pixel and
    cross-window views, and the token view's grey levels are that map: a view that drew another head
    under head N's title fails here."""
    a = with_distinct_heads(analysis)
    point = (70, 100)
    for blk, rec in enumerate(a.records):
        if rec.num_heads < 2:
            continue
        assert a.head_for(blk, rec.num_heads - 1) == rec.num_heads - 1
        assert a.head_for(blk, rec.num_heads) == "mean"  # an index the block lacks: the mean, said so
        for h in [*range(rec.num_heads), "mean", "max"]:
            s = ViewSettings(block=blk, head=h, point=point, **GRAY)
            v = views.tokens(a, s)
            np.testing.assert_array_equal(v.heat, a.token_map(blk, h))
            lo, hi = float(v.heat.min()), float(v.heat.max())
            want = (v.heat - lo) / (hi - lo) * 255
            got = photo_pixels(v).astype(float).mean(axis=2)
            assert np.median(np.abs(got - want)) < 1.5, (blk, h)  # window lines and the marker aside
            np.testing.assert_array_equal(views.pixel(a, s).heat, a.pixel_query(blk, point, h).heat)
            if rec.pwa is not None:
                w = a.window_at(blk, point)
                np.testing.assert_array_equal(views.pwa_row(a, s).heat, a.pwa_map(blk, w, h))
        first, last = (views.tokens(a, ViewSettings(block=blk, head=h)).heat for h in (0, rec.num_heads - 1))
        assert not np.array_equal(first, last)  # the heads differ, so the checks above tell them apart


def cross_arms(v: views.View, y: int, x: int) -> np.ndarray:
    """The picture's pixels along the two 11 px arms of a cross centred on model pixel (y, x): (22, 3)."""
    (top, left), k = v.origin, v.scale
    cy, cx = top + y * k + k // 2, left + x * k + k // 2
    return np.concatenate([v.picture[cy, cx - 5 : cx + 6], v.picture[cy - 5 : cy + 6, cx]])


def test_the_marker_sits_on_the_clicked_pixel(analysis):
    """The cyan cross is centred on the clicked (y, x), not on (x, y) or elsewhere."""
    a = analysis.fresh()
    cyan = np.array([0, 230, 255], np.uint8)
    for point in [(10, 100), (100, 30)]:  # y != x and both orders inside the 128 x 192 photo
        for view in (views.tokens, views.pixel):
            v = view(a, ViewSettings(block=0, point=point, **GRAY))
            assert (cross_arms(v, *point) == cyan).all(), (view.__name__, point)
            assert not (cross_arms(v, point[1], point[0]) == cyan).all()


def test_colour_map_and_opacity_each_reach_the_picture(analysis):
    """Changed one at a time: the colour map colours the map (full opacity: the picture is the map in
    that colour map), and the opacity blends it with the photo (0: the photo itself)."""
    a = analysis.fresh()
    base = ViewSettings(block=0, cmap="gray", alpha=1.0, gsa_subwindows=False)
    full = views.tokens(a, base)
    k, (h, w) = full.scale, full.size
    photo = np.asarray(Image.fromarray(a.image).resize((w * k, h * k), Image.Resampling.BICUBIC))
    photo = photo[k // 2 :: k, k // 2 :: k].astype(float)

    def off(v: views.View, want: np.ndarray, where: np.ndarray | None = None) -> float:
        """Median difference over the photo's pixels (``where``: only those)."""
        diff = np.abs(photo_pixels(v).astype(float) - want)
        return float(np.median(diff if where is None else diff[where]))

    # the colour maps differ most away from the map's minimum, where most of this map lies
    upper = render.colorize(full.heat, "gray")[..., 0] > 64
    assert upper.sum() > 500
    for cmap in ("gray", "viridis", "magma"):
        v = views.tokens(a, base.with_(cmap=cmap))
        assert off(v, render.colorize(v.heat, cmap).astype(float), upper) < 1.5, cmap
        for other in {"gray", "viridis", "magma"} - {cmap}:
            assert off(v, render.colorize(v.heat, other).astype(float), upper) > 10, (cmap, other)
    assert off(views.tokens(a, base.with_(alpha=0.0)), photo) < 1.5
    half = views.tokens(a, base.with_(alpha=0.5))
    assert off(half, (photo + render.colorize(full.heat, "gray")) / 2) < 1.5
    assert off(half, photo) > 10 and off(half, render.colorize(full.heat, "gray").astype(float)) > 10


def test_the_cross_window_view_outlines_the_chosen_window(analysis):
    """The outline (cyan, 2 px) runs along the top edge of the chosen window and no other."""
    a = analysis.fresh()
    cyan = np.array([0, 230, 255], np.uint8)
    blk = next(i for i, r in enumerate(a.records) if r.pwa is not None and r.geometry.num_windows > 2)
    for chosen in range(a.records[blk].geometry.num_windows):
        v = views.pwa_row(a, ViewSettings(block=blk, window=chosen, **GRAY))
        (top, left), k = v.origin, v.scale
        outlined = []
        for win in range(a.records[blk].geometry.num_windows):
            y0, x0, _, x1 = a.window_box(blk, win)
            edge = v.picture[top + y0 * k, left + x0 * k : left + x1 * k]
            if (edge == cyan).all():
                outlined.append(win)
        assert outlined == [chosen]


def test_the_matrix_outlines_the_chosen_row(analysis):
    """The red outline of the PWA matrix moves one cell height per query window: it is on row w."""
    a = analysis.fresh()
    blk = next(i for i, r in enumerate(a.records) if r.pwa is not None and r.geometry.num_windows > 2)
    n = a.records[blk].geometry.num_windows
    tops, heights = [], []
    for w in range(n):
        pic = views.pwa_matrix(a, ViewSettings(block=blk, window=w)).picture
        rows = np.nonzero((pic == np.array([255, 60, 60], np.uint8)).all(axis=2).any(axis=1))[0]
        tops.append(int(rows.min()))
        heights.append(int(rows.max() - rows.min() + 1))
    assert len(set(heights)) == 1  # one cell high
    assert [t - tops[0] for t in tops] == [w * heights[0] for w in range(n)]


def test_exported_maps_are_the_chosen_heads(analysis):
    """``Analysis.arrays`` (the .npz download and ``render --npz``): the maps are the chosen head's,
    not the mean under the chosen head's label."""
    a = with_distinct_heads(analysis)
    blk = next(i for i, r in enumerate(a.records) if r.pwa is not None and r.num_heads > 1)
    name, point = a.records[blk].name, (120, 180)
    assert a.window_at(blk, point) != 0  # the PWA row exported is the point's window, not the first
    for h in (1, "mean"):
        out = a.arrays(blk, h, point)
        np.testing.assert_array_equal(out[f"{name}.token_map"], a.token_map(blk, h))
        np.testing.assert_array_equal(out[f"{name}.pixel_query"], a.pixel_query(blk, point, h).heat)
        np.testing.assert_array_equal(out[f"{name}.composed"], a.composed(blk, point, h).heat)
        np.testing.assert_array_equal(out[f"{name}.composed_mixed"], a.composed(blk, point, h).mixed)
        np.testing.assert_array_equal(out[f"{name}.pwa_map"], a.pwa_map(blk, a.window_at(blk, point), h))
    assert not np.array_equal(a.arrays(blk, 1, point)[f"{name}.token_map"], a.token_map(blk, "mean"))


def test_views_a_block_lacks_say_so(analysis):
    glob = next(i for i, r in enumerate(analysis.records) if r.pwa is None)
    with pytest.raises(views.NoView, match="no window-to-window"):
        views.pwa_row(analysis, ViewSettings(block=glob))
    with pytest.raises(SettingsError, match="does not exist"):
        views.pwa_row(analysis, ViewSettings(block=0, window=10_000))


# ------------------------------------------------------------------------------------ DSSA vs GSA
def test_compare_draws_both_sides_on_one_shared_scale_and_labels_each_half(analysis):
    """Issue 19 item 3: one colour scale (0 to the larger maximum) for both pictures, the same colour
    bar on both, and each side's label inside its own half of the label band (a swipe never splices)."""
    a = analysis.fresh()
    pair = a.dssa_gsa_pairs()[0]
    for head in ("mean", 0):
        left, right, caption = views.compare(a, pair, ViewSettings(head=head))
        hi = max(float(a.token_map(i, head).max()) for i in pair)
        assert left.vrange == right.vrange == (0.0, pytest.approx(hi))
        assert float(left.heat.max()) != float(right.heat.max())  # the two maps differ: one scale is a choice
        assert left.picture.shape == right.picture.shape and left.origin == right.origin == (0, 0)
        h, bar = left.size[0] * left.scale, 54  # photo rows; the colour bar strip right of the photo
        np.testing.assert_array_equal(left.picture[:h, -bar:], right.picture[:h, -bar:])
        w = left.picture.shape[1]
        ink = [(p.picture[h:] < 200).any(axis=2) for p in (left, right)]  # the label band under the photo
        assert ink[0][:, : w // 2].any() and not ink[0][:, w // 2 :].any()  # DSSA: left half only
        assert ink[1][:, w // 2 :].any() and not ink[1][:, : w // 2].any()  # GSA: right half only
        assert "Left: DSSA" in caption and "Right: GSA" in caption
        assert f"one shared colour scale**, 0 to {render._fmt(hi)}" in caption


# ------------------------------------------------------------------------------------ whole block
def test_whole_block_view_of_a_real_photo_is_not_one_bright_cell():
    """Issue 19 item 4, on the shipped checkpoint and an example photo: the whole-block view leaves the
    query's own cell out (0 in the map, its share in the caption) and rescales the rest to sum 1; no
    single cell then holds half of what is shown, and the colour bar starts at 0."""
    from sepvit_viz.viz.pipeline import load_model

    model, warning = load_model("sepvit_lite")
    assert warning is None, warning  # the shipped checkpoint is in the repository: it must load
    photo = Path(__file__).resolve().parents[1] / "assets" / "examples" / "goldfish_435137.jpg"
    a = analyze(model, Image.open(photo), size=224, precompute=False)
    for blk, rec in enumerate(a.records):
        for point in [None, (30, 190)]:
            v = views.pixel(a, ViewSettings(block=blk, point=point, through="block"))
            comp = a.composed(blk, point)
            s = rec.geometry.stride
            shown = v.heat[::s, ::s]  # one value per feature cell
            r, c = comp.cell
            assert shown[r, c] == 0.0, rec.label  # the own cell is left out ...
            assert shown.sum() == pytest.approx(1.0, abs=1e-4)  # ... the rest rescaled to 100%
            assert shown.max() <= 0.5 * shown.sum(), rec.label  # not dominated by one cell
            raw = comp.feature
            assert f"keeps {raw[r, c] / raw.sum():.1%}" in v.caption and "left out" in v.caption
            assert v.heat.min() == 0.0  # the colour bar starts at 0, not at 1e-14


def _figure_text(monkeypatch) -> list[dict]:
    """Record what each figure drawn through ``render.figure_to_rgb`` says (titles, axis labels, boxes)."""
    seen: list[dict] = []
    original = render.figure_to_rgb

    def spy(fig):
        ax = fig.axes[0]
        seen.append(
            {
                "title": (fig._suptitle.get_text() if fig._suptitle else "") + ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "boxes": [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches],
            }
        )
        return original(fig)

    monkeypatch.setattr(render, "figure_to_rgb", spy)
    return seen


def test_the_rollout_figure_uses_the_settings_the_rollout_view_uses(analysis, monkeypatch):
    a = analysis.fresh()
    calls = []
    real = a.rollout
    monkeypatch.setattr(a, "rollout", lambda *args, **kw: calls.append(kw) or real(*args, **kw))
    s = ViewSettings(self_weight=0.1, residual=0.3)
    views.rollout(a, s)
    views.figure(a, "rollout", s)
    assert len(calls) == 2 and calls[0]["self_weight"] == calls[1]["self_weight"] == 0.1
    assert calls[0]["residual"] == calls[1]["residual"] == 0.3


def test_per_head_maps_follow_the_chosen_window_and_self_weight(analysis):
    a = analysis.fresh()
    i = next(k for k, r in enumerate(a.records) if r.pwa is not None and r.geometry.num_windows > 1)
    far = a.records[i].geometry.num_windows - 1
    assert far != a.window_at(i, None)  # the window of the centre is another one
    panels = a.head_maps(i, "pwa_map", None, window=far)
    assert all(np.array_equal(p, a.pwa_map(i, far, h)) for h, p in enumerate(panels))
    light = a.head_maps(i, "composed", (20, 30), self_weight=0.1)
    assert all(np.array_equal(p, a.composed(i, (20, 30), h, 0.1).mixed) for h, p in enumerate(light))
    assert not np.array_equal(light[0], a.head_maps(i, "composed", (20, 30))[0])  # 0.5 by default
    # the per-head gallery passes the view's window and self weight on
    seen = []
    real = a.head_maps
    a.head_maps = lambda *args, **kw: seen.append(kw) or real(*args, **kw)
    pic = views.gallery(a, "pwa_map", ViewSettings(block=i, window=far, self_weight=0.1))
    assert pic.ndim == 3 and seen == [{"window": far, "self_weight": 0.1}]


def test_figures_name_groups_and_the_query_window(analysis, monkeypatch):
    """The figure tier (the CLI's --figures): a GSA block's PWA matrix calls its rows and columns
    groups (it said "window"), and the PWA-row figure names and outlines the query window it shows
    (it named none and outlined nothing)."""
    seen = _figure_text(monkeypatch)
    gsa = next(i for i, r in enumerate(analysis.records) if r.kind == "gsa")
    dssa = next(i for i, r in enumerate(analysis.records) if r.kind == "dssa" and r.pwa is not None)
    views.pwa_figure(analysis, ViewSettings(block=gsa))
    views.pwa_figure(analysis, ViewSettings(block=dssa))
    assert (seen[0]["xlabel"], seen[0]["ylabel"]) == ("key group (raster order)", "query group")
    assert (seen[1]["xlabel"], seen[1]["ylabel"]) == ("key window (raster order)", "query window")
    n = analysis.records[dssa].geometry.num_windows
    w = n - 1
    views.figure(analysis, "pwa_map", ViewSettings(block=dssa, window=w))
    assert f"window {w} (outlined)" in seen[2]["title"]
    y0, x0, y1, x1 = analysis.window_box(dssa, w)
    assert seen[2]["boxes"] == [(x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0)]


def test_whole_block_caption_of_a_global_block_names_no_pwa_or_window_tokens(analysis):
    """A global block has one attention and one shortcut: its whole-block caption described DWA then
    PWA across windows, shortcuts and window tokens, none of which it has. A DSSA block keeps them."""
    glob = next(i for i, r in enumerate(analysis.records) if r.kind == "global")
    dssa = next(i for i, r in enumerate(analysis.records) if r.kind == "dssa")
    caption = views.pixel(analysis, ViewSettings(block=glob, through="block")).caption
    assert "global attention over every cell" in caption and "(the shortcut and its attention to itself)" in caption
    assert "PWA across" not in caption and "tokens" not in caption
    caption = views.pixel(analysis, ViewSettings(block=dssa, through="block")).caption
    assert "DWA inside its window, then PWA across windows" in caption and "comes from window tokens" in caption
    from sepvit_viz import cli

    assert cli._view_title(analysis.records[glob], "composed").endswith("(global attention)")
    assert cli._view_title(analysis.records[dssa], "composed").endswith("(DWA, then PWA)")


def test_curves_plot_says_what_was_removed_with_which_fill_and_for_which_class():
    """The faithfulness plot said only "deletion" / "insertion" over "fraction of pixels": not that the
    most attributed pixels go first, which fill replaced them, or which class the probability is of."""
    from sepvit_viz.explain.faithfulness import Curves

    f = np.linspace(0, 1, 5)
    c = Curves(f, 1 - f, f, 0.5, 0.5, 7, {"steps": 4, "score": "prob", "baseline": "mean"})
    fig = views.curves_figure({"Saliency": c, "Random": c}, title="class cock (7), p = 0.0001 on the photo")
    ax_d, ax_i = fig.axes
    assert "mean-colour fill" in ax_d.get_title() and "lower AUC = better" in ax_d.get_title()
    assert "mean-colour fill" in ax_i.get_title() and "higher AUC = better" in ax_i.get_title()
    assert ax_d.get_xlabel().startswith("fraction of pixels removed (most attributed first")
    assert ax_i.get_xlabel().startswith("fraction of pixels revealed (most attributed first")
    assert ax_d.get_ylabel() == "class probability"
    assert fig.get_suptitle() == "class cock (7), p = 0.0001 on the photo"
    logit = Curves(f, 1 - f, f, 0.5, 0.5, 7, {"score": "logit", "baseline": "noise"})
    fig = views.curves_figure({"a": logit})
    assert fig.axes[0].get_ylabel() == "class logit" and "noise fill" in fig.axes[0].get_title()


def test_attribution_caption_states_the_colour_scale_cap(analysis):
    """The colour bar tops out at the 99.5th percentile (the brightest pixels saturate); the caption
    says so, with the value, instead of leaving the bar's top to look like the map's maximum."""
    h, w = analysis.size
    heat = np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)
    v = views.attribution(
        analysis, heat, ViewSettings(), method_label="Saliency", target=1, class_name="x", seconds=0.1
    )
    cap = float(np.percentile(heat, 99.5))
    assert f"99.5th percentile ({cap:.3g})" in v.caption and "saturate" in v.caption
    assert "empty" not in v.caption


@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_an_attribution_without_positive_evidence_says_so(analysis, fill):
    """An all-zero (or all-negative) map draws as a blank photo: the caption must say why."""
    heat = np.full(analysis.size, fill, dtype=np.float32)
    v = views.attribution(
        analysis, heat, ViewSettings(), method_label="SepViT relevance", target=1, class_name="x", seconds=0.1
    )
    assert "**The map is empty**" in v.caption


def test_the_pwa_matrix_is_as_large_for_a_landscape_photo_as_for_a_portrait_one():
    """The matrix picture was sized by the input's height only: a 64 x 448 input got a 48 px matrix
    with its title cut, beside a 448 px wide photo view."""
    torch.manual_seed(0)
    model = sepvit_viz.create_model("sepvit_test").eval()
    sizes = {}
    for size in ((64, 256), (256, 64)):
        a = analyze(model, golden_photo(), size=size, precompute=False)
        blk = next(i for i, r in enumerate(a.records) if r.pwa is not None)
        sizes[size] = views.pwa_matrix(a, ViewSettings(block=blk)).picture.shape
    assert sizes[(64, 256)] == sizes[(256, 64)]
    assert sizes[(64, 256)][1] >= 256  # at least as wide as the photo's long side


def test_the_pixel_caption_names_the_cells_row_and_column(analysis):
    """The caption gives the pixel as (x, y) and its feature cell as (row, col), each labelled: at stride
    4 the pixel x=100, y=10 is row 3 (10 / 4 rounded), column 25 (100 / 4)."""
    caption = views.pixel(analysis, ViewSettings(block=0, point=(10, 100))).caption
    assert "Pixel (x=100, y=10) is feature cell (row 3, col 25)" in caption
