"""A run owned by this process over its sources: each source's kind sets up what the run needs, and removes it.

The process that owns a run (generate, resume, fork) wraps it in `sources_for_run`, which enters the run's
scope (runs.py) and calls each named source's kind's `start_run(name, scope, resuming)` before the run (a
resumed one: leftovers of a killed attempt go first) and `finish_run(name, scope)` after it, whatever ended
it. Code outside `environment/sources/` never asks which kinds have something to set up.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from environment.sources.registry import kind_of
from environment.sources.runs import RunScope, run_scope


@contextmanager
def sources_for_run(names: list[str], run_id: str, keep_sandboxes: bool = False,
                    resuming: bool = False) -> Iterator[RunScope]:
    """Own a run over these sources: each kind prepares what the run needs first, and removes it after."""
    with run_scope(run_id, keep_sandboxes) as scope:
        started: list[str] = []
        try:
            for name in names:
                kind_of(name).start_run(name, scope, resuming)
                started.append(name)
            yield scope
        finally:
            for name in started:
                kind_of(name).finish_run(name, scope)
