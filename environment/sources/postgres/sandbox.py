"""The Postgres kind's sandbox: one dialogue's own database, cloned from the run's template.

Calls go through PostgresClone (a transaction each, on the dialogue's clock); a replay runs a recorded
write again with the same arguments at the same clock, so a fresh clone comes to the same rows and the
same sequence positions. A server that goes away is not a tool error the assistant could work around: the
call raises, the dialogue ends with the reason, and `resume` finishes it once the server is back.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg import sql as pgsql

from environment.errors import InputError, SourceUnavailable
from environment.sources.arguments import DEFAULT_MAX_ARGUMENT_CHARS, typed_arguments
from environment.sources.base import CallContext, CallOutcome
from environment.sources.postgres.capture import capture_logs, first_logged, log_position
from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.execute import DEFAULT_MAX_ROWS, PostgresClone
from environment.sources.postgres.introspect import json_value
from environment.sources.read_memo import DEFAULT_CAPACITY, shared_memo
from environment.sources.rows_diff import Snapshot, TableSnapshot
from environment.sources.rows_diff import diff as rows_diff
from environment.sources.sqlite.sandbox import check_sql_arguments
from state.dialogue import ExecutedCall
from state.postgres_uri import without_password
from state.tools import Tool, ToolResult
from state.verification import StateDiff

_TABLES = """
SELECT c.relname,
       ARRAY(SELECT a.attname::text FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.num
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.pos)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1
"""
_DEFAULTS = """
SELECT column_name::text, column_default::text FROM information_schema.columns
WHERE table_schema = %s AND table_name = %s
"""
_IDENTITY = """
SELECT column_name::text FROM information_schema.columns
WHERE table_schema = %s AND table_name = %s AND is_identity = 'YES'
"""
# a default that reads the time (rewritten to the dialogue's clock on the run's template)
_CLOCK = re.compile(r"now\(\)|current_(timestamp|date|time)|localtime|forge_clock", re.I)


def _identity_columns(conn: psycopg.Connection, schema: str, table: str) -> set[str]:
    return {r[0] for r in conn.execute(_IDENTITY, (schema, table)).fetchall()}


class PostgresSandbox:
    """A private database for one dialogue (the Postgres kind's sandbox)."""

    def __init__(self, manager: CloneManager, key: str, schema: str = "public",
                 memo_capacity: int = DEFAULT_CAPACITY) -> None:
        self.manager, self.key, self.schema = manager, key, schema
        try:
            self.clone = PostgresClone(manager.clone(key), schema)
        except (InputError, psycopg.OperationalError) as exc:  # it was reachable when the run started
            raise SourceUnavailable(f"the PostgreSQL server of {without_password(manager.source_uri)} went away: "
                                    f"{' '.join(str(exc).split())[:200]}") from None
        self.lock = threading.Lock()
        self._shapes: list[tuple[str, list[str], list[str], bool]] | None = None  # per table: key, clock, assigned
        self._names: dict[str, list[str]] = {}
        self._logs: dict[str, str] | None = None  # the change log of each table (capture.py); {} without capture
        if self.captures_changes:
            self._opened = self.mark()
        # a read made again on the same rows, by this clone or another of the run's template, is answered
        # (read_memo.py); the rows are named by the change log, so a clone without one keeps no results
        self.memo = shared_memo((manager.source_uri, manager.template, schema),
                                 memo_capacity if self._logs else 0)

    def run(self, tool: Tool, arguments: dict[str, Any], max_rows: int = DEFAULT_MAX_ROWS, clock: str | None = None,
            max_chars: int = DEFAULT_MAX_ARGUMENT_CHARS) -> ToolResult:
        """Check the arguments against the tool's schema, then run its SQL with them bound as the declared
        types: the one path of a call, first run and replay alike."""
        error = check_sql_arguments(tool, arguments, max_chars)
        if error is not None:
            return ToolResult(ok=False, error=error)
        typed = typed_arguments(tool, arguments)

        def execute() -> ToolResult:
            with self.lock:
                return self.clone.execute(tool.sql, typed, tool.mode, declared=tool.properties, max_rows=max_rows,
                                          clock=clock)

        result = self.memo.read(tool.sql, typed, max_rows, self._state_token, execute) if tool.mode == "read" \
            else execute()
        if not result.ok and self.clone.conn.closed:
            raise SourceUnavailable(f"the PostgreSQL server of {without_password(self.manager.source_uri)} went away: "
                             f"{result.error.message if result.error else ''}")
        return result

    async def call(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> CallOutcome:
        result = await asyncio.to_thread(self.run, tool, arguments, context.max_rows, context.clock,
                                         context.max_argument_chars)  # psycopg's calls block
        # a write records its time: now() and the defaults that read it gave the dialogue's clock
        return CallOutcome(result=result, clock=context.clock if tool.mode == "write" else None)

    def replay(self, call: ExecutedCall, tool: Tool) -> ToolResult | None:
        if call.mode != "write" or not call.result.ok:
            return None  # reads and failed writes changed nothing (a failed write's sequences were put back)
        return self.run(tool, call.arguments, clock=call.clock)

    def snapshot(self) -> Snapshot:
        """Every table's rows keyed by primary key (a table without one: by the whole row), with the columns
        the dialogue's clock fills (defaults that read the time) and whether the key is assigned on insert (a
        single identity or serial column): what the row-level state diff (rows_diff.py) compares."""
        with self._server_kept():
            return self._snapshot()

    @contextmanager
    def _server_kept(self) -> Iterator[None]:
        """A lost connection while reading the clone (a snapshot, the change log) is the server going away, as
        on a call: not the dialogue's fault, so it stops the dialogue without a line and `resume` finishes it."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise self.gone(exc) from None

    def gone(self, exc: Exception) -> SourceUnavailable:
        return SourceUnavailable(f"the PostgreSQL server of {without_password(self.manager.source_uri)} went away: "
                                 f"{' '.join(str(exc).split())[:200]}")

    def _shape_list(self, conn: psycopg.Connection) -> list[tuple[str, list[str], list[str], bool]]:
        if self._shapes is None:  # tools change rows, never the schema: its facts are read once
            self._shapes = [(table, list(key), *self._key_facts(conn, table, key))
                            for table, key in conn.execute(_TABLES, (self.schema,)).fetchall()]
        return self._shapes

    def _columns(self, conn: psycopg.Connection, table: str) -> list[str]:
        if table not in self._names:
            cur = conn.execute(pgsql.SQL("SELECT * FROM {} LIMIT 0").format(pgsql.Identifier(self.schema, table)))
            self._names[table] = [d.name for d in cur.description or []]
        return self._names[table]

    def _rows(self, conn: psycopg.Connection, table: str, key: list[str], clock: list[str], assigned: bool,
              where: list[tuple[Any, ...]] | None = None, raw_rows: list[tuple[Any, ...]] | None = None
              ) -> TableSnapshot:
        """A table's rows as a snapshot holds them: all of them, those with the keys in `where`, or `raw_rows`."""
        target = pgsql.Identifier(self.schema, table)
        names = self._columns(conn, table)
        if raw_rows is None and where is None:
            raw_rows = conn.execute(pgsql.SQL("SELECT * FROM {}").format(target)).fetchall()
        elif raw_rows is None:
            match = pgsql.SQL(" AND ").join(pgsql.SQL("{} = %s").format(pgsql.Identifier(k)) for k in key)
            query = pgsql.SQL("SELECT * FROM {} WHERE {}").format(target, match)
            raw_rows = [row for values in where for row in conn.execute(query, values).fetchall()]
        keys = list(key) or names
        at = [names.index(k) for k in keys]
        rows = {}
        for raw in raw_rows:
            row = tuple(json_value(v) for v in raw)
            rows[tuple(json.dumps(row[i], sort_keys=True, default=str) for i in at)] = row
        return TableSnapshot(key_columns=keys, assigned_keys=assigned, clock_columns=clock, columns=names, rows=rows)

    def _snapshot(self) -> Snapshot:
        with self.lock, self.clone.conn.transaction():
            conn = self.clone.conn
            return Snapshot(tables={table: self._rows(conn, table, key, clock, assigned)
                                    for table, key, clock, assigned in self._shape_list(conn)})

    # -- change capture (capture.py): the template's triggers log each clone's writes ---------------------

    @property
    def captures_changes(self) -> bool:
        if self._logs is None:
            with self._server_kept(), self.lock, self.clone.conn.transaction():
                self._logs = capture_logs(self.clone.conn, self.schema) or {}
        return bool(self._logs)

    def mark(self) -> tuple[int, dict[str, TableSnapshot]]:
        """The log's position, and the rows of tables no log covers (those without a primary key)."""
        with self._server_kept(), self.lock, self.clone.conn.transaction():
            conn = self.clone.conn
            unlogged = {table: self._rows(conn, table, key, clock, assigned)
                        for table, key, clock, assigned in self._shape_list(conn) if table not in self._logs}
            return log_position(conn), unlogged

    def changes_since(self, mark: tuple[int, dict[str, TableSnapshot]] | None) -> StateDiff:
        position, unlogged = mark if mark is not None else self._opened
        before: dict[str, TableSnapshot] = {}
        after: dict[str, TableSnapshot] = {}
        with self._server_kept(), self.lock, self.clone.conn.transaction():
            conn = self.clone.conn
            for table, key, clock, assigned in self._shape_list(conn):
                if table not in self._logs:
                    before[table] = unlogged[table]
                    after[table] = self._rows(conn, table, key, clock, assigned)
                    continue
                first, now = self._logged_since(conn, table, key, clock, assigned, position)
                if first:
                    before[table] = self._rows(conn, table, key, clock, assigned,
                                               raw_rows=[r for r in first.values() if r is not None])
                    after[table] = now
        return rows_diff(Snapshot(tables=before), Snapshot(tables=after))

    def _logged_since(self, conn: psycopg.Connection, table: str, key: list[str], clock: list[str], assigned: bool,
                      position: int) -> tuple[dict[tuple, tuple[Any, ...] | None], TableSnapshot]:
        """A logged table's keys changed since a log position (each with its first row logged) and their rows now."""
        names = self._columns(conn, table)
        first = first_logged(conn, self._logs[table], position, [names.index(k) for k in key])
        return first, self._rows(conn, table, key, clock, assigned, where=list(first))

    def _state_token(self) -> frozenset | None:
        """What names the clone's rows now, given the template's: each table's keys logged since the clone
        opened and their rows now (read_memo.py); None where a table no log covers could have changed."""
        token: set[tuple] = set()
        with self._server_kept(), self.lock, self.clone.conn.transaction():
            conn = self.clone.conn
            for table, key, clock, assigned in self._shape_list(conn):
                if table not in self._logs:
                    return None
                first, now = self._logged_since(conn, table, key, clock, assigned, self._opened[0])
                if first:
                    token.add((table, frozenset(json.dumps(k, default=str) for k in first),
                               frozenset((k, json.dumps(r, sort_keys=True, default=str)) for k, r in now.rows.items())))
        return frozenset(token)

    # -- savepoints (RollbackSandbox): the plan check runs a reference plan on the dialogue's own clone ----

    def savepoint(self) -> list[tuple[str, int, bool]]:
        """Open a transaction around what follows (each call's own transaction becomes a savepoint inside it,
        the change log's rows included); the sequences' positions are kept, since nextval is not rolled back."""
        with self._server_kept(), self.lock:
            positions = self.clone.positions()
            self.clone.conn.execute("SAVEPOINT forge_plan")  # outside a transaction this begins one
            return positions

    def rollback_to(self, positions: list[tuple[str, int, bool]]) -> None:
        """Undo everything since the savepoint and put the sequences back: the clone is as it was before."""
        with self._server_kept(), self.lock:
            self.clone.conn.rollback()
            self.clone.restore(positions)

    def _key_facts(self, conn: psycopg.Connection, table: str, key: list[str]) -> tuple[list[str], bool]:
        """A table's columns the dialogue's clock fills, and whether its key is assigned on insert."""
        defaults = dict(conn.execute(_DEFAULTS, (self.schema, table)).fetchall())
        clock = sorted(c for c, d in defaults.items() if d and _CLOCK.search(d))
        assigned = len(key) == 1 and bool(defaults.get(key[0]) and "nextval" in defaults[key[0]]
                                          or key[0] in _identity_columns(conn, self.schema, table))
        return clock, assigned

    def diff(self, before: Snapshot, after: Snapshot) -> StateDiff:
        return rows_diff(before, after)

    def reads(self) -> "SampleReads":
        return SampleReads(self)

    def close(self) -> None:
        with self.lock:  # a call still running in its thread finishes before its connection goes
            self.clone.close()
        try:
            self.manager.release(self.key)
        except Exception:  # noqa: BLE001 - a server gone away keeps the clone; `resume` drops it as a leftover
            pass


class _Rows:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def __iter__(self):
        return iter(self._rows)


class SampleReads:
    """The read-only queries the shared sample-argument code makes (`.conn.execute(sql).fetchone()`), run
    on the clone in a transaction of their own and given back as JSON values. A query Postgres refuses
    is raised as sqlite3.Error, the error that code already expects of a query that does not fit the data."""

    def __init__(self, sandbox: PostgresSandbox) -> None:
        self.conn = self
        self._sandbox = sandbox

    def execute(self, sql: str, params: Any = None) -> _Rows:
        conn = self._sandbox.clone.conn
        try:
            with self._sandbox.lock, conn.transaction(force_rollback=True):
                rows = conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            if conn.closed:  # the server went away: not a query that does not fit the data
                raise self._sandbox.gone(exc) from None
            raise sqlite3.OperationalError(" ".join(str(exc).split())[:300]) from None
        return _Rows([tuple(json_value(v) for v in row) for row in rows])
