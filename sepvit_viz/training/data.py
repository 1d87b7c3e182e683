"""ImageNet class names, labelled image folders, and a fast uint8 photo cache for CPU training.

Folders of photos are named by WordNet id (``n01440764``); ``assets/imagenet_classes.tsv`` (columns
``index``, ``wnid``, ``name``; copied from the shared data) maps them to the 1000 standard class
indices (ids sorted) and readable names.

Training on a CPU cannot afford to decode JPEGs every step, so :func:`build_cache` decodes every
training photo once into uint8 memory maps, one per cached side (a photo is kept at its own size or
its folder's cap, whichever is smaller); :func:`augment_groups` then makes random resized crops and
flips as batched tensor ops (one ``grid_sample`` per cached side in the batch) and :func:`mixup` mixes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sepvit_viz.imageio import upright
from sepvit_viz.preprocess import MEAN, STD, resize_center_crop

__all__ = [
    "CLASSES_TSV",
    "IMAGE_EXTENSIONS",
    "LOW_RES_SIDES",
    "PhotoCache",
    "augment_batch",
    "augment_groups",
    "build_cache",
    "coverage_text",
    "held_out_key",
    "imagenet_class_names",
    "imagenet_classes",
    "labelled_images",
    "list_images",
    "load_eval_set",
    "load_square",
    "low_resolution",
    "mixup",
    "normalize_uint8",
    "stored_side",
    "training_data_summary",
    "wnid_to_index",
]

CLASSES_TSV = Path(__file__).resolve().parents[2] / "assets" / "imagenet_classes.tsv"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@functools.lru_cache(maxsize=4)
def imagenet_classes(path: str | Path = CLASSES_TSV) -> tuple[tuple[str, str], ...]:
    """The 1000 ImageNet classes in index order as ``(wnid, name)`` pairs, read from the tsv."""
    rows: list[tuple[int, str, str]] = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:3] != ["index", "wnid", "name"]:
            raise ValueError(f"{path}: expected columns index, wnid, name; got {header}")
        for line in f:
            if line.strip():
                index, wnid, name = line.rstrip("\n").split("\t")[:3]
                rows.append((int(index), wnid, name))
    rows.sort()
    if [r[0] for r in rows] != list(range(len(rows))):
        raise ValueError(f"{path}: class indices are not 0..{len(rows) - 1}")
    return tuple((wnid, name) for _, wnid, name in rows)


def imagenet_class_names() -> list[str]:
    """The 1000 readable ImageNet class names, index i -> name of class i ("tench", "goldfish", ...)."""
    return [name for _, name in imagenet_classes()]


def wnid_to_index() -> dict[str, int]:
    """WordNet id -> class index (0-999)."""
    return {wnid: i for i, (wnid, _) in enumerate(imagenet_classes())}


def list_images(dirs: Iterable[str | Path]) -> list[Path]:
    """Every image file under the given folders (recursive), sorted for a stable order."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"not a folder: {d}")
        found += [p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(found)


_EXPECTED_LAYOUT = (
    "expected photos in subfolders named by WordNet id such as n01440764 "
    "(the ids listed in assets/imagenet_classes.tsv)"
)


def labelled_images(root: str | Path) -> list[tuple[Path, int]]:
    """Photos under ``root/<wnid>/...`` with their class index.

    Raises ``ValueError`` with a one-line message naming ``root`` when it is not a folder, holds no
    photos, has photos lying directly in it, or has subfolders that are not WordNet ids.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder; {_EXPECTED_LAYOUT}")
    photos = list_images([root])
    if not photos:
        raise ValueError(f"{root}: no photos found; {_EXPECTED_LAYOUT}")
    index = wnid_to_index()
    parts = [p.relative_to(root).parts for p in photos]
    bad = sorted({pt[0] for pt in parts if len(pt) > 1 and pt[0] not in index})
    if bad:
        shown = ", ".join(repr(b) for b in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(f"{root}: {_EXPECTED_LAYOUT}; these subfolders are not WordNet ids: {shown}")
    loose = sum(len(pt) == 1 for pt in parts)
    if loose:
        raise ValueError(f"{root}: {_EXPECTED_LAYOUT}; {loose} photo(s) lie directly in the folder")
    return [(p, index[pt[0]]) for p, pt in zip(photos, parts, strict=True)]


def load_square(path: str | Path, size: int) -> np.ndarray:
    """Decode a photo, turn it upright by its EXIF orientation as the app does, resize its short side to
    ``size`` (bicubic) and centre-crop: (size, size, 3) uint8."""
    with Image.open(path) as im:
        img = resize_center_crop(upright(im), size, crop_pct=1.0)
    return np.asarray(img, dtype=np.uint8)


def _load_for_pool(args: tuple[str, int]) -> np.ndarray:
    return load_square(*args)


def _short_side(path: str) -> int:
    """A photo's short side in pixels, read from its header and checked by a decode; 0 when the
    file cannot be read as a photo (it is then left out of the cache)."""
    try:
        with Image.open(path) as im:
            im.load()
            return min(im.size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0


def stored_side(short_side: int, cap: int) -> int:
    """The side a photo is cached at: its own short side, never more than ``cap``.

    Below the cap the side is rounded down to a multiple of 4, so that a folder of photos of nearly
    the same size shares a few buckets instead of making one per size (64 and 84 px stay as they are).
    A small photo is never enlarged in the cache: enlarging costs memory and adds no detail.
    """
    if short_side >= cap:
        return cap
    return max(min(16, short_side), short_side - short_side % 4)


def _folder_of(path: str, dirs: Sequence[str | Path]) -> str:
    """The name (last path part) of the first folder in ``dirs`` that holds ``path``."""
    key = os.path.abspath(path)
    for d in dirs:
        pre = os.path.abspath(os.fspath(d)).rstrip(os.sep) + os.sep
        if key.startswith(pre):
            return os.path.basename(pre.rstrip(os.sep))
    raise ValueError(f"photo {path!r} is under none of {list(map(str, dirs))}")


def _map(fn, jobs: list, workers: int, desc: str) -> Iterable:  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    if workers > 1:
        import multiprocessing

        # spawn, not fork: a fork of a process whose torch thread pools already run can deadlock
        # in the child
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            yield from tqdm(pool.imap(fn, jobs, chunksize=64), total=len(jobs), desc=desc)
    else:
        yield from (fn(j) for j in tqdm(jobs, desc=desc))


def build_cache(
    dirs: Sequence[str | Path],
    cache_dir: str | Path,
    size: int = 224,
    workers: int = 1,
    folder_caps: dict[str, int] | None = None,
) -> Path:
    """Decode every photo under ``dirs`` once into ``cache_dir``: one uint8 memory map per cached side.

    Each photo is centre-cropped to a square at :func:`stored_side` of its short side and its
    folder's cap (``folder_caps[name]``, by the folder's last path part, else ``size``): a 64 px
    photo takes 64 x 64 x 3 bytes, not 224 x 224 x 3. Files: ``<key>_s<side>.u8`` (N_side, side,
    side, 3) and ``<key>.json`` (the file list and each photo's side), written last, so an
    interrupted build is never mistaken for a finished one. Reuses a finished cache of the same files,
    size and caps. Returns the path of the json index.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = [str(f) for f in list_images(dirs)]
    if not files:
        raise ValueError(f"no images under {list(map(str, dirs))}")
    caps = {k: int(v) for k, v in sorted((folder_caps or {}).items())}
    digest = hashlib.sha1(("\n".join(files) + json.dumps(caps)).encode()).hexdigest()[:10]
    key = f"photos_{size}_{len(files)}_{digest}"
    index_path = cache_dir / f"{key}.json"
    if index_path.exists():
        meta = json.loads(index_path.read_text())
        # in list_images' order (by path parts: "cat 2/x" sorts after "cat/x" as a Path, before it as text)
        listed = sorted(meta.get("files", []) + meta.get("skipped_unreadable", []), key=Path)
        same = listed == files and meta.get("size") == size and meta.get("caps", {}) == caps
        if same and all((cache_dir / f"{key}_s{s}.u8").exists() for s in set(meta["sides"])):
            return index_path
    shorts = list(_map(_short_side, files, workers, "reading photo sizes"))
    skipped = [f for f, short in zip(files, shorts, strict=True) if short == 0]
    files = [f for f, short in zip(files, shorts, strict=True) if short > 0]
    shorts = [short for short in shorts if short > 0]
    if not files:
        raise ValueError(f"no readable images under {list(map(str, dirs))}")
    # a cap never raises a photo above the cache's largest side
    folder_cap = [min(caps.get(_folder_of(f, dirs), size), size) for f in files]
    sides = [stored_side(s, c) for s, c in zip(shorts, folder_cap, strict=True)]
    counts: dict[int, int] = {}
    rows = []
    for s in sides:
        rows.append(counts.get(s, 0))
        counts[s] = rows[-1] + 1
    parts = {s: cache_dir / f"{key}_s{s}.u8.part" for s in counts}
    arrays = {
        s: np.lib.format.open_memmap(parts[s], mode="w+", dtype=np.uint8, shape=(n, s, s, 3)) for s, n in counts.items()
    }
    jobs = list(zip(files, sides, strict=True))
    try:
        for i, img in enumerate(_map(_load_for_pool, jobs, workers, "caching photos")):
            arrays[sides[i]][rows[i]] = img
    except BaseException:
        arrays.clear()
        for part in parts.values():
            part.unlink(missing_ok=True)  # gigabytes of half-written maps
        raise
    for s, arr in arrays.items():
        arr.flush()
        del arr
        os.replace(parts[s], cache_dir / f"{key}_s{s}.u8")
    arrays.clear()
    meta = {
        "size": size,
        "caps": caps,
        "files": files,
        "sides": sides,
        "dirs": [str(d) for d in dirs],
        "skipped_unreadable": skipped,
    }
    tmp_index = index_path.with_suffix(".json.part")
    tmp_index.write_text(json.dumps(meta))
    os.replace(tmp_index, index_path)
    return index_path


@dataclass
class PhotoCache:
    """A built cache: photos of several sides, each side in its own (N_side, side, side, 3) uint8 array.

    ``sides[i]`` and ``rows[i]`` place photo ``i`` (of ``files``) at ``buckets[sides[i]][rows[i]]``.
    """

    buckets: dict[int, np.ndarray]
    sides: np.ndarray
    rows: np.ndarray
    files: list[str]
    dirs: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, index_path: str | Path, in_memory: bool = False) -> PhotoCache:
        """Open a cache from its json index; ``in_memory`` copies it to RAM (random access stays fast)."""
        index_path = Path(index_path)
        meta = json.loads(index_path.read_text())
        sides = np.asarray(meta["sides"], dtype=np.int64)
        rows = np.zeros(len(sides), dtype=np.int64)
        buckets = {}
        for s in sorted(set(meta["sides"])):
            members = np.nonzero(sides == s)[0]
            rows[members] = np.arange(len(members))
            data = np.load(index_path.with_name(f"{index_path.stem}_s{s}.u8"), mmap_mode="r")
            # a copy: ascontiguousarray would return a view of the (contiguous) map
            buckets[s] = np.array(data) if in_memory else data
        return cls(buckets=buckets, sides=sides, rows=rows, files=meta["files"], dirs=meta.get("dirs", []))

    def __len__(self) -> int:
        return len(self.files)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buckets.values())

    def photo(self, i: int) -> np.ndarray:
        """Photo ``i`` as (side, side, 3) uint8."""
        return np.asarray(self.buckets[int(self.sides[i])][self.rows[i]])

    def group_rows(self, indices: torch.Tensor | Sequence[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """How to read the photos at ``indices``: per cached side, smallest first,
        ``(side, positions (b,) into indices, rows (b,) into buckets[side])``, rows ascending."""
        idx = np.asarray(indices, dtype=np.int64)
        sides = self.sides[idx]
        out = []
        for s in np.unique(sides):
            pos = np.nonzero(sides == s)[0]
            order = np.argsort(self.rows[idx[pos]], kind="stable")  # ascending rows read the map in order
            out.append((int(s), pos[order], self.rows[idx[pos[order]]]))
        return out

    def groups(self, indices: torch.Tensor | Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The photos at ``indices`` grouped by side, smallest side first.

        Returns ``[(positions (b,) int64 into indices, photos (b, side, side, 3) uint8), ...]``.
        """
        return [
            (torch.from_numpy(pos), torch.from_numpy(np.ascontiguousarray(self.buckets[s][rows])))
            for s, pos, rows in self.group_rows(indices)
        ]


def augment_groups(
    groups: Sequence[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    out_size: int,
    scale: tuple[float, float] = (0.25, 1.0),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`augment_batch` for a batch cached at several sides (:meth:`PhotoCache.groups`).

    Each group is cropped from its own photos (no photo is resized to a common side first); the
    results land at their positions in the batch: (batch_size, 3, out_size, out_size) float32.
    """
    out = None
    for pos, photos in groups:
        x = augment_batch(photos, out_size, scale=scale, flip=flip, generator=generator)
        if out is None:
            out = x.new_empty((batch_size, 3, out_size, out_size))
        out[pos.to(x.device)] = x
    if out is None:
        raise ValueError("augment_groups: no photos")
    return out


def normalize_uint8(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 normalised with the project's mean/std."""
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def augment_batch(
    photos: torch.Tensor,
    out_size: int,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random resized crop (+ horizontal flip) of a uint8 batch, as one ``grid_sample``.

    photos: (B, S, S, 3) uint8. Returns (B, 3, out_size, out_size) float32, normalised. Each sample
    gets a crop whose area is a uniform fraction ``scale`` of the photo and whose log aspect ratio is
    uniform in ``log(ratio)``, clipped to fit, at a uniform position (Inception-style crop).
    The random draws come from ``generator`` on the CPU whatever ``photos``' device, so a run's
    crops do not depend on where it trains.
    """
    b = photos.shape[0]
    x = normalize_uint8(photos)
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(log_r)
    # Crop width / height as fractions of the (square) photo, clipped to the photo.
    cw = torch.sqrt(area * r).clamp(max=1.0)
    ch = torch.sqrt(area / r).clamp(max=1.0)
    # Centre in normalised [-1, 1] coordinates, anywhere the crop still fits.
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - cw)
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - ch)
    sx = cw.clone()
    if flip:
        sx = torch.where(torch.rand(b, generator=generator) < 0.5, -sx, sx)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = ch, cy
    theta = theta.to(x.device)
    # A crop much larger than the output would alias: shrink the photo first (antialiased).
    src = x.shape[-1]
    min_side = float(torch.minimum(cw, ch).min())
    if src * min_side > 2 * out_size:
        target = max(out_size, math.ceil(2 * out_size / min_side))
        if target < src:
            x = F.interpolate(x, size=(target, target), mode="bilinear", antialias=True, align_corners=False)
    grid = F.affine_grid(theta, [b, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


#: Sides (px) a view shown at low resolution is shrunk to, uniformly (:func:`low_resolution`): about
#: the detail of a 64 px or 84 px photo cropped and enlarged, as most training photos are.
LOW_RES_SIDES: tuple[int, int] = (40, 96)


def low_resolution(
    x: torch.Tensor,
    prob: torch.Tensor,
    sides: tuple[int, int] = LOW_RES_SIDES,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Show each view, with its own probability, at a lower resolution: shrunk to a side drawn uniformly
    from ``sides`` (antialiased) and enlarged back (bilinear), as a small photo enlarged for the model.

    x: (B, 3, S, S) views; prob: (B,) probabilities in [0, 1]. Returns a new (B, 3, S, S) tensor; the
    views not drawn are unchanged. Used so that sharpness does not tell the student which folder, and
    so which few classes, a photo comes from. Draws come from ``generator`` on the CPU.
    """
    b, s = x.shape[0], x.shape[-1]
    hit = torch.rand(b, generator=generator) < prob.cpu()
    side = torch.randint(sides[0], sides[1] + 1, (b,), generator=generator)
    out = x.clone()
    for v in side[hit].unique().tolist():
        if v >= s:
            continue
        sel = torch.nonzero(hit & (side == v)).flatten().to(x.device)
        small = F.interpolate(x[sel], size=(v, v), mode="bilinear", antialias=True, align_corners=False)
        out[sel] = F.interpolate(small, size=(s, s), mode="bilinear", align_corners=False)
    return out


def mixup(
    x: torch.Tensor, alpha: float = 1.0, prob: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mix each sample with another of the batch: x_i' = lam_i x_i + (1 - lam_i) x_perm(i).

    Labels are not needed (the teacher labels the mixed image), so per-sample ``lam ~ Beta(alpha,
    alpha)``; a sample is left unmixed with probability ``1 - prob``. (B, ...) -> (B, ...).
    """
    if alpha <= 0 or prob <= 0 or x.shape[0] < 2:
        return x
    b = x.shape[0]
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    if generator is not None:
        # Beta has no generator argument: derive its draws from the generator's stream.
        state = torch.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        lam = beta.sample((b,))
        torch.set_rng_state(state)
    else:
        lam = beta.sample((b,))
    keep = torch.rand(b, generator=generator) >= prob
    lam = torch.where(keep, torch.ones_like(lam), lam)
    perm = torch.randperm(b, generator=generator).to(x.device)
    lam = lam.view(b, *([1] * (x.dim() - 1))).to(device=x.device, dtype=x.dtype)
    return lam * x + (1 - lam) * x[perm]


def held_out_key(folder: str | Path) -> str:
    """A held-out folder's name as model cards record it: its last two path parts (``val/imagewoof``),
    wherever the folder lies on this machine."""
    return str(Path(*Path(os.path.abspath(os.fspath(folder))).parts[-2:]))


def load_eval_set(
    root: str | Path,
    size: int = 224,
    limit: int | None = None,
    seed: int = 0,
    unreadable: list[Path] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Labelled photos under ``root`` with the evaluation transform, as uint8 to keep memory small.

    Returns (images (N, size, size, 3) uint8, labels (N,) int64, paths). ``limit`` takes a fixed
    random subset (same ``seed`` -> same photos). A photo that cannot be decoded (truncated, empty, a
    ``._`` resource fork) is left out, and its path appended to ``unreadable`` when given: one bad
    file does not end an evaluation. Normalise with :func:`normalize_uint8`.
    """
    items = labelled_images(root)
    if limit is not None and limit < len(items):
        g = torch.Generator().manual_seed(seed)
        keep = sorted(torch.randperm(len(items), generator=g)[:limit].tolist())
        items = [items[i] for i in keep]
    imgs = np.empty((len(items), size, size, 3), dtype=np.uint8)
    kept: list[tuple[Path, int]] = []
    for path, label in items:
        try:
            with Image.open(path) as im:
                imgs[len(kept)] = np.asarray(resize_center_crop(upright(im), size), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            if unreadable is not None:
                unreadable.append(Path(path))
            continue
        kept.append((path, label))
    labels = torch.tensor([label for _, label in kept], dtype=torch.int64)
    return torch.from_numpy(imgs[: len(kept)]), labels, [p for p, _ in kept]


def training_data_summary(files: Sequence[str | Path], dirs: Sequence[str | Path]) -> dict:
    """What a set of training photos covers, for the model card.

    A photo's ImageNet class is its first subfolder under its training folder when that is a WordNet
    id; other photos (a flat folder, Caltech-101's categories) count as unlabelled for coverage.
    Returns ``{"folders": {name: {"photos", "imagenet_classes"}}, "total_photos",
    "imagenet_classes_with_photos", "classes_with_at_least_100_photos", "photos_without_imagenet_class"}``.
    """
    index = wnid_to_index()
    prefixes = [(os.path.abspath(os.fspath(d)).rstrip(os.sep) + os.sep, d) for d in dirs]
    folders: dict[str, dict[str, int]] = {}
    folder_classes: dict[str, set[str]] = {}
    per_class: dict[str, int] = {}
    unlabelled = 0
    for f in files:
        key = os.path.abspath(os.fspath(f))
        pre = next((p for p, _ in prefixes if key.startswith(p)), None)
        if pre is None:
            raise ValueError(f"photo {f!r} is under none of {list(map(str, dirs))}")
        name = os.path.basename(pre.rstrip(os.sep))
        entry = folders.setdefault(name, {"photos": 0, "imagenet_classes": 0})
        entry["photos"] += 1
        parts = key[len(pre) :].split(os.sep)
        wnid = parts[0] if len(parts) > 1 and parts[0] in index else None
        if wnid is None:
            unlabelled += 1
            continue
        folder_classes.setdefault(name, set()).add(wnid)
        per_class[wnid] = per_class.get(wnid, 0) + 1
    for name, entry in folders.items():
        entry["imagenet_classes"] = len(folder_classes.get(name, ()))
    return {
        "folders": folders,
        "total_photos": len(files),
        "imagenet_classes_with_photos": len(per_class),
        "classes_with_at_least_100_photos": sum(n >= 100 for n in per_class.values()),
        "photos_without_imagenet_class": unlabelled,
    }


def coverage_text(summary: dict) -> str:
    """One paragraph, computed from :func:`training_data_summary`, on how evenly the classes are covered."""
    many = summary["classes_with_at_least_100_photos"]
    seen = summary["imagenet_classes_with_photos"]
    few = seen - many
    unseen = 1000 - seen
    text = (
        f"Trained on {summary['total_photos']:,} photos: {many} of the 1000 ImageNet classes have at least 100 "
        f"of them, {few} have fewer"
    )
    text += f" and {unseen} have none" if unseen else ""
    if summary["photos_without_imagenet_class"]:
        text += f"; {summary['photos_without_imagenet_class']:,} photos are of no ImageNet class"
    return text + ". The student saw the thinly covered classes rarely; expect it to be weaker on them."
