"""One tool call on a dialogue's Postgres clone: a parameterized statement with its arguments bound as
parameters of their declared types, in a transaction of its own that reads the dialogue's clock.

Each call is one transaction: `forge.clock` is set for it alone (SET LOCAL), so now(), CURRENT_TIMESTAMP
and every default that read the wall clock give the dialogue's time (see clones.py), and the same calls at
the same times give the same rows, byte for byte. A read runs READ ONLY. A write that fails is rolled back
and the sequences it advanced are put back (nextval is not transactional), so a replay that leaves out the
failed call hands out the same ids. Errors come back as results, never raised.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg
from psycopg import sql as pgsql

from environment.sources.postgres.connection import SESSION_OPTIONS, connect
from environment.sources.postgres.introspect import json_value
from environment.sources.postgres.sqltext import CLOCK_SCHEMA, to_psycopg
from state.tools import ToolError, ToolResult

DEFAULT_MAX_ROWS = 20
STATEMENT_TIMEOUT_MS = 30_000
_FETCH_LIMIT = 10_000
_MESSAGE_CHARS = 300


def typed(arguments: dict[str, Any], declared: dict[str, Any] | None) -> dict[str, Any]:
    """Arguments as parameters of the types the tool declares (its JSON Schema properties): an integer
    given as 3.0 binds as 3, a number as a float; text and booleans as they are."""
    out = dict(arguments)
    for name, value in arguments.items():
        kind = (declared or {}).get(name, {}).get("type")
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if "integer" in kinds and isinstance(value, float) and value.is_integer():
            out[name] = int(value)
        elif "number" in kinds and isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _error(exc: BaseException) -> ToolError:
    message = " ".join(str(exc).split())[:_MESSAGE_CHARS] or type(exc).__name__
    if isinstance(exc, psycopg.errors.IntegrityError):
        return ToolError(type="constraint_violation", message=message)
    return ToolError(type="sql_error", message=message)


class PostgresClone:
    """A live connection to one dialogue's database."""

    def __init__(self, uri: str, schema: str = "public") -> None:
        self.uri = uri
        # forge_clock before pg_catalog: a tool's now() is the dialogue's clock too
        self.conn = connect(uri, options=f"{SESSION_OPTIONS} -c search_path={CLOCK_SCHEMA},pg_catalog,{schema}")
        self._sequences: list[str] | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "PostgresClone":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sequences(self) -> list[str]:
        if self._sequences is None:
            with self.conn.transaction():
                self._sequences = [r[0] for r in self.conn.execute(
                    "SELECT format('%%I.%%I', schemaname, sequencename) FROM pg_sequences "
                    "WHERE schemaname <> %s ORDER BY 1", (CLOCK_SCHEMA,))]
        return self._sequences

    def positions(self) -> list[tuple[str, int, bool]]:
        return [(name, *self.conn.execute(pgsql.SQL("SELECT last_value, is_called FROM {}").format(
            pgsql.SQL(name))).fetchone()) for name in self.sequences()]

    def restore(self, positions: list[tuple[str, int, bool]]) -> None:
        with self.conn.transaction():
            for name, value, called in positions:
                self.conn.execute("SELECT setval(%s::regclass, %s, %s)", (name, value, called))

    def execute(self, sql: str, arguments: dict[str, Any], mode: str, *, declared: dict[str, Any] | None = None,
                max_rows: int = DEFAULT_MAX_ROWS, clock: str | None = None, trial: bool = False) -> ToolResult:
        """Run one statement with named `:name` placeholders; placeholders without an argument bind NULL.
        A trial runs it for real and then rolls it back, sequences included: the clone is left as it was."""
        statement = to_psycopg(sql)
        values = typed(arguments, declared)
        params = {name: values.get(name) for name in statement.names}
        if any(isinstance(v, float) and not math.isfinite(v) for v in params.values()):
            return ToolResult(ok=False, error=ToolError(type="invalid_arguments", message="numbers must be finite"))
        positions: list[tuple[str, int, bool]] = []
        try:
            if mode == "write" or trial:
                with self.conn.transaction():
                    positions = self.positions()
            with self.conn.transaction(force_rollback=trial):
                if mode == "read":
                    self.conn.execute("SET TRANSACTION READ ONLY")
                self.conn.execute("SELECT set_config('forge.clock', %s, true), "
                                  "set_config('statement_timeout', %s, true)", (clock or "", str(STATEMENT_TIMEOUT_MS)))
                cur = self.conn.execute(statement.sql, params)
                names = [d.name for d in cur.description or []]
                raw = cur.fetchmany(_FETCH_LIMIT) if names else []
                affected = cur.rowcount
        except psycopg.OperationalError as exc:
            if self.conn.closed:
                return ToolResult(ok=False, error=ToolError(type="sql_error", message=f"the database connection "
                                                            f"was lost: {str(exc).splitlines()[0][:200]}"))
            return self._failed(exc, positions)
        except (psycopg.Error, OverflowError, ValueError, TypeError) as exc:
            return self._failed(exc, positions)
        if trial and positions:
            self.restore(positions)
        rows = [{k: json_value(v) for k, v in zip(names, r)} for r in raw[:max_rows]]
        if mode == "read":
            return ToolResult(ok=True, rows=rows, row_count=len(raw), truncated=len(raw) > max_rows)
        result = ToolResult(ok=True, rows_affected=affected)
        if names:  # RETURNING: the rows the write produced, and an INSERT's new key
            result = result.model_copy(update={"rows": rows, "row_count": len(raw), "truncated": len(raw) > max_rows})
            first = raw[-1][0] if raw else None
            if sql.lstrip().upper().startswith("INSERT") and isinstance(first, int) and not isinstance(first, bool):
                result.last_row_id = first
        return result

    def _failed(self, exc: BaseException, positions: list[tuple[str, int, bool]]) -> ToolResult:
        if positions:
            try:
                self.restore(positions)
            except psycopg.Error:
                pass  # the error below is what the caller needs; a lost connection says so on the next call
        return ToolResult(ok=False, error=_error(exc))
