"""Each dialogue's live sandboxes, owned by the run that makes dialogues and sized from its concurrency.

A dialogue may call tools of its named source and of kinds that need no name (simulated tools); it gets
one sandbox per kind, opened when first needed. The pool brings them to the state the dialogue's recorded
calls describe: when those extend what was applied, nothing is redone; otherwise (a fork, a resume from
an earlier checkpoint, a restart) fresh sandboxes replay every recorded call.

Sandboxes that capture their changes (`captures`) say what changed since any recorded call began at the
cost of the rows changed: the validator reads a task's real diff from them, and a task's plan runs on them
inside a savepoint that is rolled back (`rolls_back`). Kinds that can do neither (MCP servers) are compared
by snapshots and checked on fresh sandboxes.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from environment.sources.base import CallContext, CallOutcome, Sandbox, ToolSource, captures, rolls_back
from environment.sources.registry import nameless_source, open_source, parts_of
from state.dialogue import ExecutedCall
from state.sources import Sources
from state.tools import Tool, ToolError, ToolResult
from state.verification import StateDiff


log = logging.getLogger(__name__)


def _fingerprint(call: ExecutedCall) -> str:
    return json.dumps([call.tool_call_id, call.tool, call.arguments, call.clock, call.result.ok],
                      sort_keys=True, default=str)


class DialogueSandboxes:
    """The sandboxes of one dialogue, by kind of source, and the recorded calls they hold."""

    def __init__(self, source_name: Sources, seed: int) -> None:
        self.source_name, self.seed = source_name, seed
        # one source per kind: several references (a database and MCP servers) give several
        self._sources: dict[str, ToolSource] = {
            part.kind: part for part in (parts_of(open_source(source_name)) if source_name else [])}
        self._boxes: dict[str, Sandbox] = {}
        self.applied: list[str] = []
        self.diverged: list[str] = []  # ids of replayed calls whose result differed from the recorded one
        # per applied call, the change-log marks of the capturing sandboxes before it (None inside a step's batch)
        self._marks: list[dict[str, Any] | None] = []
        self._position: dict[str, Any] = {}  # the marks after the last applied call

    def source_of(self, tool: Tool) -> ToolSource | None:
        """The source a tool runs on in this dialogue: a named one of its kind, or one that needs no name."""
        return self._sources.get(tool.source) or nameless_source(tool.source)

    def sandbox_for(self, tool: Tool) -> Sandbox | None:
        if tool.source not in self._boxes:
            source = self.source_of(tool)
            if source is None:
                return None
            self._boxes[tool.source] = source.open(self.seed)
            self._sources[tool.source] = source
        return self._boxes[tool.source]

    def open_for(self, tools: Iterable[Tool]) -> None:
        """Open the sandboxes these tools run on, so a snapshot taken now covers them."""
        for tool in tools:
            self.sandbox_for(tool)

    async def call(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> CallOutcome:
        box = self._boxes.get(tool.source) or await asyncio.to_thread(self.sandbox_for, tool)  # opening may block
        if box is None:
            return CallOutcome(result=ToolResult(ok=False, error=ToolError(
                type="unavailable", message=f"this dialogue has no {tool.source} source to run {tool.name} on")))
        return await box.call(tool, arguments, context)

    def replay(self, calls: list[ExecutedCall], tools: dict[str, Tool]) -> None:
        """Apply recorded calls in order; one that now gives another result is reported, never hidden."""
        for call in calls:
            self._marks.append(self._capture_marks())
            self.applied.append(_fingerprint(call))
            tool = tools.get(call.tool)
            box = self.sandbox_for(tool) if tool is not None else None
            again = box.replay(call, tool) if box is not None and tool is not None else None
            if again is not None and again.to_content() != call.result.to_content():
                self.diverged.append(call.tool_call_id)
                log.warning("replaying %s (%s) gave another result than it first did: %s", call.tool,
                            call.tool_call_id, json.dumps(again.to_content(), default=str)[:300])
        self._position = self._capture_marks()

    def recorded(self, calls: list[ExecutedCall]) -> None:
        """Calls that ran on these sandboxes (one step's): the state they now hold."""
        for i, call in enumerate(calls):
            self._marks.append(self._position if i == 0 else None)  # a task never starts inside a step
            self.applied.append(_fingerprint(call))
        self._position = self._capture_marks()

    # -- change capture and savepoints -------------------------------------------------------------

    def _capture_marks(self) -> dict[str, Any]:
        return {kind: box.mark() for kind, box in self._boxes.items() if captures(box)}

    def mark(self) -> dict[str, Any]:
        """Where every sandbox stands now: a change-log mark where it captures changes, else a snapshot."""
        return {kind: box.mark() if captures(box) else box.snapshot() for kind, box in sorted(self._boxes.items())}

    def since(self, mark: dict[str, Any]) -> StateDiff:
        """What changed since a mark, every kind's tables together. A kind the mark lacks had no sandbox yet,
        so everything its sandbox did since it was opened counts (a fresh one's state stands in for a kind
        compared by snapshots)."""
        tables = {}
        for kind, box in sorted(self._boxes.items()):
            if captures(box):
                found = box.changes_since(mark.get(kind))
            elif kind in mark:
                found = box.diff(mark[kind], box.snapshot())
            else:
                fresh = self._sources[kind].open(self.seed)
                start = fresh.snapshot()
                fresh.close()
                found = box.diff(start, box.snapshot())
            tables.update(found.tables)
        return StateDiff(tables=tables)

    def changes_since_call(self, index: int) -> StateDiff | None:
        """What the applied calls from `index` on changed, read from the change logs; None where a sandbox
        does not capture its changes (the caller then compares replays on fresh sandboxes)."""
        if not all(captures(box) for box in self._boxes.values()):
            return None
        mark = self._marks[index] if index < len(self._marks) else self._position
        return None if mark is None else self.since(mark)

    def rolls_back(self, tools: Iterable[Tool]) -> bool:
        """Whether the sandboxes these tools run on can take a savepoint and be rolled back to it."""
        boxes = [self.sandbox_for(t) for t in tools]
        return all(box is not None and rolls_back(box) for box in boxes)

    def savepoint(self) -> dict[str, Any]:
        return {kind: box.savepoint() for kind, box in self._boxes.items() if rolls_back(box)}

    def rollback_to(self, points: dict[str, Any]) -> None:
        """Undo everything since the savepoint; a sandbox opened after it is dropped (it held nothing before)."""
        for kind in list(self._boxes):
            if kind in points:
                self._boxes[kind].rollback_to(points[kind])
            elif rolls_back(self._boxes[kind]):
                self._boxes.pop(kind).close()

    def snapshot(self) -> dict[str, Any]:
        """The raw state of every sandbox, by kind: what the state diff compares."""
        return {kind: box.snapshot() for kind, box in sorted(self._boxes.items())}

    def diff(self, before: dict[str, Any], after: dict[str, Any]) -> StateDiff:
        """What changed between two snapshots of these sandboxes, every kind's tables together. A kind the
        first snapshot lacks had no sandbox yet, so no call had touched it: a fresh one's state stands in."""
        tables = {}
        for kind in sorted(after):
            box = self._boxes[kind]
            if kind in before:
                start = before[kind]
            else:
                fresh = self._sources[kind].open(self.seed)
                start = fresh.snapshot()
                fresh.close()
            tables.update(box.diff(start, after[kind]).tables)
        return StateDiff(tables=tables)

    def close(self) -> None:
        for box in self._boxes.values():
            box.close()
        self._boxes.clear()


class SandboxPool:
    """One live set of sandboxes per dialogue, at most `capacity` of them (least recently used go first)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[str, DialogueSandboxes] = OrderedDict()
        self._lock = threading.Lock()

    def checkout(self, dialogue_id: str, source_name: Sources, seed: int, calls: list[ExecutedCall],
                 tools: dict[str, Tool]) -> DialogueSandboxes:
        """The dialogue's sandboxes, holding exactly the effect of `calls` (its recorded calls so far)."""
        wanted = [_fingerprint(c) for c in calls]
        with self._lock:
            entry = self._entries.pop(dialogue_id, None)
            if entry is not None and (entry.source_name != source_name or entry.seed != seed
                                      or entry.applied != wanted[: len(entry.applied)]):
                entry.close()
                entry = None
            fresh = entry is None
            if entry is None:
                entry = DialogueSandboxes(source_name, seed)
            self._entries[dialogue_id] = entry
            while len(self._entries) > self.capacity:
                _, old = self._entries.popitem(last=False)
                old.close()
        entry.replay(calls if fresh else calls[len(entry.applied):], tools)
        return entry

    def release(self, dialogue_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(dialogue_id, None)
        if entry is not None:
            entry.close()

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            entry.close()


_CURRENT: contextvars.ContextVar[SandboxPool | None] = contextvars.ContextVar("sandbox_pool", default=None)
_DEFAULT = SandboxPool()  # a graph run on its own (Studio, the library) without a run around it


@contextmanager
def sandbox_pool(capacity: int) -> Iterator[SandboxPool]:
    """A pool for the dialogues run inside this block (a run's lanes inherit it), closed at its end."""
    pool = SandboxPool(capacity)
    token = _CURRENT.set(pool)
    try:
        yield pool
    finally:
        _CURRENT.reset(token)
        pool.close()


def current_pool() -> SandboxPool:
    return _CURRENT.get() or _DEFAULT
