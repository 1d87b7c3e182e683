"""``python -m sepvit_viz render``: PNGs and an index.html for a photo or a folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sepvit_viz
from sepvit_viz import cli
from sepvit_viz.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(RNG.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)).save(d / "cat.jpg")
    Image.fromarray(RNG.integers(0, 256, size=(60, 50, 4), dtype=np.uint8), "RGBA").save(d / "cat.png")
    (d / "notes.txt").write_text("not a photo")
    return d


def linked_files(index: Path) -> list[str]:
    return re.findall(r"src='([^']+)'", index.read_text())


def test_folder_renders_selected_blocks_and_views(folder, tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "render",
            str(folder),
            "--out",
            str(out),
            "--model",
            "sepvit_test",
            "--size",
            "64",
            "--block",
            "0,stages.1.blocks.1",
            "--views",
            "tokens,pwa_matrix,rollout",
            "--head",
            "max",
        ]
    )
    assert rc == 0
    # same stem twice: two folders, nothing overwritten
    assert sorted(p.name for p in out.iterdir()) == ["cat", "cat_2", "index.html"]
    for d in ("cat", "cat_2"):
        names = sorted(p.name for p in (out / d).iterdir())
        assert names == [
            "input.png",
            "rollout.png",
            "s1_b01_dssa_pwa_matrix.png",
            "s1_b01_dssa_tokens.png",
            "s2_b02_gsa_pwa_matrix.png",
            "s2_b02_gsa_tokens.png",
        ]
        assert Image.open(out / d / "input.png").size == (64, 64)
    index = out / "index.html"
    links = linked_files(index)
    assert len(links) == 2 * 6 and all((out / f).is_file() for f in links)
    text = index.read_text()
    assert "RANDOM weights" in text  # sepvit_test has no trained weights: said loudly
    assert "stage 2 · block 2 · GSA" in text


# sepvit_test at 64 px: (stage, block, kind) of its 7 blocks, 1-based as in the pictures' titles
TEST_BLOCKS = [
    "s1_b01_dssa",
    "s2_b01_dssa",
    "s2_b02_gsa",
    "s3_b01_dssa",
    "s3_b02_global",
    "s4_b01_global",
    "s4_b02_global",
]
WINDOW_VIEWS = ["composed", "pixel", "pwa_map", "pwa_matrix", "tokens"]


def test_every_block_is_named_by_stage_block_and_kind_and_global_blocks_write_no_pwa(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["render", str(folder / "cat.jpg"), "--out", str(out), "--model", "sepvit_test", "--size", "64"]) == 0
    model = sepvit_viz.create_model("sepvit_test")
    table = model.block_table(img_size=(64, 64))
    assert [f"s{b.stage + 1}_b{b.index + 1:02d}_{b.kind}" for b in table] == TEST_BLOCKS
    expected = {"input.png", "rollout.png", "s2_b01_dssa_vs_b02_gsa.png"}
    for tag in TEST_BLOCKS:
        views_ = WINDOW_VIEWS if not tag.endswith("global") else ["composed", "pixel", "tokens"]
        expected |= {f"{tag}_{v}.png" for v in views_}
    assert {p.name for p in (out / "cat").iterdir()} == expected  # no placeholder for a view a block lacks
    # the index links exactly the files written, and says why a global block has no PWA files
    text = (out / "index.html").read_text()
    assert sorted(linked_files(out / "index.html")) == sorted(
        ["cat/input.png", *(f"cat/{n}" for n in expected - {"input.png"})]
    )
    assert text.count("no pwa_map or pwa_matrix file") == 3
    # readable: every picture shows the photo at least PICTURE_WIDTH wide (the input is 64 px)
    for name in expected - {"input.png"}:
        assert Image.open(out / "cat" / name).size[0] >= cli.PICTURE_WIDTH, name
    # --help names the files the same way
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    helptext = capsys.readouterr().out
    assert "s<stage>_b<block>_<kind>_<view>.png" in helptext and "s<stage>_b<i>_dssa_vs_b<j>_gsa.png" in helptext
    assert "Global blocks (one window, no PWA) have no pwa_map or pwa_matrix file" in helptext


@pytest.mark.parametrize(
    "size", [(224, 224), (320, 224), (224, 320), (448, 448), (64, 48), (512, 512), (448, 64), (64, 448)]
)
def test_pictures_are_at_least_the_readable_width_and_the_apps_scale(size):
    """The photo's longer side reaches PICTURE_WIDTH: a narrow portrait is not blown up to that width."""
    k = cli.picture_scale(size)
    assert max(size) * k >= cli.PICTURE_WIDTH
    assert k >= sepvit_viz.viz.views.display_scale(size)
    assert max(size) * (k - 1) < cli.PICTURE_WIDTH or k == sepvit_viz.viz.views.display_scale(
        size
    )  # no bigger than needed


def test_pair_halves_are_labelled_with_their_kind(folder, tmp_path):
    out = tmp_path / "out"
    args = ["--model", "sepvit_test", "--size", "64", "--block", "1", "--views", "pair"]
    assert main(["render", str(folder / "cat.jpg"), "--out", str(out), *args]) == 0
    assert sorted(p.name for p in (out / "cat").iterdir()) == ["input.png", "s2_b01_dssa_vs_b02_gsa.png"]
    pair = np.asarray(Image.open(out / "cat" / "s2_b01_dssa_vs_b02_gsa.png").convert("RGB"))
    w = (pair.shape[1] - cli.PAIR_GAP) // 2
    halves = {"DSSA · stage 2 · block 1": pair[:, :w], "GSA · stage 2 · block 2": pair[:, w + cli.PAIR_GAP :]}
    for text, half in halves.items():
        band = cli.header(np.zeros((0, w, 3), np.uint8), text)  # the header line alone
        assert band.shape[0] > 0 and (band < 128).any()  # dark text on white
        assert np.array_equal(half[: band.shape[0]], band), text
    assert half.shape[1] >= cli.PICTURE_WIDTH


def test_checkpoint_single_photo_and_no_warning(folder, tmp_path):
    torch.manual_seed(1)
    model = sepvit_viz.create_model("sepvit_test", num_classes=7).eval()
    ckpt = sepvit_viz.save_checkpoint(model, tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    rc = main(
        [
            "render",
            str(folder / "cat.jpg"),
            "--out",
            str(out),
            "--checkpoint",
            str(ckpt),
            "--size",
            "48x64",
            "--block",
            "3",
            "--cmap",
            "viridis",
            "--point",
            "10,60",
            "--npz",
        ]
    )
    assert rc == 0
    text = (out / "index.html").read_text()
    assert "RANDOM" not in text and "class " in text  # 7 classes: generic names
    assert (out / "cat" / "maps.npz").is_file()
    assert Image.open(out / "cat" / "s3_b01_dssa_pixel.png").size[0] >= cli.PICTURE_WIDTH
    assert all((out / f).is_file() for f in linked_files(out / "index.html"))


def test_unreadable_photos_are_reported_not_fatal(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "render",
                str(folder),
                "--out",
                str(out),
                "--model",
                "sepvit_test",
                "--size",
                "48",
                "--block",
                "0",
                "--views",
                "tokens",
            ]
        )
        == 0
    )
    assert "could not render" in (out / "index.html").read_text()
    assert main(["render", str(folder / "broken.png"), "--out", str(tmp_path / "o2"), "--model", "sepvit_test"]) == 1


SHIPPED = ROOT / "assets" / "sepvit_lite_distilled.safetensors"


def test_shipped_checkpoint_is_fp16_with_its_config_and_the_cli_default():
    import argparse
    import json

    from safetensors import safe_open

    from sepvit_viz.cli import add_render_arguments
    from sepvit_viz.model import weights
    from sepvit_viz.viz.pipeline import load_model

    assert SHIPPED.is_file() and weights.DEFAULT_CHECKPOINT == SHIPPED
    assert weights.default_checkpoint_for("sepvit_lite") == SHIPPED
    with safe_open(str(SHIPPED), framework="pt") as f:  # the header only
        meta = f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    assert dtypes == {"F16"}
    config = json.loads(meta["config"])
    assert config["name"] == "sepvit_lite" and config["num_classes"] == 1000
    assert meta["format"] == weights.FORMAT_TAG
    # the render command's defaults: no --checkpoint, model sepvit_lite -> exactly the shipped weights
    args = add_render_arguments(argparse.ArgumentParser()).parse_args(["x.jpg", "--out", "o"])
    assert args.checkpoint is None and args.model == "sepvit_lite"
    model, warning = load_model(args.model, args.checkpoint)
    assert warning is None
    tensors, _ = weights.read_checkpoint(SHIPPED)
    state = model.state_dict()
    assert set(state) == set(tensors)
    assert all(torch.equal(state[k], tensors[k].to(state[k].dtype)) for k in tensors)


def test_predictions_come_with_the_coverage_note_and_outputs_stay_parseable(folder, tmp_path, capsys):

    out = tmp_path / "out"
    rc = main(["render", str(folder / "cat.jpg"), "--out", str(out), "--size", "64", "--block", "0"])
    rc_npz = main(["render", str(folder / "cat.png"), "--out", str(tmp_path / "o2"), "--size", "64", "--npz"])
    assert rc == rc_npz == 0
    captured = capsys.readouterr()
    from sepvit_viz.model.weights import model_note

    note = model_note(SHIPPED)  # the one line drawn from the shipped card
    assert note and "\n" not in note
    # stdout: still one "wrote ..." line per run; the note is one stderr line per run
    assert [line.split(" ")[0] for line in captured.out.splitlines()] == ["wrote", "wrote"]
    notes = [line for line in captured.err.splitlines() if line.startswith("NOTE on the predictions: ")]
    assert len(notes) == 2 and all(note in n for n in notes)
    # the index shows it above the top-5 lists; the arrays still load
    text = (out / "index.html").read_text()
    first_words = note.split(";")[0]
    assert "class='note'" in text and first_words in text and text.index("class='note'") < text.index("<ol>")
    with np.load(tmp_path / "o2" / "cat" / "maps.npz") as z:
        assert len(z.files) > 0
    # a model the card does not describe gets no note
    o3 = ["--out", str(tmp_path / "o3"), "--model", "sepvit_test", "--size", "48", "--block", "0", "--views", "tokens"]
    assert main(["render", str(folder / "cat.jpg"), *o3]) == 0
    assert "NOTE" not in capsys.readouterr().err
    assert "class='note'" not in (tmp_path / "o3" / "index.html").read_text()


def test_fit_aspect_keeps_the_photo_shape(folder, tmp_path):
    """``--fit aspect`` (issue 19 item 5): the 90 x 70 photo at ``--size 64`` is analysed at 96 x 64
    (shorter side 64, longer side 64 x 1.29 rounded to a multiple of 32), its pictures drawn at that
    shape; a point in the right part, which the square crop cuts away, is a valid query."""
    from sepvit_viz import cli

    common = ["--model", "sepvit_test", "--size", "64", "--block", "0", "--views", "tokens,pixel,composed"]
    out = tmp_path / "aspect"
    assert (
        main(["render", str(folder / "cat.jpg"), "--out", str(out), *common, "--fit", "aspect", "--point", "30,90"])
        == 0
    )
    assert Image.open(out / "cat" / "input.png").size == (96, 64)
    k = cli.picture_scale((64, 96))
    token = Image.open(out / "cat" / "s1_b01_dssa_tokens.png")
    # the token map: the photo k times larger beside its colour bar, under the header and title bands
    assert token.size[0] == 96 * k + 54 and token.size[1] > 64 * k
    crop = tmp_path / "crop"
    assert main(["render", str(folder / "cat.jpg"), "--out", str(crop), *common, "--fit", "crop"]) == 0
    assert Image.open(crop / "cat" / "input.png").size == (64, 64)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--block", "99"], "unknown block"),
        (["--cmap", "nope"], "colormap"),
        (["--views", "x"], "unknown views"),
        (["--alpha", "2"], "alpha"),
        (["--size", "8"], "input size"),
        (["--size", "9000x224"], "input size"),
        (["--head", "4"], "at most 4 head(s), 0 to 3"),  # sepvit_test: 1, 1, 1, 2, 2, 4, 4 heads
        (["--head", "2", "--block", "0,1"], "at most 1 head(s), 0 to 0"),
        (["--head=-1"], "head indices start at 0"),
        (["--block", ","], "names no block"),  # an empty selection rendered nothing and said rc 0
        (["--views", " "], "names no view"),
        (["--threads", "0"], "--threads must be 1 to 1024, got 0"),
        (["--threads", "1025"], "--threads must be 1 to 1024, got 1025"),
        (["--threads", "2147483648"], "--threads must be 1 to 1024"),  # was torch's "Overflow when unpacking long"
        (["--checkpoint", ""], "--checkpoint is empty: name a weights file"),  # silently used the default weights
    ],
)
def test_bad_arguments_fail_clearly(folder, tmp_path, capsys, extra, message):
    """Bad input: one ``error:`` line and exit status 2, as ``stats`` and ``evaluate`` answer (was 1)."""
    rc = main(["render", str(folder / "cat.jpg"), "--out", str(tmp_path / "o"), "--model", "sepvit_test", *extra])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the random-weights warning, where the model loads first
    assert rc == 2 and message in last and last.startswith("error: ") and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()  # --out is made only for good input (--head 4 made it, empty)


@pytest.mark.slow
def test_python_dash_m_entry_point(folder, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sepvit_viz",
            "render",
            str(folder / "cat.jpg"),
            "--out",
            str(out),
            "--model",
            "sepvit_test",
            "--size",
            "48",
            "--block",
            "0",
            "--views",
            "tokens",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (out / "cat" / "s1_b01_dssa_tokens.png").is_file()
    assert "WARNING" in run.stderr and "block" in run.stderr  # loud warning and the tqdm bar
    usage = subprocess.run([sys.executable, "-m", "sepvit_viz"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert usage.returncode == 2 and "render" in usage.stderr


def test_exif_rotated_photo_is_rendered_upright_as_in_the_app(tmp_path):
    """A phone photo stored sideways with EXIF orientation 6 is analysed the way it is shown (and the
    way the app reads it): a portrait photo gets a portrait input, the same pixels as the app's."""
    from sepvit_viz.serving.photos import load_photo
    from sepvit_viz.viz.pipeline import prepare_image

    upright = Image.fromarray(RNG.integers(0, 256, size=(90, 60, 3), dtype=np.uint8))  # 60 wide, 90 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    photo = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(photo, quality=95, exif=exif)  # stored 90 x 60
    out = tmp_path / "out"
    args = ["--model", "sepvit_test", "--size", "64", "--fit", "aspect", "--block", "0", "--views", "tokens"]
    assert main(["render", str(photo), "--out", str(out), *args]) == 0
    rendered = np.asarray(Image.open(out / "phone" / "input.png"))
    assert rendered.shape == (96, 64, 3)  # portrait: height 96, width 64
    np.testing.assert_array_equal(rendered, np.asarray(prepare_image(load_photo(str(photo)), 64, fit="aspect")))


def test_point_outside_the_input_is_a_clear_error_not_a_traceback(folder, tmp_path, capsys):
    common = ["--model", "sepvit_test", "--size", "64", "--block", "0", "--views", "pixel,composed"]
    # a square input: refused before any photo is read
    assert main(["render", str(folder / "cat.jpg"), "--out", str(tmp_path / "o"), *common, "--point", "70,10"]) == 2
    assert "--point 70,10 is outside the model input (64 x 64 pixels" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # the photo's shape: cat.jpg (90 x 70) is analysed at 96 x 64 and holds x = 80; cat.png (50 x 60) at
    # 64 x 64 does not: that photo is listed as not rendered, the other one is drawn
    out = tmp_path / "aspect"
    rc = main(["render", str(folder), "--out", str(out), *common, "--fit", "aspect", "--point", "10,80"])
    assert rc == 0
    assert (out / "cat" / "s1_b01_dssa_pixel.png").is_file()
    assert not (out / "cat_2").exists()
    text = (out / "index.html").read_text()
    assert "could not render: --point 10,80 is outside the model input (64 x 64 pixels" in text
    printed = capsys.readouterr()
    assert "1 failed" in printed.out
    # the terminal says which photo failed and why, not only the index
    assert re.search(r"skipped \S*cat\.png: --point 10,80 is outside the model input", printed.err), printed.err


def test_index_links_work_for_photo_names_with_url_characters(tmp_path):
    """``#``, ``?``, ``%`` and spaces in a photo's name end up in its folder's name: the links in
    index.html are percent-encoded, so each one still names an existing file."""
    from urllib.parse import unquote

    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(d / "shot #1 of 50% ?.png")
    out = tmp_path / "out"
    args = ["--model", "sepvit_test", "--size", "64", "--block", "0", "--views", "tokens", "--npz"]
    assert main(["render", str(d), "--out", str(out), *args]) == 0
    text = (out / "index.html").read_text()
    links = re.findall(r"(?:src|href)='([^']+)'", text)
    assert len(links) >= 4
    for link in links:
        assert not set("#? ") & set(link)
        assert (out / unquote(link)).is_file()


def test_npz_holds_the_maps_of_the_selected_blocks(folder, tmp_path):
    """``--npz`` with ``--block``: the maps in maps.npz are those of the blocks asked for (they were
    always block 0's), beside every block's raw DWA / PWA."""
    out = tmp_path / "out"
    args = ["--model", "sepvit_test", "--size", "64", "--block", "1,stages.1.blocks.1", "--views", "tokens"]
    assert main(["render", str(folder / "cat.jpg"), "--out", str(out), *args, "--npz"]) == 0
    with np.load(out / "cat" / "maps.npz") as z:
        files = set(z.files)
    names = [b.name for b in sepvit_viz.create_model("sepvit_test").iter_blocks()]
    selected = {names[1], "stages.1.blocks.1"}
    assert {f.rsplit(".", 1)[0] for f in files if f.endswith(".token_map")} == selected
    assert all(f"{n}.dwa" in files for n in names) and "rollout" in files


def test_npz_says_which_head_point_and_size_its_maps_are_for(folder, tmp_path):
    """``--head 1`` on a one-head block shows the mean of its heads: the file says so per block, and
    holds the point and the input size (with ``--fit aspect`` each photo has its own)."""
    out = tmp_path / "out"
    # sepvit_test: blocks 0-2 have one head, 3-4 two
    args = ["--model", "sepvit_test", "--size", "64", "--fit", "aspect", "--block", "2,3", "--views", "tokens"]
    cmd = ["render", str(folder / "cat.jpg"), "--out", str(out), *args, "--head", "1", "--point", "10,80", "--npz"]
    assert main(cmd) == 0
    names = [b.name for b in sepvit_viz.create_model("sepvit_test").iter_blocks()]
    with np.load(out / "cat" / "maps.npz") as z:
        assert str(z[f"{names[2]}.head"]) == "mean" and str(z[f"{names[3]}.head"]) == "1"
        assert z["point"].tolist() == [10, 80] and z["input_size"].tolist() == [64, 96]
    assert main(["render", str(folder / "cat.jpg"), "--out", str(tmp_path / "c"), *args, "--npz"]) == 0
    with np.load(tmp_path / "c" / "cat" / "maps.npz") as z:  # no --point: the centre
        assert z["point"].tolist() == [32, 48] and str(z[f"{names[3]}.head"]) == "mean"


def test_a_head_some_selected_blocks_lack_is_named_in_a_warning(folder, tmp_path, capsys):
    # sepvit_test: blocks 0-2 have one head, 3-4 two, 5-6 four
    args = ["--model", "sepvit_test", "--size", "64", "--block", "2,3", "--views", "tokens", "--head", "1"]
    assert main(["render", str(folder / "cat.jpg"), "--out", str(tmp_path / "o"), *args]) == 0
    err = capsys.readouterr().err
    assert "WARNING: --head 1: stages.1.blocks.1 has fewer heads; its pictures show the mean of heads" in err
    assert "stages.2.blocks.0" not in err.split("WARNING")[1].split("\n")[0]
    args[args.index("--head") + 1] = "0"  # every selected block has head 0: nothing to warn about
    assert main(["render", str(folder / "cat.jpg"), "--out", str(tmp_path / "o2"), *args]) == 0
    assert "WARNING: --head" not in capsys.readouterr().err
    args[args.index("--block") + 1], args[args.index("--head") + 1] = "1,2,3", "1"  # two lack head 1
    assert main(["render", str(folder / "cat.jpg"), "--out", str(tmp_path / "o3"), *args]) == 0
    err = capsys.readouterr().err
    assert "stages.1.blocks.0, stages.1.blocks.1 have fewer heads; their pictures show the mean" in err


def test_photo_names_never_leave_out_or_take_the_index(tmp_path):
    """A photo's stem named its folder unchecked: "..png" wrote pictures beside --out, "index.html.png"
    made a folder where the index goes (the batch ended in a traceback), and names that differ only in
    case shared one folder on case-insensitive file systems."""
    d = tmp_path / "photos"
    d.mkdir()
    for name in ("..png", "index.html.png", "Cat.png", "cat.jpg", ".hidden.png"):
        Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(d / name, format="PNG")
    out = tmp_path / "deep" / "out"
    args = ["--model", "sepvit_test", "--size", "64", "--block", "0", "--views", "tokens"]
    assert main(["render", str(d), "--out", str(out), *args]) == 0
    assert (out / "index.html").is_file()
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]  # nothing written beside out
    folders = [p.name for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 5 and len({f.casefold() for f in folders}) == 5
    assert not any(f.startswith(".") for f in folders)
    for link in linked_files(out / "index.html"):
        assert (out / link).resolve().is_relative_to(out.resolve())


def test_a_file_or_link_in_out_named_like_a_photo_is_left_alone(folder, tmp_path):
    """``--out`` already holding a file named like a photo's folder ended the batch in a
    FileExistsError traceback; a symbolic link there led the pictures outside ``--out``."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "cat").write_text("the user's file")
    shutil.copy(folder / "cat.jpg", folder / "dog.jpg")
    (out / "dog").symlink_to(elsewhere, target_is_directory=True)
    args = ["--model", "sepvit_test", "--size", "64", "--block", "0", "--views", "tokens"]
    assert main(["render", str(folder), "--out", str(out), *args]) == 0
    assert (out / "cat").read_text() == "the user's file" and list(elsewhere.iterdir()) == []
    assert {p.name for p in out.iterdir() if p.is_dir() and not p.is_symlink()} == {"cat_2", "cat_3", "dog_2"}
    assert all((out / f).is_file() for f in linked_files(out / "index.html"))


def test_a_photo_name_that_is_not_utf8_is_rendered_and_linked(tmp_path):
    """A name with Latin-1 bytes (an old camera archive) made index.html fail to encode: the batch
    ended in a UnicodeEncodeError after rendering everything, with no index."""
    from urllib.parse import unquote

    d = tmp_path / "photos"
    d.mkdir()
    name = os.path.join(os.fsencode(d), b"caf\xe9.png")
    Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(name, format="PNG")
    out = tmp_path / "out"
    args = ["--model", "sepvit_test", "--size", "64", "--block", "0", "--views", "tokens"]
    assert main(["render", str(d), "--out", str(out), *args]) == 0
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["caf_"]
    links = linked_files(out / "index.html")
    assert links and all((out / unquote(f)).is_file() for f in links)


def test_an_out_that_is_a_file_fails_clearly_before_the_model_loads(folder, tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("the model loaded first"))
    for out, message in ((afile, "is a file, not a folder"), (afile / "sub", "a part of that path is a file")):
        assert main(["render", str(folder / "cat.jpg"), "--out", str(out), "--model", "sepvit_test"]) == 2
        assert message in capsys.readouterr().err


def test_the_dispatcher_prints_help_to_stdout_and_names_an_unknown_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr()
    assert "render" in out.out and "stats" in out.out and out.err == ""
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'bogus'" in err and "render" in err


def test_several_sources_as_a_shell_glob_gives_them_render_each_photo_once(folder, tmp_path, capsys):
    other = tmp_path / "more"
    other.mkdir()
    Image.fromarray(RNG.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)).save(other / "dog.png")
    out = tmp_path / "out"
    args = ["--model", "sepvit_test", "--size", "48", "--block", "0", "--views", "tokens"]
    # what `render photos/*.jpg more` becomes after the shell; cat.jpg again through .. is the same photo
    sources = [str(folder / "cat.jpg"), str(folder / ".." / folder.name / "cat.jpg"), str(other)]
    assert main(["render", *sources, "--out", str(out), *args]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["cat", "dog"]
    assert main(["render", str(folder / "cat.jpg"), str(tmp_path / "missing.jpg"), "--out", str(out), *args]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (OSError(28, "No space left on device", "/out/cat/input.png"), 1, "No space left on device: /out/cat"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_a_full_disk_or_ctrl_c_ends_with_one_line_not_a_traceback(monkeypatch, capsys, raised, code, message):
    def fail(argv):
        raise raised

    monkeypatch.setattr(cli, "main", fail)
    assert main(["render", "x.jpg", "--out", "o"]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_rendering_again_into_the_same_out_replaces_same_names_and_indexes_only_this_run(folder, tmp_path):
    """As --help says: a second run with fewer blocks rewrites its own files, leaves the earlier run's
    others in place, and its index.html links only what it wrote."""
    out = tmp_path / "o"
    args = ["--out", str(out), "--model", "sepvit_test", "--size", "64", "--views", "tokens"]
    assert main(["render", str(folder / "cat.jpg"), *args, "--block", "0,1"]) == 0
    first = sorted(p.name for p in (out / "cat").glob("s*.png"))
    assert len(first) == 2
    kept = out / "cat" / first[1]
    stamp = kept.stat().st_mtime_ns
    assert main(["render", str(folder / "cat.jpg"), *args, "--block", "0"]) == 0
    assert sorted(p.name for p in (out / "cat").glob("s*.png")) == first  # the block-1 file stays
    assert kept.stat().st_mtime_ns == stamp
    index = (out / "index.html").read_text()
    assert first[0] in index and first[1] not in index
    assert "replaces the files of the same names" in cli.OUTPUT_HELP


def test_threads_sets_torchs_cpu_threads(folder, tmp_path, monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)  # the test process keeps its own threads
    args = ["--model", "sepvit_test", "--size", "64", "--block", "0", "--views", "tokens", "--threads", "1"]
    assert main(["render", str(folder / "cat.jpg"), "--out", str(tmp_path / "o"), *args]) == 0
    assert seen == [1]


def test_an_empty_out_is_refused_not_the_current_folder(folder, tmp_path, monkeypatch, capsys):
    """``--out ''`` wrote the pictures and index.html into the current folder (``Path('')`` is ``.``)."""
    from sepvit_viz.outdir import prepare_out_dir

    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    assert main(["render", str(folder / "cat.jpg"), "--out", "", "--model", "sepvit_test", "--block", "0"]) == 2
    assert "error: --out is empty" in capsys.readouterr().err
    assert main(["stats", str(folder / "cat.jpg"), "--out", "", "--model", "sepvit_test", "--size", "64"]) == 2
    assert "error: --out is empty" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before  # nothing written here
    with pytest.raises(ValueError, match=r"^--out is empty: name a folder \(\. for the current one\)$"):
        prepare_out_dir("")
    assert prepare_out_dir(".") == Path(".")  # the current folder, asked for by name, is fine


def _bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoints that must each give one clear line, and what that line says."""
    import json

    from safetensors.torch import save_file

    model = sepvit_viz.create_model("sepvit_test")
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    made = {}
    for key, value, says in [
        ("depths", '["INF", 1, 1, 1]', "depths must be a whole number, got inf"),
        ("embed_dims", '[16, "INF", 64, 128]', "embed_dims must be a whole number, got inf"),
        ("window_patterns", "[[], [], [], []]", "every stage needs at least one window size"),
    ]:
        text = json.dumps({**config, key: "@"}).replace('"@"', value).replace('"INF"', "Infinity")
        path = tmp_path / f"bad_{key}.safetensors"
        save_file(tensors, str(path), metadata={"config": text})  # tensors that fit sepvit_test exactly
        made[key] = (path, f"invalid config metadata ({says}")
    plain = tmp_path / "plain.safetensors"  # no config metadata, and not sepvit_test's tensors
    save_file({"a": torch.zeros(1)}, str(plain))
    made["plain"] = (plain, "no 'config' metadata, so it is not a SepViT checkpoint")
    made["plain (fallback)"] = (plain, "as sepvit_test weights: checkpoint does not fit the model")
    folder = tmp_path / "weights.png"
    folder.mkdir()
    made["folder"] = (folder, "weights.png is a folder, not a checkpoint file")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage" * 10)
    made["garbage"] = (
        garbage,
        "garbage.pt could not be loaded safely as PyTorch weights (weights_only=True): Unsupported",
    )
    return made


def test_a_bad_checkpoint_is_one_line_with_its_real_reason_in_render_and_stats(folder, tmp_path, capsys):
    """Infinity in the config metadata ended in an OverflowError traceback, empty window patterns in a
    max() traceback (stats); render dropped the first reason of a plain state dict, called a folder an
    unsupported type (stats: "not found") and printed torch's paragraphs for a garbage .pt."""
    photo = str(folder / "cat.jpg")
    for what, (path, says) in _bad_checkpoints(tmp_path).items():
        for command in ("render", "stats"):
            args = [command, photo, "--out", str(tmp_path / "o"), "--model", "sepvit_test", "--size", "64"]
            assert main([*args, "--checkpoint", str(path)]) == 2, (what, command)
            err = capsys.readouterr().err
            assert says in err, (what, command, err)
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (what, command, err)
            assert not (tmp_path / "o").exists(), (what, command)  # --out is not made for bad input


def test_a_checkpoint_with_its_own_architecture_is_named_and_overriding_model_is_warned(folder, tmp_path, capsys):
    """The checkpoint's own architecture silently replaced --model; stats then named --model in its page."""
    deeper = sepvit_viz.save_checkpoint(
        sepvit_viz.create_model("sepvit_test", depths=(1, 2, 4, 2)), tmp_path / "deeper.safetensors"
    )
    common = [str(folder / "cat.jpg"), "--size", "64", "--checkpoint", str(deeper)]
    assert main(["render", *common, "--out", str(tmp_path / "r"), "--block", "0", "--views", "tokens"]) == 0
    warned = "--model sepvit_lite is ignored for it"
    assert warned not in capsys.readouterr().err  # --model not given: nothing to warn about
    assert (
        main(
            [
                "render",
                *common,
                "--out",
                str(tmp_path / "r2"),
                "--block",
                "0",
                "--views",
                "tokens",
                "--model",
                "sepvit_lite",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"WARNING: {deeper} holds its own architecture (sepvit_test), which is used: {warned}" in err
    assert "· sepvit_test</h1>" in (tmp_path / "r2" / "index.html").read_text()
    assert main(["stats", *common, "--out", str(tmp_path / "s"), "--model", "sepvit_lite"]) == 0
    assert warned in capsys.readouterr().err
    page = (tmp_path / "s" / "index.html").read_text()
    assert "; model sepvit_test." in page and "; model sepvit_lite." not in page and warned in page
    # the same architecture as --model: no warning
    same = sepvit_viz.save_checkpoint(sepvit_viz.create_model("sepvit_test"), tmp_path / "same.safetensors")
    args = [str(folder / "cat.jpg"), "--size", "64", "--checkpoint", str(same), "--model", "sepvit_test"]
    assert main(["stats", *args, "--out", str(tmp_path / "s2")]) == 0
    assert "WARNING" not in capsys.readouterr().err


@pytest.mark.parametrize(("module", "command"), [("sepvit_viz.cli", "render"), ("sepvit_viz.stats.cli", "stats")])
def test_a_command_module_run_on_its_own_goes_through_the_dispatcher(module, command, monkeypatch, capsys):
    """``python -m sepvit_viz.cli`` called its own main(): Ctrl-C was a KeyboardInterrupt traceback and a
    full disk an OSError traceback, where ``python -m sepvit_viz render`` gives one line."""
    import importlib
    import runpy
    import warnings

    imported = importlib.import_module(module)  # the module the dispatcher runs the command from
    seen = []

    def interrupted(argv):
        seen.append(argv)
        raise KeyboardInterrupt

    monkeypatch.setattr(imported, "main", interrupted)
    monkeypatch.setattr(sys, "argv", [module, "x.jpg", "--out", "o"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as ended:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is already imported
        runpy.run_module(module, run_name="__main__")
    err = capsys.readouterr().err
    assert ended.value.code == 130 and seen == [["x.jpg", "--out", "o"]], (ended.value.code, err)
    assert err.strip() == "interrupted", err


def test_threads_up_to_1024_are_accepted():
    """``--threads 384`` (a large server) was refused: the cap was 256."""
    from sepvit_viz.cliargs import threads_problem

    assert threads_problem(384) is None and threads_problem(1024) is None
    assert threads_problem(1025) == "--threads must be 1 to 1024, got 1025"


def test_bad_input_found_after_the_model_loads_leaves_no_out_folder(folder, tmp_path, capsys):
    """``--out`` was made before the model loaded: a bad checkpoint, a --compare of another
    architecture or a --head the blocks lack left an empty folder, though bad input writes nothing."""
    from sepvit_viz.outdir import check_out_dir

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    deeper = sepvit_viz.save_checkpoint(
        sepvit_viz.create_model("sepvit_test", depths=(1, 2, 4, 2)), tmp_path / "deeper.safetensors"
    )
    photo = str(folder / "cat.jpg")
    common = ["--model", "sepvit_test", "--size", "64"]
    for argv, says in [
        (["render", photo, *common, "--checkpoint", str(bad)], "bad.safetensors"),
        (["render", photo, *common, "--head", "7", "--block", "0"], "--head 7"),
        (["stats", photo, *common, "--checkpoint", str(bad)], "bad.safetensors"),
        (["stats", photo, *common, "--compare", str(deeper)], "their blocks differ"),
    ]:
        out = tmp_path / "deep" / "out"
        assert main([*argv, "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert says in err and err.strip().splitlines()[-1].startswith("error: "), (argv, err)
        assert not (tmp_path / "deep").exists(), argv  # not the folder, nor its missing parent
    # the check alone makes nothing, and refuses what the commands refuse up front
    assert check_out_dir(tmp_path / "deep" / "out") == tmp_path / "deep" / "out"
    assert not (tmp_path / "deep").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="a part of that path is a file, not a folder"):
        check_out_dir(tmp_path / "afile" / "out")


@pytest.mark.slow
@pytest.mark.parametrize("module", ["sepvit_viz.cli", "sepvit_viz.stats.cli"])
def test_each_command_module_runs_with_python_dash_m(module, tmp_path):
    """``python -m sepvit_viz.cli ...`` imported the module, did nothing and said 0."""
    run = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and "usage: python -m sepvit_viz" in run.stdout, run.stderr
    text = " ".join(run.stdout.split())  # argparse wraps the help lines
    assert ("32..512 pixels" if module == "sepvit_viz.cli" else "64..448 and a multiple of 32") in text, text
    bad = subprocess.run(
        [sys.executable, "-m", module, str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
