"""The SQLite kind: a source is a database file, named by its path (a folder or glob names many)."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from environment.errors import InputError
from environment.sources.base import Catalog, Sandbox as AnySandbox
from environment.sources.kind import SourceKind
from environment.sources.runs import RunScope, current_run, used_outside_a_run
from environment.sources.sqlite.derive import derive_tools
from environment.sources.sqlite.files import file_threshold_bytes, remove_scratch, scratch_folder
from environment.sources.sqlite.introspect import check_database_path, inspect_database
from environment.sources.sqlite.sandbox import Sandbox
from environment.sources.sqlite.tool_checks import check_tool
from state.config import Settings
from state.schema import DatabaseSchema
from state.tools import Tool

DATABASE_SUFFIXES = (".sqlite", ".sqlite3", ".db")

log = logging.getLogger(__name__)


class SqliteSource:
    """One SQLite file, opened read-only; each dialogue works on a copy (in memory, or a file for a big one)."""

    kind = "sqlite"
    simulated = False

    def __init__(self, name: str) -> None:
        self.name = str(check_database_path(name))

    @property
    def label(self) -> str:
        return Path(self.name).stem

    def catalog(self) -> Catalog:
        database = inspect_database(self.name)
        notes = [f"skipped table {s.name!r} of {Path(self.name).name}: {s.reason}" for s in database.skipped]
        if not any(t.row_count for t in database.tables):
            raise InputError(f"every table of {self.name} is empty: tasks need rows to be grounded in "
                             f"(add some data first)")
        return Catalog(database=database, notes=notes)

    def open(self, seed: int) -> Sandbox:
        """An in-memory copy; above the file threshold a file copy in the run's scratch folder (files.py)."""
        memo = Settings().read_memo_entries
        if Path(self.name).stat().st_size <= file_threshold_bytes():
            return Sandbox(self.name, memo_capacity=memo)
        run = current_run()
        used_outside_a_run(self.name, _remove_scratch)  # outside a run, the folder goes when the process exits
        return Sandbox(self.name, scratch_folder(run.run_id), keep=run.keep_sandboxes, memo_capacity=memo)

    def check_tool(self, tool: Tool, sandbox: AnySandbox) -> str | None:
        assert isinstance(sandbox, Sandbox)
        return check_tool(tool, inspect_database(self.name), sandbox)

    def derive_tools(self, database: DatabaseSchema, limit: int) -> list[Tool]:
        return derive_tools(database, limit)


class SqliteKind(SourceKind):
    """How a run names SQLite sources: files, folders searched for database files, globs."""

    kind = "sqlite"
    named = True

    def claims(self, name: str) -> bool:
        return "://" not in name  # a plain path; other kinds are named by a scheme

    def expand(self, arg: str) -> list[str]:
        """Every file an argument names: a file as given, a folder searched for SQLite files, a glob expanded."""
        path = Path(arg)
        if path.is_dir():
            hits = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in DATABASE_SUFFIXES)
            if not hits:
                raise InputError(f"no SQLite database under {path}: a folder is searched for "
                                 f"{', '.join('*' + s for s in DATABASE_SUFFIXES)} files")
            return [str(h) for h in hits]
        if any(ch in arg for ch in "*?[") and not path.exists():
            hits = sorted(Path(h) for h in glob.glob(arg, recursive=True) if Path(h).is_file())
            if not hits:
                raise InputError(f"no file matches {arg} (pass --db with files, a folder or a glob)")
            return [str(h) for h in hits]
        return [arg]

    def open(self, name: str) -> SqliteSource:
        return SqliteSource(name)

    def start_run(self, name: str, scope: RunScope, resuming: bool) -> None:
        """A resumed run first removes the file sandboxes its killed attempt left behind."""
        if resuming:
            removed = remove_scratch(scope.run_id)
            if removed:
                log.info("removed %d file sandbox(es) a killed run left behind", removed)

    def finish_run(self, name: str, scope: RunScope) -> None:
        _remove_scratch(scope)


def _remove_scratch(scope: RunScope) -> None:
    if not scope.keep_sandboxes:
        remove_scratch(scope.run_id)
