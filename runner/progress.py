"""The progress bar a run shows while its dialogues (or an evaluation's trials) are written."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(console: Console, label: str, total: int, completed: int) -> Iterator[Callable[[], None]]:
    """A bar of `total` items, `completed` of them done already; yields the callable that ticks one more."""
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(label, total=total, completed=completed)
        yield lambda: progress.advance(bar)
