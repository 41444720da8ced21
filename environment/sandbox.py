"""Per-dialogue sandboxes: private in-memory copies of the source database.

A sandbox's contents are a pure function of the source database and the dialogue's write log, so
any checkpoint (resumed, forked or replayed) can rebuild exactly the database state it had.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import jsonschema
import sqlglot
from sqlglot import exp

from environment.introspect import json_value, open_read_only
from state.dialogue import WriteRecord
from state.tools import Tool, ToolError, ToolResult

DEFAULT_MAX_ROWS = 20
_FETCH_LIMIT = 10_000


@lru_cache(maxsize=4096)
def placeholders(sql: str) -> tuple[str, ...]:
    """The :name placeholders of a statement, in order of first appearance."""
    found: list[str] = []
    for statement in sqlglot.parse(sql, read="sqlite"):
        if statement is None:
            continue
        for node in statement.find_all(exp.Placeholder):
            if node.name and node.name not in found:
                found.append(node.name)
    return tuple(found)


def bind(sql: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Named parameters for a statement: every placeholder bound, absent optional ones to NULL."""
    return {name: arguments.get(name) for name in placeholders(sql)}


def check_arguments(tool: Tool, arguments: dict[str, Any]) -> ToolError | None:
    """Validate call arguments against the tool's JSON Schema."""
    schema = {"additionalProperties": False, **tool.parameters}
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    where = ".".join(str(p) for p in first.absolute_path)
    message = f"{where}: {first.message}" if where else first.message
    return ToolError(type="invalid_arguments", message=message)


class Sandbox:
    """A private, writable in-memory copy of a source database."""

    def __init__(self, source_path: str) -> None:
        self.source_path = source_path
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        src = open_read_only(source_path)
        try:
            src.backup(self.conn)
        finally:
            src.close()
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.applied: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, params: dict[str, Any], mode: str, max_rows: int = DEFAULT_MAX_ROWS) -> ToolResult:
        """Run one parameterized statement. Database errors come back as results, never raised."""
        try:
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

    def run(self, tool: Tool, arguments: dict[str, Any], max_rows: int = DEFAULT_MAX_ROWS) -> ToolResult:
        """Check the arguments against the tool's schema, then run its SQL with them bound."""
        error = check_arguments(tool, arguments)
        if error is not None:
            return ToolResult(ok=False, error=error)
        result = self.execute(tool.sql, bind(tool.sql, arguments), tool.mode, max_rows)
        if tool.mode == "write" and result.ok:
            # the sandbox now holds this write: keep its log in step with the dialogue's
            self.applied.append(_fingerprint(WriteRecord(tool=tool.name, sql=tool.sql, params=arguments)))
        return result

    def apply(self, write: WriteRecord) -> ToolResult:
        """Replay a recorded write."""
        result = self.execute(write.sql, bind(write.sql, write.params), "write")
        self.applied.append(_fingerprint(write))
        return result


def _fingerprint(write: WriteRecord) -> tuple[str, str]:
    return write.sql, json.dumps(write.params, sort_keys=True, default=str)


class SandboxPool:
    """Keeps one live sandbox per dialogue and brings it to the state a write log describes.

    When the log extends what the sandbox has applied, only the new writes run; otherwise (a fork,
    a resume from an earlier checkpoint, a restart) the sandbox is rebuilt from the source.
    """

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._sandboxes: OrderedDict[str, Sandbox] = OrderedDict()
        self._lock = threading.Lock()

    def checkout(self, key: str, source_path: str, writes: list[WriteRecord]) -> Sandbox:
        wanted = [_fingerprint(w) for w in writes]
        with self._lock:
            box = self._sandboxes.pop(key, None)
            if box is not None and (box.source_path != source_path or box.applied != wanted[: len(box.applied)]):
                box.close()
                box = None
            if box is None:
                box = Sandbox(source_path)
            self._sandboxes[key] = box
            while len(self._sandboxes) > self.capacity:
                _, old = self._sandboxes.popitem(last=False)
                old.close()
        for write in writes[len(box.applied):]:
            box.apply(write)
        return box

    def release(self, key: str) -> None:
        with self._lock:
            box = self._sandboxes.pop(key, None)
        if box is not None:
            box.close()


SANDBOXES = SandboxPool()
