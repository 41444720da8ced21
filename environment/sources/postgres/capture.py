"""Change capture for Postgres clones: triggers installed once in the run's template, so every clone logs
the rows its own writes touch.

`install_change_capture` (called where the template is prepared) gives each table with a primary key a log
table `forge_capture.log_<n>` of the same columns and a row-level trigger that appends to it, numbered by
one sequence: the old row of an UPDATE or DELETE (present), and the new row of an INSERT or UPDATE (its key
as filled: absent before). `ON CONFLICT … DO UPDATE`, cascades and the schema's own triggers change rows
through ordinary row events, so they are logged too. A clone reads the fold like a SQLite sandbox does
(sqlite/changes.py): per key, the first row logged since a mark is the row as it was then; the row as it is
now is read by key. A table without a primary key (its rows keyed by every value) is compared by snapshots
of that table alone.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql as pgsql

CAPTURE_SCHEMA = "forge_capture"
_LOG_FUNCTION = f"""
CREATE FUNCTION {CAPTURE_SCHEMA}.log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    EXECUTE format('INSERT INTO {CAPTURE_SCHEMA}.%I SELECT nextval(''{CAPTURE_SCHEMA}.seq''), true, ($1).*',
                   TG_ARGV[0]) USING OLD;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    EXECUTE format('INSERT INTO {CAPTURE_SCHEMA}.%I SELECT nextval(''{CAPTURE_SCHEMA}.seq''), false, ($1).*',
                   TG_ARGV[0]) USING NEW;
  END IF;
  RETURN NULL;
END $$
"""
_KEYED_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s, %s) AND n.nspname NOT LIKE 'pg_toast%%'
  AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
ORDER BY 1, 2
"""


def install_change_capture(conn: psycopg.Connection, clock_schema: str) -> None:
    """In the run's template (one transaction with the caller's): the log tables, their map and the triggers.
    A role that may not add triggers to a table raises InsufficientPrivilege (the caller decides)."""
    conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(CAPTURE_SCHEMA)))
    conn.execute(pgsql.SQL("CREATE SEQUENCE {}.seq").format(pgsql.Identifier(CAPTURE_SCHEMA)))
    conn.execute(pgsql.SQL("CREATE TABLE {}.tables (log text PRIMARY KEY, schema_name text, table_name text)")
                 .format(pgsql.Identifier(CAPTURE_SCHEMA)))
    conn.execute(_LOG_FUNCTION)
    for n, (schema, table) in enumerate(conn.execute(_KEYED_TABLES, (clock_schema, CAPTURE_SCHEMA)).fetchall()):
        log = f"log_{n}"
        target = pgsql.Identifier(schema, table)
        conn.execute(pgsql.SQL("CREATE TABLE {} (forge_seq bigint, forge_present boolean, LIKE {})").format(
            pgsql.Identifier(CAPTURE_SCHEMA, log), target))
        conn.execute(pgsql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(
            pgsql.Identifier(CAPTURE_SCHEMA, "tables")), (log, schema, table))
        conn.execute(pgsql.SQL("CREATE TRIGGER forge_capture AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
                               "EXECUTE FUNCTION {}.log({})").format(
            target, pgsql.Identifier(CAPTURE_SCHEMA), pgsql.Literal(log)))


def capture_logs(conn: psycopg.Connection, schema: str) -> dict[str, str] | None:
    """A clone's log table per table of `schema`; None when its template has no change capture."""
    installed = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (CAPTURE_SCHEMA,)).fetchone()
    if not installed:
        return None
    return {table: log for log, table in conn.execute(pgsql.SQL(
        "SELECT log, table_name FROM {} WHERE schema_name = %s").format(
        pgsql.Identifier(CAPTURE_SCHEMA, "tables")), (schema,)).fetchall()}


def log_position(conn: psycopg.Connection) -> int:
    last, called = conn.execute(pgsql.SQL("SELECT last_value, is_called FROM {}").format(
        pgsql.Identifier(CAPTURE_SCHEMA, "seq"))).fetchone()
    return int(last) if called else 0


def first_logged(conn: psycopg.Connection, log: str, since: int, key_at: list[int]
                 ) -> dict[tuple, tuple[Any, ...] | None]:
    """Per key logged since a position, the first row logged (None: it had no row then); raw values."""
    first: dict[tuple, tuple[Any, ...] | None] = {}
    for raw in conn.execute(pgsql.SQL("SELECT * FROM {} WHERE forge_seq > %s ORDER BY forge_seq").format(
            pgsql.Identifier(CAPTURE_SCHEMA, log)), (since,)).fetchall():
        present, row = raw[1], tuple(raw[2:])
        first.setdefault(tuple(row[i] for i in key_at), row if present else None)
    return first
