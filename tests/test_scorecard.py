"""Scorecard: verdicts over photos on a toy model whose right answer is known, and the one-photo table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_faithfulness import TemplateModel, _template_photo

from sepvit_viz import create_model
from sepvit_viz.explain.attribution import list_methods
from sepvit_viz.explain.faithfulness import deletion_insertion, random_map, road
from sepvit_viz.explain.scorecard import MEASURES, faithfulness_table, verdict


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
