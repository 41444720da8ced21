"""The databases of a run: which files `--db` names, and one checked toolset for each, made concurrently.

With several databases, one that is not a database or yields no usable toolset is reported in one line and
skipped; with a single one, the same problem is the user's error and stops the run before anything is written.
"""

from __future__ import annotations

import asyncio
import glob
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backends.registry import backend_for
from environment.errors import InputError, read_json_input
from environment.sources.sqlite.introspect import inspect_database
from environment.sources.sqlite.sandbox import Sandbox
from environment.sources.sqlite.tool_checks import check_tool
from nodes.tool_synthesizer import synthesize_toolset
from runner import run_folder as rf
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings
from state.tools import Tool, Toolset

DATABASE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
TOOLSETS_DIR = "toolsets"


def database_paths(args: list[str]) -> list[Path]:
    """Every file the --db arguments name: files as given, folders searched for SQLite files, globs expanded."""
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            hits = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in DATABASE_SUFFIXES)
            if not hits:
                raise InputError(f"no SQLite database under {path}: a folder is searched for "
                                 f"{', '.join('*' + s for s in DATABASE_SUFFIXES)} files")
        elif any(ch in arg for ch in "*?[") and not path.exists():
            hits = sorted(Path(h) for h in glob.glob(arg, recursive=True) if Path(h).is_file())
            if not hits:
                raise InputError(f"no file matches {arg} (pass --db with files, a folder or a glob)")
        else:
            hits = [path]
        found.extend(hits)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def toolset_files(paths: list[Path]) -> list[str]:
    """A readable, distinct toolset file name per database (its stem; its folder too when stems repeat)."""
    stems = [p.stem for p in paths]
    names = []
    for path, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{path.parent.name}_{stem}"
        while name in names:
            name += "_"
        names.append(name)
    return [f"{TOOLSETS_DIR}/{n}.json" for n in names]


class PreparedDatabase(BaseModel):
    path: str
    report: Toolset


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


async def prepare_database(path: Path, settings: Settings, given: list[Tool] | None,
                           console: Console) -> PreparedDatabase:
    """Inspect one database and make (or check) its toolset; an InputError says why it cannot be used."""
    database = await asyncio.to_thread(inspect_database, path)
    for skipped in database.skipped:
        console.print(f"[dim]skipped table {skipped.name!r} of {path.name}: {skipped.reason}[/]")
    if not any(t.row_count for t in database.tables):
        raise InputError(f"every table of {path} is empty: tasks need rows to be grounded in (add some data first)")
    if given is not None:
        misfit = await asyncio.to_thread(_misfits, given, database)
        if misfit:
            raise InputError(f"the toolset does not fit {path}: {misfit} (was it made for another database?)")
        report = Toolset(tools=given, proposed=len(given))
    else:
        report, _ = await synthesize_toolset(database, backend_for(settings), settings)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {path.name}: {note}")
    if not report.tools:
        raise InputError(f"no tool could be built for {path}: "
                         + "; ".join(f"{d.name}: {d.reason}" for d in report.dropped[:3]))
    return PreparedDatabase(path=str(Path(path).resolve()), report=report)


async def prepare_databases(paths: list[Path], settings: Settings, given: list[Tool] | None, concurrency: int,
                            console: Console) -> list[PreparedDatabase]:
    """A toolset for every usable database, in the order given; the unusable ones are named and left out."""
    if len(paths) == 1:
        with console.status("synthesizing the toolset"):
            return [await prepare_database(paths[0], settings, given, console)]
    sem = asyncio.Semaphore(concurrency)
    columns = [TextColumn("[bold]toolsets"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("toolsets", total=len(paths))

        async def one(path: Path) -> PreparedDatabase | None:
            async with sem:
                try:
                    return await prepare_database(path, settings, given, console)
                except InputError as exc:
                    console.print(f"[yellow]skipped database[/] {path}: {exc}", highlight=False, soft_wrap=True)
                    return None
                finally:
                    progress.advance(bar)

        prepared = await asyncio.gather(*(one(p) for p in paths))
    usable = [p for p in prepared if p is not None]
    if not usable:
        raise InputError(f"none of the {len(paths)} databases is usable (each was named above with its reason)")
    return usable


def load_toolset(path: Path) -> list[Tool]:
    """Tools from a toolset.json written by an earlier run."""
    entries = read_json_input(path, "toolset")
    try:
        return [Tool.model_validate(e) for e in entries]
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a toolset.json (a JSON list of tools with sql and mode): {path}: "
                         f"{str(exc).splitlines()[0]}") from None


def toolsets_of(folder: RunFolder, config: RunConfig) -> dict[str, list[Tool]]:
    """Every toolset of a run folder, by its file."""
    return {s.toolset: load_toolset(folder.file(s.toolset)) for s in config.sources()}


def report_file_of(toolset_file: str) -> str:
    """toolset.json keeps its report in toolset_report.json; toolsets/x.json in toolsets/x.report.json."""
    return rf.TOOLSET_REPORT if toolset_file == rf.TOOLSET else toolset_file.removesuffix(".json") + ".report.json"


def write_toolset(folder: RunFolder, report: Toolset, name: str = rf.TOOLSET) -> None:
    (folder.path / name).parent.mkdir(parents=True, exist_ok=True)
    folder.write_json(report_file_of(name), report.model_dump(mode="json"))
    folder.write_json(name, [t.toolset_entry() for t in report.tools])  # last: its presence means both are whole
