"""Several named sources in one dialogue (a database and MCP servers: `--db shop.db --mcp servers.json`).

Named for people by joining the parts' names with ` + ` (never split again: a dialogue records its parts as
references). The first part that has a schema leads: the toolset is
synthesized from its schema (tools of its kind) and the other parts' own tools are added as they are. A
dialogue's pool opens one sandbox per part's kind (pool.py asks `parts_of`), so each call runs on its own
kind's sandbox.
"""

from __future__ import annotations

from typing import Any

from environment.sources.base import Catalog, Sandbox, ToolSource
from state.schema import DatabaseSchema
from state.tools import Tool


class CombinedSource:
    simulated = False

    def __init__(self, name: str, parts: list[ToolSource]) -> None:
        self.name, self.parts = name, parts
        self.label = "+".join(p.label for p in parts)
        self._catalogs: list[Catalog] | None = None  # read when first needed: listing servers may take a while

    def _read(self) -> list[Catalog]:
        if self._catalogs is None:
            self._catalogs = [p.catalog() for p in self.parts]
        return self._catalogs

    @property
    def lead(self) -> ToolSource:
        """The first part with a schema: the toolset is synthesized from it."""
        return next((p for p, c in zip(self.parts, self._read()) if c.database is not None), self.parts[0])

    @property
    def kind(self) -> str:
        return self.lead.kind

    def catalog(self) -> Catalog:
        catalogs = self._read()
        return Catalog(database=next((c.database for c in catalogs if c.database is not None), None),
                       tools=[t for c in catalogs for t in c.tools], notes=[n for c in catalogs for n in c.notes])

    def open(self, seed: int) -> Sandbox:
        """A scratch sandbox of the leading part (toolset checks); dialogues open each part's through the pool."""
        return self.lead.open(seed)

    def check_tool(self, tool: Tool, sandbox: Any) -> str | None:
        part = next((p for p in self.parts if p.kind == tool.source), None)
        if part is None:
            return f"no source of this run runs {tool.source} tools"
        return part.check_tool(tool, sandbox if part is self.lead else None)

    def derive_tools(self, database: DatabaseSchema, limit: int) -> list[Tool]:
        return self.lead.derive_tools(database, limit)
