"""Recording runs that were not shipped in the shipped card (``sepvit_viz.training.card``)."""

from __future__ import annotations

import json

import pytest

from sepvit_viz.training.card import carry_other_runs, main, mean_agreement, mean_top1, record_other_runs


def _run_card(name: str, parent: str, top1: tuple[float, float], right: int = 5) -> dict:
    return {
        "run": name,
        "initialised_from": {"checkpoint": f"runs/{parent}/x.safetensors", "run": parent},
        "steps": 10,
        "images_seen": 640,
        "train_time_hours": 0.5,
        "optimizer": {"lr": 3e-4},
        "evaluation": {
            "results": {
                "a": {"photos": 10, "student_top1": top1[0], "teacher_top1": 0.9},
                "b": {"photos": 10, "student_top1": top1[1], "teacher_top1": 0.8},
            }
        },
        "many_classes": {"folder": "examples", "photos": 36, "student_right": right, "teacher_right": 30},
    }


SHIPPED = {"run": "run12", "lineage": [{"run": "run10"}, {"run": "run11"}], "evaluation": {"results": {}}}


def test_mean_top1_averages_the_folders() -> None:
    assert mean_top1(_run_card("r", "p", (0.5, 0.25))) == pytest.approx(0.375)
    assert mean_top1({"run": "r"}) is None


def test_mean_agreement_reads_only_the_folders_with_an_agreement_target() -> None:
    card = {
        "evaluation": {
            "results": {
                "a": {"student_top1": 0.7, "agreement": 0.6},
                "b": {"student_top1": 0.3, "agreement": 0.4},
                "c": {"student_top1": 0.8, "agreement": 0.1},  # no agreement target: left out
            },
            "targets": {"a": {"agreement_min": 0.75}, "b": {"agreement_min": 0.5}, "c": {"agreement_min": None}},
        }
    }
    assert mean_agreement(card) == pytest.approx(0.5)
    card, _ = record_other_runs(SHIPPED, [{**card, "run": "run28", "initialised_from": {"run": "run27"}}])
    assert card["other_runs"][0]["mean_agreement"] == 0.5
    assert mean_agreement(_run_card("r", "p", (0.5, 0.25))) is None  # no targets recorded


def test_a_run_off_the_chain_is_recorded_with_its_figures() -> None:
    card, messages = record_other_runs(SHIPPED, [_run_card("run13", "run12", (0.6, 0.2), right=5)], why="rule")
    [record] = card["other_runs"]
    assert record["run"] == "run13" and record["initialised_from"] == "run12"
    assert record["shipped"] is False and record["why_not_shipped"] == "rule"
    assert record["mean_top1"] == pytest.approx(0.4)
    assert record["many_classes"] == {"photos": 36, "student_right": 5, "teacher_right": 30}
    assert record["evaluation"]["a"]["student_top1"] == 0.6
    assert messages == ["run13: added"]
    assert "other_runs" not in SHIPPED  # the input card is not changed


def test_recording_a_run_again_replaces_it() -> None:
    card, _ = record_other_runs(SHIPPED, [_run_card("run13", "run12", (0.6, 0.2))])
    card, messages = record_other_runs(
        card, [_run_card("run13", "run12", (0.7, 0.3)), _run_card("run14", "run13", (0.1, 0.1))]
    )
    assert [r["run"] for r in card["other_runs"]] == ["run13", "run14"]
    assert card["other_runs"][0]["mean_top1"] == pytest.approx(0.5)
    assert messages == ["run13: replaced", "run14: added"]


def test_runs_of_the_chain_are_not_recorded_twice() -> None:
    card, messages = record_other_runs(
        SHIPPED, [_run_card("run11", "run10", (0.5, 0.5)), _run_card("run12", "run11", (0.5, 0.5))]
    )
    assert card["other_runs"] == []
    assert all("already in the card's lineage" in m for m in messages) and len(messages) == 2


def test_a_card_without_a_run_name_is_refused() -> None:
    with pytest.raises(ValueError, match="without a 'run' name"):
        record_other_runs(SHIPPED, [{"steps": 3}])


def test_command_line_updates_the_card_and_refuses_a_broken_one(tmp_path, capsys) -> None:
    shipped = tmp_path / "shipped.card.json"
    shipped.write_text(json.dumps(SHIPPED))
    run = tmp_path / "run13.card.json"
    run.write_text(json.dumps(_run_card("run13", "run12", (0.6, 0.2))))
    assert main([str(shipped), str(run), "--why", "mean 40% <= 45.7%"]) == 0
    assert json.loads(shipped.read_text())["other_runs"][0]["why_not_shipped"] == "mean 40% <= 45.7%"
    assert "run13: added" in capsys.readouterr().out

    broken = tmp_path / "broken.card.json"
    broken.write_text("{not json")
    before = shipped.read_text()
    assert main([str(shipped), str(broken)]) == 2
    assert "not a readable model card" in capsys.readouterr().err
    assert shipped.read_text() == before


def test_a_low_resolution_run_says_so_in_its_record() -> None:
    run_card = {
        **_run_card("run13", "run12", (0.6, 0.2)),
        "augmentation": {"low_resolution": {"prob_by_folder": {"x": 0.5}}},
    }
    card, _ = record_other_runs(SHIPPED, [run_card, _run_card("run15", "run12", (0.6, 0.2))])
    assert card["other_runs"][0]["low_resolution"] == {"prob_by_folder": {"x": 0.5}}
    assert "low_resolution" not in card["other_runs"][1]


def test_a_weight_average_run_records_its_decay() -> None:
    run_card = {**_run_card("run27", "run23", (0.6, 0.2)), "optimizer": {"lr": 1e-4, "weight_average_decay": 0.999}}
    plain = {**_run_card("run26", "run23", (0.6, 0.2)), "optimizer": {"lr": 1e-4, "weight_average_decay": None}}
    card, _ = record_other_runs(SHIPPED, [run_card, plain])
    assert card["other_runs"][0]["weight_average_decay"] == 0.999
    assert "weight_average_decay" not in card["other_runs"][1]


def test_a_new_card_carries_the_old_cards_runs_off_the_chain(tmp_path, capsys) -> None:
    old, _ = record_other_runs(
        SHIPPED, [_run_card("gpu3", "run10", (0.4, 0.2)), _run_card("run13", "run12", (0.5, 0.2))]
    )
    new = {"run": "run14", "lineage": [{"run": "run12"}, {"run": "run13"}], "other_runs": []}
    card, messages = carry_other_runs(new, old)
    # run13 is the new card's ancestor now: not carried as a run off the chain
    assert [r["run"] for r in card["other_runs"]] == ["gpu3"]
    assert card["other_runs"][0] == old["other_runs"][0]
    assert messages == ["gpu3: carried", "run13: already in the card, not carried"]
    again, messages = carry_other_runs(card, old)
    assert again["other_runs"] == card["other_runs"] and messages[0] == "gpu3: already in the card, not carried"

    new_path, old_path = tmp_path / "new.card.json", tmp_path / "old.card.json"
    new_path.write_text(json.dumps(new))
    old_path.write_text(json.dumps(old))
    assert main([str(new_path), "--carry-from", str(old_path)]) == 0
    assert [r["run"] for r in json.loads(new_path.read_text())["other_runs"]] == ["gpu3"]
    with pytest.raises(SystemExit):
        main([str(new_path)])  # nothing to record and nothing to carry
    assert "--carry-from" in capsys.readouterr().err


def test_carried_entries_get_the_means_their_own_figures_give() -> None:
    """Entries recorded before ``mean_agreement`` existed (run 24's) get it from their own evaluation,
    over the folders with an agreement target (imagewoof has none)."""
    old_entry = {
        "run": "run24",
        "shipped": False,
        "evaluation": {
            "imagenette": {"student_top1": 0.75, "agreement": 0.70},
            "mini-imagenet": {"student_top1": 0.38, "agreement": 0.50},
            "tiny-imagenet": {"student_top1": 0.23, "agreement": 0.42},
            "imagewoof": {"student_top1": 0.76, "agreement": 0.99},
        },
    }
    card, _ = carry_other_runs(
        {"run": "run28", "lineage": [{"run": "run23"}]}, {"run": "run23", "other_runs": [old_entry]}
    )
    (entry,) = card["other_runs"]
    # an entry the card already holds (inherited when distill wrote it) is filled the same way
    inherited, _ = carry_other_runs({"run": "run28", "lineage": [{"run": "run23"}], "other_runs": [old_entry]}, {})
    assert inherited["other_runs"] == [entry]
    assert entry["mean_agreement"] == pytest.approx((0.70 + 0.50 + 0.42) / 3, abs=1e-4)
    assert entry["mean_top1"] == pytest.approx((0.75 + 0.38 + 0.23 + 0.76) / 4, abs=1e-4)


def test_a_checkpoint_from_another_branch_keeps_the_replaced_chain_on_record() -> None:
    """run29 branches from run22; the shipped card was run23's (from run22): run23 must stay on record."""
    shipped = {
        **_run_card("run23", "run22", (0.6, 0.4)),
        "lineage": [{"run": "run21"}, {"run": "run22"}],
        "other_runs": [{"run": "run20", "shipped": False}],
    }
    new = {"run": "run29", "lineage": [{"run": "run21"}, {"run": "run22"}]}
    card, _ = carry_other_runs(new, shipped)
    runs = {r["run"]: r for r in card["other_runs"]}
    assert set(runs) == {"run20", "run23"}
    assert runs["run23"]["shipped"] == "before this checkpoint" and runs["run23"]["mean_top1"] == pytest.approx(0.5)
    # a branch further back: the replaced card's lineage after the branch point comes along too
    card, _ = carry_other_runs({"run": "run30", "lineage": [{"run": "run21"}]}, shipped)
    assert {r["run"] for r in card["other_runs"]} == {"run20", "run22", "run23"}


def test_lineage_records_aligned_features_and_warmup() -> None:
    from sepvit_viz.training.distill import lineage_record

    run_card = {
        **_run_card("run24", "run23", (0.6, 0.2)),
        "optimizer": {"lr": 1e-4, "warmup_fraction": 0.02},
        "feature_loss": {"weight": 1.0, "aligned_to_student_tokens": True},
    }
    rec = lineage_record(run_card)
    assert rec["aligned_features"] is True and rec["warmup_fraction"] == 0.02
    assert "aligned_features" not in lineage_record(_run_card("run22", "run21", (0.6, 0.2)))


@pytest.mark.parametrize(
    ("role", "field", "value"),
    [
        ("card", "evaluation", "x"),
        ("card", "lineage", 5),
        ("card", "lineage", [1, 2]),
        ("card", "run", ["a"]),
        ("card", "other_runs", [{"run": "gpu3", "evaluation": {"a": {"student_top1": "x"}}}]),
        ("run", "evaluation", {"results": [1]}),
        ("run", "evaluation", {"results": {"a": {"student_top1": "x"}}}),
        ("run", "optimizer", "x"),
        ("run", "run", ["a"]),
        ("run", "run", ""),
        ("carry", "other_runs", 5),
        ("carry", "other_runs", ["gpu3"]),
        ("carry", "lineage", [{"run": {"a": 1}}]),
    ],
)
def test_cards_of_shapes_distill_never_writes_are_refused_in_one_line(tmp_path, capsys, role, field, value) -> None:
    """Valid JSON of unexpected shapes: one ``error:`` line naming the file, exit 2, nothing written."""
    shipped = tmp_path / "shipped.card.json"
    shipped.write_text(json.dumps(SHIPPED))
    good = tmp_path / "run13.card.json"
    good.write_text(json.dumps(_run_card("run13", "run12", (0.6, 0.2))))
    bad = tmp_path / "bad.card.json"
    if role == "card":
        bad.write_text(json.dumps({**SHIPPED, field: value}))
        argv, before = [str(bad), str(good)], bad.read_text()
    else:
        base = _run_card("run14", "run12", (0.5, 0.5)) if role == "run" else SHIPPED
        bad.write_text(json.dumps({**base, field: value}))
        flag = [str(bad)] if role == "run" else ["--carry-from", str(bad)]
        argv, before = [str(shipped), *flag], shipped.read_text()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: not a model card written by distill (") and err.count("\n") == 1, err
    assert (bad if role == "card" else shipped).read_text() == before


def test_a_deeply_nested_card_is_refused_in_one_line(tmp_path, capsys) -> None:
    shipped = tmp_path / "shipped.card.json"
    shipped.write_text(json.dumps(SHIPPED))
    deep = tmp_path / "deep.card.json"
    deep.write_text('{"run": "run13", "notes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main([str(shipped), str(deep)]) == 2
    assert capsys.readouterr().err == f"error: {deep}: not a model card written by distill (nested too deeply)\n"


def test_the_card_is_replaced_whole_or_left_as_it_was(tmp_path, capsys, monkeypatch) -> None:
    """Written to a temporary file beside it and moved over it: a failed write is one error line, and
    the card and its folder are as they were."""
    shipped = tmp_path / "shipped.card.json"
    shipped.write_text(json.dumps(SHIPPED))
    shipped.chmod(0o640)
    run = tmp_path / "run13.card.json"
    run.write_text(json.dumps(_run_card("run13", "run12", (0.6, 0.2))))

    def refuse(src, dst) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr("os.replace", refuse)
    assert main([str(shipped), str(run)]) == 2
    assert capsys.readouterr().err == f"error: {shipped}: cannot write it (Permission denied); the card is unchanged\n"
    assert json.loads(shipped.read_text()) == SHIPPED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run13.card.json", "shipped.card.json"]
    monkeypatch.undo()
    # through a symbolic link, the card it points to is updated and keeps its mode
    link = tmp_path / "link.card.json"
    link.symlink_to(shipped)
    assert main([str(link), str(run)]) == 0
    assert link.is_symlink() and (shipped.stat().st_mode & 0o777) == 0o640
    assert [r["run"] for r in json.loads(shipped.read_text())["other_runs"]] == ["run13"]
