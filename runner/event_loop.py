"""The event loop every command and worker process runs on.

uvloop where it is installed (Linux and macOS): a run spends much of its time on the loop itself
(tens of callbacks per model call: HTTP, the checkpointer's thread hops, graph tasks), and uvloop's
loop costs about a third less CPU per model call than asyncio's own (benchmarks/throughput.py).
`FORGE_EVENT_LOOP=asyncio` keeps the standard loop.

The cyclic garbage collector is also told to run less often: a run allocates tens of thousands of
short-lived containers per dialogue (messages, graph tasks, channel values), and with the default
threshold a collection every 700 of them walked the live heap again and again (about a tenth of a
run's CPU in a profile; a tenth as many collections cost about 5% less CPU per model call).
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any, Callable, Coroutine, TypeVar

from backends.registry import close_backends

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop, or None for asyncio's default."""
    if os.environ.get("FORGE_EVENT_LOOP", "uvloop").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # Windows, or not installed: asyncio's loop does the same work, more slowly
        return None
    return uvloop.new_event_loop


_GC_THRESHOLD = (50_000, 20, 100)


def _collect_less_often() -> None:
    if gc.get_threshold()[0] < _GC_THRESHOLD[0]:
        gc.freeze()  # what is loaded by now (modules, classes, the compiled graph) is never garbage
        gc.set_threshold(*_GC_THRESHOLD)


async def _then_close(main: Coroutine[Any, Any, T]) -> T:
    try:
        return await main
    finally:
        await close_backends()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the chosen loop (Ctrl-C cancels the main task, as asyncio.run does); the HTTP
    connections the backends opened on it are closed before it ends."""
    _collect_less_often()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_then_close(main))
