"""python -m sepvit_viz render: attention pictures for photos or folders of photos.

    python -m sepvit_viz render PHOTO_OR_FOLDER... --out DIR [--model NAME] [--checkpoint PATH]
        [--size 224 | --size 320x224] [--fit crop|aspect] [--block all|0,2,stages.1.blocks.1] [--head mean|max|min|N]
        [--cmap inferno] [--alpha 0.6] [--point Y,X] [--views tokens,pixel,...] [--figures] [--gallery]
        [--npz] [--threads N]

Writes, per photo, ``DIR/<photo>/s<stage>_b<block>_<kind>_<view>.png`` for every selected block and
view (:func:`picture_name`; drawn by :mod:`sepvit_viz.viz.views`, the app's pictures, at least
:data:`PICTURE_WIDTH` pixels on the photo's longer side, under a line naming block, kind and view), each DSSA block beside
the GSA block after it (:func:`pair_name`), the pooled rollout, and ``DIR/index.html`` linking every
file with each photo's top-5 classes. A view a block does not have (PWA of a global block) writes no
file. Photos are read as the app reads uploads (:func:`read_photo`: EXIF orientation applied, size
bounds checked); one that cannot be read, or whose input does not hold ``--point``, is listed in the
index and on stderr (``skipped PATH: reason``) and skipped. One forward pass per photo; a tqdm bar counts blocks rendered. With the shipped checkpoint (or
any checkpoint with a model card) the index and one stderr line give the card's one-line note
(:func:`sepvit_viz.model.weights.model_note`); stdout stays the single ``wrote ...`` line. Bad input
(an unknown block, a --size outside 32..512, a checkpoint that does not load, ...) is one ``error: ...``
line on stderr and exit status 2, with ``DIR`` not made; status 1 when no photo could be rendered.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from sepvit_viz.cliargs import add_out_and_model_arguments, checkpoint_problem, model_mismatch, threads_problem
from sepvit_viz.imageio import ImageInputError, load_image
from sepvit_viz.limits import DECODE_SHORT_SIDE, INPUT_MAX_SIDE, INPUT_MIN_SIDE, MAX_THREADS
from sepvit_viz.model.weights import model_note
from sepvit_viz.outdir import check_out_dir, prepare_out_dir
from sepvit_viz.viz import maps, render, views
from sepvit_viz.viz.capture import AttentionRecord
from sepvit_viz.viz.pipeline import Analysis, analyze, input_size, load_model

if TYPE_CHECKING:
    from sepvit_viz.model.sepvit import SepViT

__all__ = [
    "PICTURE_WIDTH",
    "add_render_arguments",
    "block_tag",
    "header",
    "main",
    "pair_name",
    "pair_picture",
    "picture_name",
    "picture_scale",
    "read_photo",
    "run_render",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
#: The photo's longer side in every written picture is at least this many pixels: the model input
#: upscaled by an integer factor, as in the app (window borders stay exact), but never less than this.
PICTURE_WIDTH = 600
#: Font size (pixels) of the line above each written picture that names its block, kind and view.
HEADER_FONT = 16
#: White pixels between the two halves of a DSSA/GSA pair picture.
PAIR_GAP = 16

OUTPUT_HELP = """\
output, per photo, in DIR/<photo>/:
  s<stage>_b<block>_<kind>_<view>.png
      one picture per selected block and view. Stage and block are numbered from 1, as in the
      pictures' titles ("stage 2 · block 2 · GSA" is s2_b02_gsa_..., module stages.1.blocks.1);
      kind is dssa, gsa or global; view is tokens, pixel, composed, pwa_map or pwa_matrix.
      Global blocks (one window, no PWA) have no pwa_map or pwa_matrix file.
  s<stage>_b<i>_dssa_vs_b<j>_gsa.png (view pair)
      a DSSA block (left) beside the GSA block after it (right), each half labelled with its kind
  rollout.png (view rollout: the pooled rollout), input.png (the crop the model saw), maps.npz (--npz),
  ..._<view>_figure.png (--figures), ..._heads.png (--gallery, blocks with more than one head)
and DIR/index.html, linking every file with each photo's top-5 classes.
Rendering into a DIR used before replaces the files of the same names and leaves the others (other
blocks or views of the earlier run); index.html lists only this run's files. Use a new DIR to start clean.
"""

#: What each per-block view shows, for the line above its picture (``{u}``: window, or group for GSA).
VIEW_TITLES = {
    "tokens": "{u} tokens over their {u}s",
    "pixel": "one pixel inside its {u}",
    "composed": "one pixel through the whole block (DWA, then PWA)",
    "pwa_map": "{u}-to-{u} attention (PWA), one row",
    "pwa_matrix": "{u}-to-{u} attention (PWA) matrix",
}


def block_tag(rec: AttentionRecord) -> str:
    """``s2_b02_gsa`` for ``stage 2 · block 2 · GSA``: 1-based stage and block, as in the titles, and kind."""
    return f"s{rec.stage + 1}_b{rec.index + 1:02d}_{rec.kind}"


def picture_name(rec: AttentionRecord, view: str) -> str:
    """File name of one block's view: ``s2_b01_dssa_tokens.png``."""
    return f"{block_tag(rec)}_{view}.png"


def pair_name(dssa: AttentionRecord, gsa: AttentionRecord) -> str:
    """File name of a DSSA block beside the GSA block after it: ``s2_b01_dssa_vs_b02_gsa.png``."""
    return f"{block_tag(dssa)}_vs_b{gsa.index + 1:02d}_{gsa.kind}.png"


def _size(text: str) -> int | tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return vals[0], vals[1]
    raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")


def _head(text: str) -> maps.HeadSelect:
    if text in maps.FUSIONS:
        return text  # type: ignore[return-value]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"head must be an index or one of {maps.FUSIONS}, got {text!r}") from None


def _point(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"point must be Y,X in input pixels, got {text!r}") from None
    return y, x


def add_render_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "source", type=Path, nargs="+", help="photos, or folders of photos (not recursive), e.g. a shell glob"
    )
    add_out_and_model_arguments(p)
    p.add_argument(
        "--size",
        type=_size,
        default=224,
        help=f"input size: N (see --fit) or HxW, each side {INPUT_MIN_SIDE}..{INPUT_MAX_SIDE} pixels, any step "
        "(default 224)",
    )
    p.add_argument(
        "--fit",
        choices=("crop", "aspect"),
        default="crop",
        help="with --size N: 'crop' the centre N x N square (default) or 'aspect' keep the photo's shape, "
        "shorter side N, longer side rounded to a multiple of 32 and at most max(N, 448)",
    )
    p.add_argument("--block", default="all", help="'all', or comma-separated block indices (0-based) or names")
    p.add_argument("--head", type=_head, default="mean", help="head index or mean|max|min (default mean)")
    p.add_argument("--cmap", default="inferno", help="matplotlib colormap name (default inferno)")
    p.add_argument("--alpha", type=float, default=0.6, help="heat-map opacity 0..1 (default 0.6)")
    p.add_argument("--point", type=_point, default=None, help="query point Y,X in input pixels (default: centre)")
    p.add_argument(
        "--views", default=",".join(views.CLI_VIEWS), help=f"comma-separated subset of {','.join(views.CLI_VIEWS)}"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads, 1..{MAX_THREADS} (default: torch's choice; on a busy machine 1 can be faster than 2)",
    )
    p.add_argument("--figures", action="store_true", help="also write annotated matplotlib figures (slower)")
    p.add_argument(
        "--gallery",
        action="store_true",
        help="also write a per-head gallery (tokens view) per block with more than one head (slower)",
    )
    p.add_argument(
        "--npz",
        action="store_true",
        help="also export the raw arrays as maps.npz per photo: every block's DWA and PWA, and the maps "
        "of each selected block (<block>.token_map, .pixel_query, .composed, .composed_mixed, .pwa_map, "
        "and <block>.head, the head they show), the point (y, x) and input size (h, w) they are for, and the rollout",
    )
    return p


def read_photo(path: Path) -> Image.Image:
    """A photo as the app reads an upload (:func:`sepvit_viz.imageio.load_image`): upright from its
    EXIF orientation, transparency on white, the first frame of an animation, size bounds checked
    before decoding, large JPEGs decoded at reduced scale; raises ``ImageInputError`` with a clear
    message."""
    return load_image(path, max_short_side=DECODE_SHORT_SIDE)


def _check_point(point: tuple[int, int] | None, size: tuple[int, int]) -> None:
    """ValueError when ``--point Y,X`` lies outside the model input (H, W)."""
    if point is not None and not (0 <= point[0] < size[0] and 0 <= point[1] < size[1]):
        raise ValueError(
            f"--point {point[0]},{point[1]} is outside the model input ({size[0]} x {size[1]} pixels, height x "
            f"width): Y must be 0..{size[0] - 1} and X 0..{size[1] - 1}"
        )


def _photos(sources: Sequence[Path]) -> list[Path]:
    """The photos ``sources`` name, in order: a file as given, a folder's image files (sorted, not
    recursive); each photo once (by resolved path: ``a.jpg ./a.jpg`` or a file also found through its
    folder). ``SystemExit`` with a message for a source that does not exist or a folder without photos."""
    found: dict[Path, Path] = {}
    for source in sources:
        if source.is_dir():
            inside = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise SystemExit(f"error: no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
        elif source.is_file():
            inside = [source]
        else:
            raise SystemExit(f"error: {source} does not exist")
        for p in inside:
            found.setdefault(p.resolve(), p)
    return list(found.values())


def _blocks_without_head(model: SepViT, blocks: Sequence[int], head: maps.HeadSelect) -> list[str]:
    """Names of the selected blocks that have no head ``head`` (none when ``head`` is a fusion)."""
    if not isinstance(head, int):
        return []
    return [b.name for i, b in enumerate(model.iter_blocks()) if i in blocks and head >= b.num_heads]


def _select_blocks(spec: str, names: Sequence[str]) -> list[int]:
    """Indices of the blocks ``--block`` selects ('all', 0-based indices or names, comma-separated);
    ``SystemExit`` with a message for an unknown block or a selection of none (``--block ""``)."""
    if spec.strip().lower() == "all":
        return list(range(len(names)))
    out = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.isdigit() and int(item) < len(names):
            out.append(int(item))
        elif item in names:
            out.append(list(names).index(item))
        else:
            raise SystemExit(f"error: unknown block {item!r}; blocks are 0..{len(names) - 1} or {', '.join(names)}")
    if not out:
        raise SystemExit(f"error: --block {spec!r} names no block; give 'all', 0..{len(names) - 1} or block names")
    return sorted(set(out))


def _unique_dir(stem: str, taken: set[str], out: Path | None = None) -> str:
    """A folder name under ``--out`` for a photo with file stem ``stem``: never a path (``..``, ``.``,
    separators), never hidden, valid UTF-8 (bytes a file name holds that are not, as Python's lone
    surrogates, become ``_``, so index.html can name and link it), and unique among ``taken``
    (case-folded names, so that ``Cat.jpg`` and ``cat.png`` do not share a folder on a case-insensitive
    file system; hold ``"index.html"``). With ``out``, a name that is already there as a file or a
    symbolic link is skipped too: a folder cannot be made there, or it would lead outside ``out``."""
    base = re.sub(r'[\\/:*?"<>|\x00-\x1f\ud800-\udfff]', "_", stem).strip() or "photo"
    if base.startswith("."):
        base = "_" + base
    name, k = base, 1
    while name.casefold() in taken or (out is not None and _not_a_folder(out / name)):
        k += 1
        name = f"{base}_{k}"
    taken.add(name.casefold())
    return name


def _not_a_folder(path: Path) -> bool:
    """True when ``path`` exists as something other than a plain folder (a file, a symbolic link)."""
    return path.is_symlink() or (path.exists() and not path.is_dir())


def _save(rgb: np.ndarray, path: Path) -> str:
    path.write_bytes(render.to_png(rgb))
    return path.name


def picture_scale(size: tuple[int, int]) -> int:
    """Picture pixels per model pixel for an (H, W) input: the app's factor, or more so that the
    photo's longer side is at least :data:`PICTURE_WIDTH` (a narrow portrait is not blown up to that width)."""
    return max(views.display_scale(size), -(-PICTURE_WIDTH // max(int(size[0]), int(size[1]), 1)))


def header(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` under a white line with ``text`` in a :data:`HEADER_FONT` px font (smaller only if it
    would not fit the width)."""
    w = rgb.shape[1]
    size = HEADER_FONT
    while size > 10 and render._font(size).getlength(text) > w - 8:
        size -= 1
    band = Image.new("RGB", (w, HEADER_FONT + 10), render.WHITE)
    ImageDraw.Draw(band).text((4, band.height // 2), text, fill=render.INK, font=render._font(size), anchor="lm")
    return np.concatenate([np.asarray(band), rgb], axis=0)


def _view_title(rec: AttentionRecord, view: str) -> str:
    if view == "tokens" and not rec.has_token:
        what = "attention each pixel receives (no window tokens)"
    elif view == "composed" and rec.pwa is None:
        what = "one pixel through the whole block (global attention)"
    else:
        what = VIEW_TITLES[view].format(u=views.unit(rec))
    return f"{rec.label}: {what}"  # the default font has no dash


def _picture(a: Analysis, view: str, s: views.ViewSettings) -> np.ndarray | None:
    """One block's view through the view layer, under its header; None for a view the block lacks."""
    draw = {
        "tokens": views.tokens,
        "pixel": views.pixel,
        "composed": lambda an, t: views.pixel(an, t.with_(through="block")),
        "pwa_map": views.pwa_row,
        "pwa_matrix": views.pwa_matrix,
    }[view]
    try:
        picture = draw(a, s).picture
    except views.NoView:
        return None
    return header(picture, _view_title(a.records[a.block_index(s.block)], view))


def pair_picture(a: Analysis, pair: tuple[int, int], s: views.ViewSettings) -> np.ndarray:
    """The DSSA block (left) beside the GSA block after it (right), each half headed by its kind."""
    left, right, _ = views.compare(a, pair, s)
    halves = []
    for i, view in zip(pair, (left, right)):
        rec = a.records[i]
        halves.append(header(view.picture, f"{rec.kind.upper()} · stage {rec.stage + 1} · block {rec.index + 1}"))
    return views.side_by_side(*halves, gap=PAIR_GAP)


def _render_photo(
    a: Analysis, folder: Path, blocks: list[int], names: list[str], args: argparse.Namespace, bar: tqdm
) -> dict:
    """Write one photo's pictures; returns what index.html lists."""
    k = picture_scale(a.size)
    s = views.ViewSettings(head=args.head, cmap=args.cmap, alpha=args.alpha, point=args.point, scale=k)
    rows = []
    for i in blocks:
        t = s.with_(block=i)
        rec = a.records[i]
        has_pwa = rec.pwa is not None
        files = []
        for view in [v for v in names if v not in ("rollout", "pair")]:  # one picture per block
            picture = _picture(a, view, t)
            if picture is not None:
                files.append((view, _save(picture, folder / picture_name(rec, view))))
        if args.figures:
            for view in [v for v in names if v not in ("rollout", "pair", "pwa_matrix")]:
                if view == "pwa_map" and not has_pwa:
                    continue
                fig = views.figure(a, view, t)
                files.append((f"{view} (figure)", _save(fig, folder / picture_name(rec, f"{view}_figure"))))
            if "pwa_matrix" in names and has_pwa:
                fig = views.pwa_figure(a, t)
                files.append(("PWA matrix (figure)", _save(fig, folder / picture_name(rec, "pwa_matrix_figure"))))
        if args.gallery and rec.num_heads > 1:
            files.append(("heads", _save(views.gallery(a, "tokens", t), folder / picture_name(rec, "heads"))))
        skipped = sorted(v for v in names if v in ("pwa_map", "pwa_matrix")) if not has_pwa else []
        note = f"global attention (one window, no window tokens): no {' or '.join(skipped)} file" if skipped else None
        rows.append((rec.label, files, note))
        bar.update(1)
    extra = []
    if "rollout" in names:
        pic = header(views.rollout(a, s).picture, "attention rollout through every block")
        extra.append(("rollout (pooled output)", _save(pic, folder / "rollout.png")))
    for pair in a.dssa_gsa_pairs() if "pair" in names else []:
        if pair[0] in blocks or pair[1] in blocks:
            ra, rb = a.records[pair[0]], a.records[pair[1]]
            label = f"DSSA (left) vs GSA (right), stage {ra.stage + 1}"
            extra.append((label, _save(pair_picture(a, pair, s), folder / pair_name(ra, rb))))
    if args.npz:
        arrays: dict[str, np.ndarray] = {}
        for i in blocks:  # every block's DWA / PWA, and the maps of each selected block (keyed by its name)
            arrays.update(a.arrays(i, args.head, args.point))
            # the head the maps show: a block with fewer heads than --head N shows the mean of its heads
            arrays[f"{a.records[i].name}.head"] = np.asarray(str(a.head_for(i, args.head)))
        arrays["point"] = np.asarray(a.centre() if args.point is None else args.point, dtype=np.int64)
        arrays["input_size"] = np.asarray(a.size, dtype=np.int64)
        render.export_npz(arrays, folder / "maps.npz")
        extra.append(("raw arrays", "maps.npz"))
    return {"rows": rows, "extra": extra}


def _url(path: str) -> str:
    """A relative link to ``path`` for index.html: percent-encoded, so a photo named ``a#1.jpg`` or
    ``50%.png`` still links to its folder (``#``, ``?`` and ``%`` would otherwise end or change the URL)."""
    return html.escape(quote(path))


def _figure(src: str, caption: str) -> str:
    """A thumbnail linking to the full-size picture, with a caption."""
    e = html.escape
    return f"<figure><a href='{_url(src)}'><img src='{_url(src)}'></a><figcaption>{e(caption)}</figcaption></figure>"


def _write_index(out: Path, entries: list[dict], model_name: str, warning: str | None, note: str | None = None) -> Path:
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>SepViT attention</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}img{max-width:300px;margin:2px;vertical-align:top}"
        "figure{display:inline-block;margin:4px}figcaption{font-size:12px;color:#444}"
        ".warn{background:#fee;border:1px solid #c00;padding:.5em}"
        ".note{background:#ffd;border:1px solid #a80;padding:.5em}</style>",
        f"<h1>SepViT attention maps · {e(model_name)}</h1>",
    ]
    if warning:
        parts.append(f"<p class='warn'>{e(warning)}</p>")
    if note:
        parts.append(f"<p class='note'><b>About the top-5 classes below:</b> {e(note)}</p>")
    for entry in entries:
        d = entry["dir"]
        parts.append(f"<h2>{e(entry['photo'])}</h2>")
        if "error" in entry:
            parts.append(f"<p class='warn'>could not render: {e(entry['error'])}</p>")
            continue
        top = "".join(f"<li>{e(p.name)} — {p.prob:.1%}</li>" for p in entry["top5"])
        parts.append(f"<img src='{_url(d + '/input.png')}' alt='input'><ol>{top}</ol>")
        for label, src in entry["extra"]:
            if src.endswith(".png"):
                parts.append(_figure(f"{d}/{src}", label))
            else:
                parts.append(f"<p><a href='{_url(d + '/' + src)}'>{e(label)}</a></p>")
        for label, files, block_note in entry["rows"]:
            parts.append(f"<h3>{e(label)}</h3>")
            if block_note:
                parts.append(f"<p>{e(block_note)}</p>")
            parts += ["<div>", *(_figure(f"{d}/{f}", f"{v} · {f}") for v, f in files), "</div>"]
    path = out / "index.html"
    # errors="replace": a photo name holding bytes that are not UTF-8 is shown with '?', not a traceback
    path.write_text("\n".join(parts), encoding="utf-8", errors="replace")
    return path


def run_render(args: argparse.Namespace) -> int:
    """Render what ``args`` (from :func:`add_render_arguments`) asks for; 0 when at least one photo was
    rendered, 1 when none could be. Bad input raises ``SystemExit("error: ...")`` before anything is
    written: ``--out`` is checked first but made only once the model has loaded and every setting
    fits it (:func:`main` prints the line and returns 2)."""
    for problem in (threads_problem(args.threads), checkpoint_problem("--checkpoint", args.checkpoint)):
        if problem:
            raise SystemExit(f"error: {problem}")
    photos = _photos(args.source)
    wanted = [v.strip() for v in args.views.split(",") if v.strip()]
    bad = [v for v in wanted if v not in views.CLI_VIEWS]
    if bad:
        raise SystemExit(f"error: unknown views {bad}; choose from {','.join(views.CLI_VIEWS)}")
    if not wanted:
        raise SystemExit(f"error: --views names no view; choose from {','.join(views.CLI_VIEWS)}")
    if not 0.0 <= args.alpha <= 1.0:
        raise SystemExit("error: --alpha must be within 0..1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        render._lut(args.cmap)
        input_size(args.size)
        if args.point is not None and (args.fit == "crop" or not isinstance(args.size, int)):
            # every photo gets the same input: a point outside it is an error before any photo is read
            hw = input_size(args.size)
            _check_point(args.point, hw)
        args.out = check_out_dir(args.out)  # before the model loads: a bad --out fails at once (not made yet)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning is printed loudly below instead
        try:
            model, warning = load_model(args.model, args.checkpoint)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    mismatch = model_mismatch(model.config, args.model, getattr(args, "model_given", False), args.checkpoint)
    if mismatch:
        print(f"WARNING: {mismatch}", file=sys.stderr)
    # the coverage caveat of the card beside the weights (the shipped checkpoint's when none was given)
    note = model_note(args.checkpoint) if args.checkpoint else (None if warning else model_note())
    names = [b.name for b in model.iter_blocks()]
    blocks = _select_blocks(args.block, names)
    if isinstance(args.head, int) and args.head < 0:
        raise SystemExit(f"error: --head {args.head}: head indices start at 0")
    lacking = _blocks_without_head(model, blocks, args.head)
    if lacking and len(lacking) == len(blocks):
        most = max(b.num_heads for i, b in enumerate(model.iter_blocks()) if i in blocks)
        raise SystemExit(f"error: --head {args.head}: the selected blocks have at most {most} head(s), 0 to {most - 1}")
    if lacking:
        one = len(lacking) == 1
        print(
            f"WARNING: --head {args.head}: {', '.join(lacking)} {'has' if one else 'have'} fewer heads; "
            f"{'its' if one else 'their'} pictures show the mean of heads",
            file=sys.stderr,
        )
    try:  # made only now: bad input (a checkpoint, --block, --head) leaves no empty folder behind
        prepare_out_dir(args.out)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    entries, taken, failed = [], {"index.html"}, 0
    with tqdm(total=len(photos) * len(blocks), unit="block", desc="render", file=sys.stderr) as bar:
        for photo in photos:
            d = _unique_dir(photo.stem, taken, args.out)
            entry: dict = {"photo": photo.name, "dir": d}
            try:
                a = analyze(model, read_photo(photo), size=args.size, fit=args.fit, precompute=False)
                _check_point(args.point, a.size)
            except (ImageInputError, OSError, ValueError) as e:
                entry["error"] = str(e)
                tqdm.write(f"skipped {photo}: {e}", file=sys.stderr)
                failed += 1
                bar.update(len(blocks))
                entries.append(entry)
                continue
            folder = args.out / d
            folder.mkdir(exist_ok=True)
            _save(a.image, folder / "input.png")
            entry.update(_render_photo(a, folder, blocks, wanted, args, bar), top5=a.top5)
            entries.append(entry)
            bar.set_postfix_str(f"{photo.name}: {a.top5[0].name}")
    index = _write_index(args.out, entries, model.config.name, warning, note)  # the model used, not --model
    print(f"wrote {index} ({len(photos) - failed} photo(s), {failed} failed)")
    if note:
        print(f"NOTE on the predictions: {note}", file=sys.stderr)
    return 0 if failed < len(photos) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``render`` subcommand: ``main(["PHOTO", "--out", "DIR", ...])``.

    Returns 0 (rendered), 1 (no photo could be rendered) or 2 (bad input: one ``error: ...`` line on
    stderr, as ``stats`` and ``training.evaluate`` do; argparse's own errors exit with 2 too).
    """
    parser = add_render_arguments(
        argparse.ArgumentParser(
            prog="python -m sepvit_viz render",
            description=__doc__.split("\n\n")[0],
            epilog=OUTPUT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    args = parser.parse_args(argv)
    try:
        return run_render(args)
    except SystemExit as e:
        if not isinstance(e.code, str):  # --help (0), argparse (2): theirs as they are
            raise
        print(e.code, file=sys.stderr)
        return 2


if __name__ == "__main__":  # through the dispatcher: its Ctrl-C (130) and OSError (1) handling
    from sepvit_viz.__main__ import main as dispatch

    raise SystemExit(dispatch(["render", *sys.argv[1:]]))
