"""The command lines' output folder: made (or checked) before any model is loaded."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_out_dir(path: Path) -> None:
    """Create ``path`` (and its parents) when missing; raise ``ValueError`` with a message for the
    user when it is a file, sits under a file, or cannot be written to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"--out {path} is a file, not a folder") from None
    except NotADirectoryError:
        raise ValueError(f"--out {path}: a part of that path is a file, not a folder") from None
    except OSError as e:
        raise ValueError(f"--out {path}: cannot create it ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: no permission to write there")
