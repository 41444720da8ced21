"""The event loop MCP sessions live on: one per process, in a thread of its own.

An `McpSource` and its sessions are tied to the loop they were opened on, while the protocol's sandboxes
are used from the run's loop (calls) and from worker threads (opening, replaying, closing). So every MCP
coroutine runs here, and callers wait for it: awaiting from a loop, blocking from a plain thread.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing.util
import threading
from concurrent.futures import Future
from typing import Any, Callable, Coroutine, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_at_exit: list[Callable[[], Coroutine[Any, Any, Any]]] = []
_pending: set[Future[Any]] = set()


def _mcp_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="mcp-sessions", daemon=True).start()
            atexit.register(_close_all)
            # a worker process of a run leaves through os._exit, which skips atexit but runs these
            multiprocessing.util.Finalize(None, _close_all, exitpriority=10)
        return _loop


def submit(coroutine: Coroutine[Any, Any, T]) -> Future[T]:
    """Start a coroutine on the MCP loop."""
    return asyncio.run_coroutine_threadsafe(coroutine, _mcp_loop())


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def wait(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the MCP loop and block until it ends: from a worker thread, or once (the toolset
    listed) from a loop, which it stalls meanwhile; a dialogue's calls use `gather` instead."""
    return submit(coroutine).result()


async def gather(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the MCP loop and await its result from another loop."""
    return await asyncio.wrap_future(submit(coroutine))


def later(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Start a coroutine on the MCP loop without waiting: from a loop, wait() would stall it."""
    if _on_a_loop():
        future = submit(coroutine)
        _pending.add(future)
        future.add_done_callback(_pending.discard)
    else:
        wait(coroutine)


def settle(timeout: float = 60.0) -> None:
    """Wait for what `later` started (servers being stopped), from a thread with no loop running."""
    for future in list(_pending):
        try:
            future.result(timeout=timeout)
        except Exception:  # noqa: BLE001 - a close that failed has nothing left to wait for
            pass


def at_exit(close: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """A coroutine to run on the MCP loop when the process ends (stopping a source's servers)."""
    _at_exit.append(close)


def _close_all() -> None:
    if _loop is None or not _loop.is_running():
        return
    settle(30)
    closing, _at_exit[:] = list(_at_exit), []
    for close in closing:
        try:
            submit(close()).result(timeout=30)
        except Exception:  # noqa: BLE001 - leaving anyway; a server that will not stop is the OS's now
            pass
