"""The command lines' output folder: checked before any model is loaded, made only once the input
is known to be good (:func:`check_out_dir`, then :func:`prepare_out_dir`), so bad input leaves no
empty folder behind."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["blocking_file", "check_out_dir", "prepare_out_dir"]


def blocking_file(path: str | os.PathLike[str]) -> Path | None:
    """The part of ``path`` that exists and is not a folder, so that no folder can be made at ``path``:
    ``path`` itself, or the nearest of its parents that exists; None when there is none."""
    path = Path(path)
    for part in (path, *path.absolute().parents):
        if part.exists():
            return None if part.is_dir() else part
    return None


def check_out_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path once it is known that :func:`prepare_out_dir` could make it (or write into
    it); nothing is created. Raises ``ValueError`` with the same one-line messages: empty, a file,
    under a file, or a folder (the one there, else the nearest existing parent) this user may not
    write to."""
    if os.fspath(path) == "":
        raise ValueError("--out is empty: name a folder (. for the current one)")
    path = Path(path)
    blocker = blocking_file(path)
    if blocker is not None:
        if blocker == path:
            raise ValueError(f"--out {path} is a file, not a folder")
        raise ValueError(f"--out {path}: a part of that path is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"--out {path}: no permission to write there")
        return path
    parent = next(p for p in path.absolute().parents if p.exists())  # the root always exists
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: cannot create it (no permission to write in {parent})")
    return path


def prepare_out_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and its parents) when missing and return it as a Path.

    Raises ``ValueError`` with a one-line message for the user ("--out ...") when ``path`` is empty
    (``""``: "--out is empty: name a folder (. for the current one)"; pass the option's text as it
    was given, since ``Path("")`` is already ``.``), is a file, sits under a file, or cannot be created
    or written to. Commands call :func:`check_out_dir` first, before loading anything, and this
    only once the input has been checked.
    """
    path = check_out_dir(path)
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
