"""A live clone per dialogue, brought to the state its write log describes, as the SQLite sandboxes are.

When the log extends what a dialogue's clone has applied, only the new writes run; otherwise (a fork, a
resume from an earlier checkpoint, a restart) the clone is made again from the run's template and the
log replayed onto it. A clone pushed out by the capacity, or released, is dropped: the log rebuilds it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.execute import DEFAULT_MAX_ROWS, PostgresClone
from environment.sources.postgres.execute import WriteRecord
from state.tools import Tool, ToolResult


def fingerprint(write: WriteRecord) -> tuple[str, str]:
    return write.sql, json.dumps([write.params, write.clock], sort_keys=True, default=str)


class PostgresSandbox:
    """One dialogue's clone and the writes it holds."""

    def __init__(self, clone: PostgresClone) -> None:
        self.clone = clone
        self.applied: list[tuple[str, str]] = []

    def run(self, tool: Tool, arguments: dict[str, Any], max_rows: int = DEFAULT_MAX_ROWS,
            clock: str | None = None) -> ToolResult:
        """Run a tool whose arguments were checked against its schema; a write it made is now held."""
        result = self.clone.execute(tool.sql, arguments, tool.mode, declared=tool.properties, max_rows=max_rows,
                                    clock=clock)
        if tool.mode == "write" and result.ok:
            self.applied.append(fingerprint(WriteRecord(tool=tool.name, sql=tool.sql, params=arguments, clock=clock)))
        return result

    def apply(self, write: WriteRecord, tool: Tool | None = None) -> ToolResult:
        """Replay a recorded write at the time it was made, its arguments typed as its tool declares them."""
        result = self.clone.apply(write, tool.properties if tool else None)
        self.applied.append(fingerprint(write))
        return result


class PostgresSandboxes:
    """The live clones of one run's dialogues, by dialogue."""

    def __init__(self, manager: CloneManager, capacity: int = 64, schema: str = "public") -> None:
        self.manager = manager
        self.capacity = capacity
        self.schema = schema
        self._boxes: OrderedDict[str, PostgresSandbox] = OrderedDict()
        self._lock = threading.Lock()

    def checkout(self, key: str, writes: list[WriteRecord], tools: dict[str, Tool] | None = None) -> PostgresSandbox:
        wanted = [fingerprint(w) for w in writes]
        with self._lock:
            box = self._boxes.pop(key, None)
        if box is not None and box.applied != wanted[: len(box.applied)]:
            box.clone.close()  # it went another way than this log: made again below
            box = None
        if box is None:
            box = PostgresSandbox(PostgresClone(self.manager.clone(key), self.schema))
        with self._lock:
            self._boxes[key] = box
            evicted = []
            while len(self._boxes) > self.capacity:
                evicted.append(self._boxes.popitem(last=False))
        for old_key, old in evicted:
            old.clone.close()
            self.manager.release(old_key)
        for write in writes[len(box.applied):]:
            box.apply(write, (tools or {}).get(write.tool))
        return box

    def release(self, key: str) -> None:
        """The dialogue is over: its connection closes and its database goes (unless the run keeps them)."""
        with self._lock:
            box = self._boxes.pop(key, None)
        if box is not None:
            box.clone.close()
        self.manager.release(key)

    def close(self) -> None:
        """Every clone of the run, and its template, go (unless kept)."""
        with self._lock:
            boxes, self._boxes = list(self._boxes.values()), OrderedDict()
        for box in boxes:
            box.clone.close()
        self.manager.close()
