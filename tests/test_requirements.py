"""The install files: the Space gets a CPU-only torch of the version the project pins."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_pre_requirements_pin_the_same_torch_from_the_cpu_index():
    pre = _requirement_lines("pre-requirements.txt")
    main = _requirement_lines("requirements.txt")
    assert "--index-url https://download.pytorch.org/whl/cpu" in pre
    [pre_torch] = [ln for ln in pre if re.match(r"torch\b", ln)]
    [main_torch] = [ln for ln in main if re.match(r"torch\b", ln)]
    assert pre_torch == main_torch and re.fullmatch(r"torch==\d+\.\d+\.\d+", main_torch)


def test_no_requirement_pulls_torchvision_or_timm():
    # either would pull a CUDA torch of its own choosing on the Space
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-train.txt", "pre-requirements.txt"):
        names = {re.split(r"[<>=!~\[ ]", ln)[0].lower() for ln in _requirement_lines(name) if not ln.startswith("-")}
        assert not names & {"torchvision", "timm"}, name


def test_the_library_imports_no_gradio():
    """The README's promise: the library (the modules its examples import) loads without Gradio.
    Checked in a fresh interpreter, where nothing else imported it first. (pyplot is not checked
    here: Captum's ``captum.attr`` imports it itself; no module of ours does, see test_render.)"""
    import subprocess
    import sys

    code = (
        "import sys, sepvit_viz, sepvit_viz.viz.views, sepvit_viz.viz.pipeline, sepvit_viz.viz.render, "
        "sepvit_viz.explain.attribution, sepvit_viz.explain.scorecard, sepvit_viz.stats.measures, "
        "sepvit_viz.stats.plots, sepvit_viz.model.weights; "
        "print(sorted(m for m in ('gradio', 'gradio_client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
