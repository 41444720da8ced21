"""Each dialogue's live sandboxes, owned by the run that makes dialogues and sized from its concurrency.

A dialogue may call tools of its named source and of kinds that need no name (simulated tools); it gets
one sandbox per kind, opened when first needed. The pool brings them to the state the dialogue's recorded
calls describe: when those extend what was applied, nothing is redone; otherwise (a fork, a resume from
an earlier checkpoint, a restart) fresh sandboxes replay every recorded call.
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

from environment.sources.base import CallContext, CallOutcome, Sandbox, ToolSource
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
            tool = tools.get(call.tool)
            box = self.sandbox_for(tool) if tool is not None else None
            again = box.replay(call, tool) if box is not None and tool is not None else None
            if again is not None and again.to_content() != call.result.to_content():
                self.diverged.append(call.tool_call_id)
                log.warning("replaying %s (%s) gave another result than it first did: %s", call.tool,
                            call.tool_call_id, json.dumps(again.to_content(), default=str)[:300])
        self.recorded(calls)

    def recorded(self, calls: list[ExecutedCall]) -> None:
        """Calls that ran on these sandboxes (or were replayed onto them): the state they now hold."""
        self.applied.extend(_fingerprint(c) for c in calls)

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
