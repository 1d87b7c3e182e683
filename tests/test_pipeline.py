"""The one-pass pipeline: any photo in, every map out, every view redrawn without the model."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import sepvit_viz
from sepvit_viz.viz import maps, views
from sepvit_viz.viz.pipeline import analyze, class_names_for, fit_size, prepare_image
from sepvit_viz.viz.views import ViewSettings

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def model() -> sepvit_viz.SepViT:
    torch.manual_seed(0)
    return sepvit_viz.create_model("sepvit_test").eval()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, size=(90, 120, 3), dtype=np.uint8))


class ForwardCounter:
    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._count)

    def _count(self, *_) -> None:
        self.calls += 1


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "I;16", "1"])
def test_any_pil_mode_gives_an_rgb_analysis(model, photo, mode):
    a = analyze(model, photo.convert(mode), size=64, precompute=False)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert len(a.top5) == 5
    probs = [p.prob for p in a.top5]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert a.top5[0].index == int(np.argmax(a.logits))
    assert len(a.records) == len(model.block_table(64))


def test_transparency_is_flattened_on_white(model):
    clear = Image.new("RGBA", (50, 40), (255, 0, 0, 0))
    a = analyze(model, clear, size=48, precompute=False)
    assert (a.image == 255).all()
    # the library's preprocess makes the same input as the analysis (white, not black, behind it)
    from sepvit_viz.preprocess import denormalize, preprocess

    x = preprocess(clear, 48)
    assert torch.allclose(denormalize(x[0]), torch.ones(3, 48, 48))


def test_a_photo_opened_with_pil_is_read_upright_as_the_app_reads_it(tmp_path):
    """A phone photo stored landscape with EXIF orientation 6 (upright: portrait): ``Image.open`` keeps
    the stored pixels, so the library read it sideways while the app and the CLI (``load_image``) read
    it upright."""
    from sepvit_viz.imageio import load_image

    stored = np.zeros((120, 200, 3), np.uint8)
    stored[:, :100] = (255, 0, 0)  # left half red: upright, the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    with Image.open(path) as im:
        crop = np.asarray(prepare_image(im, 224, fit="aspect"))
    assert crop.shape[0] > crop.shape[1]  # portrait
    top, bottom = crop[: crop.shape[0] // 3], crop[-crop.shape[0] // 3 :]
    assert top[..., 0].mean() > 200 and bottom[..., 0].mean() < 50
    # an image load_image already turned upright is not turned again
    again = np.asarray(prepare_image(load_image(path), 224, fit="aspect"))
    assert again.shape == crop.shape and np.abs(again.astype(int) - crop.astype(int)).mean() < 2


@pytest.mark.parametrize("not_a_photo", ["photo.jpg", np.zeros((32, 32, 3), np.uint8), None])
def test_anything_but_a_pil_image_is_a_clear_type_error(model, not_a_photo):
    """A path, an array or None: a TypeError that names the loader, not an AttributeError from deep inside."""
    with pytest.raises(TypeError, match=r"expected a PIL image, got .*load_image"):
        analyze(model, not_a_photo, size=64)
    with pytest.raises(TypeError, match="expected a PIL image"):
        prepare_image(not_a_photo, 64)


def test_class_names_are_imagenet_for_1000_classes_else_generic(model, photo):
    names = class_names_for(1000)
    assert names[1] == "goldfish" and len(names) == 1000
    assert class_names_for(3) == ["class 0", "class 1", "class 2"]
    a = analyze(model, photo, size=64, precompute=False)
    assert a.top5[0].name == names[a.top5[0].index]


def test_non_square_sizes_and_bounds(model, photo):
    a = analyze(model, photo, size=(64, 96), precompute=False)
    assert a.size == (64, 96)
    r0 = a.records[0]
    assert r0.feature_size == (16, 24) and r0.geometry.stride == 4
    assert prepare_image(photo, (64, 96)).size == (96, 64)
    # a square size is the shared evaluation transform
    from sepvit_viz.preprocess import resize_center_crop

    np.testing.assert_array_equal(np.asarray(prepare_image(photo, 64)), np.asarray(resize_center_crop(photo, 64)))
    for bad in (16, 2000, (64, 8), (1, 2, 3)):
        with pytest.raises(ValueError, match="input size"):
            analyze(model, photo, size=bad)


# ------------------------------------------------------------------ keep aspect (issue 19 item 5)
def test_fit_size_keeps_the_photo_shape_within_the_bound():
    """Shorter side at the resolution, longer side by the aspect rounded to a multiple of 32, at most
    448 (the app's largest resolution); a square or near-square photo gets the square; crop = square."""
    assert fit_size((320, 640), 224, "aspect") == (224, 448)  # the 640 x 320 photo of the issue
    assert fit_size((640, 320), 224, "aspect") == (448, 224)  # portrait
    assert fit_size((480, 640), 224, "aspect") == (224, 288)  # 4:3 -> 1.29 (nearest multiple of 32)
    assert fit_size((299, 299), 224, "aspect") == fit_size((299, 301), 224, "aspect") == (224, 224)
    assert fit_size((320, 640), 448, "aspect") == (224, 448)  # over the bound: the longer side capped
    assert fit_size((100, 2000), 224, "aspect") == (64, 448)  # 20:1 (the most imageio takes): at least 64
    assert fit_size((320, 640), 224, "crop") == (224, 224)
    with pytest.raises(ValueError, match="fit must be"):
        fit_size((320, 640), 224, "stretch")
    for res in range(64, 449, 32):
        for ph, pw in [(300, 301), (480, 640), (320, 640), (1000, 300), (90, 700)]:
            h, w = fit_size((ph, pw), res, "aspect")
            assert h % 32 == 0 and w % 32 == 0 and max(h, w) <= 448 and min(h, w) <= res, (res, ph, pw)
            assert (h >= w) == (ph >= pw) or h == w
            if max(ph, pw) / min(ph, pw) * res <= 448:  # not capped: the short side is the resolution
                assert min(h, w) == res and abs(max(h, w) - res * max(ph, pw) / min(ph, pw)) <= 16


def marked_photo() -> Image.Image:
    """A 160 x 320 (H x W) dark photo with a red square near its right edge (x 250-279, y 60-99)."""
    rgb = np.full((160, 320, 3), 40, np.uint8)
    rgb[60:100, 250:280] = (255, 0, 0)
    return Image.fromarray(rgb)


def red_centre(image: np.ndarray) -> tuple[int, int] | None:
    ys, xs = np.nonzero((image[..., 0] > 200) & (image[..., 1] < 80))
    return None if ys.size == 0 else (int(ys.mean()), int(xs.mean()))


def test_keep_aspect_keeps_what_a_square_crop_loses_and_clicks_land_on_it(model):
    """A 2:1 photo: the square crop loses the red square, keep-aspect keeps it where the photo has it;
    a click on the red square of each clickable picture lands on its window, and the maps, window grid
    and overlays cover the whole non-square input."""
    photo = marked_photo()
    assert red_centre(analyze(model, photo, size=64, fit="crop", precompute=False).image) is None
    a = analyze(model, photo, size=64, fit="aspect", precompute=False)
    assert a.size == (64, 128)
    # the evaluation transform at the photo's shape: scale 0.457 (crop 0.875), 4 rows / 9 columns cut
    my, mx = red_centre(a.image)
    scale = max(64 / 160, 128 / 320) / 0.875
    assert abs(my - (80 * scale - 4)) <= 1.5 and abs(mx - (265 * scale - 9)) <= 1.5  # pixel centres: +-0.5
    for blk, rec in enumerate(a.records):
        geom = rec.geometry
        assert (geom.height * geom.stride, geom.width * geom.stride) == a.size
        s = ViewSettings(block=blk, point=(my, mx))
        tok = views.tokens(a, s)
        k = tok.scale
        top = tok.origin[0]  # the title band above the photo
        assert tok.picture.shape[0] == top + 64 * k and tok.picture.shape[1] == 128 * k + 54  # + the colour bar
        assert tok.heat.shape == a.size
        clicked = tok.to_model(mx * k + k // 2, top + my * k + k // 2)  # (x, y) on the picture
        assert clicked == (my, mx)
        w = a.window_at(blk, clicked)
        y0, x0, y1, x1 = a.window_box(blk, w)
        assert y0 <= my < y1 and x0 <= mx < x1
        if rec.has_token:  # window lines every window width, across the whole input
            rows, cols = a.grid_lines(blk, False)[0]
            step, half = geom.window[1] * geom.stride, geom.stride // 2  # between cells centred s j apart
            assert list(cols) == list(range(step - half, 128, step)) and list(rows) == list(
                range(step - half, 64, step)
            )
            pix = views.pixel(a, s)
            outside = pix.heat.copy()
            outside[y0:y1, x0:x1] = 0
            assert not outside.any() and pix.heat[y0:y1, x0:x1].any()
        if rec.pwa is not None:
            row = views.pwa_row(a, s.with_(window=None))
            assert f" {w} (outlined)" in row.caption and row.heat.shape == a.size
        comp = views.pixel(a, s.with_(through="block"))
        assert comp.heat.shape == a.size and comp.heat[my, mx] == 0.0  # the own cell, left out
    for query in ("pooled", "point"):
        ro = views.rollout(a, ViewSettings(point=(my, mx), rollout_query=query))
        assert ro.heat.shape == a.size and ro.heat.min() >= 0 and ro.heat[:, 100:].any()  # the right end too


def test_one_forward_then_every_setting_rerenders_without_the_model(model, photo):
    counter = ForwardCounter(model)
    try:
        a = analyze(model, photo, size=(80, 112))
        assert counter.calls == 1
        settings = ViewSettings()
        for block in range(len(a.records)):
            for change in [
                {},
                {"head": "max"},
                {"head": "min"},
                {"head": 0},
                {"head": 3},
                {"cmap": "viridis"},
                {"alpha": 0.2},
                {"point": (0, 0)},
                {"point": (79, 111)},
                {"rollout_query": "point", "point": (40, 10)},
            ]:
                s = settings.with_(block=block, **change)
                pictures = [views.tokens(a, s), views.pixel(a, s), views.pixel(a, s.with_(through="block"))]
                pictures.append(views.rollout(a, s))
                if a.records[block].pwa is not None:
                    pictures += [views.pwa_row(a, s), views.pwa_matrix(a, s)]
                for v in pictures:
                    p = v.picture
                    assert p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and v.caption
        left, right, _ = views.compare(a, a.dssa_gsa_pairs()[0], settings)
        assert left.picture.shape == right.picture.shape
        a.export_npz()
        assert counter.calls == 1
    finally:
        counter.handle.remove()


def test_maps_equal_the_pure_functions_and_are_memoised(model, photo):
    a = analyze(model, photo, size=96, precompute=False)
    for i, r in enumerate(a.records):
        b = r.image(0)
        expect = (maps.token_map if r.has_token else maps.received_map)(b.dwa, b.geometry, "max", a.size)
        np.testing.assert_allclose(a.token_map(i, "max"), expect, rtol=1e-6)
        q = a.pixel_query(i, (50, 30), 0)
        np.testing.assert_array_equal(q.heat, maps.pixel_query(b.dwa, b.geometry, (50, 30), 0, a.size).heat)
        c = a.composed(i, (50, 30))
        np.testing.assert_allclose(
            c.heat, maps.composed_query(b.dwa, b.pwa, b.geometry, (50, 30), image_size=a.size).heat
        )
        assert (a.pwa_matrix(i) is None) == (r.pwa is None)
    # another point in the same feature cell reuses the cached map; another cell does not
    s = a.records[0].geometry.stride
    assert a.pixel_query(0, (s * 3, s * 5)) is a.pixel_query(0, (s * 3 + s // 2 - 1, s * 5 - s // 2))  # cell (3, 5)
    assert a.pixel_query(0, (s * 3, s * 5)) is not a.pixel_query(0, (s * 4, s * 5))
    ro = a.rollout()
    assert ro.tokens.sum() == pytest.approx(1.0) and ro.heat.shape == a.size
    pt = a.rollout((10, 90), pooled=False)
    assert pt.cell is not None and pt.tokens.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        a.token_map(len(a.records))
    with pytest.raises(ValueError):
        a.pixel_query(0, (96, 0))


def test_head_galleries_and_figures(model, photo):
    a = analyze(model, photo, size=64, precompute=False)
    multi = next(i for i, r in enumerate(a.records) if r.num_heads > 1 and r.has_token)
    maps_per_head = a.head_maps(multi, "tokens")
    assert len(maps_per_head) == a.records[multi].num_heads
    np.testing.assert_allclose(np.mean(maps_per_head, axis=0), a.token_map(multi, "mean"), rtol=1e-5)
    s = ViewSettings(block=multi)
    assert views.gallery(a, "tokens", s).ndim == 3
    assert views.pwa_figure(a, s).ndim == 3
    assert views.figure(a, "composed", s).ndim == 3
    # the figures about one pixel mark it and name it (the --figures pictures of the CLI)
    cyan = lambda rgb: ((rgb[..., 0] < 80) & (rgb[..., 1] > 180) & (rgb[..., 2] > 180)).sum()  # noqa: E731
    for view in ("composed", "pixel"):
        at = views.figure(a, view, s.with_(point=(10, 50)))
        assert cyan(at) > cyan(views.figure(a, "tokens", s.with_(point=(10, 50)))), view
    glob = next(i for i, r in enumerate(a.records) if not r.has_token)
    with pytest.raises(views.NoView, match="no window-to-window"):
        views.pwa_figure(a, s.with_(block=glob))
    with pytest.raises(ValueError):
        a.head_maps(glob, "pwa_map")


def test_export_npz_holds_every_blocks_raw_attention(model, photo):
    a = analyze(model, photo, size=64, precompute=False)
    with np.load(io.BytesIO(a.export_npz())) as z:
        for r in a.records:
            np.testing.assert_array_equal(z[f"{r.name}.dwa"], r.dwa[0])
            assert (f"{r.name}.pwa" in z.files) == (r.pwa is not None)
        assert z["image"].shape == (64, 64, 3) and z["rollout"].shape == (64, 64)


def test_concurrent_analyses_on_one_model_match_sequential_ones(model):
    photos = [Image.fromarray(RNG.integers(0, 256, size=(70, 70, 3), dtype=np.uint8)) for _ in range(2)]
    want = [analyze(model, p, size=s, precompute=False) for p, s in zip(photos, (64, 96))]
    got: list = [None, None]

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = analyze(model, photos[i], size=(64, 96)[i], precompute=False)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for g, w in zip(got, want):
        assert g.size == w.size and len(g.records) == len(w.records)
        np.testing.assert_allclose(g.logits, w.logits, atol=1e-5)
        for rg, rw in zip(g.records, w.records):
            np.testing.assert_allclose(rg.dwa, rw.dwa, atol=1e-6)


def test_analyze_follows_the_models_dtype_and_refuses_training_mode(photo):
    """analyze() fed float32 to any model (a float64 or bfloat16 one failed), and ran a model left in
    training mode (dropout: two analyses of one photo differed)."""
    torch.manual_seed(0)
    base = sepvit_viz.create_model("sepvit_test").eval()
    ref = analyze(base, photo, size=96, precompute=False)
    wide = sepvit_viz.create_model("sepvit_test").eval()
    wide.load_state_dict(base.state_dict())
    wide = wide.double()
    np.testing.assert_allclose(analyze(wide, photo, size=96, precompute=False).logits, ref.logits, atol=1e-4)
    half = sepvit_viz.create_model("sepvit_test").eval()
    half.load_state_dict(base.state_dict())
    # bfloat16 below the reference size: the window tokens are resized (no bf16 CPU kernel for that)
    low = analyze(half.bfloat16(), photo, size=96, precompute=False)
    assert low.logits.dtype == np.float32 and np.isfinite(low.logits).all()
    assert int(np.argmax(low.logits)) == int(np.argmax(ref.logits)) or np.abs(low.logits - ref.logits).max() < 0.5
    trained = sepvit_viz.create_model("sepvit_test", drop_rate=0.3).train()
    with pytest.raises(ValueError, match="training mode"):
        analyze(trained, photo, size=96)
