"""Worker processes: a run's dialogues spread over one event loop per core, each worker a process of its own
that reports every line it writes and says by its exit code how it ended."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Protocol

from langgraph.graph import StateGraph

from environment.errors import RunError
from runner import event_loop
from runner import run_folder as rf
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings

DISK_FULL_EXIT = 75  # a worker's way of saying the disk filled up

# What a worker process runs: (builder_factory, folder, config, settings, share, events, number, parent).
WorkerMain = Callable[[Callable[[], StateGraph], str, RunConfig, Settings, Any, Any, int, int], None]


class Shard(Protocol):
    """What a worker process runs its share on: the lanes of one process over a run folder."""

    folder: RunFolder

    async def run_shard(self, indices: list[int], on_done: Callable[[], None]) -> None: ...


def _outlive_no_parent(parent: int) -> None:
    """End this worker as soon as the process that owns the run folder is gone (even killed with -9), so no
    orphan goes on writing into a folder that the next `resume` owns."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def run_in_worker(batch: Shard, indices: list[int], events: Any, number: int, parent: int) -> None:
    """The body of every worker process: its share run on the batch, each item reported as it is written,
    a failure said to the parent by the exit code (and a log in the folder)."""
    folder = str(batch.folder.path)
    _outlive_no_parent(parent)
    try:
        event_loop.run(batch.run_shard(indices, lambda: events.put(1)))
    except KeyboardInterrupt:  # the parent says what to do next; the checkpoints keep the work
        raise SystemExit(130) from None
    except rf.DiskFullError:
        raise SystemExit(DISK_FULL_EXIT) from None
    except Exception:  # kept for the user to read; the parent reports it in one line
        (Path(folder) / f"worker-{number}.log").write_text(traceback.format_exc(), encoding="utf-8")
        raise SystemExit(1) from None


async def run_in_processes(worker_main: WorkerMain, builder_factory: Callable[[], StateGraph], folder: RunFolder,
                           config: RunConfig, settings: Settings, share_of: Callable[[list[int]], Any],
                           todo: list[int], workers: int, on_done: Callable[[], None]) -> None:
    """One event loop per core: Python spends a core on roughly 150 model calls a second. Each worker gets
    `share_of` its indices and its share of the concurrency."""
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    per_worker = max(1, -(-config.concurrency // workers))
    config = config.model_copy(update={"concurrency": per_worker, "workers": 1})
    procs = [ctx.Process(target=worker_main, daemon=True,
                         args=(builder_factory, str(folder.path), config, settings, share_of(todo[w::workers]),
                               events, w, os.getpid()))
             for w in range(workers)]
    for proc in procs:
        proc.start()
    try:
        remaining = len(todo)
        while remaining and any(p.is_alive() for p in procs):
            try:
                await asyncio.to_thread(events.get, True, 0.2)
            except queue.Empty:
                continue
            remaining -= 1
            on_done()
    finally:
        for proc in procs:
            proc.join(timeout=5 if not any(p.is_alive() for p in procs) else None)
    failed = [(w, p.exitcode) for w, p in enumerate(procs) if p.exitcode]
    if any(code == DISK_FULL_EXIT for _, code in failed):
        raise rf.disk_full_error(folder.path, folder.path)
    if failed:
        logs = ", ".join(str(folder.file(f"worker-{w}.log")) for w, code in failed if code == 1)
        raise RunError(f"{len(failed)} worker process(es) stopped (exit codes {[c for _, c in failed]})"
                       + (f"; see {logs}" if logs else "")
                       + f"; finish the run with: python -m graphs.run resume {folder.path}")
