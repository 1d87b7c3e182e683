"""The command lines' output folder: made (or checked) before any model is loaded."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_out_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and its parents) when missing and return it as a Path.

    Raises ``ValueError`` with a one-line message for the user ("--out ...") when ``path`` is empty
    (``""``: "--out is empty: name a folder (. for the current one)"; pass the option's text as it
    was given, since ``Path("")`` is already ``.``), is a file, sits under a file, or cannot be created
    or written to.
    """
    if os.fspath(path) == "":
        raise ValueError("--out is empty: name a folder (. for the current one)")
    path = Path(path)
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
    return path
