"""The Space deploy recipe (sepvit_viz.deploy): what is sent, how binaries travel, one commit."""

from __future__ import annotations

import fnmatch
import functools
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from sepvit_viz import deploy

ROOT = Path(__file__).resolve().parent.parent


class FakeApi:
    """Records the calls a deploy makes instead of reaching the Hub."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def create_commit(self, *args, **kwargs):
        self.calls.append(("create_commit", args, kwargs))
        return "commit-info"

    def list_repo_files(self, *args, **kwargs):
        # what an earlier deploy left: one file the project still has, two it no longer has
        return ["app.py", ".gitattributes", "assets/examples/removed_0000.jpg", "old_module.py"]


def _lfs_attr(text: str, rel: str) -> bool:
    """Whether a .gitattributes text routes ``rel`` through LFS (name patterns, as git reads them)."""
    name = PurePosixPath(rel).name
    for line in text.splitlines():
        pattern, *attrs = line.split()
        if "filter=lfs" in attrs and fnmatch.fnmatch(name, pattern):
            return True
    return False


def test_plan_of_this_project_sends_the_app_and_routes_every_binary_through_lfs():
    space = deploy.plan(ROOT)
    files = set(space.files)
    for need in ("app.py", "README.md", "requirements.txt", "pre-requirements.txt", "sepvit_viz/serving/handlers.py"):
        assert need in files
    assert "assets/sepvit_lite_distilled.safetensors" in space.lfs
    assert any(f.startswith("assets/examples/") and f.endswith(".jpg") for f in space.lfs)
    # what a Space never needs, and nothing git ignores
    assert not [f for f in files if f.split("/")[0] in ("tests", "benchmarks", ".ci", "runs", ".venv")]
    # every binary file sent is routed through LFS by the .gitattributes that is sent with it
    for rel in files:
        if deploy.is_binary(ROOT / rel):
            assert _lfs_attr(space.gitattributes, rel), rel


def test_deploy_makes_one_gradio_space_commit_with_the_gitattributes(tmp_path):
    api = FakeApi()
    assert deploy.deploy("me/sepvit-viz", api=api) == "commit-info"
    (name, args, kwargs), (name2, args2, kwargs2) = api.calls
    assert name == "create_repo" and args == ("me/sepvit-viz",)
    assert kwargs["repo_type"] == "space" and kwargs["space_sdk"] == "gradio" and kwargs["exist_ok"]
    assert name2 == "create_commit" and kwargs2["repo_type"] == "space"
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    ops = {op.path_in_repo: op for op in args2[1] if isinstance(op, CommitOperationAdd)}
    assert set(ops) == {".gitattributes", *deploy.plan(ROOT).files}
    # the Space mirrors the project: files it no longer has are deleted (the app globs assets/)
    deleted = {op.path_in_repo for op in args2[1] if isinstance(op, CommitOperationDelete)}
    assert deleted == {"assets/examples/removed_0000.jpg", "old_module.py"}
    assert ops[".gitattributes"].path_or_fileobj == deploy.SPACE_GITATTRIBUTES.encode()
    assert Path(ops["app.py"].path_or_fileobj) == ROOT / "app.py"


def _mini_project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    (root / "assets").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", root / "README.md")
    for f in ("app.py", "requirements.txt", "pre-requirements.txt"):
        (root / f).write_text("x\n")
    (root / "assets" / "w.safetensors").write_bytes(b"\0\1\2")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def _add(root: Path) -> None:
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)


def test_binary_of_an_unrouted_kind_is_refused_with_its_name(tmp_path):
    root = _mini_project(tmp_path)
    (root / "assets" / "weights.npz").write_bytes(b"PK\3\4\0\0\xff\xfe")
    _add(root)
    with pytest.raises(ValueError, match=r"assets/weights\.npz"):
        deploy.plan(root)
    (root / "assets" / "weights.npz").unlink()
    _add(root)
    assert deploy.plan(root).lfs == ("assets/w.safetensors",)


def test_ignored_and_untracked_files_are_never_sent(tmp_path):
    root = _mini_project(tmp_path)
    (root / ".gitignore").write_text("assets/secret.txt\n")
    _add(root)
    (root / "assets" / "secret.txt").write_text("token")
    (root / "assets" / "untracked.txt").write_text("later")
    assert set(deploy.plan(root).files) == {
        "README.md",
        "app.py",
        "requirements.txt",
        "pre-requirements.txt",
        "assets/w.safetensors",
    }


def test_a_readme_without_space_front_matter_is_refused(tmp_path):
    root = _mini_project(tmp_path)
    (root / "README.md").write_text("# no front matter\n")
    _add(root)
    with pytest.raises(ValueError, match="front matter"):
        deploy.plan(root)


def test_a_folder_that_is_not_a_git_checkout_is_refused_clearly(tmp_path, monkeypatch, capsys):
    """An unpacked archive (no .git): ``git ls-files`` fails, which ended the deploy in a
    CalledProcessError traceback; now it is the ValueError that ``main`` prints as one error line."""
    root = _mini_project(tmp_path)
    shutil.rmtree(root / ".git")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above
    with pytest.raises(ValueError, match="git checkout"):
        deploy.plan(root)
    monkeypatch.setattr(deploy, "plan", functools.partial(deploy.plan, root))
    assert deploy.main(["me/x", "--dry-run"]) == 2
    assert "error: cannot list the files git tracks" in capsys.readouterr().err


def test_paths_outside_the_project_are_refused(tmp_path):
    root = _mini_project(tmp_path)
    with pytest.raises(ValueError, match="outside"):
        deploy.plan(root, files=["../etc/passwd"])


def test_dry_run_lists_and_sends_nothing(capsys, monkeypatch):
    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: pytest.fail("a dry run must not send"))
    assert deploy.main(["me/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "lfs  assets/sepvit_lite_distilled.safetensors" in out and "git  app.py" in out


def test_files_changed_since_the_last_commit_are_not_sent_unasked(tmp_path, monkeypatch, capsys):
    """A deploy sends the working tree: a card a running evaluation rewrote went out unreviewed."""
    root = _mini_project(tmp_path)
    _add(root)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    real_plan = deploy.plan
    monkeypatch.setattr(deploy, "plan", lambda: real_plan(root))
    sent = []
    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: sent.append(a) or "info")
    assert deploy.uncommitted(root, real_plan(root).files) == []
    assert deploy.main(["me/x"]) == 0 and len(sent) == 1
    (root / "app.py").write_text("edited\n")
    assert deploy.uncommitted(root, real_plan(root).files) == ["app.py"]
    assert deploy.main(["me/x"]) == 2 and len(sent) == 1
    assert "differ from the last commit: app.py" in capsys.readouterr().err
    assert deploy.main(["me/x", "--dry-run"]) == 0  # a dry run lists them with a warning
    assert "WARNING" in capsys.readouterr().err
    assert deploy.main(["me/x", "--allow-uncommitted"]) == 0 and len(sent) == 2


@pytest.mark.parametrize("repo_id", ["noslash", "me/x/y", "me/../x", "me/na me", ""])
def test_a_repo_id_that_is_not_owner_name_is_refused_even_in_a_dry_run(repo_id, monkeypatch, capsys):
    monkeypatch.setattr(deploy, "plan", lambda *a, **k: pytest.fail("planned before the repo id was checked"))
    assert deploy.main([repo_id, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: invalid Space id {repo_id!r}: expected owner/name") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        ("token", "not logged in to the Hugging Face Hub: run `hf auth login` first"),
        ("offline", "the Hugging Face Hub cannot be reached ([Errno -2] Name or service not known)"),
        ("validation", "HFValidationError: Repo id must use alphanumeric chars or '-', '_', '.'."),
    ],
)
def test_a_deploy_the_hub_refuses_is_one_error_line(failure, says, tmp_path, monkeypatch, capsys):
    """Errors from huggingface_hub (not logged in, offline, an id it refuses) ended in a traceback."""
    import huggingface_hub
    from huggingface_hub import errors

    raised = {
        "token": errors.LocalTokenNotFoundError(
            "Token is required (`token=True`), but no token found.\nRun hf auth login."
        ),
        "offline": ConnectionError("[Errno -2] Name or service not known"),
        "validation": errors.HFValidationError("Repo id must use alphanumeric chars or '-', '_', '.'.\nMore text."),
    }[failure]

    class Refusing(FakeApi):
        def create_repo(self, *args, **kwargs):
            raise raised

    root = _mini_project(tmp_path)
    _add(root)
    real_plan = deploy.plan
    monkeypatch.setattr(deploy, "plan", lambda *a, **k: real_plan(root))
    monkeypatch.setattr(huggingface_hub, "HfApi", Refusing)  # no network: the Hub API raises
    assert deploy.main(["me/x", "--allow-uncommitted"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"error: me/x was not deployed: {says}" and "Traceback" not in err, err


def _plan_nothing(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """main() with an empty plan: what the deploy itself does is what is tested."""
    monkeypatch.setattr(deploy, "plan", lambda *a, **k: deploy.SpacePlan(root, (), ()))


def test_ctrl_c_during_a_deploy_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    """Ctrl-C during an upload was a KeyboardInterrupt traceback."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    _plan_nothing(monkeypatch, tmp_path)
    monkeypatch.setattr(deploy, "deploy", interrupted)
    assert deploy.main(["me/x"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted") and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_missing_huggingface_hub_is_one_line_not_a_second_traceback(tmp_path, monkeypatch, capsys):
    """Without huggingface_hub the handler's own import of huggingface_hub.errors raised again."""
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` now fails
    monkeypatch.setitem(sys.modules, "huggingface_hub.errors", None)
    _plan_nothing(monkeypatch, tmp_path)
    assert deploy.main(["me/x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: me/x was not deployed: huggingface_hub cannot be imported") and err.count("\n") == 1
    says = deploy._hub_failure(ConnectionError("[Errno -2] Name or service not known"))
    assert says == "the Hugging Face Hub cannot be reached ([Errno -2] Name or service not known)"


def test_a_bug_during_a_deploy_keeps_its_traceback(tmp_path, monkeypatch):
    """``except Exception`` turned a programming error into one line that hid where it happened."""

    def buggy(*args, **kwargs):
        raise TypeError("create_commit() got an unexpected keyword argument 'x'")

    _plan_nothing(monkeypatch, tmp_path)
    monkeypatch.setattr(deploy, "deploy", buggy)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        deploy.main(["me/x"])
