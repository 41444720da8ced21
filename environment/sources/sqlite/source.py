"""The SQLite kind: a source is a database file, named by its path (a folder or glob names many)."""

from __future__ import annotations

import glob
from pathlib import Path

from environment.errors import InputError
from environment.sources.base import Catalog, Sandbox as AnySandbox
from environment.sources.sqlite.derive import derive_tools
from environment.sources.sqlite.introspect import check_database_path, inspect_database
from environment.sources.sqlite.sandbox import Sandbox
from environment.sources.sqlite.tool_checks import check_tool
from state.schema import DatabaseSchema
from state.tools import Tool

DATABASE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


class SqliteSource:
    """One SQLite file, opened read-only; each dialogue works on an in-memory copy."""

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
        return Sandbox(self.name)

    def check_tool(self, tool: Tool, sandbox: AnySandbox) -> str | None:
        assert isinstance(sandbox, Sandbox)
        return check_tool(tool, inspect_database(self.name), sandbox)

    def derive_tools(self, database: DatabaseSchema, limit: int) -> list[Tool]:
        return derive_tools(database, limit)


class SqliteKind:
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
