"""A compact photo pack for training on a remote GPU: ``python -m sepvit_viz.training.pack --help``.

A lent accelerator machine receives only a small copy of the working tree (tens of MiB), far too
little for the full training folders. This tool picks a class-balanced subset of each training
folder, centre-crops every photo to a square no larger than ``--side`` (smaller photos keep their
size, as in the training cache) and writes it as WebP, keeping the ``<folder>/<class>/`` layout, so
``distill --train-dirs PACK/*`` reads it like any other folder. ``--max-mib`` stops adding photos once
the pack would outgrow the transfer budget. The same photos always come out for the same arguments.

Photos for the pack come from training folders only; held-out folders must never be packed.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sepvit_viz.imageio import MIN_SIDE, upright
from sepvit_viz.outdir import blocking_file
from sepvit_viz.preprocess import resize_center_crop
from sepvit_viz.training.data import list_images

__all__ = [
    "PackReport",
    "PackSource",
    "balanced_pick",
    "check_out",
    "encode_square",
    "main",
    "pack_name",
    "parse_source",
    "write_pack",
]


@dataclass(frozen=True)
class PackSource:
    """One training folder and how many of its photos go into the pack (None: all)."""

    folder: Path
    count: int | None


def parse_source(text: str) -> PackSource:
    """``"DIR"`` or ``"DIR=COUNT"`` -> :class:`PackSource`.

    Only digits after the last ``=`` make a count, so a folder whose name holds ``=`` still parses;
    ``ValueError`` for an empty folder or a count of 0."""
    folder, sep, count = text.rpartition("=")
    if not sep or not count.isdigit():
        folder, count = text, ""
    if not folder:
        raise ValueError(f"{text!r}: no folder before the count")
    if count and int(count) < 1:
        raise ValueError(f"{text!r}: the count after '=' must be a positive whole number")
    return PackSource(Path(folder), int(count) if count else None)


def balanced_pick(photos: list[Path], root: Path, count: int | None, seed: int = 0) -> list[Path]:
    """Up to ``count`` of ``photos`` spread evenly over their first-level subfolders (classes).

    Classes take turns, each giving its next photo in a seeded random order, so a class with few
    photos is used up before any other class gives a second-to-last one. Sorted result."""
    if count is None or count >= len(photos):
        return sorted(photos)
    by_class: dict[str, list[Path]] = defaultdict(list)
    for p in photos:
        parts = p.relative_to(root).parts
        by_class[parts[0] if len(parts) > 1 else ""].append(p)
    rng = random.Random(seed)
    queues = []
    for name in sorted(by_class):
        q = sorted(by_class[name])
        rng.shuffle(q)
        queues.append(q)
    # round-robin over the classes: every class's first photo, then every second photo, ...
    turns = [q[depth] for depth in range(max(map(len, queues))) for q in queues if depth < len(q)]
    return sorted(turns[:count])


def _encode(path: Path, side: int, quality: int) -> bytes | str:
    """:func:`encode_square`'s WebP bytes, or why there are none: ``"unreadable"`` or ``"too small"``."""
    try:
        with Image.open(path) as im:
            if min(im.size) < MIN_SIDE:
                return "too small"
            im.load()
            s = min(side, *im.size)
            img = resize_center_crop(upright(im), s, crop_pct=1.0)
    except (OSError, ValueError, Image.DecompressionBombError):
        return "unreadable"
    buf = io.BytesIO()
    img.save(buf, format="WEBP", quality=quality, method=4)
    return buf.getvalue()


def encode_square(path: Path, side: int, quality: int) -> bytes | None:
    """A photo centre-cropped to a square of ``min(short side, side)`` px, as WebP bytes (None:
    unreadable, or under :data:`sepvit_viz.imageio.MIN_SIDE` px on its short side, a photo the app
    refuses)."""
    data = _encode(path, side, quality)
    return data if isinstance(data, bytes) else None


@dataclass
class PackReport:
    """What :func:`write_pack` wrote: per folder name (photos, bytes), photos it could not read,
    photos it left out as under :data:`sepvit_viz.imageio.MIN_SIDE` px on their short side, and
    whether it stopped at the size budget."""

    written: dict[str, tuple[int, int]]
    unreadable: int = 0
    budget_reached: bool = False
    too_small: int = 0


def pack_name(path: Path) -> str:
    """The pack's file name for a photo: its whole name plus ``.webp``, so ``a.jpg`` and ``a.png`` of
    one class stay two files."""
    return f"{path.name}.webp"


def check_out(out: Path) -> None:
    """Refuse (``ValueError``) a pack folder that is a file, lies under a file or is not empty;
    nothing is created."""
    blocker = blocking_file(out)  # the nearest part of the path that exists must be a folder
    if blocker == out:
        raise ValueError(f"{out} is a file, not a folder")
    if blocker is not None:
        raise ValueError(f"{out}: {blocker} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; a pack is written into a new folder")


def write_pack(
    sources: list[PackSource], out: Path, side: int, quality: int, max_mib: float, seed: int = 0
) -> PackReport:
    """Write the pack into ``out`` (which must be empty or absent) and report what went in.

    Each source becomes ``out/<folder name>/<path below it>``; two sources with the same folder name
    are a ``ValueError``, as are a source holding no photos, an ``out`` that is a file or lies under
    one, and a ``max_mib`` that is not a finite number above 0. Folders are filled round-robin in
    twentieths, so when ``max_mib`` is reached every folder has had its share of the budget rather
    than the first ones taking all of it. Photos under :data:`sepvit_viz.imageio.MIN_SIDE` px on
    their short side are left out (``too_small``): the app refuses them."""
    from tqdm import tqdm

    if not (max_mib > 0 and math.isfinite(max_mib * 2**20)):
        raise ValueError(f"--max-mib {max_mib:g}: must be a finite number above 0")
    names = [src.folder.name for src in sources]
    if len(set(names)) != len(names):
        raise ValueError(
            f"two sources share a folder name ({', '.join(sorted(names))}); the pack keeps one folder per name"
        )
    check_out(out)
    plans = []
    for src in sources:
        if not src.folder.is_dir():
            raise FileNotFoundError(f"not a folder: {src.folder}")
        photos = list_images([src.folder])
        if not photos:
            raise ValueError(f"{src.folder}: no photos")
        plans.append((src, balanced_pick(photos, src.folder, src.count, seed)))
    out.mkdir(parents=True, exist_ok=True)
    budget = int(max_mib * 2**20)
    report = PackReport({name: (0, 0) for name in names})
    total = 0
    rounds = 20  # each round writes a twentieth of every folder's pick
    slices = [(src, picked[k::rounds]) for k in range(rounds) for src, picked in plans]
    with tqdm(total=sum(len(p) for _, p in plans), desc="pack", unit="photo") as bar:
        for src, chunk in slices:
            for path in chunk:
                bar.update(1)
                data = _encode(path, side, quality)
                if isinstance(data, str):  # left out: why
                    if data == "too small":
                        report.too_small += 1
                    else:
                        report.unreadable += 1
                    continue
                if total + len(data) > budget:
                    report.budget_reached = True
                    return report
                dest = out / src.folder.name / path.relative_to(src.folder).parent / pack_name(path)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                total += len(data)
                n, b = report.written[src.folder.name]
                report.written[src.folder.name] = (n + 1, b + len(data))
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: write the pack, print a table of photos and MiB per folder; 0 on success, 2 on a
    bad folder or count (message on stderr)."""
    p = argparse.ArgumentParser(prog="python -m sepvit_viz.training.pack", description=__doc__.splitlines()[0])
    p.add_argument("out", help="the pack folder to write, new or empty (one subfolder per source)")
    p.add_argument("--from", dest="sources", nargs="+", required=True, help="training folders, DIR or DIR=COUNT")
    p.add_argument("--side", type=int, default=128, help="largest square side in px, 16-1024 (default 128)")
    p.add_argument("--quality", type=int, default=80, help="WebP quality 1-100 (default 80)")
    p.add_argument("--max-mib", type=float, default=32.0, help="stop before the pack exceeds this (default 32)")
    p.add_argument("--seed", type=int, default=0, help="which photos of each class are picked (default 0)")
    args = p.parse_args(argv)
    problems = [
        not 16 <= args.side <= 1024 and f"--side {args.side}: must be 16-1024",
        not 1 <= args.quality <= 100 and f"--quality {args.quality}: must be 1-100",
        not (args.max_mib > 0 and math.isfinite(args.max_mib * 2**20))
        and f"--max-mib {args.max_mib:g}: must be a finite number above 0",
        not args.out and "OUT is empty: give the pack folder to write",
    ]
    if problem := next((pr for pr in problems if pr), None):
        print(f"error: {problem}", file=sys.stderr)  # one line, as for the errors below
        raise SystemExit(2)
    try:
        sources = [parse_source(s) for s in args.sources]
        report = write_pack(sources, Path(args.out), args.side, args.quality, args.max_mib, args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be read or written, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    print(f"{'folder':<24} {'photos':>8} {'MiB':>8}")
    for name, (n, b) in report.written.items():
        print(f"{name:<24} {n:>8} {b / 2**20:>8.2f}")
    n_all, b_all = sum(n for n, _ in report.written.values()), sum(b for _, b in report.written.values())
    print(f"{'total':<24} {n_all:>8} {b_all / 2**20:>8.2f}")
    if report.budget_reached:
        print(f"stopped at --max-mib {args.max_mib:g}: not every picked photo is in the pack")
    if report.unreadable:
        print(f"{report.unreadable} photo(s) could not be read and were left out")
    if report.too_small:
        print(f"{report.too_small} photo(s) under {MIN_SIDE} px on the short side were left out (the app refuses them)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
