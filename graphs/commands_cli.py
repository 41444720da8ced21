"""A subcommand of `python -m graphs.run` as the dispatch table holds it: its one-line help, the function that
adds its arguments (called only for the command given, so a command imports only what it uses) and its handler
(sync, or a coroutine function run on the event loop); a handler returns the exit code (None: 0)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rich.console import Console

Handler = Callable[[argparse.Namespace, Console], "int | None | Awaitable[int | None]"]


@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler
