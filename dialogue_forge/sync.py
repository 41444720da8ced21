"""What every call shares: a silent console unless one is given, and the event loop a sync call runs on."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from rich.console import Console

T = TypeVar("T")


def quiet(console: Console | None) -> Console:
    """The caller's console, or one that prints nothing (the API is silent unless asked)."""
    return console if console is not None else Console(quiet=True)


def run_sync(main: Coroutine[Any, Any, T]) -> T:
    """The coroutine run to its end on the event loop every command uses (uvloop where installed); the HTTP
    connections the backends opened are closed before it returns."""
    from runner import event_loop

    return event_loop.run(main)
