"""The photo pack for a remote GPU (sepvit_viz.training.pack) on a few synthetic photos."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sepvit_viz.training.data import build_cache, list_images
from sepvit_viz.training.pack import PackSource, balanced_pick, encode_square, main, parse_source, write_pack


def _photo(path: Path, w: int, h: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Folder ``big``: classes a (1 photo), b (5), c (5) at 200x150 px; folder ``small``: 6 photos at 60x80."""
    big, small = tmp_path / "src" / "big", tmp_path / "src" / "small"
    sizes = {"n01440764": 1, "n01443537": 5, "n01484850": 5}
    k = 0
    for cls, n in sizes.items():
        for i in range(n):
            _photo(big / cls / f"{i}.jpg", 200, 150, k)
            k += 1
    for i in range(6):
        _photo(small / "n01491361" / f"{i}.png", 60, 80, 100 + i)
    return big, small


def test_parse_source_reads_an_optional_count_and_rejects_a_bad_one() -> None:
    assert parse_source("a/b") == PackSource(Path("a/b"), None)
    assert parse_source("a/b=12") == PackSource(Path("a/b"), 12)
    # only digits after the last '=' make a count: other text is part of the folder's name
    assert parse_source("a=x/b") == PackSource(Path("a=x/b"), None)
    assert parse_source("a=x/b=3") == PackSource(Path("a=x/b"), 3)
    with pytest.raises(ValueError, match="positive whole number"):
        parse_source("a=0")
    with pytest.raises(ValueError, match="no folder"):
        parse_source("=5")


def test_balanced_pick_spreads_over_classes_and_is_repeatable(folders) -> None:
    big, _ = folders
    photos = list_images([big])
    picked = balanced_pick(photos, big, 7, seed=3)
    per_class = Counter(p.parent.name for p in picked)
    # the 1-photo class gives its one photo; the other two share the rest evenly
    assert per_class == {"n01440764": 1, "n01443537": 3, "n01484850": 3}
    assert picked == balanced_pick(photos, big, 7, seed=3) == sorted(picked)
    assert balanced_pick(photos, big, None) == sorted(photos)
    assert balanced_pick(photos, big, 999) == sorted(photos)
    others = {tuple(balanced_pick(photos, big, 7, seed=s)) for s in range(6)}
    assert len(others) > 1  # the seed chooses which photos of a class


def test_encode_square_crops_to_the_side_or_keeps_a_smaller_photo(folders, tmp_path) -> None:
    big, small = folders
    with Image.open(io.BytesIO(encode_square(next(big.rglob("*.jpg")), 64, 80))) as im:
        assert im.format == "WEBP" and im.size == (64, 64) and im.mode == "RGB"
    with Image.open(io.BytesIO(encode_square(next(small.rglob("*.png")), 128, 80))) as im:
        assert im.size == (60, 60)  # short side 60 < 128: never enlarged
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    assert encode_square(broken, 64, 80) is None


def test_write_pack_keeps_the_layout_and_the_cache_reads_it(folders, tmp_path) -> None:
    big, small = folders
    out = tmp_path / "pack"
    report = write_pack([PackSource(big, 7), PackSource(small, None)], out, side=64, quality=80, max_mib=10)
    written = report.written
    assert {k: n for k, (n, _) in written.items()} == {"big": 7, "small": 6}
    assert not report.budget_reached and report.unreadable == 0
    files = list_images([out])
    assert len(files) == 13 and all(f.suffix == ".webp" for f in files)
    assert {f.relative_to(out).parts[:2] for f in files} >= {("big", "n01440764"), ("small", "n01491361")}
    assert sum(b for _, b in written.values()) == sum(f.stat().st_size for f in files)
    index = build_cache([out / "big", out / "small"], tmp_path / "cache", 224)
    sides = Counter(json.loads(Path(index).read_text())["sides"])
    assert sides == {64: 7, 60: 6}


def test_write_pack_stops_at_the_budget_with_every_folder_served(folders, tmp_path) -> None:
    big, small = folders
    one = len(encode_square(next(big.rglob("*.jpg")), 64, 80))
    budget_mib = 5.5 * one / 2**20  # room for about five photos
    report = write_pack([PackSource(big, None), PackSource(small, None)], tmp_path / "p", 64, 80, budget_mib)
    assert report.budget_reached
    counts = {k: n for k, (n, _) in report.written.items()}
    assert 3 <= sum(counts.values()) <= 8 and counts["big"] >= 1 and counts["small"] >= 1
    assert sum(f.stat().st_size for f in (tmp_path / "p").rglob("*.webp")) <= budget_mib * 2**20


def test_main_prints_a_table_and_reports_a_missing_folder(folders, tmp_path, capsys) -> None:
    big, _ = folders
    assert main([str(tmp_path / "p"), "--from", f"{big}=4", "--side", "48"]) == 0
    out = capsys.readouterr().out
    assert "big" in out and out.strip().splitlines()[-1].split()[:2] == ["total", "4"]
    assert main([str(tmp_path / "q"), "--from", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main([str(tmp_path / "q"), "--from", f"{big}=0"]) == 2
    assert "positive whole number" in capsys.readouterr().err
    for flag, value in (("--side", "4"), ("--quality", "0"), ("--max-mib", "-1")):
        with pytest.raises(SystemExit) as e:
            main([str(tmp_path / "q"), "--from", str(big), flag, value])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"error: {flag} ") and err.count("\n") == 1, err


def test_photos_of_one_stem_stay_apart_and_unreadable_ones_are_counted(tmp_path) -> None:
    src = tmp_path / "src" / "f"
    _photo(src / "n01440764" / "a.jpg", 90, 90, 1)
    _photo(src / "n01440764" / "a.png", 90, 90, 2)
    (src / "n01440764" / "b.jpg").write_bytes(b"not a photo")
    report = write_pack([PackSource(src, None)], tmp_path / "p", 64, 80, 10)
    assert report.written["f"][0] == 2 and report.unreadable == 1
    names = sorted(p.name for p in (tmp_path / "p").rglob("*.webp"))
    assert names == ["a.jpg.webp", "a.png.webp"]


def test_photos_in_a_folder_root_keep_their_place(tmp_path) -> None:
    src = tmp_path / "loose"
    _photo(src / "x.jpg", 80, 80, 3)
    write_pack([PackSource(src, None)], tmp_path / "p", 64, 80, 10)
    assert [p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*.webp")] == ["loose/x.jpg.webp"]


def test_write_pack_refuses_what_would_merge_or_overwrite(folders, tmp_path) -> None:
    big, small = folders
    twin = tmp_path / "other" / "big"
    _photo(twin / "n01440764" / "z.jpg", 80, 80, 4)
    with pytest.raises(ValueError, match="share a folder name"):
        write_pack([PackSource(big, None), PackSource(twin, None)], tmp_path / "p1", 64, 80, 10)
    write_pack([PackSource(small, None)], tmp_path / "p2", 64, 80, 10)
    with pytest.raises(ValueError, match="not empty"):
        write_pack([PackSource(small, None)], tmp_path / "p2", 64, 80, 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no photos"):
        write_pack([PackSource(tmp_path / "empty", None)], tmp_path / "p3", 64, 80, 10)


def test_photos_the_app_refuses_as_too_small_are_left_out_and_counted(tmp_path, capsys) -> None:
    """Under 16 px on the short side (sepvit_viz.imageio.MIN_SIDE) the app refuses a photo: 1 x 1 and
    20000 x 3 would become 1 px and 3 px squares."""
    src = tmp_path / "src" / "f"
    _photo(src / "n01440764" / "ok.jpg", 90, 60, 1)
    _photo(src / "n01440764" / "edge.png", 16, 40, 2)  # 16 px: the app takes it
    Image.new("RGB", (1, 1)).save(src / "n01440764" / "dot.png")
    Image.new("RGB", (20000, 3)).save(src / "n01440764" / "strip.png")
    (src / "n01440764" / "broken.jpg").write_bytes(b"not a photo")
    report = write_pack([PackSource(src, None)], tmp_path / "p", 64, 80, 10)
    assert report.written["f"][0] == 2 and report.too_small == 2 and report.unreadable == 1
    assert sorted(p.name for p in (tmp_path / "p").rglob("*.webp")) == ["edge.png.webp", "ok.jpg.webp"]
    assert encode_square(src / "n01440764" / "dot.png", 64, 80) is None
    assert main([str(tmp_path / "q"), "--from", str(src)]) == 0
    out = capsys.readouterr().out
    assert "2 photo(s) under 16 px on the short side were left out" in out
    assert "1 photo(s) could not be read" in out


def test_a_pack_folder_that_is_a_file_or_under_one_or_empty_is_refused(folders, tmp_path, capsys, monkeypatch) -> None:
    big, _ = folders
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out in (a_file, a_file / "pack"):
        assert main([str(out), "--from", f"{big}=2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.endswith("is a file, not a folder\n") and err.count("\n") == 1, err
    assert a_file.read_text() == "x"
    # '' is not the current folder
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as e:
        main(["", "--from", f"{big}=2"])
    assert e.value.code == 2 and capsys.readouterr().err == "error: OUT is empty: give the pack folder to write\n"
    assert not list(cwd.iterdir())


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "0"])
def test_max_mib_must_be_a_finite_number_above_zero(folders, tmp_path, capsys, value) -> None:
    big, _ = folders
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "p"), "--from", str(big), "--max-mib", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: --max-mib ") and err.count("\n") == 1, err
    with pytest.raises(ValueError, match="--max-mib"):
        write_pack([PackSource(big, None)], tmp_path / "p", 64, 80, float(value))
    assert not (tmp_path / "p").exists()


def test_a_write_that_fails_is_one_error_line(folders, tmp_path, capsys, monkeypatch) -> None:
    big, _ = folders

    def full(self: Path, data: bytes) -> int:
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main([str(tmp_path / "p"), "--from", f"{big}=2"]) == 2
    err = capsys.readouterr().err  # after the progress bar (tqdm), one error line
    (line,) = [line for line in err.splitlines() if "error" in line]
    assert line.startswith(f"error: {tmp_path / 'p'}") and line.endswith(": No space left on device"), err
    assert err.endswith(line + "\n")
