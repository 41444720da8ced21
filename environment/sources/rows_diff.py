"""The row-level diff of two snapshots of a database, whatever its kind (SQLite, PostgreSQL).

A snapshot holds every table's rows keyed by primary key, with what the comparison with a goal diff
(environment/state_match.py) must allow for: columns the dialogue's clock fills and keys the database assigns
to new rows. Each kind takes its own snapshot (sqlite/diff.py, postgres/sandbox.py); this compares two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from state.verification import ColumnChange, RowChange, StateDiff, TableDiff


@dataclass
class TableSnapshot:
    key_columns: list[str]
    assigned_keys: bool
    clock_columns: list[str]
    columns: list[str]
    rows: dict[tuple, tuple]  # the key's raw values -> the row's raw values (converted only where they changed)


@dataclass
class Snapshot:
    """Every row of a database at one moment (in memory only: plain data, not validated)."""

    tables: dict[str, TableSnapshot]


def diff(before: Snapshot, after: Snapshot, plain: Callable[[Any], Any] = lambda v: v) -> StateDiff:
    """Per table, the rows inserted, deleted and updated between two snapshots (sorted by key); `plain` turns a
    raw value into JSON (rows are converted only where they changed)."""

    def _row(names: list[str], raw: tuple) -> dict[str, Any]:
        return {n: plain(v) for n, v in zip(names, raw)}

    def _order(key: tuple) -> str:
        return json.dumps([plain(v) for v in key], default=str)

    tables: dict[str, TableDiff] = {}
    for name in sorted(set(before.tables) | set(after.tables)):
        old = before.tables.get(name)
        new = after.tables.get(name)
        shape = new or old
        assert shape is not None
        old_rows = old.rows if old else {}
        new_rows = new.rows if new else {}
        if old_rows == new_rows:
            continue
        cols = shape.columns
        table = TableDiff(clock_columns=shape.clock_columns, assigned_keys="inserted" if shape.assigned_keys else "")
        for k in sorted(set(new_rows) - set(old_rows), key=_order):
            row = _row(new.columns, new_rows[k])  # type: ignore[union-attr]
            table.inserted.append(RowChange(key={c: row[c] for c in shape.key_columns}, values=row))
        for k in sorted(set(old_rows) - set(new_rows), key=_order):
            row = _row(old.columns, old_rows[k])  # type: ignore[union-attr]
            table.deleted.append(RowChange(key={c: row[c] for c in shape.key_columns}, values=row))
        for k in sorted((k for k in set(old_rows) & set(new_rows) if old_rows[k] != new_rows[k]), key=_order):
            was, now = _row(cols, old_rows[k]), _row(cols, new_rows[k])
            changes = {c: ColumnChange(old=was.get(c), new=v) for c, v in now.items() if was.get(c) != v}
            if changes:
                table.updated.append(RowChange(key={c: now[c] for c in shape.key_columns}, changes=changes))
        if not table.is_empty():
            tables[name] = table
    return StateDiff(tables=tables)
