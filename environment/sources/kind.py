"""What a kind of source is: how sources of it are named and opened, and the optional hooks it may have.

A kind subclasses `SourceKind` and writes `kind`, `claims` and `open`; every other member has a default
here, so the registry calls each one as it is, never asking whether a kind has it:

- `expand(arg)`: the sources one argument names (default: the argument itself).
- `identity(name)`: one spelling per source, as runs record it (default: a file's resolved path, a URI as given).
- `label(name)`: a short readable name (default: the stem of the path, or of a URI's path).
- `recordable(name)`: the source's own config as a run folder may keep it, secrets masked (default: none).
- `start_run(name, scope, resuming)` / `finish_run(name, scope)`: set up once per run what every dialogue's
  sandbox is made from, and remove it after (default: nothing to do); run_hooks.py calls them.

A source's `parts` are no kind's: only a combined source (combined.py, made by the registry when a dialogue
names several) has them, and `registry.parts_of` reads them off it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from environment.sources.base import ToolSource
from environment.sources.runs import RunScope


class SourceKind(ABC):
    kind: str
    named: bool = True  # False: the kind needs no name (simulated tools are always at hand)

    @abstractmethod
    def claims(self, name: str) -> bool:
        """Whether a source name (a path, a URI) is of this kind."""

    @abstractmethod
    def open(self, name: str) -> ToolSource:
        """The source, checked: an InputError (one line) says why it cannot be used."""

    def expand(self, arg: str) -> list[str]:
        """The sources one argument names (a folder: every database file in it)."""
        return [arg]

    def identity(self, name: str) -> str:
        return name if "://" in name else str(Path(name).resolve())

    def label(self, name: str) -> str:
        return Path(name.split("://", 1)[-1].rstrip("/")).stem or "source"

    def recordable(self, name: str) -> dict[str, Any] | None:
        return None

    def start_run(self, name: str, scope: RunScope, resuming: bool) -> None:  # noqa: B027 - optional: nothing by default
        """Before a run (a resumed one: leftovers of a killed attempt go first)."""

    def finish_run(self, name: str, scope: RunScope) -> None:  # noqa: B027 - optional: nothing by default
        """After a run, whatever ended it."""
