"""Accept a SQL tool for a Postgres source only once its statement parses as Postgres, its placeholders
equal its parameters, it writes no view, it draws nothing at random, the server can plan it (EXPLAIN) and
it runs on a clone with sample arguments (a trial, rolled back with the sequences it drew).

Checks that do not depend on the source (the tool's name, its parameters' JSON Schema) and the choice of
sample arguments are the caller's: they are the same for every SQL source.
"""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp

from environment.sources.postgres.execute import PostgresClone
from environment.sources.postgres.sqltext import to_psycopg
from state.schema import DatabaseSchema
from state.tools import Tool

_READ = (exp.Select, exp.Union, exp.Intersect, exp.Except)
_WRITE = (exp.Insert, exp.Update, exp.Delete)
# What would make a replay differ. The clock functions are not here: they read the dialogue's clock.
_UNREPEATABLE = {"random", "setseed", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v4", "txid_current",
                 "pg_backend_pid", "inet_client_addr", "pg_current_xact_id", "timeofday"}


def _written_table(statement: exp.Expression) -> str:
    target = statement.this
    if isinstance(target, exp.Schema):  # INSERT INTO t (columns …)
        target = target.this
    return target.name if isinstance(target, exp.Table) else ""


def static_problems(tool: Tool, schema: DatabaseSchema) -> str | None:
    """What is wrong with a tool's statement without running it, or None."""
    if not tool.sql:
        return "the tool has no SQL"
    try:
        statements = [s for s in sqlglot.parse(tool.sql, read="postgres") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        return f"SQL does not parse as Postgres: {str(exc).splitlines()[0]}"
    if len(statements) != 1:
        return f"SQL must be exactly one statement, found {len(statements)}"
    statement = statements[0]
    kind = "read" if isinstance(statement, _READ) else "write" if isinstance(statement, _WRITE) else ""
    if not kind:
        return f"only SELECT, INSERT, UPDATE and DELETE are allowed, not {statement.key.upper()}"
    if kind != tool.mode:
        return f"mode is {tool.mode!r} but the SQL is a {kind}"
    placeholders, parameters = set(to_psycopg(tool.sql).names), set(tool.properties)
    if placeholders != parameters:
        return (f"placeholders and parameters differ: only in the SQL {sorted(placeholders - parameters)}, "
                f"only in the parameters {sorted(parameters - placeholders)}")
    if kind == "write":
        written = _written_table(statement)
        views = {t.name for t in schema.tables if t.read_only}
        if written in views:
            return f"writes to {written!r}, a view: views are read-only"
    for func in statement.find_all(exp.Func):
        name = "random" if isinstance(func, exp.Rand) else func.name.lower() if isinstance(func, exp.Anonymous) \
            else func.key
        if name in _UNREPEATABLE:
            return f"calls {name}(), whose result a replay would not repeat"
    return None


def run_problems(tool: Tool, clone: PostgresClone, arguments: dict[str, Any], clock: str | None = None) -> str | None:
    """The server plans the statement, then runs it once with the arguments; both are rolled back."""
    plan = clone.execute(f"EXPLAIN {tool.sql}", arguments, tool.mode, declared=tool.properties, trial=True)
    if not plan.ok:
        return f"the server cannot plan it: {plan.error.message}"
    result = clone.execute(tool.sql, arguments, tool.mode, declared=tool.properties, clock=clock, trial=True)
    if result.error is not None and not (tool.kind == "delete" and result.error.type == "constraint_violation"):
        # A delete refused by a foreign key is the data protecting itself, not a broken tool.
        return f"failed on sample arguments {arguments}: {result.error.message}"
    return None


def check_tool(tool: Tool, schema: DatabaseSchema, clone: PostgresClone, arguments: dict[str, Any],
               clock: str | None = None) -> str | None:
    """The reason a tool is refused, or None when it is accepted."""
    return static_problems(tool, schema) or run_problems(tool, clone, arguments, clock)
