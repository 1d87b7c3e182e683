"""Diagnosis on tuning photos: does a student answer "one of the few classes with many sharp photos"
whenever a photo is sharp?

Most training photos of most classes are small (64-84 px, enlarged), while nearly all sharp photos of
the dense folders show 20 classes (Imagenette's 10 and Imagewoof's 10 breeds). A student that learned
"sharp means one of those 20" names them on sharp photos of any other class. This script counts, on
photos of classes *outside* the dense folders, how often the teacher and each student name a dense
class (and their top-1 where the folder is labelled by WordNet ids). Photos are read with the
evaluation transform (224 px, bicubic, centre crop 0.875). It is not an automatic benchmark module
(it reads training photos that stay outside the project); run it by hand::

    python -m benchmarks.probe_sharp_shortcut \\
        --dense ../shared/data/train/imagenette OUT/train/imagewoof \\
        --photos ../shared/data/train/imagenet-sample OUT/train/mini-imagenet-extra OUT/train/caltech101 \\
        --checkpoints assets/sepvit_lite_distilled.safetensors runs/run13/sepvit_lite_distilled.safetensors
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import conditions, md_table


def dense_classes(dirs: Sequence[Path]) -> set[int]:
    """ImageNet indices of the WordNet-id subfolders of ``dirs``."""
    from sepvit_viz.training.data import wnid_to_index

    w2i = wnid_to_index()
    return {w2i[p.name] for d in dirs for p in Path(d).iterdir() if p.is_dir() and p.name in w2i}


def sample(folder: Path, dense: set[int], n: int, seed: int) -> tuple[list[Path], list[int | None]]:
    """Up to ``n`` photos of ``folder`` not of a dense class: (paths, ImageNet index or None if unlabelled)."""
    from sepvit_viz.training.data import list_images, wnid_to_index

    w2i = wnid_to_index()
    items = [(p, w2i.get(p.parent.name)) for p in list_images([folder])]
    items = [(p, y) for p, y in items if y not in dense]
    random.Random(seed).shuffle(items)
    items = items[:n]
    return [p for p, _ in items], [y for _, y in items]


def model_labels(checkpoints: Sequence[str]) -> list[str]:
    """A row label per checkpoint: its folder's name (runs/run19/x.safetensors -> run19), or the path as
    given where two checkpoints share a folder name."""
    short = [Path(c).parent.name or c for c in checkpoints]
    return [s if short.count(s) == 1 else c for s, c in zip(short, checkpoints, strict=True)]


def main(argv: Sequence[str] | None = None) -> int:
    import numpy as np
    import torch
    from PIL import Image
    from tqdm import tqdm

    from sepvit_viz.imageio import upright
    from sepvit_viz.model.weights import load_checkpoint
    from sepvit_viz.preprocess import resize_center_crop
    from sepvit_viz.training.data import normalize_uint8
    from sepvit_viz.training.teacher import create_teacher

    ap = argparse.ArgumentParser(prog="python -m benchmarks.probe_sharp_shortcut", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dense", nargs="+", type=Path, required=True, help="folders whose classes count as dense")
    ap.add_argument("--photos", nargs="+", type=Path, required=True, help="folders of tuning photos")
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=300, help="photos per folder (default 300)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dense = dense_classes(args.dense)
    nets = [("teacher", create_teacher().eval())] + [
        (label, load_checkpoint(c).float().eval())
        for label, c in zip(model_labels(args.checkpoints), args.checkpoints, strict=True)
    ]
    rows = []
    for folder in args.photos:
        paths, labels = sample(folder, dense, args.n, args.seed)
        xs = []
        for p in tqdm(paths, desc=folder.name, file=sys.stderr):
            with Image.open(p) as im:
                xs.append(torch.from_numpy(np.array(resize_center_crop(upright(im), 224), dtype=np.uint8)))
        x = normalize_uint8(torch.stack(xs))
        labelled = all(y is not None for y in labels)
        for name, net in nets:
            with torch.no_grad():
                pred = torch.cat([net(x[i : i + 50]).argmax(-1) for i in range(0, len(x), 50)]).tolist()
            in_dense = sum(p in dense for p in pred)
            top1 = f"{np.mean([p == y for p, y in zip(pred, labels, strict=True)]):.1%}" if labelled else "-"
            rows.append(
                [
                    folder.name,
                    name,
                    len(pred),
                    f"{in_dense} ({in_dense / len(pred):.1%})",
                    top1,
                ]
            )
    print(conditions(dense_classes=len(dense), photos_per_folder=args.n, seed=args.seed))
    print()
    print(md_table(["photos", "model", "n", "answers in a dense class", "top-1"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
