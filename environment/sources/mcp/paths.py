"""Paths in the arguments of a server that works on its sandbox's files (`"sandbox": {"copy": [...]}`).

A dialogue names files relative to the sandbox (`notes/todo.txt`, as a user of that service sees them); the
call the server gets names them under this dialogue's sandbox, and what the server answers names them
relative again. So recorded arguments replay onto any fresh sandbox, and no line of a dataset carries this
machine's temporary folders. A path that leaves the sandbox (an absolute path elsewhere, `..` past its root)
is refused with an error the model can read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from state.tools import is_path_argument


def _inside(sandbox: Path, value: str) -> str | None:
    """The server's spelling of one path, or None where it leaves the sandbox."""
    target = Path(value) if os.path.isabs(value) else sandbox / value
    resolved = Path(os.path.normpath(target))
    return str(resolved) if resolved == sandbox or sandbox in resolved.parents else None


def to_server(arguments: dict[str, Any], sandbox: Path) -> tuple[dict[str, Any], str | None]:
    """The arguments with their paths under the sandbox; or the readable reason one is refused."""
    out = dict(arguments)
    for name, value in arguments.items():
        if not is_path_argument(name):
            continue
        values = value if isinstance(value, list) else [value]
        mapped = []
        for item in values:
            if not isinstance(item, str):
                mapped.append(item)
                continue
            inside = _inside(sandbox, item or ".")
            if inside is None:
                return arguments, (f"{name}: {item!r} is outside the files this service may use; name them "
                                   f"relative to its root (for example 'notes/todo.txt', or '.' for the root)")
            mapped.append(inside)
        out[name] = mapped if isinstance(value, list) else mapped[0]
    return out, None


def from_server(value: Any, sandbox: Path) -> Any:
    """What a server answered, with every mention of the sandbox's folder made relative to it."""
    if value is None:
        return None
    root = str(sandbox)
    text = json.dumps(value, ensure_ascii=False)
    if root not in text:
        return value
    escaped = json.dumps(root, ensure_ascii=False)[1:-1]
    text = text.replace(escaped + "/", "").replace(escaped, ".")
    return json.loads(text)


def sandbox_paths(folder: Path, limit: int = 40) -> list[str]:
    """The files and folders under a sandbox (or the source folder its copies come from), relative to it."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if ".git" in relative.parts or path.is_symlink():
            continue
        found.append(relative.as_posix() + ("/" if path.is_dir() else ""))
        if len(found) >= limit:
            break
    return found
