"""The Gradio app: handlers called directly, then the launched app driven through ``gradio_client``.

Handlers (``sepvit_viz.serving.handlers``): what ``/analyze`` returns, that views which only change
rendering never run the model again, click-to-pixel and click-to-window mapping, DSSA/GSA compare,
downloads, faithfulness, model loading (once, thread-safe, random-weights warning, Hub errors) and
settings.
Launched app: one example photo end to end over loopback (classes, attribution, token map, pixel
query, cross-window map, compare, downloads) and the public-Space settings.
"""

from __future__ import annotations

import inspect
import json
import threading
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from sepvit_viz import limits
from sepvit_viz.serving import cache, handlers, inputs, models, photos, settings
from sepvit_viz.viz import maps, render, views

EXAMPLE = photos.example_photos()[0]


def noop(*args, **kwargs):
    return None


def analyze(photo=EXAMPLE, **settings):
    return handlers.analyze(photo, progress=noop, **settings)


def not_blank(img: np.ndarray) -> bool:
    """An RGB picture with real content: several distinct colours, not one flat fill."""
    img = np.asarray(img)
    return img.ndim == 3 and img.shape[2] == 3 and img.std() > 5 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50


@pytest.fixture(scope="module")
def state() -> handlers.Session:
    """An analysis of the example whose user has opened the attribution tab (its attribution computed)."""
    session = analyze()[0]
    handlers.show_tab(session, settings.Settings(tab="attribution"))
    return session


@pytest.fixture
def no_model(monkeypatch):
    """Any use of a model (forward, attribution, scores) fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was used for a rendering-only change")

    monkeypatch.setattr(models.ModelEntry, "borrow", forbidden)
    monkeypatch.setattr(handlers.pipeline, "analyze", forbidden)


# ------------------------------------------------------------------------------------ /analyze
def test_example_photos_and_attribution_file_match():
    found = photos.example_photos()
    assert 6 <= len(found) <= 9
    listing = (photos.EXAMPLES_DIR / "ATTRIBUTION.md").read_text()
    assert "CC BY 2.0" in listing
    listed = {line.split("|")[1].strip() for line in listing.splitlines() if line.startswith("| ") and ".jpg" in line}
    assert listed == {Path(p).name for p in found}


def test_analyze_returns_top5_and_the_first_tabs_pictures(state):
    out = analyze()
    assert len(out) == handlers.ANALYZE_OUTPUTS == 5
    an, status, top5, tokens, pixel = out
    assert isinstance(an, handlers.Session)
    assert "Model:" in status and "224 x 224" in status
    # five classes with readable names, most likely first, matching the model's probabilities
    assert len(top5) == 5
    probs = list(top5.values())
    assert probs == sorted(probs, reverse=True)
    names = handlers.pipeline.class_names_for(1000)
    best = int(np.argmax(an.forward.probs))
    assert next(iter(top5)) == f"{names[best]} ({best})"
    assert probs[0] == pytest.approx(float(an.forward.probs[best]), rel=1e-5)
    for img in (tokens, pixel):
        assert img.dtype == np.uint8 and not_blank(img)
    # clickable views: the photo k times larger below a title band (colour bar on the right)
    k = views.display_scale(limits.DEFAULT_RESOLUTION)
    assert k == 2 and tokens.shape[0] == k * limits.DEFAULT_RESOLUTION + render.TITLE_HEIGHT
    # the other tabs come from the session when shown: the cross-window map at the same scale, the
    # slider's two pictures of one size
    views_ = {tab: handlers.show_tab(an, settings.Settings(tab=tab)) for tab in ("pwa", "compare")}
    assert views_["pwa"]["pwa_row_img"].shape == tokens.shape
    pair = views_["compare"]["compare_slider"]
    assert pair[0].shape == pair[1].shape


def test_analyze_draws_the_pixel_view_the_page_asks_for(state):
    """The pixel view returned by /analyze follows the page's radio (``pixel_view``), as the token tab's
    own endpoint draws it."""
    dwa, block = (analyze(pixel_view=v)[4] for v in ("dwa", "block"))
    assert not np.array_equal(dwa, block)
    tab = handlers.window_tokens(state, settings.DEFAULT_TOKEN_BLOCK, "mean", "inferno", 0.6, -1, -1, "block")
    assert np.array_equal(block, tab[2])


def test_clearing_the_photo_changes_nothing(state):
    out = handlers.analyze_new_photo(
        None,
        models.MODEL_DEFAULT,
        "",
        "",
        224,
        "top",
        settings.DEFAULT_METHOD,
        "inferno",
        0.6,
        settings.DEFAULT_TOKEN_BLOCK,
        "mean",
        settings.DEFAULT_PWA_BLOCK,
        "mean",
        None,
        "aspect",
        False,
        "dwa",
        state,
        progress=noop,
    )
    assert out[0] is state and len(out) == handlers.ANALYZE_OUTPUTS
    assert all(isinstance(o, dict) and o.get("__type__") == "update" for o in out[1:])


def test_the_events_after_a_cleared_photo_change_nothing():
    """The page's chain after the photo's change event (after_analysis) runs again on the kept session
    when the photo is cleared: it must leave the clicked pixel, the captions and the other tabs alone."""
    session = analyze()[0]
    assert set(handlers.after_analysis(session, settings.Settings())) == set(handlers.AFTER_ANALYSIS)
    args = [models.MODEL_DEFAULT, "", "", 224, "top", settings.DEFAULT_METHOD, "inferno", 0.6]
    args += [settings.DEFAULT_TOKEN_BLOCK, "mean", settings.DEFAULT_PWA_BLOCK, "mean", None, "aspect", False, "dwa"]
    kept = handlers.analyze_new_photo(None, *args, session, progress=noop)[0]
    assert kept is session
    assert handlers.after_analysis(kept, settings.Settings(x=30, y=40, window=5)) == {}
    # a new analysis of the same photo is a new session: its page is set up again
    assert handlers.after_analysis(analyze()[0], settings.Settings(x=30, y=40))["x"] == -1


def test_a_head_the_compare_pair_lacks_is_drawn_as_the_mean_and_said():
    """The compare tab shows the token tab's head; a stage-3 block has 4 heads, the DSSA/GSA pair of
    stage 2 has 2. Head 3 must not break the analysis, the tab or a colormap change."""
    session, status, *_ = analyze(token_block="stages.2.blocks.0", token_head="3")
    assert "Not in this model" not in status  # head 3 of that block exists
    s = settings.Settings(tab="compare", token_block="stages.2.blocks.0", token_head="3")
    head3, mean = handlers.show_tab(session, s), handlers.show_tab(session, s.with_(token_head="mean"))
    for name in ("compare_a", "compare_b"):
        assert np.array_equal(head3[name], mean[name]), name
    assert "Head 3 is not in stage 2 (2 heads per block): the mean over heads is shown." in head3["compare_caption"]
    assert "Head 3" not in handlers.show_tab(session, s.with_(token_head="1"))["compare_caption"]
    controls = dict(token_block="stages.2.blocks.0", token_head="3", x=-1, y=-1, pwa_head="mean", window=-1)
    redrawn = handlers.rerender(
        session,
        "top",
        settings.DEFAULT_METHOD,
        "magma",
        0.5,
        pwa_block=settings.DEFAULT_PWA_BLOCK,
        pair=None,
        **controls,
    )
    assert all(p is not None for p in redrawn[5:])
    with pytest.raises(gr.Error, match="does not exist"):  # a head no block of the model has
        handlers.compare(session, None, "9", "inferno", 0.6)


def test_warm_up_makes_the_examples_instant(monkeypatch):
    cache.RESULTS.clear()
    assert handlers.warm_up(background=False) is None

    def forbidden(*args, **kwargs):
        raise AssertionError("an example was computed again")

    monkeypatch.setattr(handlers.pipeline, "analyze", forbidden)
    monkeypatch.setattr(handlers, "attribute", forbidden)
    for path in photos.example_photos():
        session, _, top5, *_ = analyze(path)
        assert len(top5) == 5
        # the default attribution was computed too: the attribution tab draws without the model
        shown = handlers.show_tab(session, settings.Settings(tab="attribution"), noop)
        assert not_blank(shown["attribution_img"])


def test_analysis_of_a_photo_is_cached_and_deterministic():
    first, again = analyze()[0], analyze()[0]
    assert again.forward is first.forward  # the cached forward, not a new model run
    assert again.maps is not first.maps  # but every user gets their own memo of maps
    cache.RESULTS.clear()  # a new model run on the same photo gives the same numbers
    fresh = analyze()[0]
    assert fresh.forward is not first.forward
    assert np.array_equal(fresh.forward.probs, first.forward.probs)
    for a, b in zip(fresh.forward.records, first.forward.records, strict=True):
        assert np.array_equal(a.dwa, b.dwa), a.name


def test_higher_resolution_gives_more_windows():
    an = analyze(resolution=448)[0]
    rec = an.forward.record("stages.0.blocks.0")
    assert an.forward.image.shape == (448, 448, 3)
    assert rec.geometry.grid == (16, 16)  # 8 x 8 windows at 224


def test_after_analysis_updates_controls_without_the_model(state, no_model):
    state = handlers.Session.of(state.forward)  # a new analysis of the same forward: its page not yet set up
    out = handlers.after_analysis(state, settings.Settings())
    assert set(out) == set(handlers.AFTER_ANALYSIS)
    token_block, token_head, pwa_block, pair, target = (
        out[k] for k in ("token_block", "token_head", "pwa_block", "pair", "target")
    )
    assert [v for _, v in token_block["choices"]] == [r.name for r in state.forward.records]
    assert any("GSA (w=14, 2x2 groups)" in label for label, _ in token_block["choices"])
    assert all("GLOBAL" not in label for label, _ in pwa_block["choices"])
    assert [v for _, v in token_head["choices"]][:3] == ["mean", "max", "min"]
    assert pair["value"] == "stages.1.blocks.0|stages.1.blocks.1"
    assert len(target["choices"]) == 1001
    assert "window token" in out["token_caption"] and "Pixel" in out["pixel_caption"]
    # the other tabs' pictures belonged to the last photo: emptied, drawn again when shown
    for name in (
        "attribution_img",
        "pwa_matrix_img",
        "pwa_row_img",
        "compare_slider",
        "compare_a",
        "compare_b",
        "faith_plot",
        "downloads",  # the last photo's files
    ):
        assert out[name] is None, name
    assert out["attribution_caption"] == out["pwa_caption"] == out["compare_caption"] == ""
    assert (out["x"], out["y"], out["window"]) == (-1, -1, -1)


def test_a_class_typed_for_the_analysis_stays_chosen_after_it(state, no_model):
    """analyze accepted "goldfish" typed in the class box; the page then reset the box to the top
    prediction without a word. The class named is kept (as its dropdown value); text that names no
    single class falls back to the top prediction."""
    for typed, value in (("goldfish", "1"), ("Goldfish", "1"), ("1: goldfish", "1"), ("#2", "2"), ("gold", "top")):
        fresh = handlers.Session.of(state.forward)
        assert handlers.after_analysis(fresh, settings.Settings(target=typed))["target"]["value"] == value, typed


def test_analyze_and_the_secondary_views_draw_each_picture_once(monkeypatch):
    """/analyze draws only the first tab's pictures (and runs no attribution); the events after it draw
    nothing; each other tab is drawn once, when it is shown, and showing it again draws nothing."""
    calls: dict[str, int] = {}
    for name in ("tokens", "pixel", "pwa_row", "pwa_matrix", "compare", "attribution"):
        real = getattr(views, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(views, name, counted)
    attributions = []
    real_attribute = handlers.attribute
    monkeypatch.setattr(handlers, "attribute", lambda *a, **k: attributions.append(1) or real_attribute(*a, **k))
    cache.RESULTS.clear()  # the attribution of this photo is not cached either
    session = analyze()[0]
    assert calls == {"tokens": 1, "pixel": 1} and not attributions
    s = settings.Settings()
    handlers.after_analysis(session, s)
    assert handlers.show_tab_after_analysis(session, s) == {}  # the first tab came with /analyze
    assert calls == {"tokens": 1, "pixel": 1} and not attributions
    for tab in handlers.TABS:
        handlers.show_tab(session, s.with_(tab=tab))
    drawn_once = {"tokens": 1, "pixel": 1, "attribution": 1, "pwa_row": 1, "pwa_matrix": 1, "compare": 1}
    assert calls == drawn_once and len(attributions) == 1
    for tab in handlers.TABS:  # back and forth between tabs: the session's pictures
        handlers.show_tab(session, s.with_(tab=tab))
    assert calls == drawn_once and len(attributions) == 1


def test_a_shown_tab_is_drawn_from_the_analysis_without_a_forward(monkeypatch):
    """Each tab's views come from the session: the forward never runs again, whichever tab is shown
    (the attribution tab runs only its attribution); after a new analysis, the shown tab is drawn by the
    event that follows it, unless it is the first (/analyze returned it)."""
    session = analyze(_fresh_photo(seed=3))[0]
    forwards = []
    monkeypatch.setattr(handlers.pipeline, "analyze", lambda *a, **k: forwards.append(1))
    names = {tab: set(views_) for tab, views_ in handlers.TAB_VIEWS.items()}
    for tab in handlers.TABS:
        out = handlers.show_tab(session, settings.Settings(tab=tab))
        assert set(out) == names.get(tab, set()), tab
        for name, value in out.items():
            if name.endswith("_img"):
                assert not_blank(value), name
        after = handlers.show_tab_after_analysis(session, settings.Settings(tab=tab))
        assert after == ({} if tab == handlers.TABS[0] else out), tab
    assert not forwards
    assert handlers.show_tab(None, settings.Settings(tab="pwa")) == {}  # nothing analysed yet: nothing drawn


def _fresh_photo(seed: int) -> Image.Image:
    """A photo no cache has seen (a random crop of an example)."""
    src = Image.open(EXAMPLE).convert("RGB")
    side = min(src.size) * 3 // 4
    rng = np.random.default_rng(seed)
    x0, y0 = (int(rng.integers(0, v - side + 1)) for v in src.size)
    return src.crop((x0, y0, x0 + side, y0 + side))


def test_the_page_starts_on_the_token_tab_and_draws_each_tab_when_shown():
    """app.py: the first tab is handlers.TABS[0]; each tab's select event remembers it (the shown tab)
    and draws its views from the analysis; the events after a new analysis draw the shown tab and the
    Model tab's plots only while it is shown."""
    import app

    assert app.shown_tab.value == handlers.TABS[0] == "tokens"
    fns = list(app.demo.fns.values())
    marks = {f.name: f for f in fns if f.name.startswith("show_") and f.name != "show_tab"}
    assert set(marks) >= {f"show_{tab}" for tab in handlers.TABS}
    for tab in handlers.TABS:
        mark = marks[f"show_{tab}"]
        assert mark.fn() == tab and mark.outputs == [app.shown_tab] and mark.api_visibility == "private"
    by_id = app.demo.fns
    drawing = [f for f in fns if f.name == "show_tab"]
    assert len(drawing) == 4 and all(by_id[f.trigger_after].name.startswith("show_") for f in drawing)
    after = [f for f in fns if f.name == "show_tab_after_analysis"]
    assert len(after) == 2 and all(by_id[f.trigger_after].name == "after_analysis" for f in after)
    from sepvit_viz.serving import model_tab

    assert model_tab.model_tab_if_shown("tokens", None) == (gr.skip(),) * 3
    # before any analysis (a tab clicked first) the page's bound handlers change nothing, as Gradio
    # accepts it for several outputs
    for f in fns:
        if f.name in ("after_analysis", "show_tab", "show_tab_after_analysis"):
            assert len(f.outputs) > 1 and f.fn({}) == gr.skip(), f.name


def test_every_queued_redraw_keeps_its_last_trigger():
    """A trigger that arrives while the same event is pending must run after it, not be dropped
    (Gradio's default outside ``.change``): a second photo sent while the first one's attribution was
    drawn would otherwise leave the attribution tab empty, and a method picked during another one's
    attribution would never be drawn. Only button clicks keep the default (a double click runs once),
    and unqueued events, which return at once."""
    import app

    fns = list(app.demo.fns.values())
    for f in fns:
        clicked = bool(f.targets) and f.targets[0][1] == "click"
        if f.queue and not clicked:
            assert f.trigger_mode == "always_last", f"{f.name} drops a trigger that arrives while it runs"
    # the whole chain of a new photo and of Analyze, every step after the first
    by_id = app.demo.fns
    for first in ("analyze_new_photo", "analyze"):
        step = next(f for f in fns if f.name == first)
        chain = [step]

        # the steps that follow success (a refused photo's status note follows failure: unqueued)
        def after(step):
            follow = (f for f in fns if f.trigger_after is not None and by_id[f.trigger_after] is step)
            return next((f for f in follow if not f.trigger_only_on_failure), None)

        while step := after(step):
            chain.append(step)
        assert [f.name.rstrip("_1") for f in chain] == [
            first,
            "after_analysis",
            "show_tab_after_analysis",
            "model_tab_if_shown",
        ]
        assert {f.trigger_mode for f in chain} == {"always_last"}


def test_maps_over_the_photo_go_as_jpeg_plots_as_png():
    """Gradio encodes the maps drawn over the photo as JPEG (about 100x faster than PNG), the plots and
    the PWA matrix as PNG; the Downloads tab's files stay PNG."""
    import app
    from sepvit_viz.serving import page

    photo_maps = ("token_img", "pixel_img", "attribution_img", "pwa_row_img", "compare_a", "compare_b")
    plots = ("pwa_matrix_img", "faith_plot", "depth_img", "kinds_img")
    formats = {b.elem_id: getattr(b, "format", None) for b in app.demo.blocks.values() if getattr(b, "elem_id", None)}
    assert page.PHOTO_FORMAT == "jpeg" and page.PLOT_FORMAT == "png"
    assert {formats[name] for name in photo_maps} | {formats["compare_slider"]} == {"jpeg"}
    assert {formats[name] for name in plots} == {"png"}


def test_settings_binding_reads_and_writes_by_name():
    cmap, head, table, state = object(), object(), object(), object()  # stand-ins for components
    page = settings.Binding(cmap=cmap, token_head=head, faith_table=table)
    fn, inputs, outputs = page.handler(
        lambda st, s: {"faith_table": (st, s.cmap, s.token_head, s.resolution)}, state, ["faith_table"]
    )
    assert inputs == {state, cmap, head} and outputs == {table}  # outputs are not read back as settings
    assert fn({state: "S", cmap: "magma", head: "1"}) == {table: ("S", "magma", "1", limits.DEFAULT_RESOLUTION)}
    assert fn.__name__ == "<lambda>"
    # nothing to change (no analysis yet, the first tab after /analyze): Gradio's "skip", not an empty
    # dict, which it would read as one value for several outputs
    fn, _, _ = page.handler(lambda st, s: {}, state, ["faith_table", "cmap"])
    assert fn({state: None}) == gr.skip()
    assert settings.Settings.of(cmap=None, pair=None).cmap == limits.COLORMAPS[0]  # an empty component: default
    with pytest.raises(TypeError, match="colour"):
        settings.Settings.of(colour="red")


def test_one_settings_object_reaches_the_handlers():
    """app.py binds every Settings field to one component; the after-analysis event reads them all."""
    import dataclasses

    import app

    bound = set(app.page.components)
    assert {f.name for f in dataclasses.fields(settings.Settings)} <= bound
    assert set(handlers.AFTER_ANALYSIS) <= bound
    fn = next(f for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == "after_analysis")
    assert fn.api_visibility == "private"
    assert {id(c) for c in fn.inputs} >= {id(app.page[f.name]) for f in dataclasses.fields(settings.Settings)}


# ------------------------------------------------------------------------------------ rendering only
def test_rendering_changes_do_not_run_the_model(state, no_model):
    args = dict(
        target="top",
        method=settings.DEFAULT_METHOD,
        token_block="stages.2.blocks.1",
        token_head="max",
        x=40,
        y=60,
        pwa_block="stages.0.blocks.0",
        pwa_head="0",
        window=5,
        pair=None,
        view="block",
    )
    first = handlers.rerender(state, cmap="inferno", opacity=0.6, **args)
    second = handlers.rerender(state, cmap="viridis", opacity=0.3, **args)
    assert len(first) == 8
    for a, b in zip(first, second):
        if isinstance(a, tuple):
            a, b = a[0], b[0]
        assert not_blank(a) and not_blank(b)
        assert a.shape == b.shape and not np.array_equal(a, b)
    handlers.window_tokens(state, "stages.1.blocks.1", "1", "magma", 0.5, 10, 10, "dwa")
    handlers.pixel_query(state, "stages.3.blocks.1", "mean", 200, 30, "magma", 0.5, "block")
    handlers.cross_window(state, "stages.1.blocks.1", "max", 3, "gray", 1.0)
    handlers.compare(state, "stages.1.blocks.0|stages.1.blocks.1", "0", "turbo", 0.4)
    # a (class, method) pair already computed is shown again without the model
    handlers.explain(state, "top", settings.DEFAULT_METHOD, "plasma", 0.9, progress=noop)


def test_a_new_method_runs_only_the_attribution(state, monkeypatch):
    calls = []
    real = handlers.attribute
    monkeypatch.setattr(handlers.pipeline, "analyze", lambda *a, **k: (_ for _ in ()).throw(AssertionError("forward")))
    monkeypatch.setattr(handlers, "attribute", lambda *a, **k: calls.append(a) or real(*a, **k))
    state.attributions.pop(("saliency", 7), None)
    cache.RESULTS.clear()
    img, caption = handlers.explain(state, "7", "saliency", "inferno", 0.6, progress=noop)
    assert len(calls) == 1 and not_blank(img)
    assert state.top1 != 7 and calls[0][2] == 7  # the class asked for is the one attributed, not the top
    assert "Saliency" in caption and "(7)" in caption
    handlers.explain(state, "7: cock", "saliency", "viridis", 0.6, progress=noop)  # the dropdown label works too
    assert len(calls) == 1


def test_smoothing_is_display_only_and_removes_the_stride_comb(state, no_model):
    """The checkbox shows destripe(raw map); the stored attribution (scored, downloaded) stays raw."""
    from sepvit_viz.explain.attribution import destripe

    method = settings.DEFAULT_METHOD
    att = state.attributions[(method, state.top1)]  # computed when the fixture showed the attribution tab
    raw_before = att.map_hw.copy()
    s = settings.Settings(method=method)
    raw_view = handlers._attribution_view(state, s)
    smooth_view = handlers._attribution_view(state, s.with_(smooth=True))
    stride = state.maps.records[0].geometry.stride
    assert stride == 4
    np.testing.assert_allclose(smooth_view.heat, np.maximum(destripe(raw_before, stride), 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(raw_view.heat, np.maximum(raw_before, 0))
    np.testing.assert_array_equal(att.map_hw, raw_before)  # the stored map is untouched
    assert not np.array_equal(raw_view.picture, smooth_view.picture)

    def comb(m: np.ndarray) -> float:  # power at 1/4 cycle per pixel over its neighbouring frequencies
        p = np.abs(np.fft.rfft(m - m.mean(axis=1, keepdims=True), axis=1)).mean(axis=0) ** 2
        q = m.shape[1] // 4  # rfft bin k is k / W cycles per pixel
        return float(p[q] / np.median(p[q - 6 : q + 7]))

    assert comb(smooth_view.heat) < comb(raw_view.heat)
    img, caption = handlers.explain(state, "top", method, "inferno", 0.6, True, progress=noop)
    assert "Smoothed for display" in caption and "raw map" in caption
    np.testing.assert_array_equal(img, smooth_view.picture)
    img, caption = handlers.explain(state, "top", method, "inferno", 0.6, False, progress=noop)
    assert "Smoothed" not in caption
    np.testing.assert_array_equal(img, raw_view.picture)


def test_smoothing_setting_reaches_render_downloads_and_rejects_nonsense(state, tmp_path, monkeypatch):
    method = settings.DEFAULT_METHOD
    args = ("top", method, "inferno", 0.6, None, "mean", -1, -1, None, "mean", -1, None, "dwa")
    raw = handlers.rerender(state, *args)[0]
    smooth = handlers.rerender(state, *args, True)[0]
    assert not np.array_equal(raw, smooth)
    np.testing.assert_array_equal(smooth, handlers._attribution_view(state, settings.Settings(smooth=True)).picture)
    files = handlers.prepare_downloads(state, *args, True)
    npz = next(f for f in files if f.endswith(".npz"))
    with np.load(npz) as z:  # the arrays stay raw whatever is shown
        np.testing.assert_array_equal(
            z[f"attribution.{method}.{state.top1}"], state.attributions[(method, state.top1)].map_hw
        )
    with pytest.raises(gr.Error, match="Smoothing must be true or false"):
        handlers.explain(state, "top", method, "inferno", 0.6, "yes please", progress=noop)


# ------------------------------------------------------------------------------------ clicks
def select(x, y):
    return gr.SelectData(None, {"index": [x, y], "value": None})


def test_click_on_the_token_map_is_a_model_pixel(state):
    k = views.display_scale(limits.DEFAULT_RESOLUTION)  # pictures show the photo k times larger
    top = render.TITLE_HEIGHT  # the photo starts below the title band
    assert handlers.point_from_select(state, select(37 * k + 1, top + 150 * k)) == (37, 150)
    assert all(isinstance(v, dict) for v in handlers.point_from_select(state, select(37 * k, top - 2)))  # the title
    # the colour bar right of the photo is not a pixel: nothing changes
    x_bar = k * limits.DEFAULT_RESOLUTION + 10
    assert all(isinstance(v, dict) for v in handlers.point_from_select(state, select(x_bar, 20)))


def test_pixel_query_follows_the_click(state):
    block = "stages.1.blocks.0"  # DSSA, 4 x 4 windows of 56 px
    tok_a, pix_a, cap_a = handlers.pixel_query(state, block, "mean", 20, 20, "inferno", 0.6, "dwa")
    tok_b, pix_b, cap_b = handlers.pixel_query(state, block, "mean", 200, 200, "inferno", 0.6, "dwa")
    assert "window 0" in cap_a and "window 15" in cap_b
    assert not np.array_equal(pix_a, pix_b) and not np.array_equal(tok_a, tok_b)  # the marker moved
    # the DWA heat is zero outside the clicked window: the far corner shows the photo dimmed, no heat
    rec = state.forward.record(block)
    q = maps.pixel_query(rec.dwa[0], rec.geometry, (20, 20), "mean", (224, 224))
    assert q.heat[100:, 100:].max() == 0 and q.heat[:56, :56].max() > 0


def test_click_on_the_cross_window_view_picks_the_window(state):
    block = "stages.0.blocks.0"  # 8 x 8 windows of 28 px
    k = views.display_scale(limits.DEFAULT_RESOLUTION)
    top = render.TITLE_HEIGHT
    assert handlers.window_from_select(state, block, select((3 * 28 + 5) * k, top + (2 * 28 + 5) * k)) == 2 * 8 + 3
    assert isinstance(handlers.window_from_select(state, block, select(k * limits.DEFAULT_RESOLUTION + 3, 5)), dict)
    mat, row_a, cap = handlers.cross_window(state, block, "mean", 19, "inferno", 0.6)
    _, row_b, _ = handlers.cross_window(state, block, "mean", 40, "inferno", 0.6)
    assert "window 19" in cap and "64 x 64" in cap
    assert not_blank(mat) and not np.array_equal(row_a, row_b)
    assert handlers.reset_window() == -1
    # -1 (nothing clicked yet) is the centre window
    assert "window 36" in handlers.cross_window(state, block, "mean", -1, "inferno", 0.6)[2]


def test_a_square_photo_is_one_cached_forward_whichever_fit():
    """A square photo gets the same model input either way: one cached forward, each status says the fit."""
    crop, crop_status = analyze(fit="crop")[:2]
    keep, keep_status = analyze(fit="aspect")[:2]
    assert crop.forward.result is keep.forward.result and keep.maps.size == (224, 224)
    assert "(centre square crop)" in crop_status and "(the photo's aspect kept)" in keep_status


def test_a_wide_photo_keeps_its_aspect_and_clicks_land_where_they_point(tmp_path):
    """Issue 19 item 5: a 640 x 320 upload is analysed at 448 x 224 (keep aspect, the default), not
    centre-cropped to a square; a click on its pictures maps to the model pixel and window under it;
    "crop" still gives the square; an unknown fit is a clear error."""
    wide = tmp_path / "wide.png"
    Image.open(EXAMPLE).convert("RGB").resize((640, 320)).save(wide)
    session, status, _, tokens, _pixel = analyze(str(wide))
    shown = {tab: handlers.show_tab(session, settings.Settings(tab=tab)) for tab in ("attribution", "pwa", "compare")}
    attribution, cross = shown["attribution"]["attribution_img"], shown["pwa"]["pwa_row_img"]
    pair = shown["compare"]["compare_slider"]
    assert session.maps.size == (224, 448) and "448 x 224 px (the photo's aspect kept)" in status
    k = views.display_scale((224, 448))
    top = render.TITLE_HEIGHT  # the title band above the photo
    assert tokens.shape[:2] == cross.shape[:2] == (top + 224 * k, 448 * k + 54) and pair[0].shape == pair[1].shape
    assert attribution.shape[1] == tokens.shape[1]  # the attribution overlay too covers the whole input
    # a click near the right end (which a square crop would have cut away) is that model pixel ...
    assert handlers.point_from_select(session, select(430 * k + k // 2, top + 100 * k)) == (430, 100)
    # ... and, on the cross-window view of a DSSA block with 56 px windows (4 x 8), window 1 * 8 + 7
    block = "stages.1.blocks.0"
    assert session.forward.record(block).grid == (4, 8)
    assert handlers.window_from_select(session, block, select(430 * k, top + 100 * k)) == 15
    _, _, caption = handlers.pixel_query(session, block, "mean", 430, 100, "inferno", 0.6, "dwa")
    assert "window 15" in caption
    crop, crop_status = analyze(str(wide), fit="crop")[:2]
    assert crop.maps.size == (224, 224) and "centre square crop" in crop_status
    with pytest.raises(gr.Error, match="photo fit"):
        analyze(str(wide), fit="stretch")


def test_compare_shows_dssa_and_gsa_side_by_side(state):
    pair, a, b, caption = handlers.compare(state, None, "mean", "inferno", 0.6)
    assert pair[0] is a and pair[1] is b
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert "DSSA" in caption and "GSA" in caption and "14x14" in caption and "one shared colour scale" in caption
    with pytest.raises(gr.Error, match="not a DSSA/GSA block pair"):
        handlers.compare(state, "stages.2.blocks.1|stages.2.blocks.2", "mean", "inferno", 0.6)


def test_global_blocks_explain_themselves(state):
    tok, caption, pix, pix_caption = handlers.window_tokens(state, "stages.3.blocks.0", "mean", "inferno", 0.6)
    assert "no window tokens" in caption and not_blank(tok) and not_blank(pix)
    assert "global window" in pix_caption
    with pytest.raises(gr.Error, match="no window-to-window"):
        handlers.cross_window(state, "stages.3.blocks.0", "mean", -1, "inferno", 0.6)


# ------------------------------------------------------------------------------------ scores, files
def test_faithfulness_scores_one_method(state, monkeypatch):
    from sepvit_viz.explain import attribution

    assert settings.DEFAULT_METHOD is attribution.DEFAULT_METHOD  # one constant, not a copy
    calls = []
    real = handlers.faithfulness_table

    def spy(model, x, target, methods=None, **kw):
        calls.append((list(methods), kw))
        return real(model, x, target, methods, **kw)

    monkeypatch.setattr(handlers, "faithfulness_table", spy)
    handlers.explain(state, "top", "gradcam", "inferno", 0.6, progress=noop)  # Grad-CAM already computed
    att = state.attributions[("gradcam", state.top1)]
    rows, plot = handlers.faithfulness(state, "top", "gradcam", "this method", 4, progress=noop)
    assert len(calls) == 1
    methods, kw = calls[0]
    # the light preset, and the attributions already computed are passed, not computed again
    assert methods == ["gradcam", "random"] and kw["steps"] == 4
    assert kw["road_fractions"] == (0.5,) and kw["sanity"] is None
    assert kw["attributions"]["gradcam"] is att
    assert len(handlers.FAITH_HEADERS) == len(rows[0]) and "verdict" in handlers.FAITH_HEADERS
    # the label says what the ROAD columns hold at the panel's preset, and that one photo is indicative
    assert "ROAD: the class probability with 50% of the pixels imputed" in handlers.FAITH_LABEL
    assert "indicative" in handlers.FAITH_LABEL
    row = next(r for r in rows if r[0] == "Grad-CAM")
    assert 0.0 <= row[1] <= 1.0 and 0.0 <= row[2] <= 1.0
    verdict = row[handlers.FAITH_HEADERS.index("verdict")]
    assert verdict.startswith("faithful on ") and "of 6 measures" in verdict
    assert any(r[0] == "Random" for r in rows)  # the floor is shown
    assert not_blank(plot)
    # asked again: the same table, no new scoring; the table is offered again after the next analysis
    again, _ = handlers.faithfulness(state, "top", "gradcam", "this method", 4, progress=noop)
    assert again == rows and len(calls) == 1
    assert ("gradcam", state.top1) in state.curves
    # other steps: a new table, and the plot (and caption scores) follow it, not the first table's curves
    rows8, plot8 = handlers.faithfulness(state, "top", "gradcam", "this method", 8, progress=noop)
    assert rows8 != rows
    assert len(calls) == 2
    assert len(state.curves[("gradcam", state.top1)].fractions) == 9
    assert (
        state.curves[("gradcam", state.top1)]
        is next(r for r in state.scorecard.rows if r.method == "gradcam").curves["mean"]
    )
    assert not np.array_equal(plot8, plot)


def test_a_constant_map_gets_no_scores_in_the_panel():
    import dataclasses

    from sepvit_viz.explain.scorecard import NO_RANKING

    session = analyze()[0]
    handlers.explain(session, "top", "gradcam", "inferno", 0.6, progress=noop)
    cls = (session.top1 + 1) % 1000
    att = session.attributions[("gradcam", session.top1)]  # stands in for an empty map of class cls
    flat = dataclasses.replace(att, map_hw=np.zeros_like(att.map_hw), target=cls)
    session.attributions[("gradcam", cls)] = flat
    rows, plot = handlers.faithfulness(session, str(cls), "gradcam", "this method", 4, progress=noop)
    row = next(r for r in rows if r[0] == "Grad-CAM")
    assert row[handlers.FAITH_HEADERS.index("verdict")] == NO_RANKING
    assert all(v is None for v in row[1:7])
    assert ("gradcam", cls) not in session.curves and ("random", cls) in session.curves
    assert not_blank(plot)  # the random map's curves are still drawn


def test_faithfulness_panel_progress_per_method_and_the_sanity_option(state, monkeypatch):
    """The panel's progress advances per method and per measure (every method named, fractions
    monotone to 1); the sanity check runs only when asked (one more attribution per method), and its
    result is in the verdict; the plotted curves are the table's own (no second computation)."""
    calls = []
    real = handlers.faithfulness_table

    def spy(model, x, target, methods=None, **kw):
        calls.append(kw["sanity"])
        return real(model, x, target, methods, **kw)

    monkeypatch.setattr(handlers, "faithfulness_table", spy)
    seen: list[tuple[float, str]] = []

    def progress(frac, desc=None):
        seen.append((float(frac), desc or ""))

    session = analyze()[0]
    rows, _ = handlers.faithfulness(session, "top", "saliency", "this method", 4, progress=progress)
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)
    for label in ("Saliency", "Random"):
        descs = " | ".join(d for _, d in seen if d.startswith(label))
        for measure in ("attribution", "deletion / insertion", "ROAD"):
            assert measure in descs, (label, descs)
    assert calls == [None] and all("sanity" not in r[-2] for r in rows)
    card = state_card = session.scorecard
    assert session.curves[("saliency", session.top1)] is card.rows[0].curves["mean"]
    seen.clear()
    rows, _ = handlers.faithfulness(session, "top", "saliency", "this method", 4, True, progress=progress)
    assert calls == [None, "full"] and session.scorecard is not state_card
    assert all("sanity check" in r[-2] for r in rows)
    assert any("sanity check" in d for _, d in seen)


def test_typed_class_text_finds_its_class(state):
    """Text left in the class search box (no option picked): part of exactly one class name is that
    class; part of several names says which (issue 19, item 1; the page selects the box's text on a
    click so typing replaces it, tested in the browser)."""
    names = state.forward.class_names
    assert inputs.parse_target("iguana", names, 0) == names.index("common iguana")
    assert inputs.parse_target("39: common iguana", names, 0) == 39
    assert inputs.parse_target("top", names, 7) == 7
    with pytest.raises(handlers.SettingsError, match=r"part of 8 class names \(.*Persian cat"):
        inputs.parse_target("cat", names, 0)
    _, caption = handlers.explain(state, "IGUANA", "saliency", "inferno", 0.6, progress=noop)
    assert "common iguana" in caption


def test_every_map_view_has_a_title_and_gsa_has_group_tokens(state):
    """Issue 19, item 9: the window-token map (and the cross-window map) carry a title band like the
    other views; a GSA block's tokens are group tokens in every caption."""
    pictures = {
        "tokens": handlers.window_tokens(state, "stages.1.blocks.0", "mean", "inferno", 0.6)[0],
        "cross-window": handlers.cross_window(state, "stages.1.blocks.0", "mean", -1, "inferno", 0.6)[1],
        "pixel": handlers.window_tokens(state, "stages.1.blocks.0", "mean", "inferno", 0.6)[2],
    }
    for what, pic in pictures.items():
        band = pic[: render.TITLE_HEIGHT].mean(axis=2)
        assert (band > 250).mean() > 0.6 and (band < 100).sum() > 50, f"{what}: no title band"
    _, tok_caption, _, pix_caption = handlers.window_tokens(state, "stages.1.blocks.1", "mean", "inferno", 0.6)
    _, _, block_caption = handlers.pixel_query(state, "stages.1.blocks.1", "mean", 30, 30, "inferno", 0.6, "block")
    for caption in (tok_caption, pix_caption, block_caption):
        assert "GSA" in tok_caption and "group token" in caption and "window token" not in caption, caption
    _, dssa_caption, _, _ = handlers.window_tokens(state, "stages.1.blocks.0", "mean", "inferno", 0.6)
    assert "window token" in dssa_caption and "group token" not in dssa_caption


def test_attribution_progress_stays_off_the_caption():
    """Issue 19, item 9: while an attribution runs, its progress shows on the picture only (over the
    caption its text overlapped the old caption)."""
    import app

    explains = [d for d in app.demo.fns.values() if d.name == "explain"]
    assert explains
    for dep in explains:
        assert [c.elem_id for c in dep.show_progress_on] == ["attribution_img"]


def test_an_attribution_run_by_showing_its_tab_reports_progress():
    """Showing the attribution tab (or a new photo while it is shown) runs its attribution, Integrated
    Gradients for one; those events took no gr.Progress, so the picture showed no progress bar."""
    import app

    shows = [d for d in app.demo.fns.values() if d.name in ("show_tab", "show_tab_after_analysis")]
    assert {d.name for d in shows} == {"show_tab", "show_tab_after_analysis"}
    for dep in shows:
        assert any(isinstance(p.default, gr.Progress) for p in inspect.signature(dep.fn).parameters.values())
    session = handlers.analyze(_fresh_photo(41), progress=noop)[0]
    calls = []
    shown = handlers.show_tab_after_analysis(
        session, settings.Settings(tab="attribution", method="saliency"), lambda *a, **k: calls.append(k)
    )
    assert shown["attribution_img"] is not None and calls and "Saliency" in calls[-1]["desc"]


def test_render_and_downloads_skip_cross_window_pictures_for_a_model_without_pwa(state, monkeypatch, no_model):
    """A model with no PWA block (every block global) still re-renders and downloads its other views."""
    args = ("top", settings.DEFAULT_METHOD, "viridis", 0.5, None, "mean", -1, -1, None, "mean", -1, None, "dwa")
    with_pwa = handlers.rerender(state, *args)
    assert isinstance(with_pwa[3], np.ndarray) and isinstance(with_pwa[4], np.ndarray)
    monkeypatch.setattr(handlers, "_pwa_block_or_none", lambda session, s: None)
    out = handlers.rerender(state, *args)
    assert out[3] == gr.update() and out[4] == gr.update()
    assert isinstance(out[1], np.ndarray) and isinstance(out[2], np.ndarray)  # the token views are drawn
    names = [Path(f).name for f in handlers.prepare_downloads(state, *args)]
    assert "window_tokens.png" in names and not any("pwa" in n or "cross_window" in n for n in names)


def test_slow_model_events_never_write_the_session_back():
    """An attribution or a faithfulness table that ends after a new photo's analysis must not put the
    old analysis back: those events update the session in place and have no State among their outputs."""
    import app

    slow = [d for d in app.demo.fns.values() if d.name in ("explain", "faithfulness")]
    assert {d.name for d in slow} == {"explain", "faithfulness"}
    for dep in slow:
        assert not any(isinstance(c, gr.State) for c in dep.outputs), dep.name


def test_curve_legends_lie_outside_the_curves():
    """Issue 19, item 6: one legend below both plots, inside the figure, over no curve."""
    from sepvit_viz.explain.attribution import METHODS
    from sepvit_viz.explain.faithfulness import Curves

    f = np.linspace(0, 1, 9)
    for n in (2, len(METHODS)):
        scores = {
            m.label: Curves(f, np.exp(-(i + 1) * f), 1 - np.exp(-(i + 1) * f), 0.1, 0.9, 0)
            for i, m in enumerate(list(METHODS.values())[:n])
        }
        fig = views.curves_figure(scores)
        fig.canvas.draw()
        (legend,) = fig.legends
        box = legend.get_window_extent()
        assert len(legend.get_texts()) == n
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent()), n
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0, n


def test_downloads_hold_the_views_and_the_arrays(state):
    files = handlers.prepare_downloads(
        state,
        "top",
        settings.DEFAULT_METHOD,
        "inferno",
        0.6,
        "stages.1.blocks.1",
        "0",
        30,
        40,
        "stages.0.blocks.0",
        "mean",
        3,
        None,
        "dwa",
    )
    names = {Path(f).name for f in files}
    assert {
        "input.png",
        "window_tokens.png",
        "pixel_dwa.png",
        "pwa_matrix.png",
        "cross_window.png",
        "compare_dssa.png",
        "compare_gsa.png",
        "sepvit_analysis.npz",
    } <= names
    for f in files:
        if f.endswith(".png"):
            with Image.open(f) as im:
                assert im.format == "PNG" and not_blank(np.asarray(im.convert("RGB")))
    npz = next(f for f in files if f.endswith(".npz"))
    with zipfile.ZipFile(npz) as z:
        assert z.testzip() is None
    arrays = np.load(npz)
    assert arrays["probs"].shape == (1000,)
    assert np.allclose(arrays["probs"], state.forward.probs)
    for r in state.forward.records:
        assert arrays[f"{r.name}.dwa"].shape == r.dwa.shape[1:]
    assert any(k.startswith("attribution.") for k in arrays.files)
    # the cross-window tab's row (block stages.0.blocks.0, window 3), not the token tab's window
    pwa = state.forward.index("stages.0.blocks.0")
    assert str(arrays["cross_window.block"]) == "stages.0.blocks.0" and int(arrays["cross_window.window"]) == 3
    assert str(arrays["cross_window.head"]) == "mean"
    assert np.allclose(arrays["cross_window.pwa_row"], state.maps.pwa_matrix(pwa, "mean")[3])
    assert np.allclose(arrays["cross_window.pwa_map"], state.maps.pwa_map(pwa, 3, "mean"))
    token_window = state.maps.window_at(pwa, (40, 30))
    assert token_window != 3 and not np.allclose(arrays["cross_window.pwa_map"], state.maps.pwa_map(pwa, token_window))


def test_downloads_are_private_bounded_and_repeatable(state, tmp_path, monkeypatch):
    """The download folder is this process's own (mode 0700, not a shared fixed name); at most
    DOWNLOAD_FOLDERS_MAX folders are kept; the same views give the same bytes (Gradio's cache is
    content-addressed, so a repeated request costs no disk); a link under the root is never followed."""
    import os
    import stat

    from sepvit_viz.limits import DOWNLOAD_FOLDERS_MAX, DOWNLOAD_TTL_S
    from sepvit_viz.serving import downloads

    args = ("top", settings.DEFAULT_METHOD, "inferno", 0.6, "stages.1.blocks.1", "0", 30, 40)
    args += ("stages.0.blocks.0", "mean", 3, None, "dwa")
    first = handlers.prepare_downloads(state, *args)
    root = downloads.download_root()
    assert Path(first[0]).parent.parent == root and root.name.startswith("sepvit_viz_downloads_")
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    second = handlers.prepare_downloads(state, *args)
    assert Path(second[0]).parent != Path(first[0]).parent
    for a, b in zip(first, second):
        assert Path(a).read_bytes() == Path(b).read_bytes(), Path(a).name
    with zipfile.ZipFile(first[-1]) as z:  # no member stamped with the time it was written
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    for _ in range(DOWNLOAD_FOLDERS_MAX + 2):
        handlers.prepare_downloads(state, *args)
    assert len([d for d in root.iterdir() if d.is_dir()]) == DOWNLOAD_FOLDERS_MAX
    # prune removes old and surplus folders, never what a link points to
    victim = tmp_path / "victim"
    (victim / "old").mkdir(parents=True)
    fake = tmp_path / "root"
    fake.mkdir()
    (fake / "link").symlink_to(victim)
    for i in range(3):
        (fake / f"d{i}").mkdir()
        os.utime(fake / f"d{i}", (1000.0 + i, 1000.0 + i))
    downloads.prune(now=2000.0, root=fake, keep=1)
    assert sorted(p.name for p in fake.iterdir()) == ["d2", "link"] and (victim / "old").is_dir()
    downloads.prune(now=1000.0 + DOWNLOAD_TTL_S + 10, root=fake)
    assert sorted(p.name for p in fake.iterdir()) == ["link"]
    linked_root = tmp_path / "linked_root"
    linked_root.symlink_to(victim)
    os.utime(victim / "old", (0, 0))
    downloads.prune(root=linked_root)
    assert (victim / "old").is_dir()


def test_class_text_naming_no_single_class_blocks_only_the_attribution(state):
    """Text left in the class box that names several classes ("cat") refuses the attribution, which
    needs a class, and a new analysis (every setting is checked there), but not a colormap or opacity
    redraw or the downloads, which do not depend on the class."""
    with pytest.raises(gr.Error, match="part of 8 class names"):
        analyze(target="cat")
    args = ("cat", settings.DEFAULT_METHOD, "viridis", 0.5, None, "mean", -1, -1, None, "mean", -1, None, "dwa")
    out = handlers.rerender(state, *args)
    assert out[0] == gr.update() and isinstance(out[1], np.ndarray)  # the attribution is left as it is
    names = [Path(f).name for f in handlers.prepare_downloads(state, *args)]
    assert "window_tokens.png" in names and not any(n.startswith("attribution_") for n in names)
    with pytest.raises(gr.Error, match="part of 8 class names"):
        handlers.explain(state, "cat", "saliency", "inferno", 0.6, progress=noop)


# ------------------------------------------------------------------------------------ models
def test_model_is_loaded_once_under_concurrency(monkeypatch):
    store = models.ModelStore(replicas=2)
    loads = []
    real = models.load_random

    def slow_load():
        loads.append(threading.get_ident())
        return real()

    monkeypatch.setattr(models, "load_random", slow_load)
    got = []
    threads = [threading.Thread(target=lambda: got.append(store.get(models.MODEL_RANDOM))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(e) for e in got}) == 1
    # two requests at once hold two different replicas
    entry = got[0]
    with entry.borrow() as a, entry.borrow() as b:
        assert a is not b
        assert all(torch_equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_concurrent_analyses_keep_their_own_attention():
    cache.RESULTS.clear()
    pair = photos.example_photos()[:2]
    alone = [analyze(p)[0].forward for p in pair]
    cache.RESULTS.clear()
    results: dict[int, handlers.Forward] = {}
    errors = []

    def run(i):
        try:
            results[i] = analyze(pair[i])[0].forward
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(2):
        assert np.allclose(results[i].probs, alone[i].probs, atol=1e-6)
        for r, s in zip(results[i].records, alone[i].records):
            assert np.allclose(r.dwa, s.dwa, atol=1e-6)


def test_missing_default_checkpoint_gives_random_weights_and_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "DEFAULT_CHECKPOINT", tmp_path / "missing.safetensors")
    assert "random weights" in handlers.model_banner()
    status = analyze()[1]
    assert "random weights" in status.lower()


def test_the_app_loads_the_shipped_checkpoint_by_default():
    from sepvit_viz.model.weights import read_checkpoint

    shipped = Path(__file__).resolve().parents[1] / "assets" / "sepvit_lite_distilled.safetensors"
    assert shipped == models.DEFAULT_CHECKPOINT and shipped.is_file()
    assert inspect.signature(handlers.analyze).parameters["model_choice"].default == models.MODEL_DEFAULT
    assert models.model_choices()[0][1] == models.MODEL_DEFAULT  # the dropdown's first (default) entry
    key, loader = models.MODELS.resolve(models.MODEL_DEFAULT)
    assert key.kind == "default" and not key.missing and loader is models.load_default
    model, label, warning = loader()
    assert warning is None and "distilled" in label
    tensors, _ = read_checkpoint(shipped)
    state = model.state_dict()
    assert set(state) == set(tensors)
    assert all(torch.equal(state[k], tensors[k].to(state[k].dtype)) for k in tensors)  # the shipped weights


def test_predictions_come_with_the_models_coverage_caveat(state):
    status = analyze()[1]  # the default (shipped) model; the forward is cached
    from sepvit_viz.model.weights import model_note

    caveat = status.split("\n\n")[-1]
    note = model_note(models.DEFAULT_CHECKPOINT)
    assert status.startswith("Model:") and note and "\n" not in note
    assert caveat == f"ⓘ {note}"  # one line, the card's own figures, not a second copy
    # the status Markdown sits right above the top-5 label in the app
    import app

    column = next(b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == "top5").parent
    ids = [getattr(c, "elem_id", None) for c in column.children]
    assert ids[ids.index("top5") - 1] == "status"
    # only models the card describes get it
    random, hub = models.ModelKey("random"), models.ModelKey("hub", "someone/model", "main")
    assert handlers.coverage_markdown(random) == handlers.coverage_markdown(hub) == ""
    assert handlers.coverage_markdown(models.ModelKey("default", missing=True)) == ""


def test_hub_checkpoint_errors_are_clear(monkeypatch):
    import huggingface_hub.constants as hf_constants

    with pytest.raises(gr.Error, match="owner/name"):
        analyze(model_choice=models.MODEL_HUB, hub_repo="../../etc")
    with pytest.raises(gr.Error, match="Invalid revision"):
        analyze(model_choice=models.MODEL_HUB, hub_repo="someone/model", hub_revision="a b")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # an unreachable Hub, without waiting on DNS
    with pytest.raises(gr.Error, match="Hugging Face Hub"):
        analyze(model_choice=models.MODEL_HUB, hub_repo="someone/sepvit-model", hub_revision="v1")
    with pytest.raises(gr.Error, match="No bundled checkpoint"):
        analyze(model_choice="bundled:../../secret.safetensors")
    with pytest.raises(gr.Error, match="Unknown model"):
        analyze(model_choice="/etc/passwd")


def test_an_unreachable_hub_fails_fast_with_one_message_and_keeps_the_analysis(monkeypatch):
    """Issue 19, item 7: no network here; huggingface_hub answers as it does when the Hub cannot be
    reached. The model is loaded in an event of its own, with no outputs, ahead of the analysis."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    asked = []

    def unreachable(*args, **kwargs):
        asked.append(kwargs)
        raise LocalEntryNotFoundError(
            "An error happened while trying to locate the file on the Hub and we cannot find the requested "
            "files in the local cache."
        )

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(gr.Error) as info:
        handlers.load_model(models.MODEL_HUB, "someone/unreachable-model", "")
    # fails fast: exactly one request, with a bounded timeout, and no retries
    assert len(asked) == 1 and asked[0]["timeout"] == limits.HUB_TIMEOUT_S, asked
    msg = info.value.message
    assert "someone/unreachable-model" in msg and "cannot be reached" in msg and "unchanged" in msg, msg
    for raw in ("LocalEntryNotFoundError", "locate the file", "Traceback"):
        assert raw not in msg, msg
    assert info.value.print_exception is False
    # in the page: /analyze (and the new-photo analysis) run only after the model loaded, by an event
    # without outputs, so a failed load leaves every output of the last analysis as it was
    import app

    fns = app.demo.fns
    for dep in (d for d in fns.values() if d.name in ("analyze", "analyze_new_photo")):
        before = fns[dep.trigger_after]
        assert before.name == "load_model" and before.outputs == [] and dep.trigger_only_on_success


def test_model_fields_show_the_hub_boxes_only_for_the_hub():
    repo, rev, _ = handlers.model_fields(models.MODEL_HUB)
    assert repo["visible"] is True and rev["visible"] is True
    repo, rev, _ = handlers.model_fields(models.MODEL_DEFAULT)
    assert repo["visible"] is False and rev["visible"] is False
    assert models.model_choices()[0][1] == models.MODEL_DEFAULT


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda s: handlers.pixel_query(s, "stages.0.blocks.0", "mean", 500, 3, "inferno", 0.6),
            "outside the model input",
        ),
        (
            lambda s: handlers.pixel_query(s, "stages.0.blocks.0", "mean", 3, 3, "inferno", 0.6, "telepathy"),
            "pixel view",
        ),
        (lambda s: handlers.cross_window(s, "stages.0.blocks.0", "mean", 64, "inferno", 0.6), "does not exist"),
        (lambda s: handlers.cross_window(s, "stages.0.blocks.0", "mean", 2.5, "inferno", 0.6), "whole number"),
        (lambda s: handlers.window_tokens(s, "stages.0.blocks.0", "3", "inferno", 0.6), "does not exist"),
        (lambda s: handlers.window_tokens(s, "nope", "mean", "inferno", 0.6), "Unknown block"),
        (
            lambda s: handlers.explain(None, "top", "saliency", "inferno", 0.6, progress=noop),
            "Upload a photo.*kept for 60 minutes after it is made, after that press Analyze again",
        ),
    ],
)
def test_impossible_view_settings(state, call, match):
    with pytest.raises(gr.Error, match=match):
        call(state)


def test_main_binds_where_spaces_expect(monkeypatch):
    import app

    seen = {}
    monkeypatch.setattr(app.demo, "launch", lambda **kw: seen.update(kw))
    monkeypatch.setattr(handlers, "warm_up", lambda: seen.setdefault("warm", True))
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.setenv("PORT", "8123")
    app.main()
    assert seen["server_name"] == "0.0.0.0" and seen["server_port"] == 8123 and seen["warm"]
    assert seen["max_file_size"] == limits.MAX_UPLOAD_BYTES and seen["show_error"] is False
    from sepvit_viz.serving import page

    assert seen["css"] == page.CSS and seen["js"] == page.JS  # the toolbar's row, the class box's search
    monkeypatch.delenv("PORT")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "127.0.0.1")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    app.main()
    assert seen["server_name"] == "127.0.0.1" and seen["server_port"] == 7999


def test_public_space_settings():
    import app

    assert app.demo.analytics_enabled is False
    assert app.demo._queue.max_size == limits.QUEUE_SIZE
    fns = list(app.demo.fns.values())
    model_fns = [f for f in fns if f.concurrency_id == "model"]
    assert model_fns and all(f.concurrency_limit == limits.CONCURRENCY for f in model_fns)
    public = {f.api_name for f in fns if f.api_visibility == "public"}
    assert {
        "analyze",
        "explain",
        "faithfulness",
        "window_tokens",
        "pixel_query",
        "cross_window",
        "compare",
        "render",
        "downloads",
        "model_stats",
    } <= public
    assert not any(getattr(f.fn, "__name__", "") == "after_analysis" and f.api_visibility == "public" for f in fns)


def test_result_cache_is_bounded_in_count_and_bytes(state):
    mb = np.zeros(2**20, np.uint8)
    lru = cache.ResultCache(capacity=3, max_bytes=int(2.5 * 2**20))
    for i in range(3):
        lru.put((i,), mb.copy())
    # 3 MB > 2.5 MB: the oldest went; count bound also holds
    assert lru.get((0,)) is None and lru.get((1,)) is not None and len(lru) == 2
    assert lru.nbytes == 2 * 2**20
    lru.get((1,))  # now the most recent: (2,) is evicted next
    lru.put((3,), mb.copy())
    assert lru.get((2,)) is None and lru.get((1,)) is not None and lru.nbytes == 2 * 2**20
    lru.put((3,), np.zeros(3 * 2**20, np.uint8))  # larger than the whole budget: not kept
    assert lru.get((3,)) is None and lru.nbytes == 2**20 and len(lru) == 1
    small = cache.ResultCache(capacity=2)
    for i in range(5):
        small.put((i,), i)
    assert len(small) == 2 and small.get((4,)) == 4
    # a real forward is sized by its attention arrays (every block's DWA and PWA)
    fwd = state.forward
    attention = sum(r.dwa.nbytes + (r.pwa.nbytes if r.pwa is not None else 0) for r in fwd.records)
    assert attention <= cache.nbytes(fwd) < attention + fwd.image.nbytes + 2**16
    assert cache.RESULTS.max_bytes == limits.RESULT_CACHE_BYTES > 0


# ------------------------------------------------------------------------------------ server log
def _log_lines(caplog) -> list:
    return [r for r in caplog.records if r.name.startswith("sepvit_viz")]


def test_user_errors_are_one_log_line_and_faults_keep_their_traceback(state, monkeypatch, caplog):
    """Issue 19, item 8: a bad file, no photo, an unknown class are one line in the server log and
    Gradio prints no traceback for them (``print_exception`` off); a real fault keeps its traceback."""
    from types import SimpleNamespace

    caplog.set_level("INFO", logger="sepvit_viz")
    user_mistakes = {
        "no photo": lambda: analyze(photo=None),
        "bad file": lambda: analyze(photo=b"this is not an image at all"),
        "unknown class": lambda: handlers.explain(state, "no such class", "saliency", "inferno", 0.6, progress=noop),
        "lost upload": lambda: photos._raw_upload(SimpleNamespace(url=None, path=None)),
    }
    for what, call in user_mistakes.items():
        caplog.clear()
        with pytest.raises(gr.Error) as info:
            call()
        assert info.value.print_exception is False, what
        lines = _log_lines(caplog)
        assert len(lines) == 1 and lines[0].exc_info is None, (what, [r.getMessage() for r in lines])
        assert info.value.message in lines[0].getMessage() and "\n" not in lines[0].getMessage(), what

    def broken(*args, **kwargs):
        raise ValueError("an internal check failed")

    monkeypatch.setattr(handlers, "_token_views", broken)
    caplog.clear()
    with pytest.raises(gr.Error, match="Something went wrong") as info:
        handlers.window_tokens(state, "stages.1.blocks.0", "mean", "inferno", 0.6)
    assert info.value.print_exception is False  # the log line below has the traceback, once
    (line,) = _log_lines(caplog)
    assert line.exc_info and isinstance(line.exc_info[1], ValueError)


# ------------------------------------------------------------------------------------ launched app
@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.slow
def test_launched_app_end_to_end(client):
    status, top5, tokens, pixel = client.predict(handle_file(EXAMPLE), api_name="/analyze")
    assert "Model:" in status
    assert len(top5["confidences"]) == 5 and top5["label"] == top5["confidences"][0]["label"]
    for p in (tokens, pixel):  # maps over the photo come as JPEG (handlers' PNGs in /downloads)
        assert not_blank(read(p)) and Path(p).suffix == ".jpeg"
    # the session keeps the analysis: the other endpoints work on it without a photo
    img, caption = client.predict("top", "saliency", "viridis", 0.5, api_name="/explain")
    assert not_blank(read(img)) and "Saliency" in caption
    tok, tok_caption, pix, _ = client.predict(
        "stages.1.blocks.1", "max", "inferno", 0.6, -1, -1, "dwa", api_name="/window_tokens"
    )
    assert "GSA" in tok_caption and not_blank(read(tok)) and not_blank(read(pix))
    _, pix2, caption = client.predict(
        "stages.1.blocks.1", "max", 150, 60, "inferno", 0.6, "dwa", api_name="/pixel_query"
    )
    assert "x=150, y=60" in caption and not np.array_equal(read(pix), read(pix2))
    matrix, row, pwa_caption = client.predict("stages.0.blocks.0", "mean", 9, "inferno", 0.6, api_name="/cross_window")
    assert "window 9" in pwa_caption and not_blank(read(matrix)) and not_blank(read(row))
    slider, a, b, cmp_caption = client.predict(
        "stages.1.blocks.0|stages.1.blocks.1", "mean", "inferno", 0.6, api_name="/compare"
    )
    assert read(a).shape == read(b).shape and "GSA" in cmp_caption
    assert len(slider) == 2 and read(slider[0]).shape == read(a).shape
    depth, depth_caption, kinds = client.predict("pwa_distance", "default", "", "", api_name="/model_stats")
    assert "This photo lies within" in depth_caption and not_blank(read(depth)) and not_blank(read(kinds))
    files = client.predict(api_name="/downloads")
    assert any(str(f).endswith(".npz") for f in files)


@pytest.mark.slow
def test_launched_app_reports_bad_settings_clearly(client):
    for bad, match in [({"resolution": 1000}, "maximum value 448"), ({"target": "unicorn"}, "no class named")]:
        with pytest.raises(Exception) as info:  # gradio_client's AppError carries the gr.Error message
            client.predict(handle_file(EXAMPLE), **bad, api_name="/analyze")
        msg = str(info.value)
        assert match in msg and "Traceback" not in msg, msg
    assert "Model:" in client.predict(handle_file(EXAMPLE), api_name="/analyze")[0]


@pytest.mark.slow
def test_launched_app_takes_the_heads_of_every_stage(app_url):
    """An API call sees the head dropdowns' choices made at start (two heads, stage 2's): Gradio refused
    head 2 and up of stages 3 (four heads) and 4 (eight) before the handlers saw them (so would it a
    block of a variant with more blocks). The handlers check them against the analysis."""
    client = Client(app_url, verbose=False)  # a session of its own
    client.predict(handle_file(EXAMPLE), api_name="/analyze")
    _, caption, _, _ = client.predict(
        "stages.2.blocks.0", "3", "inferno", 0.6, -1, -1, "dwa", api_name="/window_tokens"
    )
    assert "head 3" in caption
    _, fused, _, _ = client.predict(
        "stages.2.blocks.0", "MAX", "inferno", 0.6, -1, -1, "dwa", api_name="/window_tokens"
    )
    assert "max of heads" in fused
    _, _, pixel_caption = client.predict("stages.3.blocks.0", "7", 3, 3, "inferno", 0.6, "dwa", api_name="/pixel_query")
    assert "head 7" in pixel_caption
    _, _, pwa_caption = client.predict("stages.2.blocks.0", "3", -1, "inferno", 0.6, api_name="/cross_window")
    assert "head 3" in pwa_caption
    with pytest.raises(Exception, match="head 9 does not exist"):  # still checked, with the handlers' message
        client.predict("stages.2.blocks.0", "9", "inferno", 0.6, -1, -1, "dwa", api_name="/window_tokens")


@pytest.mark.slow
def test_launched_app_logs_user_errors_without_a_traceback(client, capfd):
    """What the server prints for a user's mistakes: no traceback (issue 19, item 8)."""
    capfd.readouterr()
    with pytest.raises(Exception, match="no class named"):
        client.predict(handle_file(EXAMPLE), target="unicorn", api_name="/analyze")
    with pytest.raises(Exception, match="Upload a photo"):
        client.predict(None, api_name="/analyze")
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out, printed.err[-3000:]


def test_model_handlers_hand_freed_memory_back(monkeypatch):
    calls = []
    monkeypatch.setattr(handlers, "release_free_memory", lambda: calls.append(1) or True)
    analyze()
    assert not calls, "glibc's malloc_trim is opt-in (SEPVIT_MALLOC_TRIM=1), not on the default path"
    monkeypatch.setattr(handlers, "MALLOC_TRIM", True)
    analyze()
    assert calls, "analyze ran the model but did not release freed memory"
    calls.clear()
    with pytest.raises(gr.Error):
        analyze(resolution=10_000)  # a failing request releases too
    assert calls


def test_release_free_memory_runs_on_this_platform():
    import sys

    from sepvit_viz.model.runtime import release_free_memory

    assert release_free_memory() is sys.platform.startswith("linux")


def test_examples_caption_reports_the_cards_example_results(tmp_path):
    import shutil

    ckpt = tmp_path / "m.safetensors"
    assert photos.examples_caption(ckpt) == ""  # no card
    found = [Path(p).name for p in photos.example_photos()]
    results = [
        {"file": f, "class": f.split("_")[0], "student": {"right": i < 2, "top1": "x", "probability": 0.5}}
        for i, f in enumerate(found)
    ]
    card = {"examples": {"results": results}}
    (tmp_path / "m.card.json").write_text(json.dumps(card))
    caption = photos.examples_caption(ckpt)
    names = ", ".join(r["class"] for r in results[:2])
    assert caption == f"The shipped model names 2 of these {len(found)} photos' classes right ({names})."
    card["examples"]["results"] = results[1:]  # measured on other photos: nothing to say
    (tmp_path / "m.card.json").write_text(json.dumps(card))
    assert photos.examples_caption(ckpt) == ""
    shutil.rmtree(tmp_path)


def test_faithfulness_plot_names_the_class_scored(state, monkeypatch):
    """The curves plot is of the class picked in the panel (here not the top one), and says which."""
    titles = []
    real = handlers.views.curves

    def spy(scores, **kw):
        titles.append(kw.get("title"))
        return real(scores, **kw)

    monkeypatch.setattr(handlers.views, "curves", spy)
    other = (state.top1 + 1) % 1000
    handlers.faithfulness(state, str(other), "gradcam", "this method", 4, progress=noop)
    name = state.forward.class_names[other]
    assert titles and titles[-1].startswith(f"class {name} ({other}), p = ")
    assert state.scorecard.target == other
    # the attribution caption then gives the same class's areas and says which fill they are of
    _, caption = handlers.explain(state, str(other), "gradcam", "inferno", 0.6, progress=noop)
    scores = state.curves[("gradcam", other)]
    assert f"Deletion AUC {scores.deletion_auc:.3g} (lower is better)" in caption
    assert caption.endswith("mean-colour fill.")


def test_attribution_caption_names_the_method_settings(state):
    """The caption named the method only; Grad-CAM's stage (and IG's baseline, Occlusion's window)
    change how the map reads, so the caption says them (``attribution.describe``)."""
    _, caption = handlers.explain(state, "top", "gradcam", "inferno", 0.6, progress=noop)
    assert caption.startswith("**Grad-CAM** (stage 4 feature map, positive part) for class **")


def test_an_uploads_two_change_events_make_one_analysis_drawn_once():
    """Gradio fires the photo's change event twice when an upload replaces a photo, and the two chains
    of events run at once. Both analyses must be one session: as two they raced (the page kept one, the
    newest mark named the other, every view of the page's session was withheld as superseded, and the
    attribution tab stayed empty). The second chain changes nothing once the first set the page up, and
    the shown tab is drawn once. The Analyze button on the same photo makes a new analysis."""
    import types

    import gradio as gr

    tab, other = types.SimpleNamespace(session_hash="tab-dup"), types.SimpleNamespace(session_hash="tab-dup-2")
    before, photo = photos.example_photos()[0], photos.example_photos()[3]
    defaults = [p.default for p in list(inspect.signature(handlers.analyze).parameters.values())[1:-2]]

    def change_event(current, request=tab):
        return handlers.analyze_new_photo(photo, *defaults, current, progress=noop, request=request)

    page = handlers.analyze(before, progress=noop, request=tab)[0]
    shown = settings.Settings(tab="attribution", method="saliency")
    assert handlers.after_analysis(page, shown)
    # both events read the page's session before either returned
    first, second = change_event(page), change_event(page)
    assert first[0] is second[0] is not page and not handlers.superseded(first[0], tab)
    assert not_blank(second[3]) and second[2] == first[2]  # the second is answered in full, the same
    assert handlers.after_analysis(first[0], shown) and handlers.after_analysis(second[0], shown) == {}
    assert not_blank(handlers.show_tab_after_analysis(first[0], shown, noop, tab)["attribution_img"])
    assert handlers.show_tab_after_analysis(second[0], shown, noop, tab) == {}
    # a change event that arrives once the page holds the new analysis changes nothing
    late = change_event(first[0])
    assert late[0] is first[0] and all(v == gr.update() for v in late[1:])
    bad = list(defaults)
    bad[4] = "no such class"  # the target: checked on that path too
    with pytest.raises(gr.Error, match="no such class"):
        handlers.analyze_new_photo(photo, *bad, first[0], progress=noop, request=tab)
    # another browser tab's upload of the same photo is its own analysis
    assert change_event(None, other)[0] is not first[0]
    # the Analyze button: a new analysis of the same photo, which supersedes the last one
    again = handlers.analyze(photo, progress=noop, request=tab)[0]
    assert again is not first[0] and handlers.superseded(first[0], tab)


def test_a_tab_drawn_while_the_page_is_set_up_is_drawn_again(monkeypatch):
    """Two chains of events on one session (an upload's change event and an Analyze click at once):
    the second may draw the shown tab while the first sets the page up, which empties that tab; the
    first chain's drawing then draws it again. A setup that fails leaves the page to the next one."""
    import types

    tab = types.SimpleNamespace(session_hash="tab-interleaved")
    session = handlers.analyze(photos.example_photos()[5], progress=noop, request=tab)[0]
    shown = settings.Settings(tab="attribution", method="saliency")
    setup = handlers._page_for

    def failing(session, s):
        raise RuntimeError("setup failed")

    monkeypatch.setattr(handlers, "_page_for", failing)
    with pytest.raises(RuntimeError):
        handlers.after_analysis(session, shown)
    assert not session.page_set

    def interleaved(session, s):
        assert handlers.after_analysis(session, s) == {}  # the other chain's setup: nothing to do
        assert handlers.show_tab_after_analysis(session, s, noop, tab)  # its drawing lands first
        return setup(session, s)

    monkeypatch.setattr(handlers, "_page_for", interleaved)
    assert handlers.after_analysis(session, shown)["attribution_img"] is None  # the tab emptied
    assert not_blank(handlers.show_tab_after_analysis(session, shown, noop, tab)["attribution_img"])


def test_a_refused_analysis_leaves_the_pages_analysis_current():
    """A new photo refused for a setting ("crane" in the class box names two classes) was marked the
    tab's newest analysis before the check: the analysis the page still shows then drew nothing more,
    without a word (attribution, scores, shown tabs)."""
    import types

    import gradio as gr

    tab = types.SimpleNamespace(session_hash="tab-refused")
    first, second = photos.example_photos()[:2]
    page = handlers.analyze(first, progress=noop, request=tab)[0]
    with pytest.raises(gr.Error, match="crane"):
        handlers.analyze(second, target="crane", progress=noop, request=tab)
    assert not handlers.superseded(page, tab)
    picture, caption = handlers.explain(page, "top", "saliency", "inferno", 0.6, progress=noop, request=tab)
    assert not_blank(picture) and "Saliency" in caption
    newer = handlers.analyze(second, progress=noop, request=tab)[0]  # an accepted one still supersedes
    assert handlers.superseded(page, tab) and not handlers.superseded(newer, tab)


def test_a_refused_photo_says_the_pictures_are_the_previous_photos(state):
    """The photo box shows the refused photo while the pictures are still the last analysis': the
    status says so, wired to the failure of the new photo's model load and of its analysis."""
    import app

    status = handlers.photo_refused(state)
    assert status.startswith(handlers.PHOTO_REFUSED) and "previous photo" in status and "Model:" in status
    assert handlers.photo_refused(None).startswith(handlers.PHOTO_REFUSED)
    fns = app.demo.fns
    refused = [d for d in fns.values() if d.name == "photo_refused"]
    assert {fns[d.trigger_after].name for d in refused} == {"load_model", "analyze_new_photo"}
    assert all(d.trigger_only_on_failure for d in refused)
    photo = next(b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == "status")
    assert all([o._id for o in d.outputs] == [photo._id] for d in refused)


def test_scores_reach_the_attribution_caption_and_old_downloads_stay_off_a_new_page():
    """After "Compute scores" the caption gains its AUCs (it did only at a later redraw); files of an
    earlier photo prepared while a new one was analysed do not fill the emptied list; keyboard
    changes of the opacity redraw (only the slider's release did)."""
    import types

    import gradio as gr

    import app

    tab = types.SimpleNamespace(session_hash="tab-scores")
    first, second = photos.example_photos()[:2]
    page = handlers.analyze(first, progress=noop, request=tab)[0]
    args = ("top", "saliency", "inferno", 0.6, False)
    _, before = handlers.explain(page, *args[:4], progress=noop, request=tab)
    assert "Deletion AUC" not in before
    handlers.faithfulness(page, "top", "saliency", "this method", 4, progress=noop, request=tab)
    after = handlers.attribution_caption_after_scores(page, *args, request=tab)
    assert "Deletion AUC" in after and "Insertion" not in before
    fns = app.demo.fns
    (dep,) = [d for d in fns.values() if d.name == "attribution_caption_after_scores"]
    assert fns[dep.trigger_after].name == "faithfulness" and dep.trigger_only_on_success
    down = ("top", "saliency", "inferno", 0.6, None, "mean", -1, -1, None, "mean", -1, None, "dwa", False)
    assert isinstance(handlers.prepare_downloads(page, *down, request=tab), list)
    handlers.analyze(second, progress=noop, request=tab)
    assert handlers.prepare_downloads(page, *down, request=tab) == gr.skip()
    assert handlers.attribution_caption_after_scores(page, *args, request=tab) == gr.skip()
    opacity = next(b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == "opacity")
    redraw_triggers = {t for d in fns.values() if d.name == "rerender" for t in d.targets}
    assert (opacity._id, "input") in redraw_triggers


def test_a_model_not_loaded_yet_says_so_while_it_loads(monkeypatch):
    """Loading (a Hub download) showed nothing on the page: the load step has no output to mark."""
    import gradio as gr

    said = []
    monkeypatch.setattr(gr, "Info", said.append)
    store = models.ModelStore(replicas=1)
    monkeypatch.setattr(handlers, "MODELS", store)
    handlers.load_model(models.MODEL_RANDOM)
    assert said == [handlers.LOADING_MESSAGE] and store.loaded(models.MODEL_RANDOM)
    handlers.load_model(models.MODEL_RANDOM)  # in the pool: nothing to say
    assert said == [handlers.LOADING_MESSAGE]
    assert not store.loaded("no such choice")
    # a Hub choice says that it downloads first (the download itself is not this test's business)
    monkeypatch.setattr(store, "get", lambda *args: None)
    handlers.load_model(models.MODEL_HUB, "someone/some-repo")
    assert said == [handlers.LOADING_MESSAGE, handlers.HUB_LOADING_MESSAGE]


def test_a_slow_result_for_an_earlier_photo_does_not_replace_the_new_photos():
    """A tab analyses photo A, starts a slow attribution, then analyses photo B: when the attribution
    (or a faithfulness score) of A ends, the page keeps B's pictures (gr.skip()); another tab, and the
    tab's own newest analysis, are answered as always."""
    import types

    import gradio as gr
    from gradio.helpers import special_args

    tab, other = types.SimpleNamespace(session_hash="tab-1"), types.SimpleNamespace(session_hash="tab-2")
    first, second = photos.example_photos()[:2]
    old = handlers.analyze(first, progress=noop, request=tab)[0]
    new = handlers.analyze(second, progress=noop, request=tab)[0]
    explain = ("top", "saliency", "inferno", 0.6)
    assert handlers.explain(old, *explain, progress=noop, request=tab) == (gr.skip(), gr.skip())
    assert handlers.faithfulness(old, "top", "saliency", "this method", 4, progress=noop, request=tab) == (
        gr.skip(),
        gr.skip(),
    )
    picture, caption = handlers.explain(new, *explain, progress=noop, request=tab)
    assert not_blank(picture) and "Saliency" in caption
    picture, _ = handlers.explain(old, *explain, progress=noop, request=other)  # tab 2 analysed nothing newer
    assert not_blank(picture)
    # showing a tab: the same (the attribution tab runs its attribution there)
    shown = settings.Settings(tab="attribution", method="saliency")
    assert (
        handlers.show_tab(old, shown, noop, tab) == {}
        and handlers.show_tab(old, shown.with_(tab="pwa"), None, tab) == {}
    )
    assert not_blank(handlers.show_tab(new, shown, noop, tab)["attribution_img"])
    import app

    for dep in (d for d in app.demo.fns.values() if d.name in ("show_tab", "show_tab_after_analysis")):
        given = [{}]  # a handler of a set of inputs takes them as one dict
        request = gr.Request(username=None, session_hash="abc")
        assert request in special_args(dep.fn, inputs=given, request=request)[0], dep.name
    # Gradio hands these handlers the progress tracker and the request (positional parameters only)
    for fn in (handlers.analyze, handlers.analyze_new_photo, handlers.explain, handlers.faithfulness):
        request = gr.Request(username=None, session_hash="abc")
        given = [None] * (len(inspect.signature(fn).parameters) - 2)  # every input, as the event sends them
        inputs, progress_index, *_ = special_args(fn, inputs=given, request=request)
        assert request in inputs and progress_index is not None, fn.__name__
    # the photo's change event takes analyze's inputs in analyze's order, then the current session
    names = list(inspect.signature(handlers.analyze_new_photo).parameters)
    assert names[:-3] == list(inspect.signature(handlers.analyze).parameters)[:-2] and names[-3] == "current"
