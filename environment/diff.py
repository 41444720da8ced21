"""Row-level state of a SQLite database: snapshots, the diff between two, and a real diff against a goal diff.

Rows are keyed by their primary key (rowid where the table has none). Two kinds of values may differ
between a task's reference plan and the dialogue that carries it out without anything being wrong:
columns the dialogue's clock fills (their defaults read the time, see environment/clock.py), and keys
the database assigns to new rows (INTEGER PRIMARY KEY, AUTOINCREMENT, rowid). Clock columns match any
value; new rows with an assigned key are matched by their other values.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from dataclasses import dataclass

from environment.clock import clock_defaults
from environment.introspect import json_value
from environment.sqlnames import quote_ident
from state.verification import ColumnChange, Difference, RowChange, StateDiff, TableDiff


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


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def _key_of(conn: sqlite3.Connection, table: str) -> tuple[list[str], bool]:
    """The key columns, and whether the database assigns it (a rowid alias, or the rowid itself)."""
    info = conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
    pk = [row for row in sorted(info, key=lambda r: r[5]) if row[5]]
    create = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0] or ""
    if not pk:
        return ["rowid"], True
    integer_alias = len(pk) == 1 and pk[0][2].strip().upper() == "INTEGER" and "WITHOUT ROWID" not in create.upper()
    return [row[1] for row in pk], integer_alias


def snapshot(conn: sqlite3.Connection, tables: list[str] | None = None) -> Snapshot:
    """Every row of every table (or of `tables`), keyed by its primary key."""
    out: dict[str, TableSnapshot] = {}
    for table in tables if tables is not None else _tables(conn):
        keys, assigned = _key_of(conn, table)
        select = "SELECT rowid AS rowid, *" if keys == ["rowid"] else "SELECT *"
        cur = conn.execute(f"{select} FROM {quote_ident(table)}")
        names = [d[0] for d in cur.description]
        at = [names.index(k) for k in keys]
        rows = {tuple(raw[i] for i in at): raw for raw in cur}
        out[table] = TableSnapshot(key_columns=keys, assigned_keys=assigned, columns=names,
                                   clock_columns=sorted(clock_defaults(conn, table)), rows=rows)
    return Snapshot(tables=out)


def _row(names: list[str], raw: tuple) -> dict[str, Any]:
    return {n: json_value(v) for n, v in zip(names, raw)}


def _order(key: tuple) -> str:
    return json.dumps([json_value(v) for v in key], default=str)


def diff(before: Snapshot, after: Snapshot) -> StateDiff:
    """Per table, the rows inserted, deleted and updated between two snapshots (sorted by key)."""
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


def diff_connections(before: sqlite3.Connection, after: sqlite3.Connection) -> StateDiff:
    return diff(snapshot(before), snapshot(after))


# -- comparing a real diff with a goal diff ---------------------------------------------------------

def _content(row: RowChange, table: TableDiff, by_values: bool) -> str:
    """What identifies a row's change for matching: its key, or (for an assigned key) its other values.
    Clock columns never count."""
    skip = set(table.clock_columns) | (set(row.key) if by_values else set())
    values = {c: v for c, v in row.values.items() if c not in skip}
    changes = {c: [ch.old, ch.new] for c, ch in row.changes.items() if c not in table.clock_columns}
    if by_values:
        return json.dumps([values, changes], sort_keys=True, default=str)
    return json.dumps([row.key, values, changes], sort_keys=True, default=str)


def _compare_rows(name: str, kind: str, expected: list[RowChange], actual: list[RowChange],
                  table: TableDiff) -> list[Difference]:
    by_values = table.assigned_keys == "all" or (table.assigned_keys == "inserted" and kind == "inserted")
    if by_values:
        out = []
        extra_rows = list(actual)
        for row in expected:
            c = _content(row, table, True)
            remaining = _drop_first(extra_rows, c, table)
            if len(remaining) < len(extra_rows):
                extra_rows = remaining
            else:
                out.append(Difference(table=name, kind="missing", key=row.key, expected=f"{kind} {_shown(row)}"))
        for row in extra_rows:
            out.append(Difference(table=name, kind="unexpected", key=row.key, actual=f"{kind} {_shown(row)}"))
        return out
    expected_by_key = {json.dumps(r.key, sort_keys=True, default=str): r for r in expected}
    actual_by_key = {json.dumps(r.key, sort_keys=True, default=str): r for r in actual}
    out = []
    for k, row in expected_by_key.items():
        real = actual_by_key.get(k)
        if real is None:
            out.append(Difference(table=name, kind="missing", key=row.key, expected=f"{kind} {_shown(row)}"))
            continue
        if kind == "updated":
            for column in sorted(set(row.changes) | set(real.changes)):
                if column in table.clock_columns:
                    continue
                want, got = row.changes.get(column), real.changes.get(column)
                if (want.new if want else None) != (got.new if got else None) or (want is None) != (got is None):
                    out.append(Difference(table=name, kind="wrong_value", key=row.key, column=column,
                                          expected=want.new if want else (got.old if got else None),
                                          actual=got.new if got else (want.old if want else None)))
        elif _content(row, table, False) != _content(real, table, False):
            for column in sorted(set(row.values) | set(real.values)):
                if column not in table.clock_columns and row.values.get(column) != real.values.get(column):
                    out.append(Difference(table=name, kind="wrong_value", key=row.key, column=column,
                                          expected=row.values.get(column), actual=real.values.get(column)))
    for k, row in actual_by_key.items():
        if k not in expected_by_key:
            out.append(Difference(table=name, kind="unexpected", key=row.key, actual=f"{kind} {_shown(row)}"))
    return out


def _drop_first(rows: list[RowChange], content: str, table: TableDiff) -> list[RowChange]:
    for i, row in enumerate(rows):
        if _content(row, table, True) == content:
            return rows[:i] + rows[i + 1:]
    return rows


def _shown(row: RowChange) -> str:
    if row.changes:
        return ", ".join(f"{c}: {ch.old!r} -> {ch.new!r}" for c, ch in row.changes.items())
    return json.dumps(row.values, default=str, ensure_ascii=False)


def differences(expected: StateDiff, actual: StateDiff) -> list[Difference]:
    """Every way `actual` departs from `expected`: a change missing, one nobody asked for, a wrong value."""
    out: list[Difference] = []
    for name in sorted(set(expected.tables) | set(actual.tables)):
        want = expected.tables.get(name) or TableDiff()
        got = actual.tables.get(name) or TableDiff()
        shape = TableDiff(clock_columns=sorted(set(want.clock_columns) | set(got.clock_columns)),
                          assigned_keys=want.assigned_keys or got.assigned_keys)
        for kind in ("inserted", "deleted", "updated"):
            out += _compare_rows(name, kind, getattr(want, kind), getattr(got, kind), shape)
    return out


def match(alternatives: list[StateDiff], actual: StateDiff) -> tuple[int | None, list[Difference]]:
    """The first acceptable goal diff the real one equals; else None and the differences from the closest."""
    best: list[Difference] | None = None
    for i, expected in enumerate(alternatives):
        found = differences(expected, actual)
        if not found:
            return i, []
        if best is None or len(found) < len(best):
            best = found
    return None, best or []
