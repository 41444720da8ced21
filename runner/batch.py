"""Run many dialogues concurrently into a run folder, and finish an interrupted run.

Each dialogue is one thread of the sqlite checkpointer. A dialogue's line is written only after it
ended, so a killed run loses at most the steps in flight and `resume` neither loses nor repeats one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from langgraph.graph import StateGraph
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backends.registry import backend_for
from environment.errors import RunError, SourceUnavailable
from environment.sources.pool import SandboxPool, sandbox_pool
from environment.sources.registry import load_source_kinds, open_source
from environment.sources.runs import run_scope
from nodes.stored_values import keep_schema, keep_toolset
from nodes.personas import draw_persona
from nodes.toolbox import offered
from runner import event_loop
from runner import run_folder as rf
from runner.export import DialogueRecord, export_dialogue
from runner.persistence import (checkpoint_location, keep_only_last_checkpoint, open_persistence, release_free_pages,
                                threads_with_history)
from runner.postgres_checkpoints import checkpointer_lost, checkpointer_lost_error
from runner.preflight import settle_backend
from runner.ray_executor import run_on_ray
from runner.personas import ensure_pools, read_pools
from runner.run_folder import RunFolder
from runner.shards import merge_shards, seed_threads, shard_folder
from runner.targeting import targeted_source
from state.config import RunConfig, Settings
from state.dialogue import DialogueInput, DialogueState, Usage
from state.personas import PersonaPool
from state.sources import SourceRef, joined_name
from state.tools import Tool


async def run_thread(graph: Any, start: Any, cfg: dict[str, Any], context: Any) -> None:
    """Run a thread to its end: start it when it has no checkpoint, go on when it stopped part way,
    leave it when it is finished."""
    snapshot = await graph.aget_state(cfg)
    if not snapshot.values:
        await graph.ainvoke(start, cfg, context=context)
    elif snapshot.next or snapshot.tasks:  # tasks: a step cut off mid-write leaves no 'next'
        await graph.ainvoke(None, cfg, context=context)


def recursion_limit(config: RunConfig, settings: Settings) -> int:
    per_task = settings.max_user_turns_per_task * (2 * settings.max_steps_per_turn + 3) + 4
    return 20 + config.tasks_per_dialogue * per_task


_DISK_FULL_EXIT = 75  # a worker's way of saying the disk filled up


def _outlive_no_parent(parent: int) -> None:
    """End this worker as soon as the process that owns the run folder is gone (even killed with -9), so no
    orphan goes on writing into a folder that the next `resume` owns."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _worker_main(builder_factory: Callable[[], StateGraph], folder: str, config: RunConfig, settings: Settings,
                 share: tuple[dict[str, list[Tool]], list[int]], events: Any, number: int, parent: int) -> None:
    """A worker process: runs its share of the dialogues (the toolsets, the indices) and reports each one as
    it is written."""
    toolsets, indices = share
    run_in_worker(Batch(builder_factory, RunFolder(Path(folder)), config, settings, toolsets, Console(quiet=True)),
                  indices, events, number, parent)


def run_in_worker(batch: "Batch", indices: list[int], events: Any, number: int, parent: int) -> None:
    """The body of every worker process: its share run on the batch, each item reported as it is written,
    a failure said to the parent by the exit code (and a log in the folder)."""
    folder = str(batch.folder.path)
    _outlive_no_parent(parent)
    try:
        event_loop.run(batch.run_shard(indices, lambda: events.put(1)))
    except KeyboardInterrupt:  # the parent says what to do next; the checkpoints keep the work
        raise SystemExit(130) from None
    except rf.DiskFullError:
        raise SystemExit(_DISK_FULL_EXIT) from None
    except Exception:  # kept for the user to read; the parent reports it in one line
        (Path(folder) / f"worker-{number}.log").write_text(traceback.format_exc(), encoding="utf-8")
        raise SystemExit(1) from None


def capped(settings: Settings, config: RunConfig) -> Settings:
    """The settings with each endpoint's concurrency capped at the run's: never more requests at once."""
    if settings.max_in_flight == config.concurrency:
        return settings
    return settings.model_copy(update={"max_in_flight": config.concurrency})


def _shard_main(builder_factory: Callable[[], StateGraph], folder: str, config: RunConfig, settings: Settings,
                toolsets: dict[str, list[Tool]], shard: str, indices: list[int]) -> None:
    """A Ray task: runs its chunk of dialogues into its own shard; a retried task skips what it wrote."""
    run = RunFolder(Path(folder))
    own = shard_folder(run, shard)
    if not settings.checkpointer:  # in Postgres, every task sees every thread already
        seed_threads(run, own, [config.dialogue_id(i) for i in indices])
    done = own.finished_ids()
    batch = Batch(builder_factory, own, config, settings, toolsets, Console(quiet=True))
    batch.personas = read_pools(run) or batch.personas  # the run's own pools, not the shard's
    event_loop.run(batch.run_shard([i for i in indices if config.dialogue_id(i) not in done], lambda: None))


class Batch:
    worker_main = staticmethod(_worker_main)  # what a worker process runs, given `worker_share` of the work

    def __init__(self, builder_factory: Callable[[], StateGraph], folder: RunFolder, config: RunConfig,
                 settings: Settings, toolsets: dict[str, list[Tool]], console: Console) -> None:
        self.builder_factory = builder_factory
        self.folder = folder
        self.config = config
        self.settings = capped(settings, config)
        load_source_kinds(self.settings.source_kinds)  # a worker process or a Ray task learns the run's kinds
        self.toolsets = toolsets  # by toolset file, as the config's databases name them
        self.toolset_keys: dict[str, str] = {}  # by toolset file: the content hash each is kept under
        self.schema_keys: dict[str, str] = {}  # by source name
        self.schemas: dict[str, Any] = {}  # by source name, read when a line needs it (decoys)
        self.personas = PersonaPool()  # the run's persona pools (personas.json), read when a shard starts
        self.sandboxes: SandboxPool | None = None  # the dialogues' live sandboxes, while run_shard runs
        self.unavailable: list[str] = []  # why dialogues stopped on a source that went away (left for resume)
        self.console = console
        self.lock = asyncio.Lock()

    async def run(self) -> None:
        """Run every dialogue not yet in the run folder: in this process, spread over worker processes,
        or as Ray tasks. Shards left by Ray tasks (of this run or of one cut off) are merged first and last."""
        merge_shards(self.folder)
        done = self.folder.finished_ids()
        todo = [i for i in range(self.config.dialogues) if self.config.dialogue_id(i) not in done]
        if todo:  # made once, before any dialogue, for every process that runs one
            await ensure_pools(self.folder, self.config, self.settings, self.console)
        if self.settings.checkpoints == "final" and done:
            await self._keep_only_final_states(done)
        columns = [TextColumn("[bold]dialogues"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=self.console, transient=False) as progress:
            bar = progress.add_task("dialogues", total=self.config.dialogues, completed=len(done))
            workers = min(self.config.workers, len(todo))
            if self.settings.executor == "ray" and todo:
                args = (self.builder_factory, str(self.folder.path), self.config, self.settings, self.toolsets)
                await run_on_ray(_shard_main, args, todo, self.folder, self.settings.ray_address,
                                 lambda: progress.advance(bar))
                merge_shards(self.folder)
            elif workers > 1:
                await self._run_in_processes(todo, workers, lambda: progress.advance(bar))
            else:
                await self.run_shard(todo, lambda: progress.advance(bar))
        if self.settings.checkpoints == "final" and todo:
            await release_free_pages(self.folder.file(rf.CHECKPOINTS))
        self.folder.sort_dataset()  # the same dataset bytes, whichever dialogue happened to finish first

    async def _keep_only_final_states(self, done: set[str]) -> None:
        """Dialogues written just before a run was cut off may still keep every step: prune them now."""
        async with open_persistence(checkpoint_location(self.folder.path, self.settings)) as (saver, store):
            graph = self.builder_factory().compile(checkpointer=saver, store=store)
            for thread_id in sorted(await threads_with_history(saver) & done):
                await keep_only_last_checkpoint(graph, saver, thread_id)

    async def run_shard(self, indices: list[int], on_done: Callable[[], None]) -> None:
        await settle_backend(backend_for(self.settings), Console(quiet=True))  # a worker process probes for itself
        self.personas = read_pools(self.folder) or self.personas
        async with open_persistence(checkpoint_location(self.folder.path, self.settings)) as (saver, store):
            graph = self.builder_factory().compile(checkpointer=saver, store=store)
            # Kept before any dialogue starts, so dialogues only read the store while they run.
            for name, tools in self.toolsets.items():
                self.toolset_keys[name] = await keep_toolset(store, tools)
            for source in self.config.sources():
                if source.sources and source.label not in self.schema_keys:
                    catalog = await asyncio.to_thread(lambda: open_source(source.sources).catalog())
                    if catalog.database is not None:
                        self.schema_keys[source.label] = await keep_schema(store, catalog.database)
            pending = iter(indices)

            # A fixed set of lanes takes the next dialogue when one ends: nothing is held per dialogue
            # waiting its turn, so memory does not grow with the number of dialogues.
            async def lane() -> None:
                for i in pending:
                    await self._dialogue(graph, i)
                    on_done()

            lanes = min(self.config.concurrency, len(indices))
            with run_scope(self.config.run_id, self.settings.keep_sandboxes), \
                    sandbox_pool(max(lanes, 1)) as self.sandboxes:  # one live sandbox set per dialogue in flight
                try:
                    await asyncio.gather(*(lane() for _ in range(lanes)))
                except Exception as exc:  # the checkpointer's server went away: stop; `resume` goes on once it is back
                    if self.settings.checkpointer and checkpointer_lost(exc):
                        raise checkpointer_lost_error(self.settings.checkpointer, exc, self.folder.path) from None
                    raise
            if self.unavailable:
                raise RunError(f"{len(self.unavailable)} dialogue(s) stopped: {self.unavailable[0]}; once it is back, "
                               f"continue the run with: python -m graphs.run resume {self.folder.path}")

    async def _run_in_processes(self, todo: list[int], workers: int, on_done: Callable[[], None]) -> None:
        """One event loop per core: Python spends a core on roughly 150 model calls a second."""
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        per_worker = max(1, -(-self.config.concurrency // workers))
        config = self.config.model_copy(update={"concurrency": per_worker, "workers": 1})
        procs = [ctx.Process(target=self.worker_main, daemon=True,
                             args=(self.builder_factory, str(self.folder.path), config, self.settings,
                                   self.worker_share(todo[w::workers]), events, w, os.getpid()))
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
        if any(code == _DISK_FULL_EXIT for _, code in failed):
            raise rf.disk_full_error(self.folder.path, self.folder.path)
        if failed:
            logs = ", ".join(str(self.folder.file(f"worker-{w}.log")) for w, code in failed if code == 1)
            raise RunError(f"{len(failed)} worker process(es) stopped (exit codes {[c for _, c in failed]})"
                           + (f"; see {logs}" if logs else "")
                           + f"; finish the run with: python -m graphs.run resume {self.folder.path}")

    def worker_share(self, indices: list[int]) -> Any:
        return self.toolsets, indices

    async def _dialogue(self, graph: Any, i: int) -> None:
        dialogue_id = self.config.dialogue_id(i)
        cfg = {"configurable": {"thread_id": dialogue_id},
               "recursion_limit": recursion_limit(self.config, self.settings)}
        started = time.perf_counter()
        error, failed_usage = None, None
        source = targeted_source(self.config, self.settings.targeting, i)
        try:
            start = DialogueInput(dialogue_id=dialogue_id, sources=source.sources,
                                  seed=self.config.dialogue_seed(i), prelude=self.config.prelude,
                                  task_style="question" if self.config.pipeline == "task" else "descriptive",
                                  tasks_per_dialogue=self.config.tasks_per_dialogue,
                                  persona=draw_persona(self.personas, source.label, self.config.dialogue_seed(i)),
                                  toolset_key=self.toolset_keys[source.toolset],
                                  schema_key=self.schema_keys.get(source.label, ""))
            await run_thread(graph, start, cfg, self.settings)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except SourceUnavailable as exc:  # not the dialogue's fault: no line, so `resume` finishes it
            self.unavailable.append(" ".join(str(exc).split())[:300])
            if self.sandboxes is not None:
                self.sandboxes.release(dialogue_id)
            return
        except Exception as exc:  # a failed dialogue is rejected with its reason, the run goes on
            if rf.is_disk_full(exc):  # not the dialogue's fault: stop, and let `resume` go on from its checkpoint
                raise rf.disk_full_error(self.folder.file(rf.CHECKPOINTS), self.folder.path) from None
            if self.settings.checkpointer and checkpointer_lost(exc):  # nor is a checkpointer gone away (below)
                raise
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            failed_usage = getattr(exc, "usage", None)  # the calls of the step that failed count too
        snapshot = await graph.aget_state(cfg)
        latency = time.perf_counter() - started
        await self.write(dialogue_id, snapshot.values, latency, error, tools=self.toolsets[source.toolset],
                         failed_usage=failed_usage)
        if self.settings.checkpoints == "final" and error is None:
            await keep_only_last_checkpoint(graph, graph.checkpointer, dialogue_id)
        if self.sandboxes is not None:
            # finished: its sandboxes are not needed again; closing may wait on a process (an MCP server)
            await asyncio.to_thread(self.sandboxes.release, dialogue_id)

    def _schema(self, sources: list[SourceRef]) -> Any:
        """A dialogue's database schema (None for simulated tools), read once per batch."""
        key = joined_name(sources)
        if key not in self.schemas:
            self.schemas[key] = open_source(sources).catalog().database if sources else None
        return self.schemas[key]

    async def write(self, dialogue_id: str, values: dict[str, Any], latency: float, error: str | None,
                    tools: list[Tool], replace: bool = False, failed_usage: Usage | None = None) -> None:
        """Write a finished dialogue's line; with replace, its earlier line (in either file) goes."""
        # the latency goes beside the dataset, not in it: the same seed gives the same dataset, byte for byte
        extra: dict[str, Any] = {"run_id": self.config.run_id, "backend": self.settings.backend}
        if self.settings.uses_model:
            extra["model"] = self.settings.model
        extra.update(backend_for(self.settings).record())  # models per role, structured mode per endpoint
        if values:
            state = DialogueState.model_validate(values)
            extra["usage"] = (state.usage + failed_usage if isinstance(failed_usage, Usage) else state.usage).model_dump()
            extra["completed"] = error is None and len(state.verdicts) == state.tasks_per_dialogue and \
                not state.ended_by_budget
            extra["toolset"] = self.config.toolset_file_of(state.sources)
            if state.replay_diverged:
                extra["replay_diverged"] = state.replay_diverged
            if state.current_task is not None and (state.current_task.withheld_tools or state.current_task.decoys):
                # the line's tools are those its assistant was offered (less a withheld tool, plus decoys)
                tools = offered(tools, state.current_task, await asyncio.to_thread(self._schema, state.sources))
            record, ok, _ = export_dialogue(state, tools, extra)
        else:
            if isinstance(failed_usage, Usage):
                extra["usage"] = failed_usage.model_dump()
            record = DialogueRecord(id=dialogue_id, messages=[], tools=[], metadata={**extra, "completed": False},
                                    reason="no state was recorded")
            ok = False
        if error is not None:
            record.metadata["error"] = error
            record.reason = f"error: {error}"
            ok = False
        line = record.model_dump(exclude_none=not (record.reason and not ok))
        async with self.lock:
            if replace:
                for name in (rf.DIALOGUES, rf.REJECTED):
                    self.folder.drop_lines(name, {dialogue_id})
            # the fsync runs off the event loop, so other dialogues keep their model calls going
            await asyncio.to_thread(self.folder.append_line, rf.TIMINGS, {"id": dialogue_id,
                                                                          "latency_s": round(latency, 4)})
            await asyncio.to_thread(self.folder.append_line, rf.DIALOGUES if ok else rf.REJECTED, line)


