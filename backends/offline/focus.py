"""The focal records offline tasks are built around, and the tools that reach them: which rows a task
can start from (seen in the data view, or produced by an earlier task), and new values for updates."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from backends.offline.phrasing import show
from environment.sources.sqlite.tool_checks import placeholder_columns
from state.schema import DatabaseSchema, Table
from state.tasks import ResultRef
from state.tools import Tool


@dataclass
class Focus:
    table: Table
    row: dict[str, Any]
    search: Tool
    column: str
    value: str


class ToolIndex:
    def __init__(self, tools: list[Tool], database: DatabaseSchema) -> None:
        self.tools = tools
        self.database = database

    def columns(self, tool: Tool) -> dict[str, tuple[str, str]]:
        """For each of a tool's parameters: the column its SQL binds it to, and how (read in the source's dialect)."""
        return placeholder_columns(tool.sql, self.database.dialect)

    def of(self, kind: str, table: str) -> list[Tool]:
        return [t for t in self.tools if t.kind == kind and t.table == table]

    def lookup(self, table: str) -> Tool | None:
        pk = [c.name for c in self.database.table(table).primary_key]
        for tool in self.of("lookup", table) + self.of("join", table):
            cols = self.columns(tool)
            if pk and sorted(c for c, _ in cols.values()) == sorted(pk) and len(tool.properties) == len(pk):
                return tool
        return None

    def children_lister(self, parent: str) -> list[tuple[Tool, str]]:
        """(tool, fk column) pairs listing a child table's rows for one parent row."""
        found = []
        parent_cols = {c.name for c in self.database.table(parent).columns}
        for child in self.database.tables:
            for fk in child.foreign_keys:
                if fk.ref_table != parent or fk.ref_column not in parent_cols:
                    continue
                for tool in self.of("join", child.name):
                    cols = self.columns(tool)
                    if len(tool.properties) == 1 and [c for c, _ in cols.values()] == [fk.column]:
                        found.append((tool, fk.column))
        return found


def pk_ref(index: ToolIndex, subtask: int, step: int, lookup: Tool) -> dict[str, Any]:
    """The lookup's arguments, each taken from the field of an earlier step's result that its column names."""
    columns = index.columns(lookup)
    return {param: ResultRef(subtask=subtask, step=step, field=col) for param, (col, _) in columns.items()}


def short_value(value: Any) -> str:
    text = show(value)
    parts = text.split()
    return " ".join(parts[:3]) if len(parts) > 3 else text


def focus_candidates(index: ToolIndex, rows_by_table: dict[str, list[dict[str, Any]]]) -> list[Focus]:
    found = []
    for table in index.database.tables:
        if index.lookup(table.name) is None:
            continue
        for tool in index.of("search", table.name):
            (column, _), = index.columns(tool).values() or [(None, None)]
            for row in rows_by_table.get(table.name, []):
                value = row.get(column)
                if isinstance(value, str) and value.strip() and not value.startswith("<BLOB"):
                    found.append(Focus(table, row, tool, column, short_value(value)))
    return found


def is_changed(focus: Focus, changed: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether an earlier write touched the focal row, so its values may no longer be what the view shows."""
    return any(key and all(show(focus.row.get(col)) == show(value) for col, value in key.items())
               for key in changed.get(focus.table.name, []))


def new_value(column: str, json_type: str, current: Any, seen: list[Any], rng: random.Random) -> Any:
    others = [v for v in seen if v is not None and v != current]
    lowered = column.lower()
    if json_type == "boolean" or lowered.startswith(("is_", "has_")):
        return 0 if current else 1
    if json_type == "integer":
        return int(current or 0) + rng.randint(1, 5)
    if json_type == "number":
        return round(float(current or 0) * rng.choice([1.1, 1.25, 0.9]) + 1, 2)
    if "phone" in lowered:
        return f"555-01{rng.randint(10, 99)}"
    if "email" in lowered:
        return f"contact{rng.randint(10, 99)}@example.org"
    if any(k in lowered for k in ("date", "_on", "_at", "time")):
        return others[0] if others else "2026-01-15"
    if "status" in lowered or "type" in lowered:
        return others[0] if others else "updated"
    if "note" in lowered or "comment" in lowered:
        return rng.choice(["Owner asked for a follow-up call.", "Reviewed at the front desk.", "Needs a reminder."])
    if others:
        return others[0]
    return f"{show(current)} (revised)"
