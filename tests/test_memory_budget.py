"""The bytes users' analyses hold are bounded (serving.cache.SessionBudget and the app's sessions)."""

from __future__ import annotations

import gc

import gradio as gr
import numpy as np
import pytest

from sepvit_viz import limits
from sepvit_viz.serving import cache, handlers, photos


class Item:
    def __init__(self, n: int, busy: bool = False) -> None:
        self.nbytes = n
        self.busy = busy
        self.released = False

    def release(self) -> bool:
        if self.busy:
            return False
        self.released, self.nbytes = True, 0
        return True


def test_budget_releases_the_least_recently_used_first():
    budget = cache.SessionBudget(max_bytes=250)
    a, b, c = Item(100), Item(100), Item(100)
    budget.touch(a)
    budget.touch(b)
    budget.touch(a)  # a used again: b is now the oldest
    assert budget.nbytes == 200 and not (a.released or b.released)
    budget.touch(c)
    assert b.released and not a.released and not c.released
    assert budget.nbytes == 200 and len(budget) == 2 and budget.released == 1


def test_budget_never_releases_the_one_touched_and_skips_busy_ones():
    budget = cache.SessionBudget(max_bytes=50)
    busy, big = Item(100, busy=True), Item(100)
    budget.touch(busy)
    budget.touch(big)
    assert not busy.released and not big.released  # over the budget, but nothing it may release
    small = Item(10)
    budget.touch(small)
    assert big.released and not busy.released and not small.released


def test_budget_forgets_what_nobody_holds():
    budget = cache.SessionBudget(max_bytes=10**6)
    budget.touch(Item(100))
    gc.collect()
    assert len(budget) == 0 and budget.nbytes == 0


def test_the_budget_reads_its_bound_from_the_environment(monkeypatch):
    import importlib

    monkeypatch.setenv("SEPVIT_SESSIONS_MB", "7")
    monkeypatch.setenv("SEPVIT_SESSIONS", "3")
    try:
        reloaded = importlib.reload(limits)
        assert reloaded.SESSION_BYTES == 7 * 2**20 and reloaded.STATE_SESSIONS == 3
    finally:
        monkeypatch.delenv("SEPVIT_SESSIONS_MB")
        monkeypatch.delenv("SEPVIT_SESSIONS")
        importlib.reload(limits)


def _analyze(path):
    return handlers.analyze(path, resolution=128, method="saliency", progress=lambda *a, **k: None)[0]


def test_sessions_count_their_maps_and_the_oldest_is_released_past_the_budget(monkeypatch, tmp_path):
    first, second = photos.example_photos()[:2]
    a = _analyze(first)
    size0 = a.nbytes
    assert size0 >= a.forward.nbytes > 0
    handlers.window_tokens(a, "stages.1.blocks.1", "1", "magma", 0.5, 10, 10, "dwa")
    assert a.nbytes > size0  # the maps and pictures drawn count too

    budget = cache.SessionBudget(max_bytes=int(1.5 * a.nbytes))
    monkeypatch.setattr(cache, "SESSIONS", budget)
    budget.touch(a)
    b = _analyze(second)
    assert a.released and not b.released and budget.released == 1
    assert a.nbytes == 0 and a.forward is None and not a.pictures
    # the user of the released analysis is told what happened, in one clear message
    with pytest.raises(gr.Error, match="press Analyze again"):
        handlers.window_tokens(a, "stages.1.blocks.1", "1", "magma", 0.5, 10, 10, "dwa")
    # views that only redraw leave the page as it is
    assert (
        handlers.rerender(a, "top", None, "magma", 0.5, None, "mean", 1, 1, None, "mean", 0, None) == (gr.update(),) * 8
    )
    # the other user is served as before
    img = handlers.window_tokens(b, "stages.1.blocks.1", "1", "magma", 0.5, 10, 10, "dwa")
    assert np.asarray(img[0] if isinstance(img, tuple) else img).size > 0


def test_an_analysis_in_use_is_not_released_mid_request(monkeypatch):
    """Another user's analysis that fills the budget while a request reads this one (here: during the
    attribution's progress calls) must not pull it away: the request finishes with its picture."""
    first, second = photos.example_photos()[:2]
    a = _analyze(first)
    budget = cache.SessionBudget(max_bytes=0)  # full: any other analysis releases the oldest it may
    monkeypatch.setattr(cache, "SESSIONS", budget)
    budget.touch(a)
    others = []

    def progress(*args, **kwargs):
        if not others:  # another user's analysis arrives mid-request
            others.append(_analyze(second))

    picture, caption = handlers.explain(a, "top", "saliency", "magma", 0.5, progress=progress)
    assert others and np.asarray(picture).size > 0 and caption
    # a was busy, so skipped; the budget took the other (idle by the time a drew and was touched)
    assert not a.released and others[0].released and budget.released == 1
    assert a.release() and a.released  # idle again: it may be released now


def test_a_session_is_busy_only_inside_in_use():
    a = _analyze(photos.example_photos()[0])
    with a.in_use():
        assert a.release() is False and not a.released
    assert a.release() is True and a.released
    with pytest.raises(handlers.SettingsError, match="press Analyze again"), a.in_use():
        pass


def test_a_new_analysis_is_not_released_before_it_is_returned(monkeypatch):
    """Another user's analysis arriving while /analyze draws its first pictures (the budget full) must not
    release the new analysis under it: the request answers with its pictures, not an internal error."""
    first, second = photos.example_photos()[:2]
    budget = cache.SessionBudget(max_bytes=0)  # full: any other analysis releases the oldest it may
    monkeypatch.setattr(cache, "SESSIONS", budget)
    others = []

    def progress(*args, desc="", **kwargs):
        if desc.startswith("Drawing") and not others:  # after the forward, before the pictures
            others.append(_analyze(second))

    session, status, _, tokens, pixel = handlers.analyze(first, resolution=128, progress=progress)
    assert others and "Model:" in status and np.asarray(tokens).size and np.asarray(pixel).size
    assert not session.released and others[0].released
