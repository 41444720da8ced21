"""Reads answered once per state: the same read on the same rows is not run twice.

A read tool's result is a function of the rows it reads (the tool checks refuse SQL with non-deterministic
functions, since a replay could not give the same result). A task's plan check runs its reads on the
dialogue's own sandbox inside a savepoint; after the rollback the dialogue makes the same calls on the
same rows, and is answered from the plan check's results instead of running again a statement that may scan
or sort a big table. The state is named by a token of the sandbox's change log (each row changed since the
sandbox opened, as it is now), so a write, a rollback and a write undone all lead to the right entry, and
equal tokens mean equal contents. The sandboxes of one source file share their results within a process
(`shared_memo`): every dialogue starts from the same rows, so a read the first dialogue made at its start
answers the others'. A statement that reads the connection's own state rather than its rows
(the last inserted id, the count of changes, SQLite's own tables, a temporary table) is never answered so.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Any

from state.tools import ToolResult

DEFAULT_CAPACITY = 1024  # results kept per source (Settings.read_memo_entries); each holds at most max_rows rows
_SOURCES_KEPT = 32  # sources whose results a process keeps, least recently opened dropped first
_CONNECTION_STATE = re.compile(
    r"\b(last_insert_rowid|changes|total_changes|random|randomblob|lastval|currval|nextval|pragma|sqlite_\w+|"
    r"current_date|current_time|current_timestamp|now|pg_\w+|txid_\w+)\b|\btemp\.|\bpg_temp",
    re.IGNORECASE)


@lru_cache(maxsize=4096)
def memoizable(sql: str) -> bool:
    """Whether a read's result depends on the rows alone (conservatively, by the names the statement uses)."""
    return _CONNECTION_STATE.search(sql) is None


class ReadMemo:
    """The results of one sandbox's reads by state token, statement, arguments and row limit (least recently
    used dropped first). Only successful results are kept: an error may be the moment's (a lock, a timeout)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._results: OrderedDict[Hashable, ToolResult] = OrderedDict()
        self._lock = threading.Lock()  # the sandboxes sharing it run in threads of their own

    def read(self, sql: str, params: dict[str, Any], max_rows: int, token: Callable[[], Hashable | None],
             run: Callable[[], ToolResult]) -> ToolResult:
        """A read's result: answered where the same read was made on rows with the same `token()` (None: the
        state cannot be named), else `run()` and kept. The one path of both sandbox kinds."""
        if self.capacity <= 0 or not memoizable(sql):
            return run()
        state = token()
        key = None if state is None else self.key(state, sql, params, max_rows)
        if key is not None and (known := self.get(key)) is not None:
            return known
        result = run()
        if key is not None:
            self.put(key, result)
        return result

    @staticmethod
    def key(token: Hashable, sql: str, params: dict[str, Any], max_rows: int) -> Hashable | None:
        """The entry of a read, or None where its arguments cannot name one."""
        try:
            key = (token, sql, tuple(params.items()), max_rows)
            hash(key)
        except TypeError:
            return None
        return key

    def get(self, key: Hashable) -> ToolResult | None:
        with self._lock:
            found = self._results.get(key)
            if found is None:
                return None
            self._results.move_to_end(key)
        return found.model_copy(deep=True)  # the caller may change what it is given

    def put(self, key: Hashable, result: ToolResult) -> None:
        if self.capacity <= 0 or not result.ok:
            return
        kept = result.model_copy(deep=True)
        with self._lock:
            self._results[key] = kept
            self._results.move_to_end(key)
            while len(self._results) > self.capacity:
                self._results.popitem(last=False)


_shared: OrderedDict[Hashable, ReadMemo] = OrderedDict()
_shared_lock = threading.Lock()


def file_identity(path: str) -> Hashable | None:
    """A source file as its contents stand: path, size and modification time (its write-ahead log's too);
    None where it is no file (then a sandbox keeps its results to itself)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    try:
        wal = os.stat(f"{path}-wal")
        log: tuple[int, int] | None = (wal.st_size, wal.st_mtime_ns)
    except OSError:
        log = None
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, log)


def shared_memo(identity: Hashable | None, capacity: int) -> ReadMemo:
    """The results shared by the sandboxes of one source as it stands (a private memo without an identity)."""
    if identity is None or capacity <= 0:
        return ReadMemo(capacity)
    with _shared_lock:
        memo = _shared.get(identity)
        if memo is None or memo.capacity != capacity:
            memo = _shared[identity] = ReadMemo(capacity)
        _shared.move_to_end(identity)
        while len(_shared) > _SOURCES_KEPT:
            _shared.popitem(last=False)
        return memo
