"""The state diff of the MCP kind: what changed in the servers' read-only views between two snapshots.

A snapshot holds, per read-only tool that needs no argument, what it showed (`McpDialogue.probe`). Each view is
a table of the records it lists: keyed by an id field every record carries (`id`, or a single `*_id`), so
a changed record is an update with its columns old -> new; a view without such a key is compared as a
multiset of records (inserted and deleted by value, `assigned_keys="all"`).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from state.verification import ColumnChange, RowChange, StateDiff, TableDiff


def view_records(value: Any) -> list[dict[str, Any]]:
    """The records a view shows: a list of objects, or the lists an object holds, or the object itself."""
    if isinstance(value, dict):
        nested = [x for v in value.values() if isinstance(v, list) for x in v if isinstance(x, dict)]
        return nested or [value]
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _key_field(records: list[dict[str, Any]]) -> str | None:
    if not records:
        return None
    shared = set.intersection(*(set(r) for r in records))
    ids = sorted(f for f in shared if f == "id" or f.endswith("_id"))
    keyed = [f for f in ids if len({json.dumps(r[f], sort_keys=True, default=str) for r in records}) == len(records)]
    return "id" if "id" in keyed else (keyed[0] if len(keyed) == 1 else None)


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def _view_diff(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> TableDiff:
    key = _key_field(before + after) if before or after else None
    if key is None:
        gone, new = Counter(map(_canonical, before)) - Counter(map(_canonical, after)), \
            Counter(map(_canonical, after)) - Counter(map(_canonical, before))
        return TableDiff(assigned_keys="all",
                         inserted=[RowChange(key={}, values=json.loads(r)) for r in sorted(new.elements())],
                         deleted=[RowChange(key={}, values=json.loads(r)) for r in sorted(gone.elements())])
    old = {_canonical(r[key]): r for r in before}
    now = {_canonical(r[key]): r for r in after}
    table = TableDiff()
    for ident in sorted(now.keys() - old.keys()):
        table.inserted.append(RowChange(key={key: now[ident][key]}, values=now[ident]))
    for ident in sorted(old.keys() - now.keys()):
        table.deleted.append(RowChange(key={key: old[ident][key]}, values=old[ident]))
    for ident in sorted(old.keys() & now.keys()):
        changes = {c: ColumnChange(old=old[ident].get(c), new=now[ident].get(c))
                   for c in sorted(set(old[ident]) | set(now[ident])) if old[ident].get(c) != now[ident].get(c)}
        if changes:
            table.updated.append(RowChange(key={key: now[ident][key]}, changes=changes))
    return table


def diff(before: dict[str, Any], after: dict[str, Any]) -> StateDiff:
    """Per probed view that changed, its records inserted, deleted and updated."""
    tables = {}
    for view in sorted(set(before) | set(after)):
        table = _view_diff(view_records(before.get(view)), view_records(after.get(view)))
        if not table.is_empty():
            tables[view] = table
    return StateDiff(tables=tables)
