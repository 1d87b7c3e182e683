"""Files of the current views for the Downloads tab: PNGs and ``sepvit_analysis.npz``.

Each preparation writes one fresh folder under :data:`DOWNLOAD_ROOT`; folders older than
:data:`~sepvit_viz.limits.DOWNLOAD_TTL_S` are removed before a new one is written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sepvit_viz.limits import DOWNLOAD_TTL_S
from sepvit_viz.viz import render

__all__ = ["DOWNLOAD_ROOT", "prune", "write_files"]

DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "sepvit_viz_downloads"


def prune(now: float | None = None, root: Path | None = None) -> None:
    """Remove download folders older than the time to live."""
    now = time.time() if now is None else now
    root = root or DOWNLOAD_ROOT
    if not root.is_dir():
        return
    for d in root.iterdir():
        try:
            if d.is_dir() and now - d.stat().st_mtime > DOWNLOAD_TTL_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def write_files(pictures: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray]) -> list[str]:
    """``<name>.png`` for each picture and ``sepvit_analysis.npz`` with ``arrays``, in a new folder;
    returns their paths (pictures first)."""
    prune()
    out = DOWNLOAD_ROOT / uuid.uuid4().hex
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, img in pictures.items():
        path = out / f"{name}.png"
        path.write_bytes(render.to_png(img))
        files.append(str(path))
    path = out / "sepvit_analysis.npz"
    render.export_npz(dict(arrays), path)
    files.append(str(path))
    return files
