"""What a dialogue and a run record of their sources: typed references, never one string to split again.

A reference names one source as runs record it (a SQLite file's resolved path, a Postgres URI without its
password, `mcp://SERVERS.json`), the kind that opens it, and what of its own config a run may write down (an
MCP servers file: secrets masked). A dialogue over a database and MCP servers has two references. Any path a
user can type fits (spaces, `+`, any letters): nothing is ever joined and split.

Runs recorded before references joined a dialogue's sources into one string with ` + `: `read_joined` reads
that form back (old configs and checkpoints resume), and `joined_name` still spells a dialogue's sources
that way where a line shows them to people (the dataset's `source_database`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, Field

JOINED = " + "  # how runs recorded before references joined a dialogue's sources


class SourceRef(BaseModel):
    """One source of a dialogue, as the run names it."""

    kind: str = Field("", description="The kind of source that opens it (sqlite, postgres, mcp, or one a module "
                                      "registers); empty in references read from old runs: the name decides.")
    name: str = Field(description="The source as runs record it: a file's resolved path, a URI without its "
                                  "password, mcp://SERVERS.json.")
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="The source's own config as a run may write it down (secrets "
                                               "masked), where its kind has one.")

    def __str__(self) -> str:
        return self.name


Sources = str | list[SourceRef]  # what opens a dialogue's sources: their references (a plain name: one source)


def joined_name(sources: Iterable[SourceRef]) -> str:
    """A dialogue's sources in one readable line (the dataset's `source_database`; for people, never parsed)."""
    return JOINED.join(s.name for s in sources)


def read_joined(joined: str) -> list[SourceRef]:
    """The references an old run's joined string stood for. A file that exists under the whole string is one
    source (a path holding ` + ` was never split correctly by those runs, but is read right here)."""
    if not joined:
        return []
    if JOINED not in joined or Path(joined).exists():
        return [SourceRef(name=joined)]
    return [SourceRef(name=part) for part in joined.split(JOINED)]


def as_refs(value: Any) -> Any:
    """A field's value in the old form (a joined string) as references; any other form is left to pydantic."""
    return read_joined(value) if isinstance(value, str) else value
