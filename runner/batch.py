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
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import StateGraph
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backends.registry import backend_for
from environment.errors import InputError, RunError, read_json_input
from environment.introspect import check_database_path, inspect_database
from environment.sandbox import SANDBOXES, Sandbox
from environment.tool_checks import check_tool
from nodes.tool_synthesizer import synthesize_toolset
from runner import run_folder as rf
from runner.export import DialogueRecord, export_dialogue
from runner.preflight import backend_notice, check_backend
from runner.ray_executor import check_ray, run_on_ray
from runner.run_folder import RunFolder, new_run_folder
from runner.shards import merge_shards, seed_threads, shard_folder
from runner.stats import RunStats, run_stats, stats_table
from state.config import RunConfig, Settings
from state.dialogue import DialogueInput, DialogueState
from state.persistence import strict_serializer
from state.tools import Tool, Toolset


@asynccontextmanager
async def open_checkpointer(path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    if path.exists() and path.stat().st_size and path.read_bytes()[:16] != b"SQLite format 3\x00":
        raise InputError(f"{path} is not a SQLite checkpoint file (it may be damaged)")
    async with aiosqlite.connect(str(path)) as conn:
        # WAL without a sync per commit: a killed process loses nothing committed (only a power cut
        # could), and a checkpoint costs a write instead of an fsync.
        await conn.execute("PRAGMA busy_timeout=60000")  # first: worker processes share the file
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn, serde=strict_serializer())
        await saver.setup()
        yield saver


async def run_thread(graph: Any, start: Any, cfg: dict[str, Any], context: Any) -> None:
    """Run a thread to its end: start it when it has no checkpoint, go on when it stopped part way,
    leave it when it is finished."""
    snapshot = await graph.aget_state(cfg)
    if not snapshot.values:
        await graph.ainvoke(start, cfg, context=context)
    elif snapshot.next or snapshot.tasks:  # tasks: a step cut off mid-write leaves no 'next'
        await graph.ainvoke(None, cfg, context=context)


def _recursion_limit(config: RunConfig, settings: Settings) -> int:
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
                 toolset: list[Tool], indices: list[int], events: Any, number: int, parent: int) -> None:
    """A worker process: runs its share of the dialogues and reports each one as it is written."""
    _outlive_no_parent(parent)
    batch = Batch(builder_factory, RunFolder(Path(folder)), config, settings, toolset, Console(quiet=True))
    try:
        asyncio.run(batch.run_shard(indices, lambda: events.put(1)))
    except KeyboardInterrupt:  # the parent says what to do next; the checkpoints keep the work
        raise SystemExit(130) from None
    except rf.DiskFullError:
        raise SystemExit(_DISK_FULL_EXIT) from None
    except Exception:  # kept for the user to read; the parent reports it in one line
        (Path(folder) / f"worker-{number}.log").write_text(traceback.format_exc(), encoding="utf-8")
        raise SystemExit(1) from None


def _shard_main(builder_factory: Callable[[], StateGraph], folder: str, config: RunConfig, settings: Settings,
                toolset: list[Tool], shard: str, indices: list[int]) -> None:
    """A Ray task: runs its chunk of dialogues into its own shard; a retried task skips what it wrote."""
    run = RunFolder(Path(folder))
    own = shard_folder(run, shard)
    seed_threads(run, own, [config.dialogue_id(i) for i in indices])
    done = own.finished_ids()
    batch = Batch(builder_factory, own, config, settings, toolset, Console(quiet=True))
    asyncio.run(batch.run_shard([i for i in indices if config.dialogue_id(i) not in done], lambda: None))


class Batch:
    def __init__(self, builder_factory: Callable[[], StateGraph], folder: RunFolder, config: RunConfig,
                 settings: Settings, toolset: list[Tool], console: Console) -> None:
        self.builder_factory = builder_factory
        self.folder = folder
        self.config = config
        self.settings = settings
        self.toolset = toolset
        self.console = console
        self.lock = asyncio.Lock()

    async def run(self) -> None:
        """Run every dialogue not yet in the run folder: in this process, spread over worker processes,
        or as Ray tasks. Shards left by Ray tasks (of this run or of one cut off) are merged first and last."""
        merge_shards(self.folder)
        done = self.folder.finished_ids()
        todo = [i for i in range(self.config.dialogues) if self.config.dialogue_id(i) not in done]
        columns = [TextColumn("[bold]dialogues"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=self.console, transient=False) as progress:
            bar = progress.add_task("dialogues", total=self.config.dialogues, completed=len(done))
            workers = min(self.config.workers, len(todo))
            if self.settings.executor == "ray" and todo:
                args = (self.builder_factory, str(self.folder.path), self.config, self.settings, self.toolset)
                await run_on_ray(_shard_main, args, todo, self.folder, self.settings.ray_address,
                                 lambda: progress.advance(bar))
                merge_shards(self.folder)
            elif workers > 1:
                await self._run_in_processes(todo, workers, lambda: progress.advance(bar))
            else:
                await self.run_shard(todo, lambda: progress.advance(bar))

    async def run_shard(self, indices: list[int], on_done: Callable[[], None]) -> None:
        async with open_checkpointer(self.folder.file(rf.CHECKPOINTS)) as saver:
            graph = self.builder_factory().compile(checkpointer=saver)
            pending = iter(indices)

            # A fixed set of lanes takes the next dialogue when one ends: nothing is held per dialogue
            # waiting its turn, so memory does not grow with the number of dialogues.
            async def lane() -> None:
                for i in pending:
                    await self._dialogue(graph, i)
                    on_done()

            await asyncio.gather(*(lane() for _ in range(min(self.config.concurrency, len(indices)))))

    async def _run_in_processes(self, todo: list[int], workers: int, on_done: Callable[[], None]) -> None:
        """One event loop per core: Python spends a core on roughly 150 model calls a second."""
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        per_worker = max(1, -(-self.config.concurrency // workers))
        config = self.config.model_copy(update={"concurrency": per_worker, "workers": 1})
        procs = [ctx.Process(target=_worker_main, daemon=True,
                             args=(self.builder_factory, str(self.folder.path), config, self.settings,
                                   self.toolset, todo[w::workers], events, w, os.getpid()))
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

    async def _dialogue(self, graph: Any, i: int) -> None:
        dialogue_id = self.config.dialogue_id(i)
        cfg = {"configurable": {"thread_id": dialogue_id},
               "recursion_limit": _recursion_limit(self.config, self.settings)}
        started = time.perf_counter()
        error = None
        try:
            start = DialogueInput(dialogue_id=dialogue_id, source_db=self.config.source_db,
                                  seed=self.config.dialogue_seed(i), prelude=self.config.prelude,
                                  task_style="question" if self.config.pipeline == "task" else "descriptive",
                                  tasks_per_dialogue=self.config.tasks_per_dialogue, toolset=self.toolset)
            await run_thread(graph, start, cfg, self.settings)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a failed dialogue is rejected with its reason, the run goes on
            if rf.is_disk_full(exc):  # not the dialogue's fault: stop, and let `resume` go on from its checkpoint
                raise rf.disk_full_error(self.folder.file(rf.CHECKPOINTS), self.folder.path) from None
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        snapshot = await graph.aget_state(cfg)
        latency = time.perf_counter() - started
        await self.write(dialogue_id, snapshot.values, latency, error)
        SANDBOXES.release(dialogue_id)  # finished: its database copy is not needed again

    async def write(self, dialogue_id: str, values: dict[str, Any], latency: float, error: str | None,
                    replace: bool = False) -> None:
        """Write a finished dialogue's line; with replace, its earlier line (in either file) goes."""
        # the latency goes beside the dataset, not in it: the same seed gives the same dataset, byte for byte
        extra: dict[str, Any] = {"run_id": self.config.run_id, "backend": self.settings.backend}
        if self.settings.backend != "offline":
            extra["model"] = self.settings.model
        if values:
            state = DialogueState.model_validate(values)
            extra["usage"] = state.usage.model_dump()
            extra["completed"] = error is None and len(state.verdicts) == state.tasks_per_dialogue and \
                not state.ended_by_budget
            record, ok, _ = export_dialogue(state, extra)
        else:
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


def _misfits(tools: list[Tool], database: Any) -> str:
    """The first SQL tool that does not run on this database, with the reason; empty when all do."""
    sandbox = Sandbox(database.path)
    try:
        for tool in tools:
            if not tool.simulated:
                why = check_tool(tool, database, sandbox)
                if why:
                    return f"tool {tool.name}: {why}"
        return ""
    finally:
        sandbox.close()


def summarize(folder: RunFolder) -> RunStats:
    """Compute stats.json from the run folder's lines."""
    config = RunConfig.model_validate(folder.read_json(rf.CONFIG))
    report = Toolset.model_validate(folder.read_json(rf.TOOLSET_REPORT)) if folder.file(rf.TOOLSET_REPORT).exists() \
        else Toolset(tools=load_toolset(folder.file(rf.TOOLSET)))
    latency = {r["id"]: r["latency_s"] for r in folder.iter_lines(rf.TIMINGS)}  # the last one of a dialogue counts

    def with_latency(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            record["metadata"].setdefault("latency_s", latency.get(record["id"], 0.0))
            yield record

    stats = run_stats(with_latency(folder.iter_lines(rf.DIALOGUES)), with_latency(folder.iter_lines(rf.REJECTED)),
                      tools_proposed=max(report.proposed, len(report.tools)), tools_accepted=len(report.tools),
                      backend=str(config.settings.get("backend", "")))
    for name in (rf.DIALOGUES, rf.REJECTED):
        if folder.file(name).exists():
            folder.sort_lines(name)
    folder.write_json(rf.STATS, stats.model_dump())
    return stats


async def generate(builder_factory: Callable[[], StateGraph], config: RunConfig, settings: Settings, out: Path,
                   console: Console, toolset: list[Tool] | None = None) -> RunStats:
    """A new run: validate everything, synthesize the toolset once, then run every dialogue."""
    database = inspect_database(config.source_db) if config.source_db else None
    if database is not None and not any(t.row_count for t in database.tables):
        raise InputError(f"every table of {config.source_db} is empty: tasks need rows to be grounded in "
                         f"(add some data first)")
    if database is None and not toolset:
        raise InputError("nothing to work on: pass --db (a SQLite database) or --toolset (simulated tools)")
    if database is None and any(not t.simulated for t in toolset or []):
        raise InputError("the toolset has SQL tools: pass --db with the database they run on")
    check_backend(settings)
    if settings.executor == "ray":
        check_ray(settings.ray_address)
    with new_run_folder(out, "generate") as folder:  # until the toolset is written: on failure, no partial folder
        backend_notice(settings, console)
        for skipped in database.skipped if database else []:
            console.print(f"[dim]skipped table {skipped.name!r}: {skipped.reason}[/]")
        if toolset is not None:
            report = Toolset(tools=toolset, proposed=len(toolset))
            if database is not None:
                misfit = await asyncio.to_thread(_misfits, report.tools, database)
                if misfit:
                    raise InputError(f"the toolset does not fit {config.source_db}: {misfit} "
                                     f"(was it made for another database?)")
            _write_toolset(folder, report)
        # the config goes first (after a given toolset): a run killed while its toolset is synthesized resumes
        folder.write_json(rf.CONFIG, config.model_dump(mode="json"))
        if toolset is None:
            report = await _synthesize(folder, database, settings, console)
    with folder:
        console.print(f"toolset: {len(report.tools)} tools "
                      f"({sum(t.mode == 'write' for t in report.tools)} write); run folder: {out}")
        await Batch(builder_factory, folder, config, settings, report.tools, console).run()
        return _finish(folder, console)


async def _synthesize(folder: RunFolder, database: Any, settings: Settings, console: Console) -> Toolset:
    with console.status("synthesizing the toolset"):
        report, _ = await synthesize_toolset(database, backend_for(settings), settings)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    if not report.tools:
        raise InputError(f"no tool could be built for {database.path}: "
                         + "; ".join(f"{d.name}: {d.reason}" for d in report.dropped[:3]))
    _write_toolset(folder, report)
    return report


def _write_toolset(folder: RunFolder, report: Toolset) -> None:
    folder.write_json(rf.TOOLSET_REPORT, report.model_dump(mode="json"))
    folder.write_json(rf.TOOLSET, [t.toolset_entry() for t in report.tools])  # last: its presence means both are whole


def load_toolset(path: Path) -> list[Tool]:
    """Tools from a toolset.json written by an earlier run."""
    entries = read_json_input(path, "toolset")
    try:
        return [Tool.model_validate(e) for e in entries]
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a toolset.json (a JSON list of tools with sql and mode): {path}: "
                         f"{str(exc).splitlines()[0]}") from None


async def resume(builder_factory: Callable[[], StateGraph], run_dir: Path, settings: Settings | None, console: Console,
                 executor: dict[str, str] | None = None) -> RunStats:
    """Finish an interrupted run: continue dialogues from their last checkpoint, start missing ones (on
    the run's executor, unless `executor` says otherwise)."""
    folder = RunFolder(run_dir)
    if not folder.file(rf.CONFIG).exists():
        raise InputError(f"not a run folder (no {rf.CONFIG}): {run_dir}")
    with folder.own("resume"):
        config = RunConfig.model_validate(folder.read_json(rf.CONFIG))
        if config.source_db:
            check_database_path(config.source_db)  # moved or deleted: say so before any dialogue is touched
        if settings is None:
            recorded = {k: v for k, v in config.settings.items() if v is not None}
            settings = Settings(**recorded)
        settings = settings.model_copy(update=executor or {})
        check_backend(settings)
        if settings.executor == "ray":
            check_ray(settings.ray_address)
        backend_notice(settings, console)
        if folder.file(rf.TOOLSET).exists():
            toolset = load_toolset(folder.file(rf.TOOLSET))
        elif config.source_db:  # stopped while the toolset was being synthesized: synthesize it again
            toolset = (await _synthesize(folder, inspect_database(config.source_db), settings, console)).tools
        else:
            raise InputError(f"{folder.file(rf.TOOLSET)} is missing and the run has no database to derive it from")
        await Batch(builder_factory, folder, config, settings, toolset, console).run()
        return _finish(folder, console)


def _finish(folder: RunFolder, console: Console) -> RunStats:
    stats = summarize(folder)
    console.print(stats_table({folder.path.name: stats}))
    console.print(f"{stats.samples} valid dialogues in {folder.file(rf.DIALOGUES)}, "
                  f"{stats.rejected} rejected in {folder.file(rf.REJECTED)}")
    return stats
