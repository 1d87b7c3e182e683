"""Pictures: exact pixels of the fast tier, sane figures, no leaks over 200 renders."""

from __future__ import annotations

import gc
import io
import sys

import matplotlib
import numpy as np
import psutil
import pytest
from matplotlib.figure import Figure
from PIL import Image

from sepvit_viz.viz import maps, render

RNG = np.random.default_rng(0)


def photo(h: int = 48, w: int = 40) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_colorize_maps_the_range_onto_the_colormap_ends():
    heat = np.array([[0.0, 0.5], [1.0, 2.0]])
    lut = (matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    col = render.colorize(heat, "viridis", vmin=0.0, vmax=1.0)
    assert col.dtype == np.uint8 and col.shape == (2, 2, 3)
    assert (col[0, 0] == lut[0]).all() and (col[1, 0] == lut[255]).all() and (col[1, 1] == lut[255]).all()
    assert (render.colorize(np.full((3, 3), 7.0))[0, 0] == render.colorize(np.zeros((1, 1)))[0, 0]).all()
    with pytest.raises(ValueError, match="colormap"):
        render.colorize(heat, "no-such-map")


def test_overlay_opacity_ends():
    img, heat = photo(), RNG.random((48, 40))
    np.testing.assert_array_equal(render.overlay(img, heat, alpha=0.0), img)
    np.testing.assert_array_equal(render.overlay(img, heat, "magma", alpha=1.0), render.colorize(heat, "magma"))
    half = render.overlay(img, heat, alpha=0.5).astype(int)
    expect = (img.astype(float) + render.colorize(heat).astype(float)) / 2
    assert np.abs(half - expect).max() <= 1
    with pytest.raises(ValueError, match="differ in size"):  # our check, not numpy's broadcasting error
        render.overlay(img, heat[:-1])


def test_lines_box_and_marker_touch_only_their_pixels():
    img = np.zeros((20, 30, 3), np.uint8)
    out = render.draw_lines(img, (np.array([5]), np.array([7, 21])), opacity=1.0)
    changed = out.any(axis=2)
    assert changed[5].all() and changed[:, 7].all() and changed[:, 21].all()
    assert changed.sum() == 30 + 2 * 20 - 2
    box = render.draw_box(img, (2, 3, 10, 12), width=1).any(axis=2)
    assert box[2, 3:12].all() and box[9, 3:12].all() and box[2:10, 3].all() and box[2:10, 11].all()
    assert not box[5, 5] and box.sum() == 2 * 9 + 2 * 6
    marker = render.draw_marker(img, (10, 10)).any(axis=2)  # a cross: two 3 x 11 bars around (10, 10)
    ys, xs = np.nonzero(marker)
    assert marker[10, 10] and marker.sum() == 2 * 3 * 11 - 3 * 3
    assert ys.min() == xs.min() == 5 and ys.max() == xs.max() == 15
    assert not img.any()  # inputs are never modified


def test_compose_view_layout_and_colorbar_labels():
    img, heat = photo(56, 56), RNG.random((56, 56))
    g = maps.Geometry.tiled(7, 7, 2, stride=8)  # a "GSA"-like tiling
    out = render.compose_view(
        img,
        heat,
        cmap="viridis",
        alpha=0.5,
        grid=maps.grid_lines(g),
        subgrid=maps.grid_lines(g, subdivide=2),
        box=(0, 0, 16, 16),
        marker=(8, 8),
        title="stage 2 · block 2 · GSA",
    )
    assert out.dtype == np.uint8 and out.shape == (56 + 18, 56 + 54, 3)
    body = out[18:, :56]
    assert (body[0, 0] == (0, 230, 255)).all()  # box corner
    bar = out[18:, 56:]
    lut = render._lut("viridis")
    assert (bar[4, 2] == lut[255]).all() and (bar[-5, 2] == lut[0]).all()  # vmax on top, vmin at the bottom
    assert (bar[:, 16:] != 255).any()  # value labels are written
    assert (out[:18] != 255).any()  # title is written
    plain = render.compose_view(img, heat, colorbar=False)
    np.testing.assert_array_equal(plain, render.overlay(img, heat, alpha=0.6))


def test_matrix_view_has_axes_and_highlighted_row():
    m = np.arange(16.0).reshape(4, 4)
    out = render.matrix_view(m, size=40, highlight=2, title="PWA")
    assert out.dtype == np.uint8 and out.ndim == 3
    red = (out[..., 0] > 200) & (out[..., 1] < 100) & (out[..., 2] < 100)
    rows = np.unique(np.nonzero(red)[0])
    assert len(rows) and rows.max() - rows.min() == 9  # one 10-pixel row outlined


@pytest.mark.parametrize("fn", ["overlay_figure", "pwa_matrix_figure", "head_gallery", "side_by_side_figure"])
def test_figure_tier_returns_rgb(fn):
    img, heat = photo(32, 32), RNG.random((32, 32))
    g = (np.array([16]), np.array([16]))
    calls = {
        "overlay_figure": lambda: render.overlay_figure(img, heat, title="t", grid=g, box=(0, 0, 16, 16), dpi=40),
        "pwa_matrix_figure": lambda: render.pwa_matrix_figure(RNG.random((4, 4)), highlight=1, grid=(2, 2), dpi=40),
        "head_gallery": lambda: render.head_gallery(img, [heat, heat * 2, heat * 3], ncols=2, dpi=40),
        "side_by_side_figure": lambda: render.side_by_side_figure(
            img, [(heat, "DSSA", g, None), (heat, "GSA", g, g)], dpi=40
        ),
    }
    out = calls[fn]()
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.std() > 10  # something was drawn


def live_figures() -> int:
    gc.collect()
    return sum(type(o) is Figure for o in gc.get_objects())


@pytest.mark.slow
def test_200_renders_leak_no_figures_or_memory():
    img, heat = photo(32, 32), RNG.random((32, 32))
    for _ in range(5):  # warm caches (fonts, colormaps)
        render.overlay_figure(img, heat, dpi=30)
        render.compose_view(img, heat)
    figs, rss = live_figures(), psutil.Process().memory_info().rss
    for i in range(200):
        # every figure kind, mostly the cheapest one (a figure costs ~30-80 ms of CPU)
        if i % 20 == 0:
            render.overlay_figure(img, heat * i, dpi=20)
        elif i % 20 == 10:
            render.pwa_matrix_figure(heat[:4, :4], dpi=20)
        else:
            render.head_gallery(img, [heat * i], shared_scale=False, dpi=20)
        render.compose_view(img, heat * i, title="x")
    assert live_figures() <= figs
    assert psutil.Process().memory_info().rss - rss < 30 * 2**20


def test_render_never_imports_pyplot():
    # pyplot keeps a global registry of figures (a leak in a server); no module of ours imports it
    import ast
    from pathlib import Path

    import sepvit_viz

    pkg = Path(sepvit_viz.__file__).parent
    modules = sorted(pkg.rglob("*.py"))
    assert len(modules) > 30 and pkg / "viz" / "render.py" in modules
    for path in modules:
        name = str(path.relative_to(pkg))
        tree = ast.parse(path.read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
        assert not [m for m in imported if "pyplot" in m or m.endswith("pylab")], name
    # and at run time, in a fresh interpreter (in this one another test may have imported it first)
    import subprocess

    code = (
        "import sys, numpy as np; from sepvit_viz.viz import render; "
        "render.head_gallery(np.zeros((8, 8, 3), np.uint8), [np.eye(8)], dpi=20); "
        "render.pwa_matrix_figure(np.eye(3), dpi=20); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_png_and_npz_round_trips(tmp_path):
    img = photo()
    back = np.asarray(Image.open(io.BytesIO(render.to_png(img))))
    np.testing.assert_array_equal(back, img)
    arrays = {"stage 1/token": RNG.random((3, 4)), "pwa": np.eye(2)}
    data = render.export_npz(arrays)
    with np.load(io.BytesIO(data)) as z:
        assert sorted(z.files) == ["pwa", "stage_1_token"]
        np.testing.assert_array_equal(z["stage_1_token"], arrays["stage 1/token"])
    assert render.export_npz(arrays, tmp_path / "maps.npz") is None
    with np.load(tmp_path / "maps.npz") as z:
        np.testing.assert_array_equal(z["pwa"], np.eye(2))


def test_a_portrait_gallery_keeps_its_title_clear_of_the_panel_titles():
    """The gallery of a portrait input printed its title over the panels' "head N" labels."""
    for hw in ((224, 96), (96, 224), (64, 64)):
        img = np.zeros((*hw, 3), np.uint8)
        heats = [np.random.default_rng(i).random(hw) for i in range(3)]
        fig = render.head_gallery_figure(img, heats, ncols=4, suptitle="stage 3 · block 2 · tokens per head", dpi=60)
        fig.canvas.draw()
        top = fig._suptitle.get_window_extent()
        for ax in fig.axes:
            assert not top.overlaps(ax.get_window_extent()), hw
            if ax.get_title():
                assert not top.overlaps(ax.title.get_window_extent()), hw


def test_overlay_figure_marks_the_point():
    img = np.full((64, 96, 3), 128, np.uint8)
    heat = np.zeros((64, 96))
    plain = render.overlay_figure(img, heat, dpi=60)
    marked = render.overlay_figure(img, heat, point=(10, 80), dpi=60)
    cyan = lambda rgb: (rgb[..., 0] < 80) & (rgb[..., 1] > 180) & (rgb[..., 2] > 180)  # noqa: E731
    assert not cyan(plain).any() and cyan(marked).sum() > 10
    ys, xs = np.nonzero(cyan(marked))
    # the cross lies in the upper right of the map (axes span 2-78% of the width, 3-89% of the height from the bottom)
    h, w = marked.shape[:2]
    assert xs.mean() > 0.02 * w + 0.76 * w * 0.6 and ys.mean() < h * 0.5


def _ink_at_edges(rgb: np.ndarray, rows: slice, cols: int = 3) -> bool:
    band = rgb[rows]
    return bool((band[:, :cols] < 200).any() or (band[:, -cols:] < 200).any())


def test_long_figure_titles_are_shown_whole():
    """The CLI's --figures title for the composed view at its defaults ("... · mean of heads · own cell
    left out · pixel (y 112, x 112)") ran past both edges of the figure, and a one-head gallery's title
    (stage 1 of Lite) lost a fifth of its width on each side."""
    img, heat = photo(224, 224), RNG.random((224, 224))
    title = (
        "stage 1 · block 1 · DSSA (w=7, 8x8 windows)\n"
        "composed · mean of heads · own cell left out · pixel (y 112, x 112)"
    )
    out = render.overlay_figure(img, heat, title=title)
    assert not _ink_at_edges(out, slice(0, int(0.1 * out.shape[0])))
    fig = render.head_gallery_figure(
        img, [heat], suptitle="stage 1 · block 1 · DSSA (w=7, 8x8 windows) · tokens per head"
    )
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
