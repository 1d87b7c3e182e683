"""ImageNet class names, labelled image folders, and a fast uint8 photo cache for CPU training.

Folders of photos are named by WordNet id (``n01440764``); ``assets/imagenet_classes.tsv`` (columns
``index``, ``wnid``, ``name``; copied from the shared data) maps them to the 1000 standard class
indices (ids sorted) and readable names.

Training on a CPU cannot afford to decode JPEGs every step, so :func:`build_cache` decodes every
training photo once into a ``(N, S, S, 3)`` uint8 memory map; :func:`augment_batch` then makes random
resized crops, flips and mixup as batched tensor ops (one ``grid_sample`` per batch).
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

from sepvit_viz.preprocess import MEAN, STD, resize_center_crop

__all__ = [
    "CLASSES_TSV",
    "IMAGE_EXTENSIONS",
    "PhotoCache",
    "augment_batch",
    "build_cache",
    "imagenet_class_names",
    "imagenet_classes",
    "labelled_images",
    "list_images",
    "load_eval_set",
    "load_square",
    "mixup",
    "normalize_uint8",
    "wnid_to_index",
]

CLASSES_TSV = Path(__file__).resolve().parent.parent / "assets" / "imagenet_classes.tsv"
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
    """Decode a photo, resize its short side to ``size`` (bicubic) and centre-crop: (size, size, 3) uint8."""
    with Image.open(path) as im:
        img = resize_center_crop(im, size, crop_pct=1.0)
    return np.asarray(img, dtype=np.uint8)


def _load_for_pool(args: tuple[str, int]) -> np.ndarray:
    return load_square(*args)


def build_cache(dirs: Sequence[str | Path], cache_dir: str | Path, size: int = 224, workers: int = 1) -> Path:
    """Decode every photo under ``dirs`` once into ``cache_dir/photos_<size>.u8`` (+ ``.json`` index).

    Returns the path of the json index. Reuses an existing cache built from the same file list and
    size. The data file is written under a temporary name and renamed when complete, so an
    interrupted build is never mistaken for a finished one.
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = list_images(dirs)
    if not files:
        raise ValueError(f"no images under {list(map(str, dirs))}")
    digest = hashlib.sha1("\n".join(map(str, files)).encode()).hexdigest()[:10]
    key = f"photos_{size}_{len(files)}_{digest}"
    index_path, data_path = cache_dir / f"{key}.json", cache_dir / f"{key}.u8"
    if index_path.exists() and data_path.exists():
        meta = json.loads(index_path.read_text())
        if meta["files"] == [str(f) for f in files] and meta["size"] == size:
            return index_path
    tmp = data_path.with_suffix(".u8.part")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
    jobs = [(str(f), size) for f in files]
    if workers > 1:
        import multiprocessing

        # spawn, not fork: a fork of a process whose torch thread pools already run can deadlock
        # in the child (seen here when the teacher was built before the cache)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            it = pool.imap(_load_for_pool, jobs, chunksize=64)
            for i, img in enumerate(tqdm(it, total=len(jobs), desc=f"caching photos at {size}px")):
                arr[i] = img
    else:
        for i, job in enumerate(tqdm(jobs, desc=f"caching photos at {size}px")):
            arr[i] = _load_for_pool(job)
    arr.flush()
    del arr
    os.replace(tmp, data_path)
    index_path.write_text(json.dumps({"size": size, "files": [str(f) for f in files], "dirs": [str(d) for d in dirs]}))
    return index_path


@dataclass
class PhotoCache:
    """A built cache: ``photos`` (N, S, S, 3) uint8 (memory-mapped) and the source file list."""

    photos: np.ndarray
    files: list[str]
    dirs: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, index_path: str | Path, in_memory: bool = False) -> PhotoCache:
        """Open a cache from its json index; ``in_memory`` copies it to RAM (random access stays fast)."""
        meta = json.loads(Path(index_path).read_text())
        data = np.load(Path(index_path).with_suffix(".u8"), mmap_mode="r")
        if in_memory:
            data = np.array(data)  # a copy: ascontiguousarray would return a view of the (contiguous) map
        return cls(photos=data, files=meta["files"], dirs=meta.get("dirs", []))

    def __len__(self) -> int:
        return len(self.files)

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Photos at ``indices`` as a (B, S, S, 3) uint8 tensor."""
        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.photos[idx]))


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


def load_eval_set(
    root: str | Path, size: int = 224, limit: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Labelled photos under ``root`` with the evaluation transform, as uint8 to keep memory small.

    Returns (images (N, size, size, 3) uint8, labels (N,) int64, paths). ``limit`` takes a fixed
    random subset (same ``seed`` -> same photos). Normalise with :func:`normalize_uint8`.
    """
    items = labelled_images(root)
    if limit is not None and limit < len(items):
        g = torch.Generator().manual_seed(seed)
        keep = sorted(torch.randperm(len(items), generator=g)[:limit].tolist())
        items = [items[i] for i in keep]
    imgs = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        with Image.open(path) as im:
            imgs[i] = np.asarray(resize_center_crop(im, size), dtype=np.uint8)
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.from_numpy(imgs), labels, [p for p, _ in items]
