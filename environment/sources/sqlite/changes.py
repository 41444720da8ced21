"""Change capture for a SQLite sandbox: temporary triggers log every row a write touches, as it happens.

Each table of the sandbox gets TEMP triggers (they live on the sandbox's connection only, never in a file)
that write the row as it was before a change into one temporary log, `temp.forge_changes`: the old row
before a DELETE or UPDATE, the rows a new row's keys would displace before an INSERT or UPDATE (what
`INSERT OR REPLACE`, `ON CONFLICT … REPLACE` and `UPDATE OR REPLACE` delete without firing delete
triggers), and "no row" for a key that an INSERT or a key-changing UPDATE fills. Foreign-key actions
(`ON DELETE CASCADE`, `SET NULL`) and the schema's own triggers change rows through ordinary statements,
so they fire these triggers too (temporary triggers fire first, before the schema's own).

The diff since a mark (a log position) is the fold of the log: per table and key, the first row logged
since the mark is the row as it was then; the row as it is now is read by key. The two small snapshots of
just those rows go through the same comparison as whole-database snapshots (rows_diff.py), so a row
inserted then updated is one insert, a row updated back to its old values no change, and the clock and
assigned-key columns are marked as before, at the cost of the rows changed.

A table no trigger can be put on (a virtual table) is compared by whole snapshots of that table alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from environment.sources.rows_diff import Snapshot, TableSnapshot
from environment.sources.sqlite.clock import clock_defaults
from environment.sources.sqlite.diff import key_of, snapshot, table_names
from environment.sources.sqlite.names import quote_ident

LOG = "temp.forge_changes"
_LOG_IN_TRIGGER = "forge_changes"  # a trigger's INSERT may not name a schema: a temporary one finds temp first
TRIGGER_PREFIX = "forge_capture_"


@dataclass
class _Table:
    number: int
    name: str
    columns: list[str]  # as a snapshot names them: "rowid" first for a table keyed by rowid
    key_columns: list[str]
    assigned_keys: bool
    clock_columns: list[str]
    key_at: list[int] = field(default_factory=list)

    def select(self) -> str:
        prefix = "SELECT rowid AS rowid, *" if self.key_columns == ["rowid"] else "SELECT *"
        return f"{prefix} FROM main.{quote_ident(self.name)}"

    def shape(self, rows: dict[tuple, tuple]) -> TableSnapshot:
        return TableSnapshot(key_columns=self.key_columns, assigned_keys=self.assigned_keys,
                             clock_columns=self.clock_columns, columns=self.columns, rows=rows)


@dataclass
class Mark:
    """A position in the log, and the rows of the tables no trigger watches (usually none)."""

    position: int
    unwatched: Snapshot | None = None


def _unique_sets(conn: sqlite3.Connection, table: str, keys: list[str]) -> list[list[str]]:
    """Every set of columns two rows may not share (the key, each UNIQUE constraint or index over columns)."""
    sets = [keys]
    for index in conn.execute(f"PRAGMA main.index_list({quote_ident(table)})").fetchall():
        if not index[2]:  # not unique
            continue
        info = conn.execute(f"PRAGMA main.index_info({quote_ident(index[1])})").fetchall()
        names = [r[2] for r in info]
        if names and all(n is not None for n in names) and names not in sets:
            sets.append(names)  # an index on expressions has no column names: a rare case left out
    return sets


class ChangeLog:
    """The change log of one sandbox connection: triggers installed once, marks, and the fold of the log."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.tables: list[_Table] = []
        self.unwatched: list[str] = []
        names = table_names(conn)
        for number, name in enumerate(names):
            keys, assigned = key_of(conn, name)
            table = _Table(number, name, [], keys, assigned, sorted(clock_defaults(conn, name)))
            cur = conn.execute(f"{table.select()} LIMIT 0")
            table.columns = [d[0] for d in cur.description]
            table.key_at = [table.columns.index(k) for k in keys]
            self.tables.append(table)
        self.width = width = max((len(t.columns) for t in self.tables), default=0)
        values = "".join(f", v{i}" for i in range(width))
        conn.execute(f"CREATE TEMP TABLE forge_changes (seq INTEGER PRIMARY KEY, tbl INTEGER, present INTEGER{values})")
        for table in self.tables:
            try:
                self._install(table, _unique_sets(conn, table.name, table.key_columns))
            except sqlite3.Error:  # a virtual table takes no trigger
                self._drop(table)
                self.unwatched.append(table.name)
        self._by_number = {t.number: t for t in self.tables}

    def _drop(self, table: _Table) -> None:
        for when in ("bd", "bu", "au", "bi", "ai"):
            self.conn.execute(f"DROP TRIGGER IF EXISTS temp.{TRIGGER_PREFIX}{when}_{table.number}")

    def _install(self, table: _Table, unique: list[list[str]]) -> None:
        cols = [quote_ident(c) for c in table.columns]
        slots = ", ".join(f"v{i}" for i in range(len(cols)))
        key_slots = ", ".join(f"v{i}" for i in table.key_at)
        target = f"main.{quote_ident(table.name)}"

        def row_of(alias: str) -> str:
            return ", ".join(f"{alias}.{c}" for c in cols)

        def key_of_row(alias: str) -> str:
            return ", ".join(f"{alias}.{cols[i]}" for i in table.key_at)

        # rows a new row's values would collide with: REPLACE deletes them without firing delete triggers
        collide = " OR ".join("(" + " AND ".join(f"{quote_ident(c)} = NEW.{quote_ident(c)}" for c in names) + ")"
                              for names in unique)
        displaced = (f"INSERT INTO {_LOG_IN_TRIGGER} (tbl, present, {slots}) SELECT {table.number}, 1, {', '.join(cols)} "
                     f"FROM {target} WHERE {collide};")
        was = f"INSERT INTO {_LOG_IN_TRIGGER} (tbl, present, {slots}) VALUES ({table.number}, 1, {row_of('OLD')});"
        filled = f"INSERT INTO {_LOG_IN_TRIGGER} (tbl, present, {key_slots}) VALUES ({table.number}, 0, {key_of_row('NEW')});"
        name = TRIGGER_PREFIX  # a temporary trigger's name takes no schema
        n = table.number
        self.conn.execute(f"CREATE TEMP TRIGGER {name}bd_{n} BEFORE DELETE ON {target} BEGIN {was} END")
        self.conn.execute(f"CREATE TEMP TRIGGER {name}bu_{n} BEFORE UPDATE ON {target} BEGIN {was} {displaced} END")
        self.conn.execute(f"CREATE TEMP TRIGGER {name}au_{n} AFTER UPDATE ON {target} BEGIN {filled} END")
        self.conn.execute(f"CREATE TEMP TRIGGER {name}bi_{n} BEFORE INSERT ON {target} BEGIN {displaced} END")
        self.conn.execute(f"CREATE TEMP TRIGGER {name}ai_{n} AFTER INSERT ON {target} BEGIN {filled} END")

    def mark(self) -> Mark:
        position = self.conn.execute(f"SELECT coalesce(max(seq), 0) FROM {LOG}").fetchone()[0]
        return Mark(position, snapshot(self.conn, self.unwatched) if self.unwatched else None)

    def _first_rows(self, since: Mark) -> dict[int, dict[tuple, tuple | None]]:
        """Per table and key touched since a mark, the first row logged: the row as it was then (None: none)."""
        first: dict[int, dict[tuple, tuple | None]] = {}
        logged = self.conn.execute(f"SELECT {', '.join(['tbl', 'present', *(f'v{i}' for i in range(self.width))])} FROM {LOG} "
                                   f"WHERE seq > ? ORDER BY seq", (since.position,)).fetchall()
        for tbl, present, *values in logged:
            table = self._by_number[tbl]
            row = tuple(values[: len(table.columns)])
            key = tuple(row[i] for i in table.key_at)
            first.setdefault(tbl, {}).setdefault(key, row if present else None)
        return first

    def _rows_now(self, table: _Table, keys: Iterable[tuple]) -> dict[tuple, tuple]:
        where = " AND ".join(f"{quote_ident(c)} IS ?" for c in table.key_columns)
        now: dict[tuple, tuple] = {}
        for key in keys:
            found = self.conn.execute(f"{table.select()} WHERE {where}", key).fetchone()
            if found is not None:
                now[key] = found
        return now

    def state_token(self, since: Mark) -> frozenset | None:
        """What identifies the rows as they are now, given the rows at the mark: each key touched since with
        its row now (None where it has none). Equal tokens mean equal contents; it costs the rows changed.
        None where a table no trigger watches could have changed unseen."""
        if self.unwatched:
            return None
        token: set[tuple] = set()
        for tbl, rows in self._first_rows(since).items():
            now = self._rows_now(self._by_number[tbl], rows)
            token.update((tbl, key, now.get(key)) for key in rows)
        return frozenset(token)

    def folded(self, since: Mark) -> tuple[Snapshot, Snapshot]:
        """The rows changed since a mark: as they were then, and as they are now (two small snapshots)."""
        before: dict[str, TableSnapshot] = {}
        after: dict[str, TableSnapshot] = {}
        for tbl, rows in sorted(self._first_rows(since).items()):
            table = self._by_number[tbl]
            before[table.name] = table.shape({k: r for k, r in rows.items() if r is not None})
            after[table.name] = table.shape(self._rows_now(table, rows))
        if since.unwatched is not None:
            before.update(since.unwatched.tables)
            after.update(snapshot(self.conn, self.unwatched).tables)
        return Snapshot(tables=before), Snapshot(tables=after)
