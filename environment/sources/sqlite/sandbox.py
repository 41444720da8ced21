"""Per-dialogue sandboxes: private in-memory copies of the source database.

A sandbox's contents are a pure function of the source database and the dialogue's write log, so
any checkpoint (resumed, forked or replayed) can rebuild exactly the database state it had.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import jsonschema
import sqlglot
from sqlglot import exp

from environment.sources.sqlite.clock import ClockBinding, clock_binding
from environment.sources.sqlite.introspect import json_value, open_read_only
from state.dialogue import WriteRecord
from state.tools import Tool, ToolError, ToolResult

DEFAULT_MAX_ROWS = 20
DEFAULT_MAX_ARGUMENT_CHARS = 10_000
_FETCH_LIMIT = 10_000
_MESSAGE_CHARS = 300  # an error quotes what it refused; a megabyte of it helps nobody


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


def _refusal(field: str, message: str) -> ToolError:
    text = f"{field}: {message}" if field else message
    return ToolError(type="invalid_arguments", message=text[:_MESSAGE_CHARS], field=field or None)


def _value_problem(value: Any, max_chars: int) -> str | None:
    """What no tool accepts anywhere in an argument: text over the size limit, NaN or an infinity."""
    if isinstance(value, str) and len(value) > max_chars:
        return f"text of {len(value)} characters is longer than the {max_chars} allowed"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, dict):
        return next((p for v in value.values() if (p := _value_problem(v, max_chars))), None)
    if isinstance(value, list):
        return next((p for v in value if (p := _value_problem(v, max_chars))), None)
    return None


def check_arguments(tool: Tool, arguments: Any, max_chars: int = DEFAULT_MAX_ARGUMENT_CHARS) -> ToolError | None:
    """Validate call arguments against the tool's JSON Schema (no unknown keys), refusing over-long text and
    non-finite numbers; for a SQL tool every value must be a single value it can bind."""
    if not isinstance(arguments, dict):
        return _refusal("", f"arguments must be a JSON object, not {type(arguments).__name__}")
    for name, value in arguments.items():
        problem = _value_problem(value, max_chars)
        if problem:
            return _refusal(str(name)[:80], problem)
    schema = {"additionalProperties": False, **tool.parameters}
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.absolute_path)
        if not field and first.validator == "additionalProperties":
            field = next((str(k) for k in arguments if k not in tool.properties), "")[:80]
        elif not field and first.validator == "required":
            field = next((k for k in tool.required if k not in arguments), "")
        return _refusal(field, first.message)
    if not tool.simulated:
        for name, value in arguments.items():
            if isinstance(value, (dict, list)):
                return _refusal(name, f"must be a single value (text, number, true/false or null), "
                                      f"not {'an object' if isinstance(value, dict) else 'a list'}")
    return None


def bound_arguments(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """Checked arguments as SQL parameters of their declared types: an integer given as 3.0 binds as 3."""
    out = dict(arguments)
    for name, value in arguments.items():
        declared = tool.properties.get(name, {}).get("type")
        integer = declared == "integer" or (isinstance(declared, list) and "integer" in declared)
        if integer and isinstance(value, float) and value.is_integer():
            out[name] = int(value)
    return bind(tool.sql, out)


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
        self._clock: dict[str, ClockBinding | None] = {}

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, params: dict[str, Any], mode: str, max_rows: int = DEFAULT_MAX_ROWS,
                clock: str | None = None) -> ToolResult:
        """Run one parameterized statement. Database errors come back as results, never raised.

        With a clock (the dialogue's time), an INSERT that leaves out columns defaulting to the current time
        gets them bound from it instead of the wall clock."""
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
        """Check the arguments against the tool's schema, then run its SQL with them bound."""
        error = check_arguments(tool, arguments, max_chars)
        if error is not None:
            return ToolResult(ok=False, error=error)
        result = self.execute(tool.sql, bound_arguments(tool, arguments), tool.mode, max_rows, clock)
        if tool.mode == "write" and result.ok:
            # the sandbox now holds this write: keep its log in step with the dialogue's
            self.applied.append(_fingerprint(WriteRecord(tool=tool.name, sql=tool.sql, params=arguments, clock=clock)))
        return result

    def apply(self, write: WriteRecord) -> ToolResult:
        """Replay a recorded write (at the time it was made)."""
        result = self.execute(write.sql, bind(write.sql, write.params), "write", clock=write.clock)
        self.applied.append(_fingerprint(write))
        return result


def _fingerprint(write: WriteRecord) -> tuple[str, str]:
    return write.sql, json.dumps([write.params, write.clock], sort_keys=True, default=str)


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
