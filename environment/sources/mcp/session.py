"""MCP servers for a run and for each of its dialogues.

`McpSource` belongs to a run: it opens the shared servers once, lists the toolset, and hands out
`McpDialogue`s. An `McpDialogue` belongs to one dialogue: a private folder with fresh copies of each
server's declared files, each non-shared server started once in it and kept (one session for the
dialogue's life, not one per call), stopped and deleted at the end. The source files are never
touched. Calls are checked against the tool's input schema, executed, timed and recorded; recorded
writes can be replayed on a fresh dialogue and compared with what they returned the first time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

from mcp.shared.exceptions import McpError

from environment.errors import InputError
from environment.sources.arguments import DEFAULT_MAX_ARGUMENT_CHARS, check_arguments
from environment.sources.mcp.config import McpConfig
from environment.sources.mcp.paths import from_server, to_server
from environment.sources.mcp.records import McpCallOutcome, McpServerFailure, content_blocks, to_tool_result
from environment.sources.mcp.server import ServerConnection
from environment.sources.mcp.toolset import McpToolListing, listing
from state.config import Settings
from state.mcp import Divergence, McpCallRecord, ReplayReport
from state.tools import ToolError, ToolResult


class _Slots:
    """The cap on live per-dialogue servers, taken all at once per dialogue: two dialogues each holding half
    of what they need would wait on each other forever."""

    def __init__(self, cap: int) -> None:
        self.free = cap
        self._changed = asyncio.Condition()

    async def take(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= n)
            self.free -= n

    async def give(self, n: int) -> None:
        async with self._changed:
            self.free += n
            self._changed.notify_all()


async def _stop_all(connections: list[ServerConnection]) -> None:
    await asyncio.gather(*(c.stop() for c in connections))


async def _start_all(connections: list[ServerConnection], timeout: float) -> None:
    """Start every server, or none: a failure stops the ones that did start, then raises."""
    results = await asyncio.gather(*(c.start(timeout) for c in connections), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await _stop_all(connections)
        raise failures[0]


class McpSource:
    """A run's MCP servers: shared ones opened once, per-dialogue ones started for each dialogue."""

    def __init__(self, config: McpConfig, *, call_timeout: float = 60.0, start_timeout: float = 30.0,
                 max_servers: int = 16, max_argument_chars: int = DEFAULT_MAX_ARGUMENT_CHARS,
                 work_dir: str | Path | None = None) -> None:
        self.config = config
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.max_argument_chars = max_argument_chars
        self.per_dialogue = [name for name, s in config.servers.items() if not s.shared]
        if len(self.per_dialogue) > max_servers:
            raise InputError(f"each dialogue starts {len(self.per_dialogue)} MCP servers but at most {max_servers} "
                             f"may run at once (FORGE_MCP_MAX_SERVERS)")
        self._slots = _Slots(max_servers)
        self._own_work_dir = work_dir is None
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self.shared: dict[str, ServerConnection] = {}
        self.listing: McpToolListing | None = None
        self.dialogues: set[McpDialogue] = set()
        self._opened = False
        self._open_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, config: McpConfig, settings: Settings, work_dir: str | Path | None = None) -> "McpSource":
        return cls(config, call_timeout=settings.mcp_call_timeout, start_timeout=settings.mcp_start_timeout,
                   max_servers=settings.mcp_max_servers, max_argument_chars=settings.max_argument_chars,
                   work_dir=work_dir)

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="forge-mcp-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        return self._work_dir

    async def open(self) -> None:
        """Start the shared servers (once); raises McpServerFailure if one does not start."""
        async with self._open_lock:
            if self._opened:
                return
            shared = [name for name, s in self.config.servers.items() if s.shared]
            logs = self.work_dir / "shared"
            if shared:
                logs.mkdir(exist_ok=True)
            connections = [ServerConnection(name, self.config.servers[name], self.config, None, logs)
                           for name in shared]
            self.shared = {c.name: c for c in connections}  # known before they start: close() stops them
            await _start_all(connections, self.start_timeout)
            self._opened = True

    async def close(self) -> None:
        """Stop every server still running: the shared ones and any dialogue left open."""
        await asyncio.gather(*(d.close() for d in list(self.dialogues)))
        await _stop_all(list(self.shared.values()))
        self.shared = {}
        self._opened = False
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir if self._own_work_dir else self._work_dir / "shared", ignore_errors=True)
            if self._own_work_dir:
                self._work_dir = None

    async def __aenter__(self) -> "McpSource":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def list_tools(self) -> McpToolListing:
        """The run's toolset, listed once on a scratch dialogue (fresh copies, stopped after)."""
        if self.listing is None:
            async with self.dialogue("toolset"):
                pass  # the first dialogue opened lists the tools
        assert self.listing is not None, "set by McpDialogue.open"
        return self.listing

    async def open_dialogue(self, dialogue_id: str) -> "McpDialogue":
        """A dialogue's own servers, started on fresh copies; close it when the dialogue ends."""
        await self.open()
        dialogue = McpDialogue(self, dialogue_id)
        await dialogue.open()
        return dialogue

    @contextlib.asynccontextmanager
    async def dialogue(self, dialogue_id: str) -> AsyncIterator["McpDialogue"]:
        dialogue = await self.open_dialogue(dialogue_id)
        try:
            yield dialogue
        finally:
            await dialogue.close()

    async def resume(self, dialogue_id: str, records: list[McpCallRecord]) -> tuple["McpDialogue", ReplayReport]:
        """A fresh dialogue brought to where the records left off: their writes replayed and compared."""
        dialogue = await self.open_dialogue(dialogue_id)
        try:
            return dialogue, await dialogue.replay(records)
        except BaseException:
            await dialogue.close()
            raise


class McpDialogue:
    """One dialogue's servers: started once on fresh copies, one session each until `close`."""

    def __init__(self, source: McpSource, dialogue_id: str) -> None:
        self.source = source
        self.dialogue_id = dialogue_id
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", dialogue_id)[:60]
        self.root = source.work_dir / f"{safe}-{uuid.uuid4().hex[:8]}"
        self.servers: dict[str, ServerConnection] = {}
        self.tools: McpToolListing | None = None
        self._slots_taken = 0
        # one call at a time: the server sees the writes in the order they are recorded, so replay matches
        self._one_call = asyncio.Lock()

    def sandbox_of(self, server: str) -> Path:
        """The folder `{sandbox}` stands for in this server's config."""
        return self.root / server

    async def open(self) -> None:
        config = self.source.config
        self.source.dialogues.add(self)
        try:
            # copies can be large (a repository, a database): made off the event loop
            await asyncio.to_thread(self._make_sandboxes)
            connections = [ServerConnection(name, config.servers[name], config, self.sandbox_of(name), self.root)
                           for name in self.source.per_dialogue]
            await self.source._slots.take(len(connections))
            self._slots_taken = len(connections)
            self.servers = {c.name: c for c in connections}  # known before they start: close() stops them
            await _start_all(connections, self.source.start_timeout)
            if self.source.listing is None:
                self.source.listing = await self._list()
            self.tools = self.source.listing
        except BaseException:
            await self.close()
            raise

    def _make_sandboxes(self) -> None:
        config = self.source.config
        self.root.mkdir(parents=True)
        for name in self.source.per_dialogue:
            sandbox = self.sandbox_of(name)
            sandbox.mkdir()
            for relative in config.servers[name].sandbox.paths:
                _copy(config.path(relative), sandbox / Path(relative).name)

    async def _list(self) -> McpToolListing:
        live = {**self.source.shared, **self.servers}
        timeout = self.source.call_timeout
        found = await asyncio.gather(*(live[name].list_tools(timeout) for name in self.source.config.servers))
        return listing(dict(zip(self.source.config.servers, found)))

    async def close(self) -> None:
        """Stop this dialogue's servers and delete its copies (safe to call twice)."""
        servers, self.servers = list(self.servers.values()), {}
        await _stop_all(servers)
        if self._slots_taken:
            taken, self._slots_taken = self._slots_taken, 0
            await self.source._slots.give(taken)
        self.source.dialogues.discard(self)
        await asyncio.to_thread(shutil.rmtree, self.root, ignore_errors=True)

    async def __aenter__(self) -> "McpDialogue":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connection(self, server: str) -> ServerConnection:
        connection = self.servers.get(server) or self.source.shared.get(server)
        if connection is None:
            raise McpServerFailure(server, "crash", "the dialogue's session is closed")
        return connection

    async def call(self, name: str, arguments: Any) -> McpCallOutcome:
        """Run one tool call. Unknown tools, bad arguments and the server's isError come back as tool errors;
        a server that crashed or hung raises McpServerFailure (with `.record` set): end the dialogue."""
        async with self._one_call:
            return await self._call(name, arguments)

    async def _call(self, name: str, arguments: Any) -> McpCallOutcome:
        mcp_tool = self.tools.get(name) if self.tools else None
        if mcp_tool is None:
            known = ", ".join(t.name for t in (self.tools.tools if self.tools else [])[:30])
            error = ToolError(type="unknown_tool", message=f"there is no tool named {name!r}; available: {known}")
            record = McpCallRecord(name=name, server="", tool=name, mode="read",
                                   arguments=arguments if isinstance(arguments, dict) else {}, refused=error.message)
            return McpCallOutcome(result=ToolResult(ok=False, error=error), record=record)
        record = McpCallRecord(name=name, server=mcp_tool.server, tool=mcp_tool.remote_name, mode=mcp_tool.tool.mode,
                               arguments=arguments if isinstance(arguments, dict) else {})
        error = check_arguments(mcp_tool.tool, arguments, self.source.max_argument_chars)
        if error is not None:
            record.refused = error.message
            return McpCallOutcome(result=ToolResult(ok=False, error=error), record=record)
        filed = mcp_tool.server in self.servers and self.source.config.servers[mcp_tool.server].sandbox.paths
        sandbox = self.sandbox_of(mcp_tool.server) if filed else None
        if sandbox is not None:  # paths name files relative to the sandbox; the server gets them under it
            arguments, outside = to_server(arguments, sandbox)
            if outside is not None:
                record.refused = outside
                return McpCallOutcome(result=ToolResult(ok=False, error=ToolError(type="invalid_arguments",
                                                                                  message=outside)), record=record)
        began = time.perf_counter()
        try:
            answer = await self._connection(mcp_tool.server).call_tool(
                mcp_tool.remote_name, arguments, self.source.call_timeout)
            record.content = content_blocks(answer)
            record.structured_content = answer.structuredContent
            if sandbox is not None:
                record.content = from_server(record.content, sandbox)
                record.structured_content = from_server(record.structured_content, sandbox)
            record.is_error = bool(answer.isError)
        except McpError as exc:  # the server answered with a protocol error: the call failed, the server lives
            record.content = [{"type": "text", "text": exc.error.message}]
            record.is_error = True
        except McpServerFailure as failure:
            record.failure = failure.reason
            record.latency_ms = round((time.perf_counter() - began) * 1000, 3)
            failure.record = record
            raise
        record.latency_ms = round((time.perf_counter() - began) * 1000, 3)
        return McpCallOutcome(result=to_tool_result(record), record=record)

    def probe_names(self) -> list[str]:
        """The read-only tools that need no argument: what a probe calls."""
        return [t.name for t in (self.tools.tools if self.tools else [])
                if t.tool.mode == "read" and not t.tool.required]

    async def probe(self, names: Iterable[str] | None = None) -> dict[str, McpCallRecord]:
        """Every read-only tool that needs no argument (or those named), called once: the data a task can be
        grounded in, and a view of the dialogue's state (two probes, before and after, show what its writes
        changed)."""
        wanted = self.probe_names() if names is None else [n for n in self.probe_names() if n in set(names)]
        return {name: (await self.call(name, {})).record for name in wanted}

    async def replay(self, records: list[McpCallRecord]) -> ReplayReport:
        """Re-run the recorded calls that may write (reads change nothing), in order, on this dialogue's fresh
        servers, and report each whose result differs from the recorded one."""
        report = ReplayReport()
        for index, recorded in enumerate(records):
            if recorded.mode != "write" or not recorded.reached_server or recorded.failure is not None:
                continue
            # a server failing here raises, as on any call: the dialogue cannot be rebuilt
            replayed = (await self.call(recorded.name, recorded.arguments)).record.outcome()
            report.replayed += 1
            if replayed != recorded.outcome():
                report.divergences.append(Divergence(index=index, name=recorded.name, arguments=recorded.arguments,
                                                     recorded=recorded.outcome(), replayed=replayed))
        return report


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)
