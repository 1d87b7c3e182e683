"""Publish the app as a Hugging Face Space: which files go, how binaries travel, one commit.

A Space is a git repository the Hub builds and runs. Two things decide whether it deploys as it is:

- **what is sent**: the app and everything it reads at run time (``app.py``, ``sepvit_viz/``,
  ``assets/``, the requirements files, the README whose front matter configures the Space) and the
  docs the README links to; never tests, benchmarks, training runs, caches or virtual environments.
  Only files git tracks are sent, so nothing ignored (``.venv/``, ``runs/``) can leak;
- **how binaries are stored**: the Hub refuses binary files in plain git. The Space gets its own
  ``.gitattributes`` (:data:`SPACE_GITATTRIBUTES`) that routes every binary kind the project holds
  (the checkpoint, the example photos, the docs' pictures) through the Hub's large-file storage, and
  :func:`deploy` checks that every file it sends is either text or matched by one of those patterns.

:func:`deploy` makes one commit with ``HfApi.create_commit``, which uploads large files itself.
Command line (``--dry-run`` lists what would be sent and sends nothing)::

    python -m sepvit_viz.deploy YOU/sepvit-viz [--dry-run] [--private]

A repo id that is not ``owner/name`` is refused before anything else (also with ``--dry-run``), exit
status 2; a deploy the Hub refuses or cannot take (not logged in, offline, no permission,
huggingface_hub not installed) ends with one ``error:`` line and exit status 1, Ctrl-C with
``interrupted`` and status 130, not a traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "LFS_PATTERNS",
    "SPACE_GITATTRIBUTES",
    "SpacePlan",
    "deploy",
    "is_binary",
    "main",
    "plan",
    "repo_id_problem",
    "uncommitted",
]

ROOT = Path(__file__).resolve().parent.parent

#: Top-level files and folders a Space needs (the app, what it reads, the docs the README links).
INCLUDE: tuple[str, ...] = (
    "README.md",
    "CHANGELOG.md",
    "app.py",
    "requirements.txt",
    "pre-requirements.txt",
    "sepvit_viz",
    "assets",
    "docs",
)

#: Binary kinds routed through the Hub's large-file storage (LFS / Xet).
LFS_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.pt",
    "*.bin",
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.webp",
    "*.gif",
)

#: The Space's ``.gitattributes`` (the project's own repository keeps its files in plain git).
SPACE_GITATTRIBUTES: str = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS)


def is_binary(path: Path) -> bool:
    """True when the file's first 8 KiB hold a NUL byte or are not UTF-8 (what git would call binary)."""
    with open(path, "rb") as f:  # the head only: a checkpoint is megabytes
        head = f.read(8192)
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(head) - 4  # a multi-byte character cut at the 8 KiB edge is still text
    return False


def _lfs_matched(rel: str) -> bool:
    name = PurePosixPath(rel).name
    return any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


def _tracked(root: Path) -> list[str]:
    """Files git tracks under ``root`` (posix paths relative to it); ``ValueError`` with git's reason
    when they cannot be listed (not a git checkout, e.g. an unpacked archive, or git not installed)."""
    try:
        run = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        reason = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
        raise ValueError(
            f"cannot list the files git tracks in {root} ({reason}): a Space is deployed from a git checkout"
        ) from None
    return sorted(p for p in run.stdout.decode().split("\0") if p)


def uncommitted(root: Path, files: Sequence[str]) -> list[str]:
    """Those of ``files`` (tracked, relative to ``root``) whose working-tree content differs from the
    last commit: a deploy sends the working tree, so an edit in progress (a card a running
    evaluation rewrites, a checkpoint a run exports) would go out unreviewed."""
    if not files:
        return []
    try:
        run = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain=v1", "-z", "--untracked-files=no", "--", *files],
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise ValueError(f"cannot ask git which files changed in {root} ({e})") from None
    entries = [e for e in run.stdout.decode(errors="replace").split("\0") if e]
    return sorted(e[3:] for e in entries if len(e) > 3)


@dataclass(frozen=True)
class SpacePlan:
    """What one deploy sends: ``files`` (posix paths relative to ``root``), of which ``lfs`` go by
    large-file storage, plus the Space's ``.gitattributes``."""

    root: Path
    files: tuple[str, ...]
    lfs: tuple[str, ...]
    gitattributes: str = SPACE_GITATTRIBUTES

    @property
    def nbytes(self) -> int:
        return sum((self.root / f).stat().st_size for f in self.files)


def plan(root: Path = ROOT, files: Sequence[str] | None = None) -> SpacePlan:
    """The files a Space of ``root`` needs, checked: a clear ``ValueError`` when the Space could not
    deploy as it is (no front matter, a file missing, a binary file that the Space's
    ``.gitattributes`` would leave in plain git, a path outside ``root``).

    ``files`` defaults to what git tracks in ``root``.
    """
    root = Path(root).resolve()
    candidates = _tracked(root) if files is None else list(files)
    chosen: list[str] = []
    for rel in candidates:
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"{rel!r} is outside the project")
        if p.parts and p.parts[0] in INCLUDE and (root / rel).is_file():
            chosen.append(rel)
    for need in ("README.md", "app.py", "requirements.txt", "pre-requirements.txt"):
        if need not in chosen:
            raise ValueError(f"a Space needs {need}, which is not among the project's files")
    front = (root / "README.md").read_text(encoding="utf-8").split("\n")
    if front[0].strip() != "---" or "---" not in [s.strip() for s in front[1:40]]:
        raise ValueError("README.md must start with the Space's front matter (--- ... ---)")
    meta = front[1 : [s.strip() for s in front[1:40]].index("---") + 1]
    for key in ("sdk: gradio", "app_file: app.py"):
        if key not in [s.strip() for s in meta]:
            raise ValueError(f"README.md's front matter lacks '{key}'")
    lfs, unrouted = [], []
    for rel in chosen:
        if _lfs_matched(rel):
            lfs.append(rel)
        elif is_binary(root / rel):
            unrouted.append(rel)
    if unrouted:
        raise ValueError(
            "binary files that the Space's .gitattributes would leave in plain git (the Hub refuses "
            f"them): {', '.join(unrouted)}; add their kind to sepvit_viz.deploy.LFS_PATTERNS"
        )
    return SpacePlan(root, tuple(chosen), tuple(lfs))


def deploy(
    repo_id: str,
    *,
    root: Path = ROOT,
    api: Any = None,
    private: bool = False,
    message: str = "Deploy sepvit-viz",
) -> Any:
    """Create (or reuse) the Gradio Space ``repo_id`` and make it hold exactly :func:`plan`, in one
    commit: every planned file added, every other file already on the Space deleted (the app lists
    its example photos and checkpoints by globbing ``assets/``, so a file left behind would still be
    offered).

    ``api`` is a ``huggingface_hub.HfApi`` (made here when None; it reads the token that
    ``hf auth login`` stored). Returns what ``create_commit`` returns (the commit's info).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    space = plan(root)
    api = api if api is not None else HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True, private=private)
    operations: list[Any] = [CommitOperationAdd(".gitattributes", space.gitattributes.encode())]
    operations += [CommitOperationAdd(rel, str(space.root / rel)) for rel in space.files]
    operations += [
        CommitOperationDelete(rel) for rel in stale_files(space, api.list_repo_files(repo_id, repo_type="space"))
    ]
    return api.create_commit(repo_id, operations, commit_message=message, repo_type="space")


def stale_files(space: SpacePlan, on_space: Sequence[str]) -> list[str]:
    """Files on the Space (``on_space``: its paths) that the plan does not send: deleted by :func:`deploy`."""
    keep = {".gitattributes", *space.files}
    return sorted(rel for rel in on_space if rel not in keep)


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The exception types a deploy's failure may have that are not a bug here: the machine's and the
    network's (``OSError``, which huggingface_hub's own errors derive from), a value the Hub's client
    refuses (``ValueError``, e.g. ``HFValidationError``), the HTTP client's (httpx or requests, when
    installed) and a missing huggingface_hub (``ImportError``). Anything else keeps its traceback."""
    found: list[type[BaseException]] = [OSError, ValueError, ImportError]
    for module, name in (
        ("huggingface_hub.errors", "HfHubHTTPError"),
        ("httpx", "HTTPError"),
        ("requests", "RequestException"),
    ):
        with contextlib.suppress(ImportError, AttributeError):  # not installed: nothing of it to catch
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def _hub_failure(e: BaseException) -> str:
    """One line for an exception a deploy raised (huggingface_hub's, the network's): what happened and,
    where it helps, what to do; never a traceback or the library's multi-line text. Works when
    huggingface_hub itself cannot be imported."""
    try:
        from huggingface_hub import errors
    except ImportError:
        errors = None  # type: ignore[assignment]
    if isinstance(e, ImportError):
        return f"{e.name or 'a module'} cannot be imported ({e}): install the requirements (pip install -r requirements.txt)"
    status = getattr(getattr(e, "response", None), "status_code", None)
    if (errors is not None and isinstance(e, errors.LocalTokenNotFoundError)) or status == 401:
        return "not logged in to the Hugging Face Hub: run `hf auth login` first"
    if errors is not None and isinstance(e, errors.OfflineModeIsEnabled):
        return "the Hugging Face Hub is switched off here (HF_HUB_OFFLINE)"
    if status == 403:
        return "the Hugging Face Hub refused it (HTTP 403): this login may not write to that Space"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    first = lines[0] if lines else type(e).__name__
    if errors is not None and isinstance(e, errors.HfHubHTTPError):
        return f"the Hugging Face Hub refused it: {first}"
    if isinstance(e, (ConnectionError, TimeoutError)) or "Connect" in type(e).__name__ or "Timeout" in type(e).__name__:
        return f"the Hugging Face Hub cannot be reached ({first})"
    return f"{type(e).__name__}: {first}"


def repo_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is not a Space id the Hub takes (``owner/name``: letters, digits, ``-``, ``_``,
    ``.``; no ``..``), or None."""
    from sepvit_viz.validation import is_hub_repo_id

    if is_hub_repo_id(repo_id):
        return None
    return f"invalid Space id {repo_id!r}: expected owner/name (letters, digits, '-', '_', '.')"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sepvit_viz.deploy``: 0 when sent (or listed, with ``--dry-run``); 2 for bad input (a
    repo id that is not ``owner/name``, a tree that cannot be planned, uncommitted files); 1 when the
    Hub refuses or cannot be reached; 130 on Ctrl-C. Each failure is one line on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m sepvit_viz.deploy",
        description="Publish this project as a Hugging Face Space (run `hf auth login` first).",
    )
    parser.add_argument("repo_id", help="the Space, as owner/name (created when missing)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument(
        "--allow-uncommitted",
        action="store_true",
        help="send files whose working-tree content differs from the last commit (refused by default)",
    )
    args = parser.parse_args(argv)
    problem = repo_id_problem(args.repo_id)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        space = plan()
        changed = uncommitted(space.root, space.files)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for rel in space.files:
        print(("lfs  " if rel in space.lfs else "git  ") + rel)
    print(f"{len(space.files)} files, {space.nbytes / 2**20:.1f} MB, {len(space.lfs)} by large-file storage")
    if changed:
        what = f"{len(changed)} file(s) differ from the last commit: {', '.join(changed)}"
        if args.dry_run or args.allow_uncommitted:
            print(f"WARNING: {what}; they would be sent as they are now", file=sys.stderr)
        else:
            print(f"error: {what}; commit them, or pass --allow-uncommitted", file=sys.stderr)
            return 2
    if args.dry_run:
        print("(files on the Space that this list lacks are deleted by a real deploy)")
        return 0
    try:
        info = deploy(args.repo_id, private=args.private)
    except KeyboardInterrupt:
        print("interrupted (a deploy is one commit: the Space holds all of it or none of it)", file=sys.stderr)
        return 130
    except _hub_errors() as e:  # huggingface_hub's errors, the network's: one line; a bug keeps its traceback
        print(f"error: {args.repo_id} was not deployed: {_hub_failure(e)}", file=sys.stderr)
        return 1
    print(f"sent: {getattr(info, 'commit_url', info)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
