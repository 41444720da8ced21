"""Errors a user can cause and fix: each carries one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class InputError(Exception):
    """Bad input from the user (path, database, option): reported as one line, exit code 2."""


class RunError(Exception):
    """A run that could not finish (not the user's input): reported as one line, exit code 1."""


class SourceUnavailable(Exception):
    """A source that was there when the run started cannot be reached now (a database server went away): the
    dialogues it stops are not written, so `resume` finishes them once it is back."""


def read_json_input(path: str | Path, what: str) -> Any:
    """A JSON file the user named (`what` says which), or an InputError saying why it cannot be read."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {what} {p}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{what} {p} is not valid JSON: {exc}") from None
