"""The app's "Model" tab (``sepvit_viz.serving.model_tab``): model-level statistics of the loaded
checkpoint on the bundled example photos, cached per model, with the current photo's values marked."""

from __future__ import annotations

import gradio as gr  # (pinned in requirements.txt: a missing gradio fails, never skips)
import numpy as np
import pytest

from sepvit_viz.serving import handlers, model_tab, models, photos
from sepvit_viz.serving.session import RELEASED_MESSAGE
from sepvit_viz.stats import measures as stats

EXAMPLES = photos.example_photos()


def noop(*args, **kwargs):
    return None


def analyze(photo, **settings):
    return handlers.analyze(photo, progress=noop, **settings)[0]


def picture(img) -> bool:
    img = np.asarray(img)
    return img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.std() > 5


@pytest.fixture(scope="module")
def sessions() -> tuple[handlers.Session, handlers.Session]:
    return analyze(EXAMPLES[0]), analyze(EXAMPLES[3])


@pytest.fixture
def counted(monkeypatch):
    """Counts the statistics actually computed (not served from the cache)."""
    calls = []
    real = stats.model_stats

    def spy(model, photos, **kw):
        calls.append(kw.get("label"))
        return real(model, photos, **kw)

    monkeypatch.setattr(stats, "model_stats", spy)
    stats.clear_cache()
    yield calls
    stats.clear_cache()


def test_measure_choices_name_every_measure():
    assert [v for _, v in model_tab.MEASURE_CHOICES] == list(stats.MEASURE_NAMES)
    assert model_tab.DEFAULT_MEASURE in stats.MEASURE_NAMES


def test_default_model_without_a_photo_gives_plots_and_a_caption():
    depth, caption, kinds = model_tab.model_tab(None, "dwa_distance", models.MODEL_DEFAULT)
    assert picture(depth) and picture(kinds)
    assert "reference photo" in caption and f"{len(EXAMPLES)} reference" in caption
    assert model_tab.NO_PHOTO in caption and "This photo lies" not in caption


def test_the_current_photo_is_marked(sessions):
    a, b = sessions
    depth_none, _, _ = model_tab.model_tab(None, "pwa_distance", models.MODEL_DEFAULT)
    depth_a, cap_a, _ = model_tab.model_tab(a, "pwa_distance", models.MODEL_DEFAULT)
    depth_b, cap_b, _ = model_tab.model_tab(b, "pwa_distance", models.MODEL_DEFAULT)
    # the caption names the photo's typicality over the heads that have the measure
    for cap in (cap_a, cap_b):
        assert "This photo lies within the 5-95% range" in cap and model_tab.NO_PHOTO not in cap
    # marks drawn: the plot differs from the unmarked one, and between two photos
    assert depth_a.shape == depth_none.shape and not np.array_equal(depth_a, depth_none)
    assert not np.array_equal(depth_a, depth_b)
    # the marks are the photo's own values
    va, vb = stats.photo_values(a.forward.records), stats.photo_values(b.forward.records)
    assert not np.allclose(np.nan_to_num(va), np.nan_to_num(vb))


def test_a_photo_of_another_shape_is_compared_by_its_centre_square(tmp_path):
    from PIL import Image

    wide = tmp_path / "wide.png"
    with Image.open(EXAMPLES[0]) as im:
        im.convert("RGB").resize((450, 300)).save(wide)
    session = analyze(str(wide))  # the default fit keeps the aspect
    h, w = session.forward.image.shape[:2]
    assert h == 224 and w > 300  # its own shape (the width rounded to the model's stride)
    _, caption, _ = model_tab.model_tab(session, "pwa_distance", models.MODEL_DEFAULT)
    assert f"analysed at {w} x 224 px (width x height); the values marked are those of its centre 224 x 224" in caption
    assert "compare with care" not in caption
    # the marks are the centre square's values, judged against the square reference photos
    entry = models.MODELS.get(models.MODEL_DEFAULT)
    with entry.borrow() as model:
        square = stats.photo_values(stats.square_records(model, session.forward.image))
    ref = model_tab.reference_stats(entry, 224)
    assert stats.typicality_caption(ref, square, "pwa_distance") in caption
    left_square = session.forward.image[:, :224]
    with entry.borrow() as model:
        other = stats.photo_values(stats.square_records(model, np.ascontiguousarray(left_square)))
    assert not np.allclose(np.nan_to_num(square), np.nan_to_num(other))
    # a photo so long that its short side is under 224: the reference photos are measured at the side
    # of the square the marked values come from (distances are in input pixels), not at 224
    long = tmp_path / "long.png"
    with Image.open(EXAMPLES[0]) as im:
        im.convert("RGB").resize((1000, 100)).save(long)
    session = analyze(str(long))
    h, w = session.forward.image.shape[:2]
    assert h < 224 < w
    _, caption, _ = model_tab.model_tab(session, "pwa_distance", models.MODEL_DEFAULT)
    assert f"analysed at {w} x {h} px" in caption and f"centre {h} x {h} square" in caption
    assert "compare with care" not in caption
    with entry.borrow() as model:
        square = stats.photo_values(stats.square_records(model, session.forward.image))
    small_ref = model_tab.reference_stats(entry, h)
    assert small_ref.size == h
    verdict = stats.typicality_caption(small_ref, square, "pwa_distance")
    assert verdict in caption and verdict != stats.typicality_caption(ref, square, "pwa_distance")


def test_the_centre_square_forward_runs_once_per_analysis(tmp_path, monkeypatch):
    """Changing the measure redraws from the kept centre-square records; a new analysis (another
    photo) runs its own forward; the records count in the analysis's bytes and go on release."""
    from PIL import Image

    calls = []
    real = stats.square_records

    def counted(model, image):
        calls.append(image.shape)
        return real(model, image)

    monkeypatch.setattr(stats, "square_records", counted)
    paths = []
    for i, size in enumerate([(450, 300), (300, 450)]):
        paths.append(tmp_path / f"photo{i}.png")
        with Image.open(EXAMPLES[i]) as im:
            im.convert("RGB").resize(size).save(paths[-1])
    first = analyze(str(paths[0]))
    before = first.nbytes
    captions = [model_tab.model_tab(first, m, models.MODEL_DEFAULT)[1] for m in ("pwa_distance", "dwa_distance")]
    assert len(calls) == 1 and captions[0] != captions[1]
    assert first.nbytes > before  # the kept records are counted
    second = analyze(str(paths[1]))
    model_tab.model_tab(second, "pwa_distance", models.MODEL_DEFAULT)
    assert len(calls) == 2 and calls[1] != calls[0]
    assert first.release() and first.square_records is None


def test_a_released_analysis_asks_for_analyze_again():
    session = analyze(EXAMPLES[1])
    assert session.release()
    _, caption, _ = model_tab.model_tab(session, "dwa_distance", None)
    assert RELEASED_MESSAGE in caption and model_tab.NO_PHOTO not in caption


def test_measure_changes_the_plot_and_bad_measure_is_a_clear_error(sessions):
    a, _ = sessions
    d1, c1, _ = model_tab.model_tab(a, "dwa_distance", models.MODEL_DEFAULT)
    d2, c2, _ = model_tab.model_tab(a, "token_self", models.MODEL_DEFAULT)
    assert c1 != c2 and (d1.shape != d2.shape or not np.array_equal(d1, d2))
    with pytest.raises(gr.Error, match="Unknown measure 'nope'"):
        model_tab.model_tab(a, "nope", models.MODEL_DEFAULT)
    with pytest.raises(gr.Error, match="Unknown model choice"):
        model_tab.model_tab(a, "dwa_distance", "no-such-model")


def test_statistics_are_cached_per_model(sessions, counted):
    a, _ = sessions
    model_tab.model_tab(a, "dwa_distance", models.MODEL_DEFAULT)
    model_tab.model_tab(a, "pwa_entropy_norm", models.MODEL_DEFAULT)
    model_tab.model_tab(None, "dwa_distance", models.MODEL_DEFAULT)
    assert len(counted) == 1  # same model and size: computed once
    # another model (random weights): computed for it; the photo (default model) is not marked on it
    depth, caption, kinds = model_tab.model_tab(a, "dwa_distance", models.MODEL_RANDOM)
    assert len(counted) == 2 and "random weights" in counted[-1]
    assert picture(depth) and picture(kinds)
    assert model_tab.OTHER_MODEL in caption and "This photo lies" not in caption
    model_tab.model_tab(a, "dwa_distance", models.MODEL_RANDOM)
    model_tab.model_tab(a, "dwa_distance", models.MODEL_DEFAULT)
    assert len(counted) == 2
    # a photo analysed with random weights is marked on the random model's statistics
    r = analyze(EXAMPLES[0], model_choice=models.MODEL_RANDOM)
    _, caption, _ = model_tab.model_tab(r, "dwa_distance", models.MODEL_RANDOM)
    assert "This photo lies" in caption and len(counted) == 2


def test_hub_choice_without_repo_asks_for_one_and_internal_errors_show_no_details(sessions, monkeypatch):
    a, _ = sessions
    depth, caption, kinds = model_tab.model_tab(a, "dwa_distance", models.MODEL_HUB, "", "")
    assert depth is None and kinds is None and "repo id" in caption

    def broken(*args, **kwargs):
        raise ValueError("secret internal detail")

    monkeypatch.setattr(model_tab.stats_plots, "model_tab_view", broken)
    with pytest.raises(gr.Error) as err:
        model_tab.model_tab(a, "dwa_distance", models.MODEL_DEFAULT)
    assert "secret" not in str(err.value) and "reference" in str(err.value)


def test_the_app_has_the_model_tab():
    import app

    public = {f.api_name for f in app.demo.fns.values() if f.api_visibility == "public"}
    assert "model_stats" in public
    uses = [f for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == "model_tab"]
    assert len(uses) >= 2  # the measure and the tab's select event
    # the model dropdown, after /analyze and after a new photo: only while the tab is shown
    when_shown = [f for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == "model_tab_if_shown"]
    assert len(when_shown) >= 3 and all(f.inputs[0] is app.shown_tab for f in when_shown)
    assert all(f.concurrency_id == "model" for f in uses + when_shown)


def test_warm_up_computes_the_default_models_statistics(monkeypatch, counted):
    monkeypatch.setattr(handlers, "example_photos", lambda: [])  # skip the example forwards here
    assert handlers.warm_up(background=False) is None
    assert len(counted) == 1
    model_tab.model_tab(None, "dwa_distance", models.MODEL_DEFAULT)
    assert len(counted) == 1


def test_the_tab_is_drawn_once_per_analysis_and_settings_after_an_analysis():
    """The event after an analysis draws the shown Model tab; when the same chain of events runs again
    on that analysis (a photo cleared, or an upload's second change event) it sends nothing, unless a
    setting it draws with changed (another measure or model)."""
    session = analyze(photos.example_photos()[6])
    drawn = model_tab.model_tab_if_shown("model", session, "dwa_distance", models.MODEL_DEFAULT, "", "")
    assert picture(drawn[0]) and "SepViT" in drawn[1]
    assert (
        model_tab.model_tab_if_shown("model", session, "dwa_distance", models.MODEL_DEFAULT, "", "") == (gr.skip(),) * 3
    )
    other = model_tab.model_tab_if_shown("model", session, "pwa_entropy_norm", models.MODEL_DEFAULT, "", "")
    assert picture(other[0]) and not np.array_equal(np.asarray(other[0]), np.asarray(drawn[0]))
    # another analysis of the same photo is drawn again
    again = analyze(photos.example_photos()[6])
    assert picture(model_tab.model_tab_if_shown("model", again, "pwa_entropy_norm", models.MODEL_DEFAULT, "", "")[0])
