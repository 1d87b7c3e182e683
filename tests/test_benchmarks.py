"""Smoke tests of the benchmark runner and the model benchmark (behaviour only, never timings)."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from benchmarks import bench_model, run
from benchmarks.common import md_table


def test_md_table_keeps_pipes_inside_cells_as_text():
    table = md_table(["method", "mean |rank corr.|", "already \\|escaped\\|"], [["a | b", 0.5, "x"]])
    lines = table.splitlines()
    # every row splits into as many cells as the header has columns (unescaped pipes only)
    cells = [len(re.split(r"(?<!\\)\|", line)) - 2 for line in lines]
    assert cells == [3, 3, 3], table
    assert "mean \\|rank corr.\\|" in lines[0] and "already \\|escaped\\|" in lines[0]
    assert "a \\| b" in lines[2]


def test_discover_puts_model_first():
    names = run.discover()
    assert names[0] == "bench_model"
    assert all(n.startswith("bench_") for n in names)


@pytest.mark.slow
def test_quick_model_benchmark_writes_tables(tmp_path: Path):
    out = tmp_path / "results.md"
    outcomes = run.run_all(quick=True, out=out, only=["model"], echo=False)
    assert [o.name for o in outcomes] == ["bench_model"]
    assert outcomes[0].ok, outcomes[0].markdown
    text = out.read_text()
    for heading in (
        "vs vit-pytorch",
        "Where the batch-1 time goes",
        "Watching every attention map",
        "bfloat16",
        "Every variant",
        "input size",
    ):
        assert heading in text
    assert text.count("Conditions: CPU:") >= 5
    assert "torch " in text and "threads" in text
    assert "| measured as |" in text
    png = tmp_path / "scaling.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(scaling.png)" in text


def test_comparison_without_vit_pytorch(monkeypatch):
    monkeypatch.setitem(sys.modules, "vit_pytorch", None)  # import machinery now reports it absent
    assert bench_model.vit_pytorch_lite() is None
    tiny = dataclasses.replace(bench_model.QUICK, img=64, tput_batch=1, tput_reps=1, lat_reps=1)
    text = bench_model.compare_vit_pytorch(tiny)
    assert "not installed" in text
    assert "sepvit-viz Lite" in text


def test_op_category_groups_profiler_ops():
    cat = bench_model.op_category
    assert cat("mkldnn::_linear_pointwise") == cat("aten::addmm") == "linear layers (GEMM)"
    assert cat("aten::mkldnn_convolution") == "convolutions"
    assert cat("aten::_scaled_dot_product_flash_attention_for_cpu") == cat("aten::bmm")
    assert cat("aten::_softmax") == "softmax"
    assert cat("aten::native_layer_norm") == cat("aten::var")
    assert cat("aten::copy_") == cat("aten::cat")
    assert cat("aten::add") == cat("aten::gelu")
    assert cat("aten::view") == cat("aten::empty") == bench_model.OTHER_OPS


def test_profile_forward_accounts_for_every_op():
    import torch

    model = bench_model.ours("sepvit_test")
    by_cat, calls, wall_ms = bench_model.profile_forward(model, torch.randn(1, 3, 64, 64), runs=2)
    assert set(by_cat) == {c for c, _ in bench_model.OP_CATEGORIES} | {bench_model.OTHER_OPS}
    assert by_cat["linear layers (GEMM)"] > 0 and by_cat["convolutions"] > 0 and by_cat["softmax"] > 0
    assert all(v >= 0 for v in by_cat.values())
    assert 0 < sum(by_cat.values()) <= wall_ms  # self times of ops on this thread fit in the wall time
    blocks = list(model.iter_blocks())
    assert calls > 10 * len(blocks)  # every block runs many ops; a broken trace would count none


def test_runner_survives_failing_modules(tmp_path: Path):
    (tmp_path / "bench_good.py").write_text(
        'TITLE = "Good area"\ndef run(quick):\n    return "### good\\nConditions: x.\\n\\n| a |\\n|---|\\n| 1 |"\n'
    )
    (tmp_path / "bench_raises.py").write_text("def run(quick):\n    raise RuntimeError('boom in benchmark')\n")
    (tmp_path / "bench_noimport.py").write_text("import not_a_module_anywhere_xyz\n")
    (tmp_path / "bench_norun.py").write_text("X = 1\n")
    (tmp_path / "bench_outdir.py").write_text(
        "from pathlib import Path\n"
        "def run(quick, out_dir=None):\n"
        "    (Path(out_dir) / 'made.txt').write_text('x')\n"
        "    return '### made'\n"
    )
    out = tmp_path / "out" / "results.md"
    outcomes = run.run_all(quick=True, out=out, directory=tmp_path, echo=False)
    status = {o.name: o.ok for o in outcomes}
    assert status == {
        "bench_good": True,
        "bench_noimport": False,
        "bench_norun": False,
        "bench_outdir": True,
        "bench_raises": False,
    }
    text = out.read_text()
    assert "## Good area" in text and "| 1 |" in text
    assert "boom in benchmark" in text and "ModuleNotFoundError" in text and "FAILED" in text
    assert (tmp_path / "out" / "made.txt").exists()


def test_main_strict_exit_status(tmp_path: Path):
    (tmp_path / "bench_raises.py").write_text("def run(quick):\n    raise RuntimeError('x')\n")
    out = str(tmp_path / "r.md")
    assert run.main(["--quick", "--out", out], directory=tmp_path) == 0
    assert run.main(["--quick", "--strict", "--out", out], directory=tmp_path) == 1
    assert "FAILED" in Path(out).read_text()


def test_merge_reruns_one_module_and_keeps_the_others(tmp_path: Path):
    (tmp_path / "bench_a.py").write_text(
        'TITLE = "Area A"\ndef run(quick):\n    return "### a\\n| a |\\n|---|\\n| 1 |"\n'
    )
    (tmp_path / "bench_b.py").write_text(
        'TITLE = "Area B"\nN = 1\ndef run(quick):\n    return f"### b\\n| b |\\n|---|\\n| {N} |"\n'
    )
    out = tmp_path / "results.md"
    run.run_all(quick=True, out=out, directory=tmp_path, echo=False)
    assert set(run.split_sections(out.read_text())) == {"bench_a", "bench_b"}
    (tmp_path / "bench_a.py").write_text(
        'TITLE = "Area A"\ndef run(quick):\n    return "### a\\n| a |\\n|---|\\n| 2 |"\n'
    )
    (tmp_path / "bench_b.py").write_text(
        'TITLE = "Area B"\ndef run(quick):\n    return "### b\\n| b |\\n|---|\\n| 3 |"\n'
    )
    run.run_all(quick=True, out=out, only=["a"], directory=tmp_path, echo=False, merge=True)
    text = out.read_text()
    assert "| 2 |" in text and "| 1 |" in text and "| 3 |" not in text  # a rerun, b kept as it was
    assert text.index("## Area A") < text.index("## Area B")  # discovery order kept
    assert text.count("finished ") == 2
    # without --merge, --only writes just what ran
    run.run_all(quick=True, out=out, only=["b"], directory=tmp_path, echo=False)
    assert set(run.split_sections(out.read_text())) == {"bench_b"}


def test_split_sections_keeps_a_modules_own_level_two_headings():
    report = (
        "# header\n\n## Area A\n\n_`benchmarks/bench_a.py`, 1 s_\n\nintro\n\n## inner heading of A\n\n| 1 |\n\n"
        "## Area B\n\n_`benchmarks/bench_b.py`, 2 s_\n\n| 2 |\n"
    )
    sections = run.split_sections(report)
    assert set(sections) == {"bench_a", "bench_b"}
    assert "inner heading of A" in sections["bench_a"] and "| 1 |" in sections["bench_a"]
    assert "| 1 |" not in sections["bench_b"]


def test_sync_docs_moves_results_tables_into_the_performance_doc():
    from benchmarks import sync_docs

    results = "# title\n\nintro\n\n## Model speed\n\n### A\n| x |\n\n![plot](scaling.png)\n\n## Accuracy\n### B\n"
    doc = "# Performance\nsummary stays\n\n## Model speed\nold table\n<!-- /tables -->\n\nafter\n"
    out = sync_docs.sync(doc, results)
    assert "summary stays" in out and "old table" not in out and "intro" not in out
    assert "## Model speed\n\n### A\n| x |" in out and "## Accuracy\n### B\n<!-- /tables -->" in out
    assert "](../benchmarks/scaling.png)" in out
    assert out.endswith("<!-- /tables -->\n\nafter\n")
    assert sync_docs.sync(out, results) == out  # idempotent
    with pytest.raises(ValueError):
        sync_docs.sync("# no tables\n", results)


def test_performance_doc_tables_match_results_md():
    from benchmarks import sync_docs

    doc = sync_docs.DOC.read_text()
    assert sync_docs.sync(doc, sync_docs.RESULTS.read_text()) == doc, (
        "docs/performance.md tables differ from benchmarks/results.md: run python -m benchmarks.sync_docs"
    )


def test_probe_rows_name_each_checkpoint_apart() -> None:
    from benchmarks.probe_sharp_shortcut import model_labels

    assert model_labels(["runs/run19/a.safetensors", "runs/run20/a.safetensors"]) == ["run19", "run20"]
    # two checkpoints in one folder keep their paths, so their rows cannot be mistaken for each other
    assert model_labels(["runs/x/a.safetensors", "runs/x/b.safetensors", "runs/y/a.safetensors"]) == [
        "runs/x/a.safetensors",
        "runs/x/b.safetensors",
        "y",
    ]


def test_folded_head_is_the_teacher_classifier_on_the_projected_mean_token() -> None:
    import torch

    from benchmarks.probe_folded_head import folded_head

    g = torch.Generator().manual_seed(0)
    fc_w, fc_b = torch.randn(7, 5, generator=g), torch.randn(7, generator=g)
    proj_w, proj_b = torch.randn(5, 3, generator=g), torch.randn(5, generator=g)
    tokens = torch.randn(2, 4, 3, generator=g)  # (B, N, C)
    want = (tokens @ proj_w.T + proj_b).mean(dim=1) @ fc_w.T + fc_b
    w, b = folded_head(fc_w, fc_b, proj_w, proj_b)
    assert w.shape == (7, 3) and b.shape == (7,)
    torch.testing.assert_close(tokens.mean(dim=1) @ w.T + b, want)


def test_disagreement_probe_counts_per_true_class_and_pairs() -> None:
    from benchmarks.probe_disagreements import ClassRow, per_class, top_disagreements

    labels = [1, 1, 1, 1, 2, 2]
    student = [1, 1, 5, 5, 2, 2]
    teacher = [1, 7, 7, 5, 2, 9]
    rows = per_class(labels, student, teacher)
    # lowest agreement first: class 2 agrees on 1 of 2, class 1 on 2 of 4 (a tie broken by the label)
    assert rows == [
        ClassRow(label=1, photos=4, agreement=0.5, student_top1=0.5, teacher_top1=0.25),
        ClassRow(label=2, photos=2, agreement=0.5, student_top1=1.0, teacher_top1=0.5),
    ]
    assert top_disagreements(student, teacher) == [(7, 1, 1), (7, 5, 1), (9, 2, 1)]
    assert top_disagreements(student, teacher, k=1) == [(7, 1, 1)]
    with pytest.raises(ValueError, match="lengths differ"):
        per_class(labels, student[:-1], teacher)
