"""One live MCP server session, owned by a task of its own.

The SDK's sessions are context managers that must be entered and left by the same task (anyio's
task groups), while a dialogue's calls come from whichever task runs its next node. So one task per
server opens the session, holds it until told to stop, and closes it; callers use the session in
between. A stdio server's stderr goes to a file, so a crash can be reported with its last words.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

from langchain_mcp_adapters.sessions import create_session
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError

from environment.sources.mcp.config import McpConfig, McpServerConfig, expand
from environment.sources.mcp.records import FailureKind, McpServerFailure

_HTTP_REQUEST_TIMEOUT = 408
_STOP_GRACE = 8.0  # the SDK waits 2 s for a stdio server to leave after stdin closes, then terminates it


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _leaf(exc)
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, McpError) else f"{type(exc).__name__}: {text}"


class ServerConnection:
    """A started server (stdio process or remote URL) and its initialized session."""

    def __init__(self, name: str, server: McpServerConfig, config: McpConfig, sandbox: Path | None,
                 log_dir: Path) -> None:
        self.name = name
        self.server = server
        self.config = config
        self.sandbox = sandbox
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self.session: ClientSession | None = None
        self.start_seconds: float | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dead: str | None = None

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[ClientSession]:
        sandbox = str(self.sandbox) if self.sandbox is not None else None
        if self.server.transport == "stdio":
            params = StdioServerParameters(
                command=self.config.command_of(self.server),
                args=[expand(a, sandbox) for a in self.server.args],
                env={k: expand(v, sandbox) for k, v in self.server.env.items()} or None,
                cwd=self.config.cwd_of(self.server, sandbox))
            with open(self.stderr_path, "a", encoding="utf-8") as errlog:
                async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
                    yield s
        else:
            connection: Any = {"transport": self.server.transport, "url": expand(self.server.url or ""),
                               "headers": {k: expand(v) for k, v in self.server.headers.items()} or None}
            async with create_session(connection) as s:
                yield s

    async def _own(self) -> None:
        assert self._ready is not None
        try:
            async with self._open() as session:
                await session.initialize()
                self.session = session
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - whatever ends the session is reported, not raised here
            self.dead = self.last_words() or _describe(exc)
            if not self._ready.done():
                self._ready.set_exception(McpServerFailure(self.name, "start", self.dead))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.session = None

    async def start(self, timeout: float) -> None:
        """Start the server and initialize its session, or raise McpServerFailure('start')."""
        began = time.perf_counter()
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(), name=f"mcp-server:{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            await self.stop()
            raise McpServerFailure(self.name, "start", f"no answer to initialize within {timeout:g} s") from None
        except McpServerFailure:
            await self.stop()
            raise
        self.start_seconds = time.perf_counter() - began

    async def stop(self) -> None:
        """Close the session and end the process (stdin closed, then terminated if it lingers)."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        if self._ready is not None and not self._ready.done():
            task.cancel()  # still starting: nothing to close gracefully, and it would not hear the stop
        try:
            await asyncio.wait_for(asyncio.shield(task), _STOP_GRACE)
        except asyncio.TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except BaseException:  # noqa: BLE001 - a session that ended badly has already said why
            pass

    def last_words(self) -> str:
        """The last line the server wrote to stderr, if it wrote any."""
        try:
            lines = [line for line in self.stderr_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def _failure(self, kind: FailureKind, detail: str) -> McpServerFailure:
        self.dead = detail
        return McpServerFailure(self.name, kind, detail)

    async def list_tools(self, timeout: float) -> list[types.Tool]:
        """Every tool of the server, following pagination."""
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            try:
                page = await self._request(
                    lambda s, cursor=cursor: s.list_tools(params=types.PaginatedRequestParams(cursor=cursor)) if cursor
                    else s.list_tools(), timeout)
            except McpServerFailure:
                raise
            except Exception as exc:  # a protocol error or an answer that is not MCP: no toolset to offer
                raise self._failure("start", f"tools/list failed: {_describe(exc)}") from None
            tools.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                return tools

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> types.CallToolResult:
        """One tools/call. A crash or a hang raises McpServerFailure; an invalid answer is an isError result."""
        try:
            return await self._request(
                lambda s: s.call_tool(name, arguments, read_timeout_seconds=timedelta(seconds=timeout)), timeout)
        except RuntimeError as exc:  # the SDK's check of structured content against the tool's output schema
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(exc))], isError=True)

    async def _request(self, send: Any, timeout: float) -> Any:
        if self.dead is not None or self.session is None:
            raise McpServerFailure(self.name, "crash", self.dead or "the session is closed")
        try:
            # the SDK's own timeout covers the request; ours covers a transport that never answers at all
            return await asyncio.wait_for(send(self.session), timeout + 1.0)
        except asyncio.TimeoutError:
            raise self._failure("timeout", f"no answer within {timeout:g} s") from None
        except McpError as exc:
            if exc.error.code == _HTTP_REQUEST_TIMEOUT:  # how the SDK reports its own timeout
                raise self._failure("timeout", f"no answer within {timeout:g} s") from None
            if exc.error.code == types.CONNECTION_CLOSED:
                raise self._failure("crash", self.last_words() or exc.error.message) from None
            raise
