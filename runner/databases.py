"""The sources of a run: which ones `--db` names, and one checked toolset for each, made concurrently.

With several sources, one that cannot be used or yields no usable toolset is reported in one line and
skipped; with a single one, the same problem is the user's error and stops the run before anything is written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backends.registry import backend_for
from environment.errors import InputError
from environment.sources.base import ToolSource
from environment.sources.registry import label_of, open_source
from nodes.tool_synthesizer import toolset_for
from runner import run_folder as rf
from runner.layout import TOOLSETS_DIR, load_toolset, report_file_of
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings
from state.schema import DatabaseSchema
from state.sources import SourceRef, joined_name
from state.tools import Tool, Toolset



def toolset_files(names: list[str]) -> list[str]:
    """A readable, distinct toolset file name per source (its label; its folder too when labels repeat)."""
    stems = [label_of(n) for n in names]
    files = []
    for name, stem in zip(names, stems):
        file = stem if stems.count(stem) == 1 else f"{Path(name.split('://', 1)[-1]).parent.name}_{stem}"
        while file in files:
            file += "_"
        files.append(file)
    return [f"{TOOLSETS_DIR}/{n}.json" for n in files]


class PreparedDatabase(BaseModel):
    sources: list[SourceRef]
    report: Toolset


def _misfits(tools: list[Tool], source: ToolSource) -> str:
    """The first tool of this source's kind that does not run on it, with the reason; empty when all do."""
    sandbox = source.open(0)
    try:
        for tool in tools:
            if tool.source == source.kind:
                why = source.check_tool(tool, sandbox)
                if why:
                    return f"tool {tool.name}: {why}"
        return ""
    finally:
        sandbox.close()


async def prepare_database(sources: list[SourceRef], settings: Settings, given: list[Tool] | None,
                           console: Console) -> PreparedDatabase:
    """Read one share's sources and make (or check) their toolset; an InputError says why they cannot be used."""
    name = joined_name(sources)
    source = await asyncio.to_thread(open_source, sources)
    catalog = await asyncio.to_thread(source.catalog)
    for note in catalog.notes:
        console.print(f"[dim]{note}[/]")
    if given is not None:
        misfit = await asyncio.to_thread(_misfits, given, source)
        if misfit:
            raise InputError(f"the toolset does not fit {name}: {misfit} (was it made for another source?)")
        report = Toolset(tools=given, proposed=len(given))
    else:
        report, _ = await toolset_for(source, catalog.database, backend_for(settings), settings, catalog.tools)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {source.label}: {note}")
    if not report.tools:
        raise InputError(f"no tool could be built for {name}: "
                         + "; ".join(f"{d.name}: {d.reason}" for d in report.dropped[:3]))
    await check_tasks_possible(report.tools, catalog.database, settings, name)
    return PreparedDatabase(sources=sources, report=report)


async def check_tasks_possible(tools: list[Tool], database: DatabaseSchema | None, settings: Settings,
                               name: str) -> None:
    """A backend that can tell (the offline one) says before the run whether the tools yield any task at all:
    one line naming what they lack, rather than a run whose every dialogue is rejected."""
    shortfall = getattr(backend_for(settings), "task_shortfall", None)
    lacking = await asyncio.to_thread(shortfall, tools, database) if shortfall else None
    if lacking:
        raise InputError(f"the {settings.backend} backend can make no task from the tools of {name}: {lacking}")


async def prepare_databases(names: list[list[SourceRef]], settings: Settings, given: list[Tool] | None,
                            concurrency: int, console: Console) -> list[PreparedDatabase]:
    """A toolset for every usable source, in the order given; the unusable ones are named and left out."""
    if len(names) == 1:
        with console.status("synthesizing the toolset"):
            return [await prepare_database(names[0], settings, given, console)]
    sem = asyncio.Semaphore(concurrency)
    columns = [TextColumn("[bold]toolsets"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("toolsets", total=len(names))

        async def one(name: list[SourceRef]) -> PreparedDatabase | None:
            async with sem:
                try:
                    return await prepare_database(name, settings, given, console)
                except InputError as exc:
                    console.print(f"[yellow]skipped database[/] {joined_name(name)}: {exc}", highlight=False,
                                  soft_wrap=True)
                    return None
                finally:
                    progress.advance(bar)

        prepared = await asyncio.gather(*(one(n) for n in names))
    usable = [p for p in prepared if p is not None]
    if not usable:
        raise InputError(f"none of the {len(names)} databases is usable (each was named above with its reason)")
    return usable


def toolsets_of(folder: RunFolder, config: RunConfig) -> dict[str, list[Tool]]:
    """Every toolset of a run folder, by its file."""
    return {s.toolset: load_toolset(folder.file(s.toolset)) for s in config.sources()}


def write_toolset(folder: RunFolder, report: Toolset, name: str = rf.TOOLSET) -> None:
    (folder.path / name).parent.mkdir(parents=True, exist_ok=True)
    folder.write_json(report_file_of(name), report.model_dump(mode="json"))
    folder.write_json(name, [t.toolset_entry() for t in report.tools])  # last: its presence means both are whole
