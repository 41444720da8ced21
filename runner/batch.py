"""Run many dialogues concurrently into a run folder, and finish an interrupted run.

Each dialogue is one thread of the sqlite checkpointer. A dialogue's line is written only after it
ended, so a killed run loses at most the steps in flight and `resume` neither loses nor repeats one.
`Batch` decides where the dialogues run (this process, worker processes, Ray tasks); each process runs its
share on the one dialogue path (runner/lanes.py) with `GenerationJob` saying what a generated dialogue is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from langgraph.graph import StateGraph
from rich.console import Console

from nodes.personas import draw_persona
from runner import event_loop
from runner import run_folder as rf
from runner.lanes import Ended, Lanes, recursion_limit, run_thread  # noqa: F401  (run_thread: patched by tests)
from runner.persistence import (checkpoint_location, keep_only_final_states, keep_only_last_checkpoint,
                                release_free_pages)
from runner.personas import ensure_pools, read_pools
from runner.preflight import capped  # noqa: F401  (its home is runner.preflight; kept importable from here)
from runner.processes import run_in_processes, run_in_worker
from runner.progress import progress_bar
from runner.ray_executor import run_on_ray
from runner.run_folder import RunFolder
from runner.shards import merge_shards, seed_threads, shard_folder
from runner.targeting import targeted_source
from state.config import RunConfig, Settings
from state.dialogue import DialogueInput, Usage
from state.personas import PersonaPool
from state.tools import Tool


def _worker_main(builder_factory: Callable[[], StateGraph], folder: str, config: RunConfig, settings: Settings,
                 share: tuple[dict[str, list[Tool]], list[int]], events: Any, number: int, parent: int) -> None:
    """A worker process: runs its share of the dialogues (the toolsets, the indices) and reports each one as
    it is written."""
    toolsets, indices = share
    run_in_worker(Batch(builder_factory, RunFolder(Path(folder)), config, settings, toolsets, Console(quiet=True)),
                  indices, events, number, parent)


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


class GenerationJob:
    """A generated dialogue on the one dialogue path: index i is dialogue i of the run, started from its input
    (source, seed, persona), ended with its dataset line (or its rejected line, with the reason)."""

    noun = "dialogue"

    def __init__(self, batch: "Batch") -> None:
        self.batch = batch

    def thread_id(self, i: int) -> str:
        return self.batch.config.dialogue_id(i)

    def resume_command(self) -> str:
        return f"python -m graphs.run resume {self.batch.folder.path}"

    async def play(self, graph: Any, cfg: dict[str, Any], i: int) -> None:
        config, lanes = self.batch.config, self.batch.lanes
        source = targeted_source(config, lanes.settings.targeting, i)
        start = DialogueInput(dialogue_id=config.dialogue_id(i), sources=source.sources,
                              seed=config.dialogue_seed(i), prelude=config.prelude,
                              task_style="question" if config.pipeline == "task" else "descriptive",
                              tasks_per_dialogue=config.tasks_per_dialogue,
                              persona=draw_persona(self.batch.personas, source.label, config.dialogue_seed(i)),
                              toolset_key=lanes.toolset_keys[source.toolset],
                              schema_key=lanes.schema_keys.get(source.label, ""))
        await run_thread(graph, start, cfg, lanes.settings)

    async def finish(self, graph: Any, cfg: dict[str, Any], i: int, ended: Ended) -> None:
        lanes, dialogue_id = self.batch.lanes, self.thread_id(i)
        source = targeted_source(self.batch.config, lanes.settings.targeting, i)
        await lanes.lines.write(dialogue_id, ended.values, ended.latency, ended.error,
                                tools=lanes.toolsets[source.toolset], failed_usage=ended.failed_usage)
        if lanes.settings.checkpoints == "final" and ended.error is None:
            await keep_only_last_checkpoint(graph, graph.checkpointer, dialogue_id)


class Batch:
    """A generation run's dialogues: pools made first, then every dialogue not yet written, in this process,
    spread over worker processes, or as Ray tasks; the dataset sorted at the end."""

    worker_main = staticmethod(_worker_main)  # what a worker process runs, given `worker_share` of the work

    def __init__(self, builder_factory: Callable[[], StateGraph], folder: RunFolder, config: RunConfig,
                 settings: Settings, toolsets: dict[str, list[Tool]], console: Console) -> None:
        self.builder_factory = builder_factory
        self.folder = folder
        self.config = config
        self.lanes = Lanes(folder, config, settings, toolsets)
        self.settings = self.lanes.settings
        self.toolsets = toolsets
        self.personas = PersonaPool()  # the run's persona pools (personas.json), read when a shard starts
        self.console = console
        self.job = GenerationJob(self)

    async def run(self) -> None:
        """Run every dialogue not yet in the run folder: in this process, spread over worker processes,
        or as Ray tasks. Shards left by Ray tasks (of this run or of one cut off) are merged first and last."""
        merge_shards(self.folder)
        done = self.folder.finished_ids()
        todo = [i for i in range(self.config.dialogues) if self.config.dialogue_id(i) not in done]
        if todo:  # made once, before any dialogue, for every process that runs one
            await ensure_pools(self.folder, self.config, self.settings, self.console)
        if self.settings.checkpoints == "final" and done:  # dialogues written just before a run was cut off
            await keep_only_final_states(checkpoint_location(self.folder.path, self.settings), self.builder_factory,
                                         done)
        with progress_bar(self.console, "dialogues", self.config.dialogues, len(done)) as on_done:
            workers = min(self.config.workers, len(todo))
            if self.settings.executor == "ray" and todo:
                args = (self.builder_factory, str(self.folder.path), self.config, self.settings, self.toolsets)
                await run_on_ray(_shard_main, args, todo, self.folder, self.settings.ray_address, on_done)
                merge_shards(self.folder)
            elif workers > 1:
                await run_in_processes(self.worker_main, self.builder_factory, self.folder, self.config,
                                       self.settings, self.worker_share, todo, workers, on_done)
            else:
                await self.run_shard(todo, on_done)
        if self.settings.checkpoints == "final" and todo:
            await release_free_pages(self.folder.file(rf.CHECKPOINTS))
        self.folder.sort_dataset()  # the same dataset bytes, whichever dialogue happened to finish first

    async def run_shard(self, indices: list[int], on_done: Callable[[], None]) -> None:
        """These dialogues in this process, on its lanes."""
        self.personas = read_pools(self.folder) or self.personas
        await self.lanes.run(self.builder_factory, self.job, indices, on_done)

    def worker_share(self, indices: list[int]) -> Any:
        return self.toolsets, indices

    async def write(self, dialogue_id: str, values: dict[str, Any], latency: float, error: str | None,
                    tools: list[Tool], replace: bool = False, failed_usage: Usage | None = None) -> None:
        """Write a finished dialogue's line (runner.lines); with replace, its earlier line (in either file) goes."""
        await self.lanes.lines.write(dialogue_id, values, latency, error, tools, replace, failed_usage)

