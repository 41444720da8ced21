"""How a task's real diff compares with its goal diffs, whatever kind of source made them.

Clock columns match any value; rows whose key the store assigns are matched by their other values
(`TableDiff.assigned_keys`: new rows of a SQLite table with an INTEGER PRIMARY KEY or rowid, every row of
the simulated world whose ids are drawn).
"""

from __future__ import annotations

import json

from state.verification import Difference, RowChange, StateDiff, TableDiff

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
