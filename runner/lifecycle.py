"""A run from start to finish: `generate` (check the input, make each source's toolset once, run every
dialogue) and `resume` (an interrupted run picked up where it stopped); the dialogues themselves run in a
Batch (batch.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, TypeVar

from langgraph.graph import StateGraph
from rich.console import Console

from environment.errors import InputError
from environment.sources.registry import load_source_kinds, open_source, tools_without_source
from environment.sources.run_hooks import sources_for_run
from runner import run_folder as rf
from runner.batch import Batch
from runner.databases import (PreparedDatabase, check_tasks_possible, prepare_databases, toolset_files, toolsets_of,
                              write_toolset)
from runner.postgres_checkpoints import check_checkpointer
from runner.preflight import run_settings, start_backend
from runner.run_folder import RunFolder, new_run_folder
from state.config import RunConfig, RunSource, Settings
from state.sources import SourceRef
from state.tools import Tool, Toolset

Finished = TypeVar("Finished")


def check_something_to_work_on(databases: Sequence[object] | None, toolset: object | None) -> None:
    """A run needs sources or a toolset: said in one line, before anything else is checked (the one home of
    this check, for the command line and Python callers alike)."""
    if not databases and not toolset:
        raise InputError("pass --db with a SQLite database, --mcp with MCP servers, or --toolset with a "
                         "toolset.json (simulated tools)")


async def generate(builder_factory: Callable[[], StateGraph], config: RunConfig, settings: Settings, out: Path,
                   console: Console, finish: Callable[[RunFolder], Finished], toolset: list[Tool] | None = None,
                   databases: list[list[SourceRef]] | None = None, dialogues_per_db: int | None = None) -> Finished:
    """A new run: validate everything, make each source's toolset once, then run every dialogue; `finish`
    (the run's summary, say) runs on the finished folder while this process still owns it."""
    databases = databases or []
    single = open_source(databases[0]) if len(databases) == 1 else None  # its problem is the user's error, said first
    check_something_to_work_on(databases, toolset)
    homeless = tools_without_source(toolset or [], single) if len(databases) <= 1 else []
    if homeless:
        raise InputError(f"the toolset has {homeless[0].source} tools ({homeless[0].name}): pass --db with the "
                         f"source they run on")
    settings = run_settings(settings, config)
    await check_checkpointer(settings, config.run_id)
    # sources that make something per run (a template database) make it now, and remove it when the run ends
    with sources_for_run(_names(databases), config.run_id, settings.keep_sandboxes):
        return await _generate(builder_factory, config, settings, out, console, finish, toolset, databases,
                               dialogues_per_db)


async def _generate(builder_factory: Callable[[], StateGraph], config: RunConfig, settings: Settings, out: Path,
                    console: Console, finish: Callable[[RunFolder], Finished], toolset: list[Tool] | None,
                    databases: list[list[SourceRef]], dialogues_per_db: int | None) -> Finished:
    with new_run_folder(out, "generate") as folder:  # until the toolsets are written: on failure, no partial folder
        await start_backend(settings, console)
        if len(databases) > 1:
            prepared = await prepare_databases(databases, settings, toolset, config.concurrency, console)
            files = toolset_files([p.sources[0].name for p in prepared]) if len(prepared) > 1 else [rf.TOOLSET]
            for entry, name in zip(prepared, files):
                write_toolset(folder, entry.report, name)
            sources = [RunSource(sources=p.sources, toolset=name) for p, name in zip(prepared, files)]
            config = config.model_copy(update={
                "databases": sources,
                "dialogues": dialogues_per_db * len(sources) if dialogues_per_db else config.dialogues})
            folder.write_json(rf.CONFIG, config.model_dump(mode="json"))
        else:  # one database, or simulated tools only
            config = config.model_copy(update={
                "databases": [RunSource(sources=databases[0])] if databases else [],
                "dialogues": dialogues_per_db or config.dialogues})
            if toolset is not None and not databases:
                await check_tasks_possible(toolset, None, settings, "the given toolset")
            if toolset is not None:
                report = await prepare_databases(databases, settings, toolset, config.concurrency, console) \
                    if databases else [PreparedDatabase(sources=[],
                                                        report=Toolset(tools=toolset, proposed=len(toolset)))]
                write_toolset(folder, report[0].report)
            # the config goes first (after a given toolset): a run killed while its toolset is synthesized resumes
            folder.write_json(rf.CONFIG, config.model_dump(mode="json"))
            if toolset is None:
                write_toolset(folder, (await prepare_databases(databases, settings, None, 1, console))[0].report)
            sources = config.sources()
    with folder:
        toolsets = toolsets_of(folder, config)
        for name, tools in toolsets.items():
            console.print(f"toolset {name}: {len(tools)} tools ({sum(t.mode == 'write' for t in tools)} write)")
        console.print(f"{config.dialogues} dialogues over {len(sources)} database(s); run folder: {out}")
        await Batch(builder_factory, folder, config, settings, toolsets, console).run()
        return finish(folder)


async def resume(builder_factory: Callable[[], StateGraph], run_dir: Path, settings: Settings | None, console: Console,
                 finish: Callable[[RunFolder], Finished], executor: dict[str, object] | None = None) -> Finished:
    """Finish an interrupted run: continue dialogues from their last checkpoint, start missing ones (on
    the run's executor, unless `executor` says otherwise); then `finish` as for `generate`."""
    folder = RunFolder(run_dir)
    if not folder.file(rf.CONFIG).exists():
        raise InputError(f"not a run folder (no {rf.CONFIG}): {run_dir}")
    with folder.own("resume"):
        config = RunConfig.model_validate(folder.read_json(rf.CONFIG))
        load_source_kinds(list(config.settings.get("source_kinds") or []))  # the kinds the run was made with
        for source in config.sources():
            if source.sources:
                open_source(source.sources)  # moved or deleted: say so before any dialogue is touched
        settings = run_settings(Settings.of_run(config.settings, settings).model_copy(update=executor or {}), config)
        await start_backend(settings, console)
        # what a killed attempt left of its sandboxes goes first: every dialogue rebuilds its own by replay
        with sources_for_run(_names([s.sources for s in config.sources()]), config.run_id, settings.keep_sandboxes,
                             resuming=True):
            for source in config.sources():
                if folder.file(source.toolset).exists():
                    continue
                if not source.sources:
                    raise InputError(f"{folder.file(source.toolset)} is missing and the run has no database to "
                                     f"derive it from")
                # stopped while the toolset was being synthesized: synthesize it again
                prepared = await prepare_databases([source.sources], settings, None, 1, console)
                write_toolset(folder, prepared[0].report, source.toolset)
            await Batch(builder_factory, folder, config, settings, toolsets_of(folder, config), console).run()
            return finish(folder)


def _names(groups: list[list[SourceRef]]) -> list[str]:
    """Every source the run names, each once (a servers file shared by every share of a run, say)."""
    return list(dict.fromkeys(ref.name for group in groups for ref in group))
