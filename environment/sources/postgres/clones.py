"""One database per dialogue: the source is cloned once into a run-private template, and each dialogue gets
a database cloned from that template, dropped when it ends (kept on request).

Every database a run creates for a source is named `forge_<run tag>_<source tag>_…` (hashes of the run id and
of the source's URI without its password), so each source of a run has its own template even where several
share a server, and the clones a killed run left behind are found by that prefix and dropped by the next run
with the same id. The source is
only ever read (as CREATE DATABASE … TEMPLATE's template); the template is where the clock is installed:
a `forge_clock` schema whose now() reads the dialogue's clock, and every column default that read the wall
clock rewritten to read it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading

import psycopg
from psycopg import sql as pgsql

from environment.errors import InputError
from environment.sources.postgres.capture import install_change_capture
from environment.sources.postgres.connection import connect, maintenance_connection
from environment.sources.postgres.sqltext import CLOCK_SCHEMA, clock_default
from state.config import Settings
from state.postgres_uri import database_name, with_database, without_password

PREFIX = "forge_"
log = logging.getLogger(__name__)
_READY = "forge template ready"  # the template's comment once its clock is in place: a half-made one is redone
_CLOCK_FUNCTIONS = ("now", "transaction_timestamp", "statement_timestamp", "clock_timestamp")
_CLOCK_BODY = ("SELECT coalesce(nullif(current_setting('forge.clock', true), '')::timestamptz, "
               "pg_catalog.transaction_timestamp())")
_CLOCK_COLUMNS = """
SELECT n.nspname, c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attrdef d
JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %s) AND n.nspname NOT LIKE 'pg_toast%%'
  AND c.relkind IN ('r', 'p') AND a.attgenerated = ''
ORDER BY 1, 2, 3
"""


def clone_strategy(size_bytes: int, server_version: int, file_copy_above_mb: float) -> str | None:
    """How CREATE DATABASE copies the template: WAL_LOG writes every block to the write-ahead log (no
    checkpoint: cheap for a small template), FILE_COPY checkpoints and copies the files whole (cheaper once the
    template is big). None before Postgres 15, which has no STRATEGY and always copies files."""
    if server_version < 150000:
        return None
    return "FILE_COPY" if size_bytes > file_copy_above_mb * 2**20 else "WAL_LOG"


def run_tag(run_id: str) -> str:
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:10]


def source_tag(source_uri: str) -> str:
    """The source's part of its databases' names: the same in every process of the run, whatever password
    the URI was given with."""
    return hashlib.sha256(without_password(source_uri).encode("utf-8")).hexdigest()[:8]


# what runs made before each source had a tag of its own: `forge_<run tag>_template`, `forge_<run tag>_<clone>`
_UNTAGGED = re.compile(r"^(template|[0-9a-f]{16})$")


class CloneManager:
    """The databases of one run on one source: its template and a clone per dialogue."""

    def __init__(self, source_uri: str, run_id: str, keep: bool = False) -> None:
        self.source_uri = source_uri
        self.source = database_name(source_uri)
        if not self.source:
            raise InputError(f"name the database in the URI: {without_password(source_uri)} "
                             f"(postgresql://…/DATABASE)")
        self.run_prefix = f"{PREFIX}{run_tag(run_id)}_"
        self.prefix = f"{self.run_prefix}{source_tag(source_uri)}_"
        self.template = f"{self.prefix}template"
        self.keep = keep
        self._lock = threading.Lock()  # the template is made once; clones are made and dropped concurrently
        self._strategy: str | None = None  # how clones of the template are made, once its size is known

    def clone_name(self, dialogue_id: str) -> str:
        return f"{self.prefix}{hashlib.sha256(dialogue_id.encode('utf-8')).hexdigest()[:16]}"

    def uri_of(self, database: str) -> str:
        return with_database(self.source_uri, database)

    # -- before the run --------------------------------------------------------------------------------

    def check_privileges(self) -> None:
        """Stop before the run starts, in one line, where the role may not clone: CREATE DATABASE needs the
        CREATEDB privilege, and copying a database that is not a template needs its ownership."""
        with connect(self.source_uri, autocommit=True) as conn:
            role, may_create, is_super, owns, is_template = conn.execute(
                "SELECT r.rolname, r.rolcreatedb, r.rolsuper, d.datdba = r.oid, d.datistemplate "
                "FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()"
            ).fetchone()
        if not (may_create or is_super):
            raise InputError(f"role {role!r} lacks the CREATEDB privilege, which a database per dialogue needs "
                             f"(ALTER ROLE {role} CREATEDB; or connect as a role that has it)")
        if not (owns or is_template or is_super):
            raise InputError(f"role {role!r} does not own database {self.source!r}, and copying it as a template "
                             f"needs ownership (ALTER DATABASE {self.source} OWNER TO {role}, or "
                             f"ALTER DATABASE {self.source} IS_TEMPLATE true)")

    def prepare(self) -> None:
        """The run's template: the source copied once, with the dialogue clock installed. A template left by
        an earlier attempt of the same run is kept (its dialogues replay onto the same data)."""
        self.check_privileges()
        with self._lock, maintenance_connection(self.source_uri) as admin:
            ready = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                                  (self.template,)).fetchone()
            if ready and ready[0] == _READY:
                return
            if ready:
                self._drop(admin, self.template)
            self._create(admin, self.template, self.source, "the source")
        try:
            self._install_clock(self.uri_of(self.template))
            self._install_capture(self.uri_of(self.template))
        except BaseException:
            self.drop_database(self.template)
            raise
        with self._lock, maintenance_connection(self.source_uri) as admin:
            admin.execute(pgsql.SQL("COMMENT ON DATABASE {} IS {}").format(pgsql.Identifier(self.template),
                                                                          pgsql.Literal(_READY)))

    def strategy(self, admin: psycopg.Connection) -> str | None:
        """The clone strategy for this run's template, picked by its size once (clone_strategy)."""
        if self._strategy is None:
            size = admin.execute("SELECT pg_database_size(%s)", (self.template,)).fetchone()[0]
            self._strategy = clone_strategy(size, admin.info.server_version,
                                            Settings().postgres_file_copy_above_mb) or ""
        return self._strategy or None

    def _create(self, admin: psycopg.Connection, name: str, template: str, what: str,
                strategy: str | None = None) -> None:
        statement = pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(pgsql.Identifier(name),
                                                                      pgsql.Identifier(template))
        if strategy:
            statement = pgsql.SQL("{} STRATEGY {}").format(statement, pgsql.SQL(strategy))
        try:
            admin.execute(statement)
        except psycopg.errors.ObjectInUse as exc:
            raise InputError(f"cannot copy {what} ({template}): other sessions are connected to it, and CREATE "
                             f"DATABASE … TEMPLATE needs it to themselves ({str(exc).splitlines()[-1].strip()})") \
                from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise InputError(f"cannot copy {what} ({template}): {str(exc).splitlines()[0]}") from None

    def _install_clock(self, uri: str) -> None:
        """In the template: forge_clock.now() and friends read the setting `forge.clock` (the dialogue's time,
        set per call), and every default that read the wall clock reads them instead."""
        with connect(uri) as conn:
            try:
                conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(CLOCK_SCHEMA)))
                for function in _CLOCK_FUNCTIONS:
                    conn.execute(pgsql.SQL("CREATE FUNCTION {}.{}() RETURNS timestamptz LANGUAGE sql STABLE AS {}")
                                 .format(pgsql.Identifier(CLOCK_SCHEMA), pgsql.Identifier(function),
                                         pgsql.Literal(_CLOCK_BODY)))
                conn.execute(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(pgsql.Identifier(CLOCK_SCHEMA)))
                for schema, table, column, default in conn.execute(_CLOCK_COLUMNS, (CLOCK_SCHEMA,)).fetchall():
                    rewritten = clock_default(default)
                    if rewritten is not None:
                        conn.execute(pgsql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                            pgsql.Identifier(schema, table), pgsql.Identifier(column), pgsql.SQL(rewritten)))
                conn.commit()
            except psycopg.errors.InsufficientPrivilege as exc:
                raise InputError(f"cannot set the dialogue clock in the run's copy of {self.source!r}: "
                                 f"{str(exc).splitlines()[0]} (the role must own the tables whose defaults read "
                                 f"the clock)") from None

    def _install_capture(self, uri: str) -> None:
        """In the template: triggers that log each clone's row changes (capture.py), so a task's diff costs the
        rows it changed. A role that may not add triggers goes without: its diffs compare snapshots."""
        with connect(uri) as conn:
            try:
                install_change_capture(conn, CLOCK_SCHEMA)
                conn.commit()
            except psycopg.errors.InsufficientPrivilege as exc:
                conn.rollback()
                log.warning("no change capture in the run's copy of %s (diffs compare whole snapshots): %s",
                            self.source, str(exc).splitlines()[0])

    # -- per dialogue ------------------------------------------------------------------------------------

    def clone(self, dialogue_id: str) -> str:
        """A fresh database for a dialogue, cloned from the template (one left by an earlier attempt is
        replaced); its URI."""
        name = self.clone_name(dialogue_id)
        with maintenance_connection(self.source_uri) as admin:  # clones of one template may be made at once
            self._drop(admin, name)
            self._create(admin, name, self.template, "the run's template", self.strategy(admin))
            admin.execute(pgsql.SQL("COMMENT ON DATABASE {} IS {}").format(
                pgsql.Identifier(name), pgsql.Literal(f"forge clone of {dialogue_id}")))
        return self.uri_of(name)

    def release(self, dialogue_id: str) -> None:
        """The dialogue ended: its database goes, unless the run keeps them for inspection."""
        if not self.keep:
            self.drop_database(self.clone_name(dialogue_id))

    def drop_database(self, name: str) -> None:
        with maintenance_connection(self.source_uri) as admin:
            self._drop(admin, name)

    def _drop(self, admin: psycopg.Connection, name: str) -> None:
        if not (name.startswith(self.prefix) or self._untagged(name)):  # never anything this run did not create
            raise ValueError(f"refusing to drop {name!r}: not a database of this run")
        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))

    # -- after the run, or after a killed one ----------------------------------------------------------

    def _untagged(self, name: str) -> bool:
        return name.startswith(self.run_prefix) and bool(_UNTAGGED.match(name[len(self.run_prefix):]))

    def databases(self) -> list[str]:
        """Every database of this run for this source on the server (template included), by name; with those
        an attempt of the run made before sources had tags of their own (a resumed old run drops them too)."""
        pattern = self.run_prefix.replace("_", "\\_") + "%"
        with maintenance_connection(self.source_uri) as admin:
            names = [r[0] for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
                                                 (pattern,))]
        return [n for n in names if n.startswith(self.prefix) or self._untagged(n)]

    def drop_leftovers(self, keep_dialogues: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Drop the clones a killed run left behind (not the template, nor the clones of `keep_dialogues`);
        the names dropped."""
        spared = {self.template} | {self.clone_name(d) for d in keep_dialogues}
        dropped = [name for name in self.databases() if name not in spared]
        for name in dropped:
            self.drop_database(name)
        return dropped

    def close(self) -> None:
        """The run is over: the template goes (unless kept), and every clone not kept with it."""
        if self.keep:
            return
        for name in self.databases():
            self.drop_database(name)

