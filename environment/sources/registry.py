"""Which kind of source a name stands for: a small registry keyed by how sources are named.

A plain path is a SQLite file (the fallback, asked last); other kinds are named by a URI scheme
(`postgresql://…`, `mcp://SERVERS.json`). A dialogue's sources are a list of references (state/sources.py):
several are opened together as one combined source; no name is ever split. Kinds that need no name
(simulated tools) serve every tool bound to them. Nodes and the runner ask the registry, never which kind
they have.
"""

from __future__ import annotations

import importlib
from typing import Sequence

from environment.errors import InputError
from environment.sources.base import ToolSource
from environment.sources.combined import CombinedSource
from environment.sources.kind import SourceKind
from environment.sources.mcp.kind import McpKind
from environment.sources.postgres.source import PostgresKind
from environment.sources.simulated.source import SimulatedKind
from environment.sources.sqlite.source import SqliteKind
from state.config import Settings
from state.sources import SourceRef, joined_name
from state.tools import Tool


_KINDS: dict[str, SourceKind] = {}
_FALLBACK = SqliteKind()
_loaded: set[str] = set()
_settings_read = False


def load_source_kinds(modules: list[str] | None = None) -> None:
    """Import the modules that register kinds of their own (the settings' `source_kinds` by default), once.
    Every process of a run does it before naming a source, so worker processes know the same kinds."""
    global _settings_read
    if modules is None:
        if _settings_read:
            return
        modules, _settings_read = Settings().source_kinds, True
    for module in modules:
        if module not in _loaded:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise InputError(f"cannot import the source kinds module {module!r}: {exc}") from None
            _loaded.add(module)


def register_source_kind(kind: SourceKind) -> None:
    """Add (or replace) a kind of source; named kinds are asked before the SQLite fallback."""
    if not isinstance(kind, SourceKind):
        raise TypeError(f"a kind of source subclasses environment.sources.kind.SourceKind "
                        f"(got {type(kind).__name__})")
    _KINDS[kind.kind] = kind


def unregister_source_kind(kind: str) -> None:
    _KINDS.pop(kind, None)


register_source_kind(SimulatedKind())
register_source_kind(McpKind())
register_source_kind(PostgresKind())


def kind_of(name: str) -> SourceKind:
    load_source_kinds()
    return next((k for k in _KINDS.values() if k.named and k.claims(name)), _FALLBACK)


def _kind_of_ref(ref: SourceRef) -> SourceKind:
    load_source_kinds()
    named = _KINDS.get(ref.kind)
    return named if named is not None and named.named else kind_of(ref.name)


def open_source(sources: str | SourceRef | Sequence[SourceRef]) -> ToolSource:
    """The source a name or reference stands for, checked; several references are one dialogue's sources,
    opened together."""
    if isinstance(sources, str):
        return kind_of(sources).open(sources)
    if isinstance(sources, SourceRef):
        return _kind_of_ref(sources).open(sources.name)
    if not sources:
        raise ValueError("no source to open")
    if len(sources) == 1:
        return open_source(sources[0])
    return CombinedSource(joined_name(sources), [open_source(ref) for ref in sources])


def source_ref(name: str) -> SourceRef:
    """A reference to the source a name stands for, as runs record it (its kind, its `identity`)."""
    return SourceRef(kind=kind_of(name).kind, name=identity(name))


def recorded(refs: list[SourceRef]) -> list[SourceRef]:
    """The references with each source's own config as a run folder may keep it (secrets masked), for
    sources that have one; an unusable source is said where the run checks its sources."""
    out = []
    for ref in refs:
        try:
            config = _kind_of_ref(ref).recordable(ref.name)
        except InputError:
            config = None
        out.append(ref.model_copy(update={"config": config}) if config is not None else ref)
    return out


def parts_of(source: ToolSource) -> list[ToolSource]:
    """The sources one source stands for: its parts when combined, else itself."""
    return list(source.parts) if isinstance(source, CombinedSource) else [source]


def source_names(args: list[str]) -> list[str]:
    """Every source the arguments name (folders and globs expanded), each once, in order."""
    found: list[str] = []
    for arg in args:
        found.extend(kind_of(arg).expand(arg))
    unique: dict[str, str] = {}
    for name in found:
        unique.setdefault(identity(name), name)
    return list(unique.values())


def identity(name: str) -> str:
    """One spelling per source, as runs record it: a file's resolved path, a URI as given or as its kind
    writes it down (a Postgres URI without its password)."""
    return kind_of(name).identity(name)


def label_of(name: str | Sequence[SourceRef]) -> str:
    """A short readable name for a source (the first of several): its file's stem (of a path or a URI's
    path), or its kind's."""
    if not isinstance(name, str):
        name = name[0].name if name else ""
    return kind_of(name).label(name)


def nameless_source(kind: str) -> ToolSource | None:
    """The source of a kind that needs no name (simulated tools), or None."""
    load_source_kinds()
    found = _KINDS.get(kind)
    return found.open("") if found is not None and not found.named else None


def tools_without_source(tools: list[Tool], source: ToolSource | None) -> list[Tool]:
    """Tools bound to a kind that needs a named source the run does not name."""
    own = {part.kind for part in parts_of(source)} if source is not None else set()
    return [t for t in tools if t.source not in own and nameless_source(t.source) is None]
