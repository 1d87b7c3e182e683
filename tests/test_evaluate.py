"""``python -m sepvit_viz.training.evaluate``: folder checks, the teacher (agreement) path, targets and verdicts in the
model card, and the card's coverage text.

Models are small stand-ins with known predictions (a fixed-logit module), so every number is known
exactly; the photos are a few held-out ones copied from ``../shared/data/val`` (skipped without them).
The real model card is only ever read, never written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sepvit_viz.model import runtime
from sepvit_viz.model.weights import DEFAULT_CHECKPOINT
from sepvit_viz.training import evaluate
from sepvit_viz.training.data import wnid_to_index

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "val"
CARD = DEFAULT_CHECKPOINT.with_name("sepvit_lite_distilled.card.json")
TENCH, SPRINGER = "n01440764", "n02102040"


class FixedLogits(nn.Module):
    """(B, 3, 224, 224) -> (B, 1000) logits whose top-1 is always ``index``; records how it was called."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.calls: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(
            {
                "shape": tuple(x.shape),
                "channels_last": x.is_contiguous(memory_format=torch.channels_last),
                "bf16": torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16,
            }
        )
        out = torch.zeros(x.shape[0], 1000)
        out[:, self.index] = 1.0
        return out


def copy_photos(dst: Path, source: str, counts: dict[str, int]) -> Path:
    """``counts[wnid]`` photos of each class from ``VAL/source/wnid`` into ``dst/wnid`` (sorted, stable)."""
    if not (VAL / source).is_dir():
        pytest.skip(f"the held-out photos ({VAL / source}) are not on this machine")
    for wnid, n in counts.items():
        (dst / wnid).mkdir(parents=True)
        for p in sorted((VAL / source / wnid).iterdir())[:n]:
            shutil.copy(p, dst / wnid / p.name)
    return dst


def a_photo() -> Path:
    photos = sorted((ROOT / "assets" / "examples").glob("*.jpg"))
    assert photos
    return photos[0]


# ------------------------------------------------------------------------------ folder checks
@pytest.mark.parametrize("layout", ["not_wnids", "loose_photos", "empty"])
def test_a_folder_without_wordnet_subfolders_is_a_one_line_error(tmp_path, capsys, layout):
    d = tmp_path / "photos"
    d.mkdir()
    if layout == "not_wnids":
        for name in ("cats", "dogs"):
            (d / name).mkdir()
            shutil.copy(a_photo(), d / name / "a.jpg")
    elif layout == "loose_photos":
        shutil.copy(a_photo(), d / "a.jpg")
    assert evaluate.main([str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert str(d) in err and "n01440764" in err and "imagenet_classes.tsv" in err
    if layout == "not_wnids":
        assert "'cats'" in err
    # the library call says the same instead of averaging nothing or failing on a file name
    with pytest.raises(ValueError, match="WordNet id"):
        evaluate.evaluate_dirs(FixedLogits(0), [d])


def test_python_dash_m_reports_a_bad_folder_without_a_traceback(tmp_path):
    (tmp_path / "cats").mkdir()
    shutil.copy(a_photo(), tmp_path / "cats" / "a.jpg")
    run = subprocess.run(
        [sys.executable, "-m", "sepvit_viz.training.evaluate", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}: expected photos in subfolders")


def one_photo_folder(tmp_path: Path) -> Path:
    """A held-out-style folder with one photo (a bundled example) under the tench's WordNet id."""
    d = tmp_path / "val" / "imagenette"
    (d / TENCH).mkdir(parents=True)
    shutil.copy(a_photo(), d / TENCH / "a.jpg")
    return d


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--limit", "0"], "--limit must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--threads", "-1"], "--threads must be 1 to 1024, got -1"),
        (["--threads", "2147483648"], "--threads must be 1 to 1024, got 2147483648"),
        (["--json", "{tmp}"], "not a file in an existing folder"),
        (["--json", "{tmp}/no/such/folder/out.json"], "not a file in an existing folder"),
    ],
)
def test_impossible_settings_are_refused_before_anything_runs(tmp_path, capsys, flags, says):
    d = one_photo_folder(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(d), *[f.format(tmp=tmp_path) for f in flags]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1, err  # one line, no usage block


def test_a_bad_checkpoint_or_a_folder_of_unreadable_photos_is_a_one_line_error(tmp_path, capsys):
    d = one_photo_folder(tmp_path)
    text = tmp_path / "notes.safetensors"
    text.write_text("not a checkpoint")
    assert evaluate.main([str(d), "--checkpoint", str(text)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "notes.safetensors" in err, err
    for photo in (d / TENCH).iterdir():  # every photo of the folder unreadable
        photo.write_bytes(b"")
    assert evaluate.main([str(d)]) == 2  # the shipped checkpoint
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("error: ") and "no readable photo" in err, err


# ------------------------------------------------------------------------------ the teacher path
def test_teacher_top1_and_agreement_through_evaluate_dirs(tmp_path):
    d = copy_photos(tmp_path / "imagenette", "imagenette", {TENCH: 3, SPRINGER: 1})
    tench, springer = wnid_to_index()[TENCH], wnid_to_index()[SPRINGER]
    student = FixedLogits(tench)
    same, other = FixedLogits(tench), FixedLogits(springer)
    [row] = evaluate.evaluate_dirs(student, [d], teacher=same, batch_size=3)
    assert row["photos"] == 4
    assert row["student_top1"] == row["teacher_top1"] == 0.75 and row["agreement"] == 1.0
    [row] = evaluate.evaluate_dirs(student, [d], teacher=other, batch_size=3, teacher_bf16=True)
    assert row["teacher_top1"] == 0.25 and row["agreement"] == 0.0
    # the teacher runs as documented: evaluation crops at 224, channels-last, bf16 autocast, in batches
    assert [c["shape"] for c in other.calls] == [(3, 3, 224, 224), (1, 3, 224, 224)]
    assert all(c["channels_last"] and c["bf16"] for c in other.calls)
    # by default bf16 only where this CPU computes it natively
    from sepvit_viz.model.runtime import cpu_has_native_bf16

    other.calls.clear()
    evaluate.evaluate_dirs(student, [d], teacher=other, batch_size=4)
    assert [c["bf16"] for c in other.calls] == [cpu_has_native_bf16()]
    assert not any(c["bf16"] for c in student.calls)  # the student stays fp32 by default
    table = evaluate.markdown_table([row])
    assert "| imagenette | 4 | 75.0% | 25.0% | 0.0% |" in table


def run_main_with_stand_ins(monkeypatch, tmp_path, dirs, *extra):
    """``evaluate.main`` with ``--teacher``: the student and the teacher are fixed-logit stand-ins."""
    import sepvit_viz.model.weights
    import sepvit_viz.training.teacher

    tench = wnid_to_index()[TENCH]
    monkeypatch.setattr(sepvit_viz.model.weights, "load_checkpoint", lambda path: FixedLogits(tench))
    monkeypatch.setattr(sepvit_viz.training.teacher, "create_teacher", lambda: FixedLogits(tench))
    ckpt = tmp_path / "student.safetensors"  # never opened: load_checkpoint is the stand-in
    return evaluate.main([*map(str, dirs), "--checkpoint", str(ckpt), "--teacher", *extra]), ckpt


def test_main_with_teacher_prints_agreement_and_verdicts(monkeypatch, tmp_path, capsys):
    d = copy_photos(tmp_path / "imagenette", "imagenette", {TENCH: 3, SPRINGER: 1})
    rc, _ = run_main_with_stand_ins(monkeypatch, tmp_path, [d], "--json", str(tmp_path / "rows.json"))
    assert rc == 0
    out = capsys.readouterr().out
    assert "| imagenette | 4 | 75.0% | 75.0% | 100.0% |" in out
    assert "top-1 75.0% (target >= 75%): met; agreement 100.0% (target >= 75%): met" in out
    [row] = json.loads((tmp_path / "rows.json").read_text())
    assert row["agreement"] == 1.0 and row["teacher_top1"] == 0.75


# ------------------------------------------------------------------------------ targets and the card
def test_targets_are_the_issues_bar():
    # the one definition: benchmarks/bench_accuracy.py imports it
    assert evaluate.TARGETS == {
        "imagenette": (0.75, 0.75),
        "mini-imagenet": (0.36, 0.50),
        "tiny-imagenet": (0.20, 0.45),
        "imagewoof": (0.68, None),
    }


def test_verdicts_at_and_around_the_bar():
    rows = [
        # 750 of 1000 agree: exactly the 75% bar, met, also when the rate went through float32
        # (0.74999999)
        {
            "name": "imagenette",
            "student_top1": 750 / 1000,
            "agreement": (torch.arange(1000) < 750).float().mean().item(),
        },
        {"name": "mini-imagenet", "student_top1": 0.3599, "agreement": 0.9},
        {"name": "imagewoof", "student_top1": 0.68, "agreement": 0.1},  # no agreement bar there
        {"name": "elsewhere", "student_top1": 0.0},
    ]
    assert evaluate.verdicts(rows) == {
        "imagenette": {"student_top1": "met", "agreement": "met", "all": "met"},
        "mini-imagenet": {"student_top1": "not met", "agreement": "met", "all": "not met"},
        "imagewoof": {"student_top1": "met", "agreement": "no target", "all": "met"},
    }
    assert evaluate.verdict_lines(rows)[2] == "imagewoof vs issue 17's targets: top-1 68.0% (target >= 68%): met"
    no_teacher = evaluate.verdicts([{"name": "imagenette", "student_top1": 0.9}])
    assert no_teacher == {"imagenette": {"student_top1": "met", "agreement": "not measured", "all": "not measured"}}


def test_update_card_records_targets_and_verdicts_in_a_copy_of_the_card(monkeypatch, tmp_path):
    net = copy_photos(tmp_path / "val" / "imagenette", "imagenette", {TENCH: 3, SPRINGER: 1})
    mini_wnid = sorted(p.name for p in (VAL / "mini-imagenet").iterdir() if p.is_dir())[0]
    mini = copy_photos(tmp_path / "val" / "mini-imagenet", "mini-imagenet", {mini_wnid: 2})
    card = tmp_path / "student.card.json"
    shutil.copy(CARD, card)
    before = json.loads(card.read_text())
    # the card holds four folders: measuring two of them would drop the others, so it is refused ...
    rc, ckpt = run_main_with_stand_ins(monkeypatch, tmp_path, [net, mini], "--update-card")
    assert rc == 2 and json.loads(card.read_text()) == before
    # ... unless asked for
    rc, ckpt = run_main_with_stand_ins(monkeypatch, tmp_path, [net, mini], "--update-card", "--replace")
    assert rc == 0 and evaluate.card_path_for(ckpt) == card
    after = json.loads(card.read_text())
    # everything else in the card is kept
    assert {k: v for k, v in after.items() if k != "evaluation"} == {
        k: v for k, v in before.items() if k != "evaluation"
    }
    ev = after["evaluation"]
    assert ev["results"]["imagenette"] == {
        "folder": "val/imagenette",
        "photos": 4,
        "student_top1": 0.75,
        "teacher_top1": 0.75,
        "agreement": 1.0,
    }
    assert ev["results"]["mini-imagenet"]["student_top1"] == 0.0
    assert ev["targets"] == {
        "imagenette": {"student_top1_min": 0.75, "agreement_min": 0.75},
        "mini-imagenet": {"student_top1_min": 0.36, "agreement_min": 0.5},
    }
    assert ev["verdict"] == {
        "imagenette": {"student_top1": "met", "agreement": "met", "all": "met"},
        "mini-imagenet": {"student_top1": "not met", "agreement": "met", "all": "not met"},
    }
    assert ev["limit_per_folder"] is None and "verdict_note" not in ev
    entry = evaluate.update_card(card, [{"name": "imagenette", "photos": 8, "student_top1": 0.5}], limit=8)
    assert "subset" in entry["verdict_note"] and entry["verdict"]["imagenette"]["all"] == "not met"
    assert entry["teacher_dtype"] is None and "no teacher" in entry["protocol"]  # none was run
    # the protocol names the student's precision as it was measured
    assert "student fp32" in entry["protocol"]
    bf16 = evaluate.update_card(card, [{"name": "imagenette", "photos": 8, "student_top1": 0.5}], bf16=True)
    assert "student under bf16 autocast" in bf16["protocol"] and "student fp32" not in bf16["protocol"]
    # with a teacher row, the teacher's precision defaults to what evaluate_dirs would have used
    row = {"name": "imagenette", "photos": 8, "student_top1": 0.5, "teacher_top1": 0.5, "agreement": 0.5}
    for native, dtype in ((False, "float32"), (True, "bf16")):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        entry = evaluate.update_card(card, [row], limit=8)
        assert entry["teacher_dtype"] == dtype and f"teacher {dtype.replace('float32', 'fp32')}" in entry["protocol"]


def test_update_card_refuses_to_drop_what_the_card_holds(monkeypatch, tmp_path, capsys):
    card = tmp_path / "student.card.json"
    card.write_text(
        json.dumps(
            {
                "evaluation": {
                    "limit_per_folder": None,
                    "results": {
                        "imagenette": {"photos": 4, "student_top1": 0.5, "teacher_top1": 0.75, "agreement": 0.5},
                        "imagewoof": {"photos": 4, "student_top1": 0.5, "teacher_top1": 0.75, "agreement": 0.5},
                    },
                }
            }
        )
    )
    losses = evaluate.evaluation_losses
    assert losses(card, ["imagenette", "imagewoof"], teacher=True, limit=None) == []
    assert losses(card, ["imagenette"], teacher=True, limit=None) == ["the results of imagewoof"]
    assert losses(card, ["imagenette", "imagewoof"], teacher=False, limit=None) == [
        "the teacher's figures (give --teacher)"
    ]
    assert losses(card, ["imagenette", "imagewoof"], teacher=True, limit=10) == [
        "whole-folder results (this run has --limit)"
    ]
    assert losses(tmp_path / "none.card.json", ["x"], teacher=False, limit=5) == []
    # through the command line: refused before any model is loaded, the card untouched
    d = copy_photos(tmp_path / "sets" / "imagenette", "imagenette", {TENCH: 2})
    before = card.read_text()
    rc, _ = run_main_with_stand_ins(monkeypatch, tmp_path, [d], "--update-card")
    assert rc == 2 and card.read_text() == before
    err = capsys.readouterr().err
    assert "would drop the results of imagewoof" in err and "--replace" in err


def test_update_card_refuses_a_folder_the_card_does_not_name_as_held_out(monkeypatch, tmp_path, capsys):
    """``train/imagenette`` and ``val/imagenette`` share a name: a training folder's figures were
    recorded, and shown in the app, as held-out."""
    card = tmp_path / "student.card.json"
    shutil.copy(CARD, card)
    before = card.read_text()
    assert "val/imagenette" in json.loads(before)["training_data"]["held_out_never_trained_on"]
    d = copy_photos(tmp_path / "train" / "imagenette", "imagenette", {TENCH: 2})
    rc, _ = run_main_with_stand_ins(monkeypatch, tmp_path, [d], "--update-card", "--replace")
    assert rc == 2 and card.read_text() == before
    assert "train/imagenette is not among the held-out folders" in capsys.readouterr().err
    assert evaluate.not_held_out(card, [tmp_path / "val" / "imagenette", d]) == ["train/imagenette"]
    assert evaluate.not_held_out(tmp_path / "none.card.json", [d]) == []  # no list: nothing to check against


def test_an_unreadable_photo_is_skipped_and_counted(tmp_path, capsys):
    """A truncated JPEG or a macOS ``._`` file ended the whole evaluation with a traceback."""
    from sepvit_viz import create_model

    d = copy_photos(tmp_path / "val" / "imagenette", "imagenette", {TENCH: 2})
    good = next((d / TENCH).iterdir())
    (d / TENCH / "._broken.jpg").write_bytes(b"\x00\x05\x16\x07")
    (d / TENCH / "truncated.jpg").write_bytes(good.read_bytes()[:200])
    model = create_model("sepvit_test", num_classes=1000).eval()
    (row,) = evaluate.evaluate_dirs(model, [d], batch_size=4)
    assert row["photos"] == 2 and row["unreadable_photos_skipped"] == 2
    err = capsys.readouterr().err
    assert "._broken.jpg" in err and "truncated.jpg" in err


def test_many_classes_agreement_compares_class_indices_not_names():
    """ "crane" names two classes (134 the bird, 517 the machine): the same name is not agreement."""
    rows = [
        {"class": "crane", "student": {"top1": "crane", "index": 517, "right": False},
         "teacher": {"top1": "crane", "index": 134, "right": True}},
        {"class": "tench", "student": {"top1": "tench", "index": 0, "right": True},
         "teacher": {"top1": "tench", "index": 0, "right": True}},
    ]  # fmt: skip
    assert evaluate.many_classes_summary(rows, "x")["agreement"] == 1


# ------------------------------------------------------------------------------ coverage text
def test_the_shipped_card_states_its_coverage():
    text = evaluate.coverage_note()
    assert text is not None
    card = json.loads(CARD.read_text())
    card_text = " ".join(card["coverage"].split())
    assert text == card_text  # the card's own words, whitespace collapsed, nothing added
    # generated, not written by hand: the text is what the training-data summary computes
    from sepvit_viz.training.data import coverage_text

    assert card_text == coverage_text(card["training_data"])
    assert f"{card['training_data']['classes_with_at_least_100_photos']} of the 1000" in text


def test_coverage_note_follows_the_card_beside_the_checkpoint(tmp_path):
    ckpt = tmp_path / "mine.safetensors"
    assert evaluate.coverage_note(ckpt) is None  # no card: nothing to say
    evaluate.card_path_for(ckpt).write_text(json.dumps({"coverage": "Only  tested on\ncats."}))
    assert evaluate.coverage_note(ckpt) == "Only tested on cats."  # this card's words only
    evaluate.card_path_for(ckpt).write_text("{not json")
    assert evaluate.coverage_note(ckpt) is None


# ------------------------------------------------------------------------------ example photos
def test_examples_are_scored_against_the_classes_their_attribution_lists(monkeypatch, tmp_path, capsys):
    import shutil as sh

    folder = tmp_path / "examples"
    folder.mkdir()
    for name in ("goldfish_435137.jpg", "church_d0fe8a.jpg"):
        sh.copy(ROOT / "assets" / "examples" / name, folder / name)
    (folder / "ATTRIBUTION.md").write_text(
        "| file | ImageNet class | author | source |\n|---|---|---|---|\n"
        "| goldfish_435137.jpg | 1 goldfish | a | b |\n| church_d0fe8a.jpg | 497 church | a | b |\n"
    )
    assert [(p.name, c) for p, c in evaluate.listed_examples(folder)] == [
        ("church_d0fe8a.jpg", 497),
        ("goldfish_435137.jpg", 1),
    ]
    rows = evaluate.evaluate_examples(FixedLogits(1), folder, teacher=FixedLogits(497))
    assert [(r["file"], r["student"]["right"], r["teacher"]["right"]) for r in rows] == [
        ("church_d0fe8a.jpg", False, True),
        ("goldfish_435137.jpg", True, False),
    ]
    assert rows[1]["student"]["top1"] == "goldfish" and rows[0]["class"] == "church"

    # through the command line: the card records how many the student gets right
    import sepvit_viz.model.weights

    monkeypatch.setattr(sepvit_viz.model.weights, "load_checkpoint", lambda path: FixedLogits(497))
    ckpt = tmp_path / "m.safetensors"
    assert evaluate.main(["--examples", str(folder), "--checkpoint", str(ckpt), "--update-card"]) == 0
    card = json.loads(evaluate.card_path_for(ckpt).read_text())
    assert card["examples"]["student_right"] == 1 and card["examples"]["photos"] == 2
    assert "church_d0fe8a.jpg: church -> church" in capsys.readouterr().out

    # the same folder as a many-classes measure: counts, with the teacher's beside them
    assert evaluate.many_classes_summary(rows, folder) == {
        "folder": "examples",
        "photos": 2,
        "classes": 2,
        "student_right": 1,
        "teacher_right": 1,
        "agreement": 0,
    }
    assert evaluate.many_classes_summary([rows[0], rows[0]], folder)["classes"] == 1  # classes, not photos
    assert evaluate.main(["--many-classes", str(folder), "--checkpoint", str(ckpt), "--update-card"]) == 0
    card = json.loads(evaluate.card_path_for(ckpt).read_text())
    assert card["many_classes"] == {"folder": "examples", "photos": 2, "classes": 2, "student_right": 1}
    assert card["examples"]["photos"] == 2  # the examples entry is left as it was
    assert "examples: 2 photos of 2 classes, student right on 1" in capsys.readouterr().out

    (folder / "goldfish_435137.jpg").unlink()  # listed but missing: a one-line error
    assert evaluate.main(["--examples", str(folder), "--checkpoint", str(ckpt)]) == 2
    assert evaluate.main(["--many-classes", str(folder), "--checkpoint", str(ckpt)]) == 2


def test_the_bundled_examples_are_listed_with_their_classes():
    listed = evaluate.listed_examples(ROOT / "assets" / "examples")
    assert 6 <= len(listed) <= 9
    assert sorted(p.name for p, _ in listed) == sorted(p.name for p in (ROOT / "assets" / "examples").glob("*.jpg"))
