"""The state diff of the simulated kind: what the dialogue's writes did to its world, entity by entity.

A simulated result is drawn, so the fields a write leaves on an entity beyond its arguments (and the
entity's id, when the simulator assigns it) differ between a task's plan and the dialogue that carries it
out without anything being wrong. A write's change is therefore stated by what it asked for: the entity
(by its id field), inserted with its arguments, updated to its arguments, or deleted; and every row is
matched by those values (`assigned_keys="all"`), never by its drawn id.
"""

from __future__ import annotations

from typing import Any

from environment.sources.simulated.simulator import id_field
from state.tools import Tool, ToolResult
from state.verification import ColumnChange, RowChange, StateDiff, TableDiff

_KINDS = {"insert": "inserted", "delete": "deleted"}


def write_change(tool: Tool, arguments: dict[str, Any], result: ToolResult) -> dict[str, Any] | None:
    """One successful write's change to the world, as plain data (None for a read or a failed call)."""
    if tool.mode != "write" or not result.ok:
        return None
    idf = id_field(tool)
    ident = arguments.get(idf, (result.first_row() or {}).get(idf))
    return {"table": tool.table, "kind": _KINDS.get(tool.kind, "updated"), "key": {idf: ident},
            "values": {k: v for k, v in sorted(arguments.items()) if k != idf}}


def diff(before: dict[str, Any], after: dict[str, Any]) -> StateDiff:
    """The changes of the writes made between two snapshots of one simulated sandbox."""
    tables: dict[str, TableDiff] = {}
    for change in after["writes"][len(before["writes"]):]:
        table = tables.setdefault(change["table"], TableDiff(assigned_keys="all"))
        if change["kind"] == "inserted":
            table.inserted.append(RowChange(key=change["key"], values=change["values"]))
        elif change["kind"] == "deleted":
            table.deleted.append(RowChange(key=change["key"]))
        else:
            table.updated.append(RowChange(key=change["key"], changes={
                k: ColumnChange(new=v) for k, v in change["values"].items()}))
    return StateDiff(tables=tables)
