"""Row-level state of a SQLite sandbox: its snapshot (what `Sandbox.snapshot()` returns) and the diff of two.

Rows are keyed by their primary key (rowid where the table has none). Two kinds of values may differ
between a task's reference plan and the dialogue that carries it out without anything being wrong:
columns the dialogue's clock fills (their defaults read the time, see clock.py), and keys the database
assigns to new rows (INTEGER PRIMARY KEY, AUTOINCREMENT, rowid). The diff marks both (clock_columns,
assigned_keys) so the comparison with a goal diff (environment/state_match.py) can allow for them.
"""

from __future__ import annotations

import sqlite3

from environment.sources.sqlite.clock import clock_defaults
from environment.sources.sqlite.introspect import json_value
from environment.sources.sqlite.names import quote_ident
from environment.sources.rows_diff import Snapshot, TableSnapshot
from environment.sources.rows_diff import diff as rows_diff
from state.verification import StateDiff


def table_names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def key_of(conn: sqlite3.Connection, table: str) -> tuple[list[str], bool]:
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
    for table in tables if tables is not None else table_names(conn):
        keys, assigned = key_of(conn, table)
        select = "SELECT rowid AS rowid, *" if keys == ["rowid"] else "SELECT *"
        cur = conn.execute(f"{select} FROM {quote_ident(table)}")
        names = [d[0] for d in cur.description]
        at = [names.index(k) for k in keys]
        rows = {tuple(raw[i] for i in at): raw for raw in cur}
        out[table] = TableSnapshot(key_columns=keys, assigned_keys=assigned, columns=names,
                                   clock_columns=sorted(clock_defaults(conn, table)), rows=rows)
    return Snapshot(tables=out)


def diff(before: Snapshot, after: Snapshot) -> StateDiff:
    """Per table, the rows inserted, deleted and updated between two snapshots (sorted by key)."""
    return rows_diff(before, after, json_value)
