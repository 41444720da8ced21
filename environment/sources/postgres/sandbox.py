"""The Postgres kind's sandbox: one dialogue's own database, cloned from the run's template.

Calls go through PostgresClone (a transaction each, on the dialogue's clock); a replay runs a recorded
write again with the same arguments at the same clock, so a fresh clone comes to the same rows and the
same sequence positions. A server that goes away is not a tool error the assistant could work around: the
call raises, the dialogue ends with the reason, and `resume` finishes it once the server is back.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import psycopg
from psycopg import sql as pgsql

from environment.errors import InputError, SourceUnavailable
from environment.sources.arguments import DEFAULT_MAX_ARGUMENT_CHARS, typed_arguments
from environment.sources.base import CallContext, CallOutcome
from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.execute import DEFAULT_MAX_ROWS, PostgresClone
from environment.sources.postgres.introspect import json_value
from environment.sources.sqlite.sandbox import check_sql_arguments
from state.dialogue import ExecutedCall
from state.postgres_uri import without_password
from state.tools import Tool, ToolResult

_TABLES = """
SELECT c.relname,
       ARRAY(SELECT a.attname::text FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.num
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.pos)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1
"""


class PostgresSandbox:
    """A private database for one dialogue (the Postgres kind's sandbox)."""

    def __init__(self, manager: CloneManager, key: str, schema: str = "public") -> None:
        self.manager, self.key, self.schema = manager, key, schema
        try:
            self.clone = PostgresClone(manager.clone(key), schema)
        except (InputError, psycopg.OperationalError) as exc:  # it was reachable when the run started
            raise SourceUnavailable(f"the PostgreSQL server of {without_password(manager.source_uri)} went away: "
                                    f"{' '.join(str(exc).split())[:200]}") from None
        self.lock = threading.Lock()

    def run(self, tool: Tool, arguments: dict[str, Any], max_rows: int = DEFAULT_MAX_ROWS, clock: str | None = None,
            max_chars: int = DEFAULT_MAX_ARGUMENT_CHARS) -> ToolResult:
        """Check the arguments against the tool's schema, then run its SQL with them bound as the declared
        types: the one path of a call, first run and replay alike."""
        error = check_sql_arguments(tool, arguments, max_chars)
        if error is not None:
            return ToolResult(ok=False, error=error)
        with self.lock:
            result = self.clone.execute(tool.sql, typed_arguments(tool, arguments), tool.mode,
                                        declared=tool.properties, max_rows=max_rows, clock=clock)
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

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every table's rows, as JSON values, in primary-key order (every column's, for a table without
        one): `{table: [row, …]}`, what the row-level state diff compares."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.lock, self.clone.conn.transaction():
            conn = self.clone.conn
            for table, key in conn.execute(_TABLES, (self.schema,)).fetchall():
                ident = pgsql.Identifier(self.schema, table)
                order = pgsql.SQL(", ").join(pgsql.Identifier(k) for k in key) if key else pgsql.SQL("t::text")
                cur = conn.execute(pgsql.SQL("SELECT * FROM {} t ORDER BY {}").format(ident, order))
                names = [d.name for d in cur.description or []]
                out[table] = [{k: json_value(v) for k, v in zip(names, row)} for row in cur.fetchall()]
        return out

    def reads(self) -> "SampleReads":
        return SampleReads(self)

    def close(self) -> None:
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
            raise sqlite3.OperationalError(" ".join(str(exc).split())[:300]) from None
        return _Rows([tuple(json_value(v) for v in row) for row in rows])
