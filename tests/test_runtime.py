"""The CPU fast paths: oneDNN fused linear, the small-window DWA path, and the allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sepvit_viz.model import layers
from sepvit_viz.model.attention import SeparableAttention
from sepvit_viz.model.layers import Linear
from sepvit_viz.model.windows import window_geometry

needs_onednn = pytest.mark.skipif(not layers.onednn_linear_available(), reason="torch built without oneDNN")


def _ops_run(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_private_fast_linear_is_off_by_default_and_falls_back_without_the_op(monkeypatch):
    """The default path calls public ops only; opted in on a torch without oneDNN's fused op, every
    call takes F.linear with the same result."""
    torch.manual_seed(0)
    lin = Linear(16, 24, gelu=True)
    x = torch.randn(3, 16)
    ref = F.gelu(F.linear(x, lin.weight, lin.bias))
    assert layers.ONEDNN_LINEAR is False  # the test session runs without SEPVIT_ONEDNN_LINEAR
    with torch.no_grad():
        ops = _ops_run(lambda: lin(x))
        assert "mkldnn::_linear_pointwise" not in ops and torch.allclose(lin(x), ref, atol=1e-6)
        monkeypatch.setattr(layers, "ONEDNN_LINEAR", True)
        monkeypatch.setattr(layers, "_onednn", lambda: (False, False, lambda: None))  # an op-less build
        assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: lin(x))
        assert torch.allclose(lin(x), ref, atol=1e-6)


@needs_onednn
@pytest.mark.parametrize("gelu", [False, True])
def test_fused_linear_matches_aten_and_runs_only_without_autograd(gelu, monkeypatch):
    monkeypatch.setattr(layers, "ONEDNN_LINEAR", True)  # opt-in
    torch.manual_seed(0)
    lin = Linear(48, 80, gelu=gelu)
    x = torch.randn(2, 5, 7, 48)
    ref = F.linear(x, lin.weight, lin.bias)
    ref = F.gelu(ref) if gelu else ref
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" in _ops_run(lambda: lin(x))
        assert torch.allclose(lin(x), ref, atol=1e-5)
    # gradients needed: the plain aten path, with a graph
    out = lin(x)
    assert out.grad_fn is not None
    assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: lin(x).sum().backward())
    assert torch.allclose(out, ref, atol=1e-5)
    # switched off, or under autocast: aten too
    monkeypatch.setattr(layers, "ONEDNN_LINEAR", False)
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: lin(x))


@needs_onednn
def test_flop_counter_still_sees_every_linear(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setattr(layers, "ONEDNN_LINEAR", True)  # opted in, a dispatch mode still sees aten

    lin = Linear(32, 64)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        lin(torch.randn(10, 32))
    assert counter.get_total_flops() == 2 * 10 * 32 * 64


def test_small_window_path_matches_the_fused_kernel(monkeypatch):
    torch.manual_seed(0)
    attn = SeparableAttention(64, 2).eval()
    geom = window_geometry(14, 14, 7, True)
    u = torch.randn(3, geom.num_windows, 1 + geom.window_pixels, 64)
    import sepvit_viz.model.attention as attention

    with torch.no_grad():
        ops_small = _ops_run(lambda: attn(u, geom))
        small = attn(u, geom)
        monkeypatch.setattr(attention, "_SMALL_WINDOW", 0)  # force scaled_dot_product_attention
        ops_fused = _ops_run(lambda: attn(u, geom))
        fused = attn(u, geom)
        attn.fused_attn = False  # explicit softmax path, as when watched
        explicit = attn(u, geom)
    # each call took the path it is meant to compare (L = 50 tokens: the small-window path first)
    assert not any("scaled_dot_product" in k for k in ops_small)
    assert any("scaled_dot_product" in k for k in ops_fused)
    assert torch.allclose(small, fused, atol=1e-5)
    assert torch.allclose(small, explicit, atol=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings")
def test_tune_malloc_sets_glibc_thresholds_once():
    # in a child process: the setting is process-wide and the test session must keep glibc's defaults
    # whether the C library is glibc is decided here, not by the function under test (which returned
    # None, "not glibc", without setting anything, and passed on a glibc system)
    code = (
        "import platform\n"
        "from sepvit_viz.model import runtime\n"
        "from sepvit_viz.model.runtime import malloc_settings, tune_malloc\n"
        "assert malloc_settings() == 'default'\n"
        "glibc = platform.libc_ver()[0] == 'glibc'\n"
        "calls = []\n"
        "if glibc:\n"  # watch the mallopt calls that reach glibc (M_MMAP_THRESHOLD -3, M_TRIM_THRESHOLD -1)
        "    libc = runtime._glibc()\n"
        "    assert libc is not None\n"
        "    real = libc.mallopt\n"
        "    libc.mallopt = lambda param, value: calls.append((param, value)) or real(param, value)\n"
        "got = tune_malloc(mmap_threshold=1 << 30, trim_threshold=256 << 20)\n"
        "if not glibc:\n"  # a non-glibc Linux (musl): nothing set, and it says so
        "    assert got is None and malloc_settings() == 'default', got\n"
        "else:\n"
        "    assert got == {'mmap_threshold': 1 << 30, 'trim_threshold': 256 << 20}, got\n"
        "    assert calls == [(-3, 1 << 30), (-1, 256 << 20)], calls\n"
        "    assert tune_malloc(mmap_threshold=1 << 30, trim_threshold=256 << 20) is got\n"
        "    assert len(calls) == 2, calls\n"  # once: the same values again set nothing
        "    assert '1024 MiB' in malloc_settings() and '256 MiB' in malloc_settings()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------------------ compiled inference
def test_whole_model_is_one_dynamo_graph():
    """No graph break anywhere in a forward: torch.compile sees one graph (the compiled fast path)."""
    import torch._dynamo as dynamo

    from sepvit_viz import create_model

    model = create_model("sepvit_test").eval()
    dynamo.reset()
    with torch.no_grad():
        explained = dynamo.explain(model)(torch.randn(1, 3, 64, 96))
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert explained.graph_count == 1


#: The torch.compile backend the compile tests use: ``aot_eager`` traces the same single graph
#: (dynamo + AOT autograd) in seconds; ``SEPVIT_TEST_INDUCTOR=1`` runs inductor's C++ codegen too
#: (about five minutes on 2 cores).
COMPILE_BACKEND = "inductor" if os.environ.get("SEPVIT_TEST_INDUCTOR") == "1" else "aot_eager"


@pytest.mark.timeout(600)
def test_compile_for_inference_matches_eager():
    from sepvit_viz import create_model
    from sepvit_viz.model.inference import compile_for_inference, predict

    torch.manual_seed(0)
    model = create_model("sepvit_test").eval()
    x = torch.randn(2, 3, 72, 100)  # padded windows on stages 1-2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compiled = compile_for_inference(model, backend=COMPILE_BACKEND)
    # a compiled wrapper of this model (handing back the eager model would "match" by construction)
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule) and compiled._orig_mod is model
    expected = predict(model, x)
    got = predict(compiled, x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()
    # the eager model is untouched (its own forward, the same weights) and still watchable
    assert "forward" not in vars(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    from sepvit_viz.viz.capture import capture_forward

    _, records = capture_forward(model, x[:1])
    assert [r.name for r in records] == [b.name for b in model.iter_blocks()]
    with pytest.raises(ValueError, match="eval"):
        compile_for_inference(create_model("sepvit_test").train())


def test_bf16_matmul_path_for_long_windows_matches_fused_kernel(monkeypatch):
    """Under bf16 autocast, GSA-sized windows (L = 197) take the matmul path; it agrees with SDPA."""
    import sepvit_viz.model.attention as attention

    torch.manual_seed(0)
    attn = SeparableAttention(64, 2).eval()
    geom = window_geometry(28, 28, 14, True)  # 2x2 groups of 14x14 (+ token): L = 197
    u = torch.randn(2, geom.num_windows, 1 + geom.window_pixels, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ops_small = _ops_run(lambda: attn(u, geom))
        small = attn(u, geom).float()
        monkeypatch.setattr(attention, "_SMALL_WINDOW_BF16", 0)
        ops_fused = _ops_run(lambda: attn(u, geom))
        fused = attn(u, geom).float()
    assert not any("scaled_dot_product" in k for k in ops_small)
    assert any("scaled_dot_product" in k for k in ops_fused)
    with torch.no_grad():
        ref = attn(u, geom)
    # bf16 has 8 bits of mantissa: both paths sit within bf16 rounding of the float32 result
    scale = ref.abs().max()
    assert (small - ref).abs().max() < 0.03 * scale
    assert (small - fused).abs().max() < 0.03 * scale


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from sepvit_viz.model.runtime import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n")
    assert not cpu_has_native_bf16(info)  # plain AVX-512: bf16 is emulated
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(info)
    info.write_text("flags\t\t: fpu avx2 amx_tile amx_bf16\n")
    assert cpu_has_native_bf16(info)
    assert not cpu_has_native_bf16(tmp_path / "missing")  # no flags file: float32, never emulated bf16
