"""Checkpoints: safetensors round trip, official layout, the golden reference, hostile files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import sepvit_viz
from sepvit_viz.model.weights import CheckpointError, load_checkpoint_file, load_state_dict_file, load_weights_into

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_sepvit_mini.safetensors"

torch.set_num_threads(1)


def test_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    model = sepvit_viz.create_model("sepvit_test", num_classes=4).eval()
    path = sepvit_viz.save_checkpoint(model, tmp_path / "m.safetensors", extra_metadata={"note": {"a": 1}})
    again = sepvit_viz.load_checkpoint(path)  # rebuilds its own model from the metadata
    assert again.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["note"]) == {"a": 1}


def test_pretrained_with_another_class_count_gets_a_fresh_head(tmp_path):
    full = sepvit_viz.create_model("sepvit_lite", pretrained=True)
    with pytest.warns(UserWarning, match="classifier is for 1000 classes, the model has 10"):
        ten = sepvit_viz.create_model("sepvit_lite", pretrained=True, num_classes=10)
    assert ten.head.out_features == 10
    trunk = {k: v for k, v in full.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, ten.state_dict()[k]) for k, v in trunk.items())
    with pytest.warns(UserWarning, match="the head starts fresh"):
        headless = sepvit_viz.create_model("sepvit_lite", pretrained=True, num_classes=0).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(headless(x), full.eval().forward_head(full.forward_features(x), pre_logits=True))
    # a checkpoint whose head fits the requested count keeps its head
    path = tmp_path / "ten.safetensors"
    sepvit_viz.save_checkpoint(ten, path)
    again = sepvit_viz.create_model("sepvit_lite", checkpoint_path=str(path), num_classes=10)
    assert torch.equal(again.head.weight, ten.head.weight)
    # without a class count, a misfit still fails loudly
    with pytest.raises(CheckpointError, match=r"head\.weight"):
        sepvit_viz.create_model("sepvit_lite", checkpoint_path=str(path))


def test_checkpoint_that_does_not_fit_names_keys_and_shapes(tmp_path):
    model = sepvit_viz.create_model("sepvit_test", num_classes=4)
    sd = model.state_dict()
    sd.pop("norm.weight")
    sd["head.weight"] = torch.zeros(9, 128)
    sd["surprise"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_weights_into(sepvit_viz.create_model("sepvit_test", num_classes=4), sd)
    msg = str(err.value)
    assert "norm.weight" in msg and "surprise" in msg and "head.weight" in msg and "(9, 128)" in msg


def test_corrupt_and_unsupported_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        sepvit_viz.load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="unsupported checkpoint type"):
        load_state_dict_file(tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        sepvit_viz.load_checkpoint(tmp_path / "missing.safetensors")
    no_meta = tmp_path / "nometa.safetensors"
    save_file({"a": torch.zeros(1)}, str(no_meta))
    with pytest.raises(CheckpointError, match="no 'config' metadata, so it is not a SepViT checkpoint"):
        sepvit_viz.load_checkpoint(no_meta)


def test_a_pth_file_given_to_load_checkpoint_says_how_to_load_it(tmp_path):
    """load_checkpoint reads safetensors only; a .pth got "header too large" and nothing more."""
    pth = tmp_path / "model.pth"
    torch.save({"head.weight": torch.zeros(2, 2)}, pth)
    with pytest.raises(
        CheckpointError, match=r"a \.pth file is a PyTorch pickle: read its state dict with load_state_dict"
    ):
        sepvit_viz.load_checkpoint(pth)
    assert set(load_state_dict_file(pth)) == {"head.weight"}  # the route the message names works


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/sepvit_viz_pwned_marker",))


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = Path("/tmp/sepvit_viz_pwned_marker")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_state_dict_file(evil)
    assert not marker.exists()


def test_pt_state_dict_loads_with_weights_only(tmp_path):
    model = sepvit_viz.create_model("sepvit_test", num_classes=3)
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "m.pt")
    other = sepvit_viz.create_model("sepvit_test", num_classes=3)
    load_weights_into(other, tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_hub_repo_ids_are_validated():
    for bad in ["", "noslash", "../etc/passwd", "a/b/c", "owner/na me", "/abs/path"]:
        with pytest.raises(CheckpointError, match="repo id"):
            sepvit_viz.load_from_hub(bad)
    with pytest.raises(CheckpointError, match="safetensors"):
        sepvit_viz.load_from_hub("owner/name", filename="model.pt")
    with pytest.raises(CheckpointError, match="revision"):
        sepvit_viz.load_from_hub("owner/name", revision="main; rm -rf /")


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (ConnectionError("[Errno -2] Name or service not known"), "(no connection)"),
        (TimeoutError("timed out"), "(no answer within 0.5 s)"),
    ],
)
def test_an_unreachable_hub_is_named_for_what_happened(monkeypatch, tmp_path, failure, says):
    import huggingface_hub

    def fail(*args, **kwargs):
        try:
            raise failure
        except type(failure) as inner:  # raised from the network error, as the client libraries do
            raise RuntimeError("request failed") from inner

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", fail)
    with pytest.raises(CheckpointError) as info:
        sepvit_viz.load_from_hub("owner/name", cache_dir=tmp_path, timeout=0.5)
    message = str(info.value)
    assert "cannot be reached" in message and message.endswith(says), message
    assert "RuntimeError" not in message and "Errno" not in message


def test_a_hub_file_too_large_for_a_sepvit_checkpoint_is_not_downloaded(monkeypatch, tmp_path):
    import types

    import huggingface_hub

    from sepvit_viz.model.weights import DEFAULT_CHECKPOINT

    downloads = []

    def download(**kwargs):
        downloads.append(kwargs["repo_id"])
        return str(DEFAULT_CHECKPOINT)

    sizes = {"owner/huge": 5 * 2**30, "owner/small": DEFAULT_CHECKPOINT.stat().st_size}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_url", lambda repo, *a, **k: repo)
    monkeypatch.setattr(
        huggingface_hub, "get_hf_file_metadata", lambda url, **k: types.SimpleNamespace(size=sizes[url])
    )
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(CheckpointError, match=r"5,120 MB, more than the 400 MB .* not downloaded"):
        sepvit_viz.load_from_hub("owner/huge", cache_dir=tmp_path)
    assert downloads == []
    model = sepvit_viz.load_from_hub("owner/small", cache_dir=tmp_path)  # a checkpoint's size: fetched
    assert downloads == ["owner/small"] and model.config.name == "sepvit_lite"


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.fail(f"the golden reference {REFERENCE} is missing (CI has ../shared beside the checkout)")
    tensors = load_file(str(REFERENCE))
    with safe_open(str(REFERENCE), "pt") as f:
        meta = f.metadata()
    return tensors, json.loads(meta["config"])


def test_official_checkpoint_reproduces_logits_and_every_attention_map(reference):
    tensors, config = reference
    state = {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}
    model = sepvit_viz.from_official(state, config)
    seen = {}
    handles = []
    for block in model.iter_blocks():
        stage, index = block.stage, block.index
        handles.append(
            block.attn.dwa_tap.register_forward_hook(
                lambda m, a, out, k=f"attention.blocks.{stage}.{index}.attn.DSA_attn_drop": seen.__setitem__(k, out)
            )
        )
        if block.kind != "global":
            handles.append(
                block.attn.pwa_tap.register_forward_hook(
                    lambda m, a, out, k=f"attention.blocks.{stage}.{index}.attn.PSA_attn_drop": seen.__setitem__(k, out)
                )
            )
    with torch.no_grad():
        logits = model(tensors["input"])
    for h in handles:
        h.remove()
    assert torch.allclose(logits, tensors["logits"], atol=1e-5), (logits - tensors["logits"]).abs().max()
    expected = {k for k in tensors if k.startswith("attention.")}
    assert set(seen) == expected
    for key in expected:
        assert seen[key].shape == tensors[key].shape, key
        assert torch.allclose(seen[key], tensors[key], atol=1e-5), key
    # the fused path gives the same logits
    with torch.no_grad():
        assert torch.allclose(model(tensors["input"]), tensors["logits"], atol=1e-5)


def test_official_layout_conversion_and_misfit_errors(reference):
    tensors, config = reference
    state = {k[len("state_dict.") :]: v for k, v in tensors.items() if k.startswith("state_dict.")}
    converted = sepvit_viz.checkpoint_filter_fn(state)
    assert "stages.0.blocks.0.attn.qkv.weight" in converted
    assert "stages.1.pos_conv.proj.weight" in converted
    # the whole reference bundle is accepted too (its state_dict.* entries are used)
    model = sepvit_viz.from_official(tensors, config)
    assert model.head.out_features == 10
    broken = dict(state)
    broken["blocks.0.0.attn.DSA_qkv.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"stages\.0\.blocks\.0\.attn\.qkv\.weight"):
        sepvit_viz.from_official(broken, config)
    with pytest.raises(CheckpointError, match="official SepViT layout"):
        sepvit_viz.checkpoint_filter_fn({**state, "blocks.0.0.weird": torch.zeros(1)})
    # the commonest mistake, the wrong class count, is refused before building and still names the
    # keys and both shapes (the check runs on a meta-device model)
    with pytest.raises(CheckpointError, match=r"head\.weight: checkpoint \(10, 128\) vs model \(1000, 128\)"):
        sepvit_viz.from_official(state, {**config, "num_classes": 1000})
    with pytest.raises(CheckpointError, match=r"stages\.0\.patch_embed\.proj\.weight: checkpoint \(16, 3, 7, 7\)"):
        sepvit_viz.from_official(state, {**config, "embed_dims": [32, 64, 128, 256], "num_heads": [1, 2, 4, 8]})
    odd_tokens = {**state, "blocks.0.0.win_tokens": torch.zeros(1, 63, 1, 16)}  # 63: no square grid
    with pytest.raises(
        CheckpointError, match=r"stages\.0\.blocks\.0\.window_tokens: window tokens of shape \(1, 63, 1, 16\)"
    ):
        sepvit_viz.from_official(odd_tokens, config)


def test_window_tokens_cannot_amplify_a_small_file_into_a_big_model(tmp_path):
    """Window tokens are resized from the file's grid to the model's: a file of a few tiny token
    tensors whose config asks for a huge token grid (reference 2048 px, window 1) must be refused
    before anything is allocated, and tokens whose channels differ must never reach the resize."""
    from sepvit_viz.model.config import SepViTConfig

    cfg = SepViTConfig(
        embed_dims=(64, 64, 64, 64),
        depths=(4, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
        window_patterns=((1,), (7,), (7,), (7,)),
        ref_img_size=2048,
        num_classes=10,
    )
    # each stage-1 block would hold a 512 x 512 grid of 64-channel tokens: 16.8M numbers, 64 MiB
    tokens = {f"stages.0.blocks.{j}.window_tokens": torch.zeros(1, 1, 1, 64) for j in range(4)}
    # enough other numbers to pass the parameter estimate, which leaves the tokens out
    tokens["filler"] = torch.zeros(600_000)
    path = tmp_path / "tokens.safetensors"
    save_file(tokens, str(path), metadata={"config": cfg.to_json()})
    with pytest.raises(CheckpointError, match=r"describes a model of 6\d\.\dM numbers but the file holds only 0\.6M"):
        sepvit_viz.load_checkpoint(path)
    # channels other than the model's are refused by name before any interpolation
    model = sepvit_viz.create_model("sepvit_test")
    sd = dict(model.state_dict())
    sd["stages.0.blocks.0.window_tokens"] = torch.zeros(1, 16, 1, 999)
    with pytest.raises(CheckpointError, match=r"stages\.0\.blocks\.0\.window_tokens: checkpoint \(1, 16, 1, 999\)"):
        sepvit_viz.checkpoint_filter_fn(sd, model)
    # a grid saved at another reference size is still resized (same channels)
    sd["stages.0.blocks.0.window_tokens"] = torch.randn(1, 16, 1, 16)
    assert sepvit_viz.checkpoint_filter_fn(sd, model)["stages.0.blocks.0.window_tokens"].shape == (1, 64, 1, 16)


def test_hostile_config_metadata_is_refused_before_allocating(tmp_path):
    from sepvit_viz.model.config import SepViTConfig

    path = tmp_path / "huge.safetensors"
    huge = SepViTConfig(embed_dims=(1024, 2048, 4096, 4096), num_heads=(8, 16, 32, 32), depths=(1, 2, 24, 2))
    save_file({"a": torch.zeros(1)}, str(path), metadata={"config": huge.to_json()})
    with pytest.raises(CheckpointError, match="describes a model of at least"):
        sepvit_viz.load_checkpoint(path)


def test_model_note_is_one_line_drawn_from_the_card(tmp_path):
    import json

    from sepvit_viz.model.weights import card_path_for, model_note

    ckpt = tmp_path / "m.safetensors"
    assert model_note(ckpt) is None  # no card, nothing to say
    card = {
        "coverage": "old text",
        "training_data": {
            "total_photos": 180367,
            "classes_with_at_least_100_photos": 296,
            "held_out_never_trained_on": ["val/imagewoof", "val/x"],
        },
        "evaluation": {
            "results": {"imagewoof": {"student_top1": 0.605, "teacher_top1": 0.805}, "x": {"student_top1": 0.2}}
        },
    }
    card_path_for(ckpt).write_text(json.dumps(card))
    note = model_note(ckpt)
    assert "\n" not in note
    assert note.startswith("Distilled from EfficientNet-Lite0 on 180,367 photos; 296 of the 1000 classes")
    assert "Held-out top-1: imagewoof 61% (teacher 81%), x 20%." in note  # halves round up, as the README's
    card["evaluation"]["limit_per_folder"] = 8  # a quick subset run says so
    card["evaluation"]["results"]["train-folder"] = {"student_top1": 0.99}  # not held out: not shown
    card_path_for(ckpt).write_text(json.dumps(card))
    assert "Held-out top-1 (on at most 8 photos per folder): imagewoof 61% (teacher 81%), x 20%." in model_note(ckpt)
    card["evaluation"]["results"]["x"]["folder"] = "train/x"  # measured on a training folder of that name
    card_path_for(ckpt).write_text(json.dumps(card))
    assert "x 20%" not in model_note(ckpt) and "imagewoof 61%" in model_note(ckpt)
    card["evaluation"]["results"]["x"]["folder"] = "val/x"
    assert "different classes" not in model_note(ckpt)  # no many-classes measure on this card
    card["many_classes"] = {"folder": "examples", "photos": 36, "classes": 35, "student_right": 3, "teacher_right": 30}
    card_path_for(ckpt).write_text(json.dumps(card))
    assert "x 20%. On 36 photos of 35 different classes it names 3 right (teacher 30). Expect" in model_note(ckpt)
    card["many_classes"] = "garbled"  # a malformed entry is left out, the rest stays
    card_path_for(ckpt).write_text(json.dumps(card))
    assert "different classes" not in model_note(ckpt) and "imagewoof 61%" in model_note(ckpt)
    del card["training_data"]["classes_with_at_least_100_photos"]  # an older card: its coverage text
    card_path_for(ckpt).write_text(json.dumps(card))
    assert model_note(ckpt) == "old text"


def test_the_readme_quotes_the_shipped_cards_figures():
    """The README's table of the shipped checkpoint is written by hand: it must say what the card says."""
    import json
    import re

    from sepvit_viz.model.weights import DEFAULT_CHECKPOINT, card_path_for

    card = json.loads(card_path_for(DEFAULT_CHECKPOINT).read_text())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = re.findall(
        r"^\| held-out (\S+) .*?\| top-1 \*\*([\d.]+)%\*\* \(teacher ([\d.]+)%\).*?([\d.]+)% \|$", readme, re.M
    )
    assert len(rows) == len(card["evaluation"]["results"]) >= 4
    for name, student, teacher, agreement in rows:
        r = card["evaluation"]["results"][name.lower()]
        assert (float(student), float(teacher), float(agreement)) == (
            round(100 * r["student_top1"], 1),
            round(100 * r["teacher_top1"], 1),
            round(100 * r["agreement"], 1),
        ), name
    many = card["many_classes"]
    expected = f"| {many['photos']} photos of {many['classes']} other classes"
    assert expected in readme
    assert f"right on **{many['student_right']}** (teacher {many['teacher_right']}) |" in readme


def test_the_quoted_attribution_scorecard_was_measured_on_the_shipped_checkpoint():
    """README and benchmarks/results_scorecard.json name the run they scored: it must be the shipped one.

    A new checkpoint ships with a new scorecard (benchmarks/bench_attribution.py, docs/attribution.md),
    or the README stops calling its figures the shipped checkpoint's.
    """
    import json
    import re

    from sepvit_viz.model.weights import DEFAULT_CHECKPOINT, card_path_for

    root = Path(__file__).resolve().parents[1]
    shipped = json.loads(card_path_for(DEFAULT_CHECKPOINT).read_text())["run"]  # e.g. "run23"
    readme = " ".join((root / "README.md").read_text().split())
    quoted = re.findall(r"32 Imagenette photos, run (\d+)'s checkpoint, the shipped one", readme)
    assert quoted == [shipped.removeprefix("run")]
    scored = json.loads((root / "benchmarks" / "results_scorecard.json").read_text())["args"]["checkpoint"]
    assert scored.startswith(f"run {shipped.removeprefix('run')} ")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("depths", "[Infinity, 1, 1, 1]", "depths must be a whole number, got inf"),
        ("embed_dims", "[16, Infinity, 64, 128]", "embed_dims must be a whole number, got inf"),
        ("num_heads", "[1, 1, NaN, 4]", "num_heads must be a whole number, got nan"),
        ("window_patterns", "[[7], [Infinity], [7], [7]]", "window_patterns must be a whole number, got inf"),
        ("window_patterns", "[[], [], [], []]", "every stage needs at least one window size"),
        ("patch_size", "Infinity", "patch_size must be a whole number, got inf"),
        ("mlp_ratio", "NaN", "mlp_ratio must be a finite number, got nan"),
        ("depths", "7", "depths must be a list of whole numbers, got 7"),
    ],
)
def test_malformed_config_metadata_is_a_checkpoint_error_with_its_reason(tmp_path, field, value, says):
    """Infinity in a count ended in an OverflowError, empty window patterns in "max() arg is an empty
    sequence" (a ValueError from the range check), neither a CheckpointError: the app's Hub loader,
    which catches CheckpointError, let them through."""
    model = sepvit_viz.create_model("sepvit_test")
    text = json.dumps({**model.config.to_dict(), field: "@"}).replace('"@"', value)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"config": text})
    with pytest.raises(CheckpointError) as info:
        sepvit_viz.load_checkpoint(path)
    assert str(info.value).startswith("bad.safetensors: invalid config metadata (") and says in str(info.value)


def test_the_apps_hub_loader_says_why_a_downloaded_checkpoint_is_refused(monkeypatch, tmp_path):
    import huggingface_hub

    from sepvit_viz.serving.models import MODEL_HUB, ModelStore
    from sepvit_viz.validation import SettingsError

    model = sepvit_viz.create_model("sepvit_test")
    text = json.dumps({**model.config.to_dict(), "depths": "@"}).replace('"@"', "[Infinity, 1, 1, 1]")
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"config": text})
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: str(path))  # no network
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **k: str(path))
    with pytest.raises(SettingsError) as info:
        ModelStore().get(MODEL_HUB, "owner/name")
    message = str(info.value)
    assert "Could not load owner/name" in message and "depths must be a whole number, got inf" in message


def test_a_folder_or_garbage_pt_says_so_in_one_line(tmp_path):
    """A folder named like a checkpoint was an "unsupported checkpoint type '.png'" (or "not found");
    a garbage .pt gave torch's paragraphs on weights_only, filing issues and its documentation."""
    folder = tmp_path / "w.png"
    folder.mkdir()
    for load in (load_state_dict_file, sepvit_viz.load_checkpoint, lambda p: load_checkpoint_file(p, "sepvit_test")):
        with pytest.raises(CheckpointError, match=r"w\.png is a folder, not a checkpoint file"):
            load(folder)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(garbage, "sepvit_test")
    message = str(info.value)
    assert message.startswith("garbage.pt could not be loaded safely as PyTorch weights (weights_only=True): ")
    assert "\n" not in message and "Please file an issue" not in message and len(message) < 300, message


def test_the_same_network_with_window_sizes_spelled_per_block_is_not_another_architecture(tmp_path):
    """An official-style config (``ws`` lists every block's window) counted as another network than
    the variant it is, and render warned that ``--model sepvit_lite is ignored``."""
    from sepvit_viz.cliargs import model_mismatch
    from sepvit_viz.model.config import VARIANTS, SepViTConfig
    from sepvit_viz.model.weights import differs_from_variant

    lite = VARIANTS["sepvit_lite"]
    official = {
        "embed_dims": list(lite.embed_dims),
        "num_heads": list(lite.num_heads),
        "depths": list(lite.depths),
        "ws": [list(lite.stage_window_sizes(s)) for s in range(lite.num_stages)],  # [[7], [7, 14], [7, 14, 7, ...]]
        "qkv_bias": True,
    }
    spelled = SepViTConfig.from_official(official)
    assert spelled.window_patterns != lite.window_patterns  # the same network, spelled otherwise
    assert not differs_from_variant(spelled, "sepvit_lite")
    assert model_mismatch(spelled, "sepvit_lite", True, "official.safetensors") is None
    # a block with another window, or another field, is still another network
    other_ws = [*official["ws"][:3], [7, 14]]
    assert differs_from_variant(SepViTConfig.from_official({**official, "ws": other_ws}), "sepvit_lite")
    assert differs_from_variant(spelled.replace(layer_norm_eps=1e-5), "sepvit_lite")
    assert "holds its own architecture" in model_mismatch(spelled, "sepvit_tiny", True, "official.safetensors")


@pytest.mark.parametrize(
    ("config", "says", "never"),
    [
        # the range check quoted its placeholder size: "but the file holds only 4611686018427.4M numbers"
        ("in_chans", "its config is outside the supported range (input channels over 64)", "4611686018427"),
        # a bare KeyError text: "invalid config metadata ('embed_dims')"
        ({"ws": 5}, "invalid config metadata (missing field 'embed_dims')", "('embed_dims')"),
    ],
)
def test_config_metadata_messages_say_what_is_wrong(tmp_path, config, says, never):
    from sepvit_viz.model.weights import ConfigMetadataError, read_checkpoint_config

    model = sepvit_viz.create_model("sepvit_test")
    meta = config if isinstance(config, dict) else {**model.config.to_dict(), "in_chans": 1e30}
    path = tmp_path / "bad.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"config": json.dumps(meta)}
    )
    for read in (sepvit_viz.load_checkpoint, read_checkpoint_config):
        with pytest.raises(ConfigMetadataError) as info:
            read(path)
        message = str(info.value)
        assert message.startswith("bad.safetensors: ") and says in message and never not in message, message


def test_one_hub_id_rule_for_deploy_the_app_and_load_from_hub(monkeypatch, tmp_path):
    """Three copies of the repo-id check (deploy, the app's model choice, load_from_hub); the revision
    rule of the app refused ``..``, load_from_hub's did not."""
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    from sepvit_viz import deploy
    from sepvit_viz.serving.models import MODEL_HUB, ModelStore
    from sepvit_viz.validation import SettingsError, is_hub_repo_id, is_hub_revision

    def unreachable(*args, **kwargs):
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    store = ModelStore(replicas=1)
    for repo, revision in [
        ("owner/name", None),
        ("owner/name", "v1.0"),
        ("owner/name", "a..b"),
        ("owner/na..me", None),
        ("noslash", None),
        ("../etc", None),
        ("owner/name", "a b"),
    ]:
        good = is_hub_repo_id(repo) and (revision is None or is_hub_revision(revision))
        assert (deploy.repo_id_problem(repo) is None) == is_hub_repo_id(repo), repo
        try:
            store.resolve(MODEL_HUB, repo, revision)
            app_ok = True
        except SettingsError:
            app_ok = False
        with pytest.raises(CheckpointError) as info:  # a good id gets as far as the (unreachable) Hub
            sepvit_viz.load_from_hub(repo, revision=revision, cache_dir=tmp_path, timeout=0.5)
        loader_ok = "cannot be reached" in str(info.value)
        assert app_ok == loader_ok == good, (repo, revision, str(info.value))
    assert not is_hub_revision("a..b") and not is_hub_repo_id(None)
