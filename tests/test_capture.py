"""Attention capture: records, hook hygiene, thread isolation and the official golden maps."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sepvit_viz
from sepvit_viz.viz.capture import AttentionCapture, CaptureError, capture_forward

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_sepvit_mini.safetensors"


@pytest.fixture(scope="module")
def model() -> sepvit_viz.SepViT:
    torch.manual_seed(0)
    m = sepvit_viz.create_model("sepvit_test").eval()
    # perturb the zero-initialised window tokens so they matter
    with torch.no_grad():
        for b in m.iter_blocks():
            if b.window_tokens is not None:
                b.window_tokens.normal_(0, 0.5)
    return m


def tap_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for n, m in model.named_modules() if n.endswith("_tap"))


@pytest.mark.parametrize("size", [(224, 224), (100, 90)])
def test_records_match_the_block_table(model, size):
    x = torch.randn(2, 3, *size)
    logits, records = capture_forward(model, x)
    table = model.block_table(size)
    assert [r.name for r in records] == [b.name for b in table]
    for r, b in zip(records, table):
        assert (r.stage, r.index, r.kind, r.window_size, r.num_heads) == (
            b.stage,
            b.index,
            b.kind,
            b.window_size,
            b.num_heads,
        )
        assert r.grid == b.grid and r.pad == b.pad and r.feature_size == b.feature_size
        assert r.dwa.shape == (2, *b.dwa_shape) and r.dwa.dtype == np.float32
        assert (r.pwa is None) == (b.pwa_shape is None)
        if r.pwa is not None:
            assert r.pwa.shape == (2, *b.pwa_shape)
            np.testing.assert_allclose(r.pwa.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(r.dwa.sum(-1), 1.0, atol=1e-5)
        assert r.geometry.stride == 4 * 2**r.stage
        img = r.image(1)
        assert img.dwa.shape == b.dwa_shape and img.stage == r.stage
    # the fused (unwatched) forward gives the same logits
    with torch.inference_mode():
        np.testing.assert_allclose(model(x).numpy(), logits.numpy(), atol=1e-5)
    assert tap_hooks(model) == 0


def test_padded_keys_get_zero_probability(model):
    _, records = capture_forward(model, torch.randn(1, 3, 100, 90))
    rec = records[0]  # 25x23 map, windows of 7 -> padding (3, 5)
    assert rec.pad == (3, 5)
    last = rec.dwa[0, -1]  # bottom-right window: real pixels are rows 0..3, cols 0..1
    pix = last[:, :, 1:].reshape(last.shape[0], last.shape[1], 7, 7)
    assert np.all(pix[:, :, 4:, :] == 0) and np.all(pix[:, :, :, 2:] == 0)
    assert np.all(pix[:, :, :4, :2] > 0)


def test_hooks_are_removed_on_exit_and_when_the_forward_raises(model):
    x = torch.randn(1, 3, 64, 64)
    with AttentionCapture(model) as cap:
        assert tap_hooks(model) == 7 + 4  # 7 DWA taps + the PWA taps of the 4 windowed blocks
        model(x)
    assert tap_hooks(model) == 0 and len(cap.records) == 7

    def boom(*_):
        raise RuntimeError("boom in stage 3")

    h = model.stages[2].register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"), AttentionCapture(model):
            model(x)
    finally:
        h.remove()
    assert tap_hooks(model) == 0
    assert all(not b.attn.dwa_tap.is_watched() for b in model.iter_blocks())


def test_loud_errors_when_nothing_can_or_did_fire(model):
    with pytest.raises(CaptureError, match="no attention taps"), AttentionCapture(nn.Linear(2, 2)):
        pass
    with pytest.raises(CaptureError, match="no attention tap fired"), AttentionCapture(model):
        pass
    with pytest.raises(CaptureError, match="no attention taps"), AttentionCapture(model, blocks=("nope",)):
        pass
    # one known name does not hide a typo in another
    known = next(model.iter_blocks()).name
    typo = r"no attention taps in blocks \['stages.9.blocks.0'\]"
    with pytest.raises(CaptureError, match=typo), AttentionCapture(model, blocks=(known, "stages.9.blocks.0")):
        pass
    assert tap_hooks(model) == 0


def test_block_filter_and_two_forwards(model):
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode(), AttentionCapture(model, blocks=("stages.1.blocks.1",)) as cap:
        model(x)
        model(x)
    assert [r.name for r in cap.records] == ["stages.1.blocks.1"] * 2
    assert all(r.pwa is not None for r in cap.records)
    with torch.inference_mode(), AttentionCapture(model, blocks="stages.1.blocks.1") as one:  # a bare name
        model(x)
    assert [r.name for r in one.records] == ["stages.1.blocks.1"]


def test_two_threads_capturing_at_once_get_their_own_records(model):
    inputs = [torch.randn(1, 3, 96, 96), torch.randn(1, 3, 64, 80)]
    expected = [capture_forward(model, x)[1] for x in inputs]
    # both forwards wait for each other before stage 2, so both captures are active together and
    # each thread's taps of stages 2-4 fire while the other thread's hooks are registered
    barrier = threading.Barrier(2, timeout=30)

    def meet(*_) -> None:
        barrier.wait()

    gate = model.stages[1].register_forward_pre_hook(meet)
    results: list = [None, None]
    errors: list = []

    def work(i: int) -> None:
        try:
            results[i] = capture_forward(model, inputs[i])[1]
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        gate.remove()
    assert not errors, errors
    for got, want in zip(results, expected):
        assert [r.name for r in got] == [r.name for r in want]
        for g, w in zip(got, want):
            assert g.dwa.shape == w.dwa.shape
            np.testing.assert_allclose(g.dwa, w.dwa, atol=1e-6)
    assert results[0][0].dwa.shape != results[1][0].dwa.shape
    assert tap_hooks(model) == 0


@pytest.mark.skipif(not REFERENCE.is_file(), reason="../shared/reference is not checked out next to this repo")
def test_golden_attention_maps_of_the_official_code():
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(REFERENCE))
    with safe_open(str(REFERENCE), "pt") as f:
        config = json.loads(f.metadata()["config"])
    model = sepvit_viz.from_official(tensors, config)
    logits, records = capture_forward(model, tensors["input"])
    np.testing.assert_allclose(logits.numpy(), tensors["logits"].numpy(), atol=1e-4)
    assert len(records) == 7
    for r in records:
        key = f"attention.blocks.{r.stage}.{r.index}.attn."
        np.testing.assert_allclose(r.dwa, tensors[key + "DSA_attn_drop"].numpy(), atol=1e-5, rtol=0)
        if r.pwa is None:
            assert key + "PSA_attn_drop" not in tensors
        else:
            np.testing.assert_allclose(r.pwa, tensors[key + "PSA_attn_drop"].numpy(), atol=1e-5, rtol=0)


def test_keep_graph_mode_keeps_the_probabilities_in_the_autograd_graph():
    """One hook manager for maps and gradients: with keep_graph the taps' tensors stay differentiable
    and every DWA and PWA firing is kept, in model order, from this thread only."""
    import sepvit_viz
    from sepvit_viz.viz.capture import AttentionCapture

    torch.manual_seed(0)
    model = sepvit_viz.create_model("sepvit_test").eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    with AttentionCapture(model, keep_graph=True) as cap:
        model(x)
    blocks = list(model.iter_blocks())
    dwa = [t for t in cap.tensors if t.kind == "dwa"]
    pwa = [t for t in cap.tensors if t.kind == "pwa"]
    assert [t.name for t in dwa] == [b.name for b in blocks]
    assert [t.name for t in pwa] == [b.name for b in blocks if b.kind != "global"]
    assert cap.records == [] and all(t.probs.requires_grad for t in cap.tensors)
    # a gradient flows from a captured probability back to the input
    probs = dwa[0].probs  # a pixel query row (the window tokens start at zero: their rows are uniform)
    (grad,) = torch.autograd.grad((probs[0, :, :, 1:] * torch.rand_like(probs[0, :, :, 1:])).sum(), x)
    assert grad.abs().sum() > 0
    # the same forward under the default mode gives numpy records equal to the kept tensors
    with torch.no_grad(), AttentionCapture(model) as plain:
        model(x)
    for rec, t in zip(plain.records, dwa):
        np.testing.assert_allclose(rec.dwa, t.probs.detach().numpy(), atol=1e-6)
    assert all(not b.attn.dwa_tap.is_watched() for b in blocks)  # hooks released
