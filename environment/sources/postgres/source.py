"""The Postgres kind: a source is a database named by a libpq URI (`postgresql://…` or `postgres://…`).

The source is only read. A run copies it once into a template of its own (named from the run id and the
source, so every process of the run finds the same one, and each source of a run has its own), each
dialogue's sandbox is a database cloned from that template,
and the run drops them all when it ends (`--keep-sandboxes` leaves them). A resumed run first drops the
clones a killed attempt left behind; its dialogues rebuild theirs by replay.

A URI is recorded without its password (the run's config and every line name the source that way); the
password given on the command line is remembered by this process and handed to the processes it starts
through their environment, never a file. Elsewhere libpq finds it in PGPASSWORD or ~/.pgpass.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid

import psycopg

from environment.errors import InputError, SourceUnavailable
from environment.sources.base import Catalog, Sandbox as AnySandbox
from environment.sources.kind import SourceKind
from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.connection import maintenance_connection
from environment.sources.postgres.introspect import inspect_postgres
from environment.sources.postgres.sandbox import PostgresSandbox
from environment.sources.postgres.tool_checks import run_problems, static_problems
from environment.sources.runs import RunScope, current_run, used_outside_a_run
from environment.sources.sqlite.derive import derive_tools
from environment.sources.sqlite.tool_checks import interface_problems, sample_arguments
from state.postgres_uri import database_name, is_postgres_uri, without_password
from state.config import Settings
from state.schema import DatabaseSchema
from state.tools import Tool

log = logging.getLogger(__name__)
_URIS_VARIABLE = "FORGE_POSTGRES_SOURCE_URIS"  # identity -> the URI as given, for this process and its children


def _given_uris() -> dict[str, str]:
    try:
        return dict(json.loads(os.environ.get(_URIS_VARIABLE) or "{}"))
    except ValueError:
        return {}


def remember(uri: str) -> str:
    """The URI's identity (without its password); a password it holds is kept for this process's children."""
    name = without_password(uri)
    if name != uri:
        given = _given_uris()
        if given.get(name) != uri:
            os.environ[_URIS_VARIABLE] = json.dumps({**given, name: uri}, sort_keys=True)
    return name


class PostgresSource:
    """One Postgres database, read-only; each dialogue works on a clone of the run's copy of it."""

    kind = "postgres"
    simulated = False

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.name = without_password(uri)
        CloneManager(uri, "privileges").check_privileges()  # unreachable, refused, missing, no CREATEDB: one line
        self._catalog: Catalog | None = None
        self._managers: dict[str, CloneManager] = {}
        self._prepared: set[str] = set()
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return database_name(self.name) or "postgres"

    def catalog(self) -> Catalog:
        if self._catalog is None:
            database = inspect_postgres(self.uri)
            notes = [f"skipped table {s.name!r} of {self.name}: {s.reason}" for s in database.skipped]
            if not any(t.row_count for t in database.tables):
                raise InputError(f"every table of {self.name} is empty: tasks need rows to be grounded in "
                                 f"(add some data first)")
            self._catalog = Catalog(database=database, notes=notes)
        return self._catalog

    def manager(self, scope: RunScope) -> CloneManager:
        with self._lock:
            if scope.run_id not in self._managers:
                self._managers[scope.run_id] = CloneManager(self.uri, scope.run_id)
            manager = self._managers[scope.run_id]
            manager.keep = scope.keep_sandboxes  # a resume may say otherwise than the run did
            return manager

    def _ready(self, scope: RunScope) -> CloneManager:
        """The run's template, made when this process first needs it (the run's owner makes it first)."""
        manager = self.manager(scope)
        with self._lock:
            if scope.run_id not in self._prepared:
                manager.prepare()
                self._prepared.add(scope.run_id)
                used_outside_a_run(self.name, self.finish_run)
        return manager

    def open(self, seed: int) -> PostgresSandbox:
        try:
            manager = self._ready(current_run())
        except (InputError, psycopg.OperationalError) as exc:
            if isinstance(exc, InputError) and self._reachable():
                raise  # the server is there and said no: the user's to fix
            # it was checked when the run started: gone since (`resume` finishes the dialogue once it is back)
            raise SourceUnavailable(f"the PostgreSQL server of {self.name} went away: "
                                    f"{' '.join(str(exc).split())[:200]}") from None
        # the clone's name only has to be unique: nothing a dialogue sees depends on it
        return PostgresSandbox(manager, f"seed {seed} {uuid.uuid4().hex}", memo_capacity=Settings().read_memo_entries)

    def _reachable(self) -> bool:
        try:
            maintenance_connection(self.uri).close()
        except InputError:
            return False
        return True

    def check_tool(self, tool: Tool, sandbox: AnySandbox) -> str | None:
        assert isinstance(sandbox, PostgresSandbox)
        schema = self.catalog().database
        assert schema is not None
        problem = interface_problems(tool) or static_problems(tool, schema)
        if problem is not None:
            return problem
        try:
            arguments = sample_arguments(tool, schema, sandbox.reads())  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a statement whose sample values cannot be read is refused
            return f"could not build sample arguments: {exc}"
        return run_problems(tool, sandbox.clone, arguments)

    def derive_tools(self, database: DatabaseSchema, limit: int) -> list[Tool]:
        # the SQLite derivation writes in the schema's dialect (postgres); the tools are bound to this kind
        return [t.model_copy(update={"source": self.kind}) for t in derive_tools(database, limit)]

    # -- the run's template ----------------------------------------------------------------------------

    def start_run(self, scope: RunScope, resuming: bool) -> None:
        manager = self.manager(scope)
        if resuming:
            dropped = manager.drop_leftovers()
            if dropped:
                log.info("dropped %d database(s) a killed run left behind on %s", len(dropped), self.name)
        with self._lock:
            manager.prepare()
            self._prepared.add(scope.run_id)

    def finish_run(self, scope: RunScope) -> None:
        with self._lock:
            self._prepared.discard(scope.run_id)  # the template goes: a later run of the same id makes it again
        try:
            self.manager(scope).close()
        except (InputError, psycopg.Error) as exc:  # the server went away: `resume` drops them next time
            log.warning("could not drop the run's databases on %s: %s", self.name, exc)


class PostgresKind(SourceKind):
    """How a run names Postgres sources: libpq URIs."""

    kind = "postgres"
    named = True

    def __init__(self) -> None:
        self._sources: dict[str, PostgresSource] = {}
        self._lock = threading.Lock()

    def claims(self, name: str) -> bool:
        return is_postgres_uri(name)

    def expand(self, arg: str) -> list[str]:
        return [arg]

    def identity(self, name: str) -> str:
        return remember(name)

    def label(self, name: str) -> str:
        return database_name(name) or "postgres"

    def open(self, name: str) -> PostgresSource:
        """The source, checked once per process (connection, database, privileges)."""
        key = remember(name)
        uri = name if name != key else _given_uris().get(key, name)
        with self._lock:
            if key not in self._sources:
                self._sources[key] = PostgresSource(uri)
            return self._sources[key]

    def start_run(self, name: str, scope: RunScope, resuming: bool) -> None:
        self.open(name).start_run(scope, resuming)

    def finish_run(self, name: str, scope: RunScope) -> None:
        try:
            source = self.open(name)
        except InputError as exc:
            log.warning("could not drop the run's databases: %s", exc)
            return
        source.finish_run(scope)
