"""The run a process is working for, as sources see it: its id and whether it keeps its sandboxes.

Some kinds set up once per run what every dialogue's sandbox is made from (Postgres: a run-private
template database) and tear it down when the run ends. The process that owns a run (generate, resume,
fork) wraps it in `run_hooks.sources_for_run`, which calls each named source's kind's hooks; worker
processes only enter `run_scope`: they use what the owner set up. This module knows no kind (the kinds
read it), so the kinds and the registry import it, never the other way round.
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

from pydantic import BaseModel, Field


class RunScope(BaseModel):
    run_id: str = Field(description="Names what a kind creates for the run, so every process of it finds the same.")
    keep_sandboxes: bool = Field(False, description="Leave each dialogue's sandbox (and the run's template) for "
                                                    "inspection instead of dropping them.")


_lock = threading.Lock()
_current: RunScope | None = None
_adhoc: RunScope | None = None
_adhoc_finish: dict[str, Callable[[RunScope], None]] = {}  # name -> what removes its per-run resources


def current_run() -> RunScope:
    """The run this process works for; outside any run (a library call, Studio) one of its own, whose
    per-run resources are finished when the process exits."""
    global _adhoc
    with _lock:
        if _current is not None:
            return _current
        if _adhoc is None:
            _adhoc = RunScope(run_id=f"adhoc-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            atexit.register(_finish_adhoc)
        return _adhoc


def used_outside_a_run(name: str, finish: Callable[[RunScope], None]) -> None:
    """A kind says it set up per-run resources for `name` under the ad-hoc scope: `finish` removes them at exit."""
    with _lock:
        if _current is None:
            _adhoc_finish.setdefault(name, finish)


def _finish_adhoc() -> None:
    if _adhoc is not None:
        for finish in list(_adhoc_finish.values()):
            finish(_adhoc)


@contextmanager
def run_scope(run_id: str, keep_sandboxes: bool = False) -> Iterator[RunScope]:
    """Work for a run in this process (a worker's share of it) without setting up or tearing down anything."""
    global _current
    scope = RunScope(run_id=run_id, keep_sandboxes=keep_sandboxes)
    with _lock:
        previous, _current = _current, scope
    try:
        yield scope
    finally:
        with _lock:
            _current = previous
