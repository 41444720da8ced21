"""SQLite sandboxes: private copies of the source database (in memory; a file for a big one, files.py).

A sandbox's contents are a pure function of the source database and the dialogue's recorded writes, so
any checkpoint (resumed, forked or replayed) can rebuild exactly the database state it had. Its writes are
logged as they happen (changes.py), so the diff since a mark costs the rows changed; a savepoint lets a
task's plan run on it and be rolled back.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from environment.sources.arguments import DEFAULT_MAX_ARGUMENT_CHARS, check_arguments, refusal, typed_arguments
from environment.sources.base import CallContext, CallOutcome
from environment.sources.read_memo import DEFAULT_CAPACITY, file_identity, shared_memo
from environment.sources.sqlite.changes import ChangeLog, Mark
from environment.sources.sqlite.clock import ClockBinding, clock_binding
from environment.sources.sqlite.files import copy_database, remove_copy
from environment.sources.sqlite.diff import Snapshot, diff, snapshot
from environment.sources.sqlite.introspect import DIALECT, json_value, open_read_only
from state.dialogue import ExecutedCall
from state.tools import Tool, ToolError, ToolResult
from state.verification import StateDiff

DEFAULT_MAX_ROWS = 20
_FETCH_LIMIT = 10_000


@lru_cache(maxsize=4096)
def placeholders(sql: str, dialect: str = DIALECT) -> tuple[str, ...]:
    """The :name placeholders of a statement, in order of first appearance."""
    found: list[str] = []
    for statement in sqlglot.parse(sql, read=dialect):
        if statement is None:
            continue
        for node in statement.find_all(exp.Placeholder):
            if node.name and node.name not in found:
                found.append(node.name)
    return tuple(found)


def bind(sql: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Named parameters for a statement: every placeholder bound, absent optional ones to NULL."""
    return {name: arguments.get(name) for name in placeholders(sql)}


def check_sql_arguments(tool: Tool, arguments: Any, max_chars: int = DEFAULT_MAX_ARGUMENT_CHARS) -> ToolError | None:
    """The checks every source makes, and one of SQL's own: every value is a single value it can bind."""
    error = check_arguments(tool, arguments, max_chars)
    if error is not None:
        return error
    for name, value in arguments.items():
        if isinstance(value, (dict, list)):
            return refusal(name, f"must be a single value (text, number, true/false or null), "
                                 f"not {'an object' if isinstance(value, dict) else 'a list'}")
    return None


def bound_arguments(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """Checked arguments as SQL parameters of their declared types: an integer given as 3.0 binds as 3."""
    return bind(tool.sql, typed_arguments(tool, arguments))


class Sandbox:
    """A private, writable copy of a source database (the SQLite kind's sandbox): in memory, or with `folder` a
    file there (files.py), for a big source."""

    def __init__(self, source_path: str, folder: Path | None = None, keep: bool = False,
                 memo_capacity: int = DEFAULT_CAPACITY) -> None:
        self.source_path = source_path
        identity = file_identity(source_path)  # before the copy: the contents it starts from
        self.file: Path | None = None
        self.keep = keep
        if folder is None:
            self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            src = open_read_only(source_path)
            try:
                src.backup(self.conn)
            finally:
                src.close()
        else:
            self.file = copy_database(Path(source_path), folder)
            self.conn = sqlite3.connect(self.file, check_same_thread=False, isolation_level=None)
            # scratch: nothing needs to survive a crash, and the rollback journal of a savepoint stays in memory
            self.conn.execute("PRAGMA journal_mode = MEMORY")
            self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.lock = threading.Lock()
        self._clock: dict[str, ClockBinding | None] = {}
        self.changes = ChangeLog(self.conn)
        self._opened = self.changes.mark()
        self._savepoints = 0
        # a read made again on the same rows, by this sandbox or another of the source, is answered (read_memo.py)
        self.memo = shared_memo(identity, memo_capacity)

    def close(self) -> None:
        # under the lock: a call still running in its thread (a run stopping) finishes before the connection
        # goes; closing it under a running statement crashes the interpreter
        with self.lock:
            self.conn.close()
        if self.file is not None and not self.keep:
            remove_copy(self.file)

    def execute(self, sql: str, params: dict[str, Any], mode: str, max_rows: int = DEFAULT_MAX_ROWS,
                clock: str | None = None) -> ToolResult:
        """Run one parameterized statement. Database errors come back as results, never raised.

        With a clock (the dialogue's time), an INSERT that leaves out columns defaulting to the current time
        gets them bound from it instead of the wall clock. A read this sandbox already made on the same rows
        is answered with its result (read_memo.py)."""
        if mode != "read":
            return self._execute(sql, params, mode, max_rows, clock)
        return self.memo.read(sql, params, max_rows, lambda: self.changes.state_token(self._opened),
                              lambda: self._execute(sql, params, mode, max_rows, clock))

    def _execute(self, sql: str, params: dict[str, Any], mode: str, max_rows: int, clock: str | None) -> ToolResult:
        try:
            if clock is not None and mode == "write":
                if sql not in self._clock:
                    self._clock[sql] = clock_binding(sql, self.conn)
                binding = self._clock[sql]
                if binding is not None:
                    sql, params = binding.sql, {**params, **binding.values(self.conn, clock)}
            cur = self.conn.execute(sql, params)
            if mode == "read":
                names = [d[0] for d in cur.description or []]
                raw = cur.fetchmany(_FETCH_LIMIT)
                rows = [{k: json_value(v) for k, v in zip(names, r)} for r in raw[:max_rows]]
                return ToolResult(ok=True, rows=rows, row_count=len(raw), truncated=len(raw) > max_rows)
            is_insert = sql.lstrip().upper().startswith(("INSERT", "REPLACE"))
            return ToolResult(ok=True, rows_affected=cur.rowcount, last_row_id=cur.lastrowid if is_insert else None)
        except sqlite3.IntegrityError as exc:
            return ToolResult(ok=False, error=ToolError(type="constraint_violation", message=str(exc)))
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            return ToolResult(ok=False, error=ToolError(type="sql_error", message=str(exc)))

    def run(self, tool: Tool, arguments: dict[str, Any], max_rows: int = DEFAULT_MAX_ROWS, clock: str | None = None,
            max_chars: int = DEFAULT_MAX_ARGUMENT_CHARS) -> ToolResult:
        """Check the arguments against the tool's schema, then run its SQL with them bound: the one path of a
        call, first run and replay alike."""
        error = check_sql_arguments(tool, arguments, max_chars)
        if error is not None:
            return ToolResult(ok=False, error=error)
        return self.execute(tool.sql, bound_arguments(tool, arguments), tool.mode, max_rows, clock)

    def _locked_run(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        with self.lock:
            return self.run(tool, arguments, context.max_rows, context.clock, context.max_argument_chars)

    async def call(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> CallOutcome:
        result = await asyncio.to_thread(self._locked_run, tool, arguments, context)  # SQLite calls block
        # a write records its time: columns defaulting to now took it, so a replay gives them the same
        return CallOutcome(result=result, clock=context.clock if tool.mode == "write" else None)

    def replay(self, call: ExecutedCall, tool: Tool) -> ToolResult | None:
        if call.mode != "write" or not call.result.ok:
            return None
        with self.lock:
            return self.run(tool, call.arguments, clock=call.clock)

    def snapshot(self) -> Snapshot:
        """Every table's rows by key, with its clock columns and whether the database assigns its keys."""
        with self.lock:
            return snapshot(self.conn)

    def diff(self, before: Snapshot, after: Snapshot) -> StateDiff:
        return diff(before, after)

    def mark(self) -> Mark:
        """The change log's position now: what `changes_since` folds from."""
        with self.lock:
            return self.changes.mark()

    def changes_since(self, mark: Mark | None) -> StateDiff:
        """What changed since a mark (None: since it was opened), folded from the change log: the same diff two
        snapshots would give."""
        with self.lock:
            return diff(*self.changes.folded(self._opened if mark is None else mark))

    def savepoint(self) -> str:
        """Open a savepoint: everything done after it (change log included) can be rolled back."""
        with self.lock:
            self._savepoints += 1
            name = f"forge_plan_{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            return name

    def rollback_to(self, name: str) -> None:
        """Undo everything since the savepoint and close it: the sandbox is as it was when it was opened."""
        with self.lock:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
