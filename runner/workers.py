"""How many worker processes a run spreads its dialogues over when `--workers auto` (the default) decides.

An LLM run waits on the server: one event loop keeps about 100 model calls a second going before Python
itself is the limit (benchmarks/throughput.py), and two processes at concurrency 32 keep a fast server as
busy as a bare httpx client. So each process gets about 16 dialogues in flight, and there are never more
processes than cores. An offline run has no server to wait on: it is Python all the way, and a second
process costs more to start (imports, the graph, the sandboxes) than it saves; it keeps one.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from environment.errors import InputError
from state.config import Settings

DIALOGUES_PER_WORKER = 16  # in flight in one process: well under its ~100 calls/s at a typical 0.2-1 s per call


class WorkerChoice(BaseModel):
    workers: int = Field(ge=1)
    reason: str = Field(description="Why this many, for the line the run prints.")

    def line(self, auto: bool) -> str:
        return f"workers: {self.workers} ({'auto: ' + self.reason if auto else self.reason})"


def auto_workers(settings: Settings, concurrency: int, cores: int | None = None) -> WorkerChoice:
    """The rule of `--workers auto`: min(cores, ceil(concurrency / 16)) processes for a run on model servers;
    one for the offline backend, a registered backend (it lives in this process) and the Ray executor."""
    cores = max(1, cores or os.cpu_count() or 1)
    if settings.executor == "ray":
        return WorkerChoice(workers=1, reason="Ray tasks spread the dialogues over the cluster")
    if not settings.uses_server:
        return WorkerChoice(workers=1, reason=f"the {settings.backend} backend runs in this process, no server "
                                              "to wait on")
    wanted = -(-concurrency // DIALOGUES_PER_WORKER)
    workers = min(cores, wanted)
    return WorkerChoice(workers=workers, reason=f"concurrency {concurrency} at {DIALOGUES_PER_WORKER} per process, "
                                                f"{cores} core{'s' if cores > 1 else ''}")


def choose_workers(given: str, settings: Settings, concurrency: int) -> tuple[WorkerChoice, bool]:
    """`--workers` as given: "auto" (the rule decides; True) or a whole number of at least 1 (False)."""
    if given.strip().lower() == "auto":
        return auto_workers(settings, concurrency), True
    try:
        workers = int(given)
    except ValueError:
        workers = 0
    if workers < 1:
        raise InputError(f"--workers must be auto or a whole number of at least 1 (got {given!r})")
    return WorkerChoice(workers=workers, reason="as given"), False
