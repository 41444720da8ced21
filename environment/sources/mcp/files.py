"""The state of a server that keeps it in files: what its sandbox's declared copies hold now, as tables the
MCP diff compares like any view.

Per server with declared copies (`"sandbox": {"copy": [...]}`), the snapshot has:
- `<server>:files`: one record per file (`id`: its path relative to the sandbox, its size and sha256), so an
  added, removed or rewritten file is an inserted, deleted or updated record;
- `<server>:lines`: the lines of every text file as a multiset of `{file, text}` records, so an edit shows
  as the lines it added and removed (a line moved by an insertion above it is no change);
- for a git repository among them, `<server>:git_refs` (each ref and the commit it names), `<server>:git_index`
  (each staged path and its blob) and `<server>:git_log` (the recent commits, subject and author): a commit,
  a branch or a staged change is a record too. A repository's own folder (`.git`) is read only that way.

Paths are relative to the sandbox, so snapshots of two dialogues' sandboxes compare and no line of a dataset
carries this machine's temporary folders.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

_TEXT_LIMIT = 1_000_000  # bytes: a bigger file is compared by hash only
_LOG_DEPTH = 20


def _text(data: bytes) -> str | None:
    if len(data) > _TEXT_LIMIT or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _git(repo: Path, *argv: str) -> list[str]:
    if shutil.which("git") is None:
        return []
    done = subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True, timeout=30,
                          env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo), "PATH": "/usr/bin:/bin"})
    return done.stdout.splitlines() if done.returncode == 0 else []


def _git_tables(repo: Path, relative: str) -> dict[str, list[dict[str, Any]]]:
    refs = [line.split(" ", 1) for line in _git(repo, "for-each-ref", "--format=%(objectname) %(refname)")]
    head = _git(repo, "symbolic-ref", "-q", "HEAD") or _git(repo, "rev-parse", "HEAD")
    index = [line.split("\t", 1) for line in _git(repo, "ls-files", "--stage")]
    log = [line.split("\x1f") for line in _git(repo, "log", f"-{_LOG_DEPTH}", "--format=%H\x1f%an\x1f%s")]
    return {
        "git_refs": [{"id": f"{relative}:{name}", "commit": sha} for sha, name in refs]
                    + [{"id": f"{relative}:HEAD", "commit": head[0] if head else ""}],
        "git_index": [{"id": f"{relative}:{path}", "entry": entry.split()[1] if len(entry.split()) > 1 else entry}
                      for entry, path in (i for i in index if len(i) == 2)],
        "git_log": [{"repository": relative, "commit": c[0], "author": c[1], "subject": c[2]}
                    for c in log if len(c) == 3],
    }


def files_state(sandbox: Path) -> dict[str, list[dict[str, Any]]]:
    """The tables of one server's sandbox (see the module's docstring)."""
    tables: dict[str, list[dict[str, Any]]] = {"files": [], "lines": []}
    if not sandbox.is_dir():
        return tables
    for path in sorted(sandbox.rglob("*")):
        relative = path.relative_to(sandbox).as_posix()
        if ".git" in path.relative_to(sandbox).parts:
            if path.name == ".git" and path.is_dir():
                for name, rows in _git_tables(path.parent, path.parent.relative_to(sandbox).as_posix()).items():
                    tables.setdefault(name, []).extend(rows)
            continue
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        tables["files"].append({"id": relative, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        text = _text(data)
        if text is not None:
            tables["lines"].extend({"file": relative, "text": line} for line in text.splitlines())
    return tables
