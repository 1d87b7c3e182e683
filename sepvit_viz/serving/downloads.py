"""Files of the current views for the Downloads tab: PNGs and ``sepvit_analysis.npz``.

Each preparation writes one fresh folder under :func:`download_root`, a private folder of this
process (``tempfile.mkdtemp``: created new, mode 0700, so no other user of the machine can plant a
link there) that is removed when the process exits. Before a new folder is written, folders older
than :data:`~sepvit_viz.limits.DOWNLOAD_TTL_S` go, and so do all but the newest
:data:`~sepvit_viz.limits.DOWNLOAD_FOLDERS_MAX` - 1: the disk used stays bounded whatever a client sends.
The files are byte-for-byte the same for the same views (NumPy stamps no time in the .npz), so
Gradio's content-addressed cache keeps one copy of a repeated request.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sepvit_viz.limits import DOWNLOAD_FOLDERS_MAX, DOWNLOAD_TTL_S
from sepvit_viz.viz import render

__all__ = ["download_root", "prune", "write_files"]

_root: Path | None = None
_root_lock = threading.Lock()


def download_root() -> Path:
    """This process's private download folder (made on first use, removed at exit)."""
    global _root
    with _root_lock:
        if _root is None or not _root.is_dir():
            _root = Path(tempfile.mkdtemp(prefix="sepvit_viz_downloads_"))
            atexit.register(shutil.rmtree, _root, ignore_errors=True)
        return _root


def prune(now: float | None = None, root: Path | None = None, keep: int = DOWNLOAD_FOLDERS_MAX) -> None:
    """Remove download folders older than the time to live, then all but the ``keep`` newest.

    Only real folders directly under ``root`` are removed (a link is left alone, never followed)."""
    now = time.time() if now is None else now
    root = root or download_root()
    if root.is_symlink() or not root.is_dir():
        return
    folders = []
    for d in root.iterdir():
        try:
            if d.is_symlink() or not d.is_dir():
                continue
            mtime = d.stat().st_mtime
        except OSError:
            continue
        if now - mtime > DOWNLOAD_TTL_S:
            shutil.rmtree(d, ignore_errors=True)
        else:
            folders.append((mtime, d))
    for _, d in sorted(folders, reverse=True)[max(keep, 0) :]:
        shutil.rmtree(d, ignore_errors=True)


def write_files(pictures: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray]) -> list[str]:
    """``<name>.png`` for each picture ((H, W, 3) uint8, any size) and ``sepvit_analysis.npz`` with
    ``arrays``, in a new folder under :func:`download_root` (older folders pruned); returns their paths
    (pictures first, the .npz last)."""
    root = download_root()
    prune(root=root, keep=DOWNLOAD_FOLDERS_MAX - 1)
    out = root / uuid.uuid4().hex
    out.mkdir()
    files = []
    for name, img in pictures.items():
        path = out / f"{name}.png"
        path.write_bytes(render.to_png(img))
        files.append(str(path))
    path = out / "sepvit_analysis.npz"
    render.export_npz(dict(arrays), path)
    files.append(str(path))
    return files
