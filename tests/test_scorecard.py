"""Scorecard: verdicts over photos on a toy model whose right answer is known, and the one-photo table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_faithfulness import TemplateModel, _template_photo

from sepvit_viz import create_model
from sepvit_viz.explain.attribution import METHODS, attribute, list_methods
from sepvit_viz.explain.faithfulness import deletion_insertion, random_map, road
from sepvit_viz.explain.scorecard import (
    MEASURES,
    NO_RANKING,
    MethodScores,
    Scorecard,
    faithfulness_table,
    score_method,
    verdict,
)


def _scores(model, x, m):
    out = {}
    for fill, d, i in (("mean", "del_mean", "ins_mean"), ("noise", "del_noise", "ins_noise")):
        c = deletion_insertion(model, x, m, 0, steps=8, baseline=fill)
        out[d], out[i] = c.deletion_auc, c.insertion_auc
    r = road(model, x, m, 0)
    out["road_morf"], out["road_lerf"] = r.morf_mean, r.lerf_mean
    return out


def test_verdict_on_a_model_that_reads_one_quadrant():
    model = TemplateModel()
    right = np.zeros((32, 32))
    right[:16, :16] = 1.0
    per = {"right": [], "inverse": [], "random": []}
    for seed in range(4):
        x = _template_photo(seed)
        rng = np.random.default_rng(seed)
        per["right"].append(_scores(model, x, right + 0.01 * rng.random((32, 32))))
        per["inverse"].append(_scores(model, x, -right + 0.01 * rng.random((32, 32))))
        per["random"].append(_scores(model, x, random_map(32, 32, seed=100 + seed)))

    def cols(name):
        return {m.key: [p[m.key] for p in per[name]] for m in MEASURES}

    good = verdict(cols("right"), cols("random"), sanity_rhos=[0.05, -0.1, 0.02, 0.0])
    bad = verdict(cols("inverse"), cols("random"), sanity_rhos=[0.9, 0.8, 0.95, 0.7])
    assert set(good.faithful_on) == {m.key for m in MEASURES}
    assert good.text.startswith("faithful on 6 of 6 measures; passes the sanity check")
    assert bad.faithful_on == () and "FAILS the sanity check" in bad.text
    assert verdict(cols("random"), cols("random")).text == "faithful on 0 of 6 measures"


def test_verdict_needs_a_margin_over_photos():
    # a mean better than the floor's but within two standard errors does not count
    floor = {m.key: [0.5, 0.5, 0.5, 0.5] for m in MEASURES}
    noisy = {m.key: [0.1, 0.9, 0.2, 0.7] if m.lower_is_better else [0.9, 0.1, 0.8, 0.3] for m in MEASURES}
    assert verdict(noisy, floor).faithful_on == ()
    clear = {m.key: [0.1, 0.12, 0.11, 0.1] if m.lower_is_better else [0.9, 0.88, 0.9, 0.91] for m in MEASURES}
    assert len(verdict(clear, floor).faithful_on) == 6


def test_faithfulness_table_for_one_photo_with_progress():
    torch.manual_seed(0)
    model = create_model("sepvit_test", num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    seen: list[float] = []
    card = faithfulness_table(
        model,
        x,
        2,
        ["saliency", "gradcam"],
        steps=4,
        road_fractions=(0.25, 0.75),
        progress=lambda f, d: seen.append(f),
    )
    assert [r.method for r in card.rows] == ["saliency", "gradcam", "random"]  # the floor is always scored
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and 0 < seen[0] < 0.4
    table = card.table()
    assert len(card.headers()) == len(table[0]) == 1 + len(MEASURES) + 3
    assert all(isinstance(v, float) for v in table[0][1 : 1 + len(MEASURES)])
    assert "sanity check" in card.verdicts["saliency"].text
    assert card.rows[-1].sanity.final_rho == pytest.approx(1.0)  # a random map ignores the model
    assert set(list_methods()) >= {r.method for r in card.rows}


def test_panel_scores_equal_one_measure_at_a_time_and_progress_names_every_method_and_measure():
    """The panel's batched, shared computation (end points once for all methods, ROAD's masks in
    batches, the randomised model built once) gives the scores of each measure computed on its own,
    one image per forward; progress advances through every method and each of its measures."""
    from sepvit_viz.explain.sanity import cascading_randomisation

    torch.manual_seed(0)
    net = create_model("sepvit_test", num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    # (Grad-CAM's map of this random-weight net for class 1 is constant: not scored, so not used here)
    methods, steps, fractions = ["saliency", "input_x_gradient", "occlusion"], 5, (0.3, 0.6)
    seen: list[tuple[float, str]] = []
    card = faithfulness_table(
        net, x, 1, methods, steps=steps, road_fractions=fractions, progress=lambda f, d: seen.append((f, d))
    )
    for row in card.rows:
        for fill, dkey, ikey in (("mean", "del_mean", "ins_mean"), ("noise", "del_noise", "ins_noise")):
            ref = deletion_insertion(net, x, row.map_hw, 1, steps=steps, baseline=fill, batch_size=1)
            assert row.scores[dkey] == pytest.approx(ref.deletion_auc, rel=1e-5, abs=1e-7)
            assert row.scores[ikey] == pytest.approx(ref.insertion_auc, rel=1e-5, abs=1e-7)
            np.testing.assert_allclose(row.curves[fill].deletion, ref.deletion, rtol=1e-5, atol=1e-7)
        r = road(net, x, row.map_hw, 1, fractions=fractions, batch_size=1)
        assert row.scores["road_morf"] == pytest.approx(r.morf_mean, rel=1e-5, abs=1e-7)
        assert row.scores["road_lerf"] == pytest.approx(r.lerf_mean, rel=1e-5, abs=1e-7)
        # the randomised model built once for all methods is the one each check would build alone
        alone = cascading_randomisation(
            net, x, 1, lambda m, xx, t, name=row.method: attribute(m, xx, t, name).map_hw, full_only=True
        )
        assert row.sanity.final_rho == pytest.approx(alone.final_rho, abs=1e-6)
    # progress: monotone to 1, every method named in order, each of its measures reported
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)
    labels = [METHODS[m].label for m in [*methods, "random"]]
    firsts = [next(i for i, (_, d) in enumerate(seen) if d.startswith(label + ":")) for label in labels]
    assert firsts == sorted(firsts)
    for label in labels:
        descs = " | ".join(d for _, d in seen if d.startswith(label + ":"))
        for measure in ("attribution", "deletion / insertion", "ROAD", "sanity check"):
            assert measure in descs, (label, descs)


def test_panel_forwards_are_shared_between_methods():
    """Without the sanity check, the measures cost F (2 S - 2) + 2 K forwards per method plus the
    shared end points (x and the two fills) once for the whole panel."""
    torch.manual_seed(0)
    net = create_model("sepvit_test", num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    atts = {m: attribute(net, x, 1, m) for m in ("saliency", "input_x_gradient", "random")}
    images = []
    net.register_forward_pre_hook(lambda _m, args: images.append(args[0].shape[0]))
    steps, fractions = 6, (0.5,)
    faithfulness_table(
        net,
        x,
        1,
        ["saliency", "input_x_gradient"],
        attributions=atts,
        steps=steps,
        road_fractions=fractions,
        sanity=None,
    )
    per_method = 2 * (2 * steps - 2) + 2 * len(fractions)
    assert sum(images) == 3 * per_method + 3


def test_table_keeps_small_areas_readable():
    """For a class the model gives p ~ 1e-4 every area is below 0.001: rounded to 3 decimals the
    panel showed 0.0 for the method and for the random floor while the verdict said the method beat
    it. Three significant digits keep the difference visible."""
    tiny = {m.key: 0.000123456 for m in MEASURES}
    floor = {m.key: 0.000234567 for m in MEASURES}
    rows = [
        MethodScores("saliency", "Saliency", tiny, None, 0.1, np.zeros((2, 2))),
        MethodScores("random", "Random", floor, None, 0.0, np.zeros((2, 2))),
    ]
    verdicts = {
        r.method: verdict({k: [v] for k, v in r.scores.items()}, {k: [v] for k, v in floor.items()}) for r in rows
    }
    table = Scorecard(7, rows, verdicts, 0.1).table()
    assert table[0][1 : 1 + len(MEASURES)] == [0.000123] * len(MEASURES)
    assert table[1][1 : 1 + len(MEASURES)] == [0.000235] * len(MEASURES)


def test_an_attribution_of_another_class_is_not_scored_as_this_one():
    torch.manual_seed(0)
    net = create_model("sepvit_test", num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    a = attribute(net, x, 1, "saliency")
    with pytest.raises(ValueError, match="for class 1"):
        score_method(net, x, 2, "saliency", attribution=a, steps=2, road_fractions=(0.5,), sanity=None)
    with pytest.raises(ValueError, match="saliency for class 1"):
        score_method(net, x, 1, "gradcam", attribution=a, steps=2, road_fractions=(0.5,), sanity=None)


def test_the_sanity_check_recomputes_a_given_map_with_its_own_options_and_smoothing():
    """A smoothed map, or one made with non-default options, was compared with the randomised model's
    raw, default-option map: not like with like."""
    torch.manual_seed(0)
    net = create_model("sepvit_test", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    a = attribute(net, x, 1, "integrated_gradients", steps=4, baseline="blurred", smooth=True)
    shared = {}
    r = score_method(net, x, 1, "integrated_gradients", attribution=a, steps=2, road_fractions=(0.5,), shared=shared)
    rand = shared["randomised"]
    same = attribute(rand, x, 1, "integrated_gradients", steps=4, baseline="blurred", smooth=True).map_hw
    default = attribute(rand, x, 1, "integrated_gradients").map_hw
    assert not np.allclose(same, default)
    np.testing.assert_allclose(r.sanity.maps[-1], same, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="made with options"):
        score_method(
            net, x, 1, "integrated_gradients", attribution=a, options={"steps": 8}, steps=2, road_fractions=(0.5,)
        )


def test_a_constant_map_is_not_scored_as_a_ranking():
    """An empty map (the SepViT relevance of a class no token argues for) would be deleted in raster
    order, top rows first: it gets no scores and no verdict, not a verdict on that order."""
    import dataclasses

    torch.manual_seed(0)
    model = create_model("sepvit_test", num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    sal = attribute(model, x, 2, "saliency")
    flat = dataclasses.replace(sal, map_hw=np.zeros_like(sal.map_hw))
    card = faithfulness_table(
        model, x, 2, ["saliency"], attributions={"saliency": flat}, steps=4, road_fractions=(0.5,), sanity="full"
    )
    row = card.rows[0]
    assert not row.ranked and row.sanity is None and row.curves == {}
    assert all(np.isnan(v) for v in row.scores.values()) and set(row.scores) == {m.key for m in MEASURES}
    assert card.verdicts["saliency"].text == NO_RANKING and card.verdicts["saliency"].faithful_on == ()
    table = card.table()
    assert table[0][1 : 1 + len(MEASURES)] == [None] * len(MEASURES) and table[0][-2] == NO_RANKING
    floor = card.rows[-1]  # the random map is still scored
    assert floor.method == "random" and floor.ranked and np.isfinite(list(floor.scores.values())).all()
