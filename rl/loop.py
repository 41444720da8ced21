"""One event loop per process, on a daemon thread, for the synchronous face of an episode.

Trainers call environments synchronously (TRL's reset and tools) while the backends and sandboxes are async;
every synchronous call runs its coroutine here, so HTTP clients and sandboxes always meet the same loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="rl-episodes", daemon=True).start()
            _loop = loop
        return _loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result, run on the process's episode loop (safe from any thread, inside a loop or not)."""
    loop = _background()
    if threading.current_thread().name == "rl-episodes":
        raise RuntimeError("an episode's synchronous method was called from its own loop; await its a* method")
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
