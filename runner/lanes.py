"""The one dialogue path: a fixed set of lanes in one process, each taking the next index, running its thread to
its end and handing what it left to the run's job to write.

Generation (runner/batch.py) and evaluation (runner/evaluate.py) run through these same lanes; what differs
between them is their `DialogueJob`: the thread each index is, how a new thread starts, and the line an ended
one leaves. Everything else is said here once: the recursion limit, a source gone away (no line: `resume`
finishes the dialogue), a full disk or a lost checkpointer (the run stops), any other failure (a line with its
reason), and the sandboxes released off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Protocol

from langgraph.graph import StateGraph
from rich.console import Console

from backends.registry import backend_for
from environment.errors import RunError, SourceUnavailable
from environment.sources.pool import SandboxPool, sandbox_pool
from environment.sources.registry import load_source_kinds, open_source
from environment.sources.runs import run_scope
from nodes.stored_values import keep_schema, keep_toolset
from runner import run_folder as rf
from runner.lines import LineWriter
from runner.persistence import checkpoint_location, open_persistence
from runner.postgres_checkpoints import checkpointer_lost, checkpointer_lost_error
from runner.preflight import capped, settle_backend
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings
from state.dialogue import Usage
from state.tools import Tool


async def run_thread(graph: Any, start: Any, cfg: dict[str, Any], context: Any) -> None:
    """Run a thread to its end: start it when it has no checkpoint, go on when it stopped part way,
    leave it when it is finished."""
    snapshot = await graph.aget_state(cfg)
    if not snapshot.values:
        await graph.ainvoke(start, cfg, context=context)
    elif snapshot.next or snapshot.tasks:  # tasks: a step cut off mid-write leaves no 'next'
        await graph.ainvoke(None, cfg, context=context)


async def all_or_none(lanes: list[Coroutine[Any, Any, None]]) -> None:
    """Run the lanes together to their end; when one fails, the others are cancelled and awaited before its
    failure goes on, so none is still at work on the sandboxes and checkpointer its caller then closes
    (asyncio.gather would leave them running)."""
    tasks = [asyncio.ensure_future(lane) for lane in lanes]
    if not tasks:  # nothing left to run (a resume of a finished run)
        return
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # a failure, or the run itself cancelled (Ctrl-C)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


def recursion_limit(config: RunConfig, settings: Settings) -> int:
    per_task = settings.max_user_turns_per_task * (2 * settings.max_steps_per_turn + 3) + 4
    return 20 + config.tasks_per_dialogue * per_task


@dataclass
class Ended:
    """What a dialogue's thread left when it ended (or failed): handed to its job to write."""

    values: dict[str, Any]  # the thread's last state (empty when nothing was recorded)
    latency: float  # seconds from its start in this process to its end
    error: str | None  # the first line of what it failed with; None when it ended on its own
    failed_usage: Usage | None  # the calls of the step that failed, which count too


class DialogueJob(Protocol):
    """What a kind of run does with each index of its lanes: the seam between the one dialogue path (`Lanes`)
    and generation or evaluation."""

    noun: str  # what an index is called in the one-line error ("dialogue", "trial")

    def thread_id(self, i: int) -> str:
        """The checkpointer thread of index i."""
        ...

    async def play(self, graph: Any, cfg: dict[str, Any], i: int) -> None:
        """Run index i's thread to its end: start it when it is new, go on when it stopped part way."""
        ...

    async def finish(self, graph: Any, cfg: dict[str, Any], i: int, ended: Ended) -> None:
        """Write index i's line (and whatever else its end asks for)."""
        ...

    def resume_command(self) -> str:
        """The command that continues the run once a source that went away is back."""
        ...


class Lanes:
    """One process's lanes over a run folder: the store seeded, the sandboxes pooled, every index run on the
    one dialogue path."""

    def __init__(self, folder: RunFolder, config: RunConfig, settings: Settings,
                 toolsets: dict[str, list[Tool]]) -> None:
        self.folder = folder
        self.config = config
        self.settings = capped(settings, config)  # at this process's lanes: a worker's share is less than the run's
        load_source_kinds(self.settings.source_kinds)  # a worker process or a Ray task learns the run's kinds
        self.toolsets = toolsets  # by toolset file, as the config's databases name them
        self.toolset_keys: dict[str, str] = {}  # by toolset file: the content hash each is kept under
        self.schema_keys: dict[str, str] = {}  # by source name
        self.sandboxes: SandboxPool | None = None  # the dialogues' live sandboxes, while `run` runs
        self.unavailable: list[str] = []  # why dialogues stopped on a source that went away (left for resume)
        self.lines = LineWriter(folder, config, self.settings)

    async def _seed_store(self, store: Any) -> None:
        """Each toolset and schema kept once, before any dialogue starts, so dialogues only read the store."""
        for name, tools in self.toolsets.items():
            self.toolset_keys[name] = await keep_toolset(store, tools)
        for source in self.config.sources():
            if source.sources and source.label not in self.schema_keys:
                catalog = await asyncio.to_thread(lambda source=source: open_source(source.sources).catalog())
                if catalog.database is not None:
                    self.schema_keys[source.label] = await keep_schema(store, catalog.database)

    async def run(self, builder_factory: Callable[[], StateGraph], job: DialogueJob, indices: list[int],
                  on_done: Callable[[], None]) -> None:
        """Every index on the one dialogue path, `config.concurrency` at a time; `on_done` ticks once for each."""
        await settle_backend(backend_for(self.settings), Console(quiet=True))  # a worker process probes for itself
        async with open_persistence(checkpoint_location(self.folder.path, self.settings)) as (saver, store):
            graph = builder_factory().compile(checkpointer=saver, store=store)
            await self._seed_store(store)
            pending = iter(indices)

            # A fixed set of lanes takes the next dialogue when one ends: nothing is held per dialogue
            # waiting its turn, so memory does not grow with the number of dialogues.
            async def lane() -> None:
                for i in pending:
                    await self.dialogue(graph, job, i)
                    on_done()

            lanes = min(self.config.concurrency, len(indices))
            with run_scope(self.config.run_id, self.settings.keep_sandboxes), \
                    sandbox_pool(max(lanes, 1)) as self.sandboxes:  # one live sandbox set per dialogue in flight
                try:
                    await all_or_none([lane() for _ in range(lanes)])
                except Exception as exc:  # the checkpointer's server went away: stop; `resume` goes on once it is back
                    if self.settings.checkpointer and checkpointer_lost(exc):
                        raise checkpointer_lost_error(self.settings.checkpointer, exc, self.folder.path) from None
                    raise
            if self.unavailable:
                raise RunError(f"{len(self.unavailable)} {job.noun}(s) stopped: {self.unavailable[0]}; once it is "
                               f"back, continue the run with: {job.resume_command()}")

    async def dialogue(self, graph: Any, job: DialogueJob, i: int) -> None:
        """Index i from its thread's start (or its last checkpoint) to its line."""
        thread_id = job.thread_id(i)
        cfg = {"configurable": {"thread_id": thread_id}, "recursion_limit": recursion_limit(self.config, self.settings)}
        started = time.perf_counter()
        error, failed_usage = None, None
        try:
            await job.play(graph, cfg, i)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except SourceUnavailable as exc:  # not the dialogue's fault: no line, so `resume` finishes it
            self.unavailable.append(" ".join(str(exc).split())[:300])
            await self._release(thread_id)
            return
        except Exception as exc:  # a failed dialogue is written with its reason, the run goes on
            if rf.is_disk_full(exc):  # not the dialogue's fault: stop, and let `resume` go on from its checkpoint
                raise rf.disk_full_error(self.folder.file(rf.CHECKPOINTS), self.folder.path) from None
            if self.settings.checkpointer and checkpointer_lost(exc):  # nor is a checkpointer gone away (`run`)
                raise
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            failed_usage = getattr(exc, "usage", None)  # the calls of the step that failed count too
        snapshot = await graph.aget_state(cfg)
        await job.finish(graph, cfg, i, Ended(snapshot.values, time.perf_counter() - started, error, failed_usage))
        await self._release(thread_id)  # finished: its sandboxes are not needed again

    async def _release(self, thread_id: str) -> None:
        if self.sandboxes is not None:  # closing may wait on a process (an MCP server): off the event loop
            await asyncio.to_thread(self.sandboxes.release, thread_id)
