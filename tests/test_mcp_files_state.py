"""The state of an MCP server kept in its sandbox's files: text diffed by line, other files by hash, files added
and removed, and a git repository's refs, index and log as records."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from environment.sources.mcp.diff import diff
from environment.sources.mcp.files import files_state
from environment.sources.mcp.paths import from_server, to_server


def _snapshot(folder):
    return {f"s:{name}": rows for name, rows in files_state(folder).items()}


def test_text_by_line_binary_by_hash_added_and_removed_files(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("buy milk\ncall Ada\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\0\1\2")
    (tmp_path / "old.txt").write_text("gone soon\n")
    before = _snapshot(tmp_path)
    (tmp_path / "notes" / "todo.txt").write_text("buy milk\ncall Bo\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\0\3\4")
    (tmp_path / "old.txt").unlink()
    (tmp_path / "new.txt").write_text("hello\n")
    changed = diff(before, _snapshot(tmp_path)).tables
    lines = changed["s:lines"]
    assert [r.values for r in lines.inserted] == [{"file": "new.txt", "text": "hello"},
                                                  {"file": "notes/todo.txt", "text": "call Bo"}]
    assert [r.values for r in lines.deleted] == [{"file": "notes/todo.txt", "text": "call Ada"},
                                                 {"file": "old.txt", "text": "gone soon"}]
    files = changed["s:files"]
    assert {r.values["id"] for r in files.inserted} == {"new.txt", "notes/todo.txt", "logo.png"}
    assert {r.values["id"] for r in files.deleted} == {"old.txt", "notes/todo.txt", "logo.png"}
    assert not any(r.get("file") == "logo.png" for r in files_state(tmp_path)["lines"]), "binary: by hash only"
    assert diff(before, before).is_empty()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_git_repository_shows_its_commits_branches_and_staged_files(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*argv: str) -> None:
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=Ada", "-c", "user.email=ada@example.com", *argv],
                       check=True, capture_output=True)
    git("init", "-q", "-b", "main")
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    before = _snapshot(tmp_path)
    assert all(".git/" not in r["id"] for r in before["s:files"]), "the repository's own folder is read as git"
    (repo / "b.txt").write_text("two\n")
    git("add", "b.txt")
    git("commit", "-q", "-m", "add b")
    git("branch", "feature")
    changed = diff(before, _snapshot(tmp_path)).tables
    assert [r.values["subject"] for r in changed["s:git_log"].inserted] == ["add b"]
    assert {r.values["id"] for r in changed["s:git_refs"].inserted} >= {"repo:refs/heads/feature"}
    assert any(r.values["id"] == "repo:b.txt" for r in changed["s:git_index"].inserted)


def test_paths_are_relative_to_the_sandbox_both_ways(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    sent, refused = to_server({"path": "files/a.txt", "paths": ["x", "y/z"], "content": "files/a.txt"}, sandbox)
    assert refused is None
    assert sent == {"path": str(sandbox / "files/a.txt"), "paths": [str(sandbox / "x"), str(sandbox / "y/z")],
                    "content": "files/a.txt"}, "only path arguments are translated"
    for outside in ("/etc/passwd", "../elsewhere", "files/../../x"):
        assert "outside" in to_server({"path": outside}, sandbox)[1]
    assert to_server({"path": str(sandbox / "ok.txt")}, sandbox)[1] is None
    answer = [{"type": "text", "text": f"Allowed directories:\n{sandbox}\nwrote {sandbox}/files/a.txt"}]
    assert from_server(answer, sandbox) == [{"type": "text", "text": "Allowed directories:\n.\nwrote files/a.txt"}]
