"""Accept a SQL tool only once it parses, its placeholders equal its parameters, and it runs."""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
from typing import Any

import jsonschema
import sqlglot
from sqlglot import exp

from environment.sources.sqlite.clock import CLOCK_PREFIX
from environment.sources.sqlite.introspect import DIALECT
from environment.sources.sqlite.sandbox import Sandbox, placeholders
from environment.sources.sqlite.names import quote_ident
from state.schema import DatabaseSchema, Table
from state.tools import Tool

TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_READ = (exp.Select, exp.Union, exp.Intersect, exp.Except)
_WRITE = (exp.Insert, exp.Update, exp.Delete)
_NONDETERMINISTIC = (exp.Rand, exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime)
_PREDICATES = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.Between, exp.In, exp.Is)


def interface_problems(tool: Tool) -> str | None:
    """What is wrong with a tool's name and parameters, whatever its source, or None."""
    if not TOOL_NAME.match(tool.name):
        return f"name {tool.name!r} is not snake_case (lowercase letters, digits, underscores)"
    params = tool.parameters
    if params.get("type") != "object" or not isinstance(params.get("properties", {}), dict):
        return "parameters must be a JSON Schema of type object with properties"
    try:
        jsonschema.validators.validator_for(params).check_schema(params)
    except jsonschema.SchemaError as exc:
        return f"parameters are not a valid JSON Schema: {exc.message}"
    missing = set(tool.required) - set(tool.properties)
    if missing:
        return f"required lists unknown parameters: {sorted(missing)}"
    return None


def static_problems(tool: Tool, dialect: str = DIALECT) -> str | None:
    """What is wrong with a tool without running it (its SQL read in the source's dialect), or None."""
    problem = interface_problems(tool)
    if problem is not None:
        return problem
    try:
        statements = [s for s in sqlglot.parse(tool.sql, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        return f"SQL does not parse: {str(exc).splitlines()[0]}"
    if len(statements) != 1:
        return f"SQL must be exactly one statement, found {len(statements)}"
    statement = statements[0]
    if isinstance(statement, _READ):
        kind = "read"
    elif isinstance(statement, _WRITE):
        kind = "write"
    else:
        return f"only SELECT, INSERT, UPDATE and DELETE are allowed, not {statement.key.upper()}"
    if kind != tool.mode:
        return f"mode is {tool.mode!r} but the SQL is a {kind}"
    for func in statement.find_all(exp.Func):
        if isinstance(func, _NONDETERMINISTIC) or (
            isinstance(func, exp.Anonymous) and func.name.lower() in {"random", "randomblob", "changes"}
        ) or any(isinstance(a, exp.Literal) and a.this.lower() == "now" for a in func.args.values() if a is not None):
            return f"SQL uses a non-deterministic function ({func.sql(dialect=dialect)}): results could not be replayed"
    names = set(placeholders(tool.sql, dialect))
    if any(name.startswith(CLOCK_PREFIX) for name in names):
        return f"placeholders starting with {CLOCK_PREFIX!r} are reserved for the dialogue's clock"
    if names != set(tool.properties):
        return (
            f"placeholders {sorted(names)} differ from parameters {sorted(tool.properties)}"
        )
    return None


def placeholder_columns(sql: str, dialect: str = DIALECT) -> dict[str, tuple[str, str]]:
    """For each placeholder: the column it is compared with or assigned to, and its role."""
    return dict(_placeholder_columns(sql, dialect))


@functools.lru_cache(maxsize=4096)
def _placeholder_columns(sql: str, dialect: str) -> tuple[tuple[str, tuple[str, str]], ...]:
    return tuple(_find_placeholder_columns(sql, dialect).items())


def group_columns(sql: str, dialect: str = DIALECT) -> list[str]:
    """The columns a statement groups by, in order."""
    group = sqlglot.parse_one(sql, read=dialect).args.get("group")
    return [c.name for c in group.find_all(exp.Column)] if group is not None else []


def _find_placeholder_columns(sql: str, dialect: str) -> dict[str, tuple[str, str]]:
    """For each placeholder: the column it is compared with or assigned to, and its role."""
    statement = sqlglot.parse_one(sql, read=dialect)
    found: dict[str, tuple[str, str]] = {}
    if isinstance(statement, exp.Insert) and isinstance(statement.this, exp.Schema):
        columns = [c.name for c in statement.this.expressions]
        values = statement.expression
        for tup in values.expressions if isinstance(values, exp.Values) else []:
            for col, val in zip(columns, tup.expressions):
                if isinstance(val, exp.Placeholder):
                    found.setdefault(val.name, (col, "assign"))
    for ph in statement.find_all(exp.Placeholder):
        if ph.name in found:
            continue
        node = ph.parent
        while node is not None and not isinstance(node, _PREDICATES):
            node = node.parent
        if node is None:
            continue
        column = next(iter(node.find_all(exp.Column)), None)
        if column is None:
            continue
        role = "match"
        if isinstance(node, exp.Between):
            role = "low" if node.args.get("low") is ph or ph in node.args["low"].find_all(exp.Placeholder) else "high"
        elif isinstance(node, exp.EQ) and isinstance(node.parent, exp.Update) and node in node.parent.expressions:
            role = "assign"
        found[ph.name] = (column.name, role)
    return found


def _tables_of(sql: str, schema: DatabaseSchema) -> list[str]:
    names = {t.name for t in sqlglot.parse_one(sql, read=schema.dialect or DIALECT).find_all(exp.Table)}
    return [t.name for t in schema.tables if t.name in names]


def sample_arguments(tool: Tool, schema: DatabaseSchema, sandbox: Sandbox) -> dict[str, Any]:
    """Arguments drawn from the data itself, so lookups hit and inserts do not collide."""
    mapping = placeholder_columns(tool.sql, schema.dialect or DIALECT)
    tables = _tables_of(tool.sql, schema) or [tool.table]
    free = _free_key(tool, schema, sandbox, mapping, tables)
    args: dict[str, Any] = {}
    for name, prop in tool.properties.items():
        json_type = prop.get("type", "string")
        if isinstance(json_type, list):
            json_type = next((t for t in json_type if t != "null"), "string")
        column, role = mapping.get(name, (name, "match"))
        value = None
        for table_name in tables if name not in free else []:
            table = schema.table(table_name)
            if column not in {c.name for c in table.columns}:
                continue
            col = table.column(column)
            q_col, q_table = quote_ident(column), quote_ident(table_name)
            if role == "assign" and col.unique:
                value = _fresh_value(sandbox, q_table, q_col, json_type)
            else:
                agg = {"low": "MIN", "high": "MAX"}.get(role)
                sql = (
                    f"SELECT {agg}({q_col}) FROM {q_table}" if agg
                    else f"SELECT {q_col} FROM {q_table} WHERE {q_col} IS NOT NULL LIMIT 1"
                )
                row = sandbox.conn.execute(sql).fetchone()
                value = row[0] if row else None
                if value is None and role == "assign":
                    value = _parent_value(table, column, schema, sandbox)
            break
        if name in free:
            value = free[name]
        if value is None or isinstance(value, bytes):
            value = _default_for(json_type, name, prop)
        if json_type == "boolean":
            value = bool(value)
        elif json_type == "string" and not isinstance(value, str):
            value = str(value)
        elif json_type == "integer" and not isinstance(value, int):
            value = _default_for(json_type, name, prop)
        if "enum" in prop and value not in prop["enum"]:
            value = prop["enum"][0]
        args[name] = value
    return args


def _parent_value(table: Table, column: str, schema: DatabaseSchema, sandbox: Sandbox) -> Any:
    """A value of the parent key a foreign-key column points at (for inserts into an empty child table)."""
    for fk in table.foreign_keys:
        if fk.column != column or fk.ref_table not in {t.name for t in schema.tables} or not fk.ref_column:
            continue
        q_ref, q_parent = quote_ident(fk.ref_column), quote_ident(fk.ref_table)
        try:
            row = sandbox.conn.execute(f"SELECT {q_ref} FROM {q_parent} WHERE {q_ref} IS NOT NULL LIMIT 1").fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None
    return None


_KEY_CANDIDATES = 50
_KEY_COMBINATIONS = 20_000


def _free_key(tool: Tool, schema: DatabaseSchema, sandbox: Sandbox, mapping: dict[str, tuple[str, str]],
              tables: list[str]) -> dict[str, Any]:
    """For an INSERT that sets a primary key made of several columns, or of a foreign-key column: a key
    not taken yet, built from values the key columns may hold (parent keys for foreign-key columns,
    existing or fresh values for the others), so the check does not collide with a row already there.

    Empty when the statement is not such an insert or no free key is found (the check then runs with
    the ordinary sample values and reports what SQLite says).
    """
    if tool.mode != "write" or not tables or not tool.sql.lstrip().upper().startswith("INSERT"):
        return {}
    table = schema.table(tables[0])
    assigned = {col: param for param, (col, role) in mapping.items() if role == "assign"}
    key = table.primary_key
    fk_of = {fk.column: fk for fk in table.foreign_keys
             if fk.ref_column and fk.ref_table in {t.name for t in schema.tables}}
    if not key or any(c.name not in assigned for c in key) or (len(key) == 1 and key[0].name not in fk_of):
        return {}
    q_table = quote_ident(table.name)
    candidates: list[list[Any]] = []
    try:
        for col in key:
            fk = fk_of.get(col.name)
            q_col = quote_ident(fk.ref_column if fk else col.name)
            source = quote_ident(fk.ref_table) if fk else q_table
            values = [r[0] for r in sandbox.conn.execute(
                f"SELECT DISTINCT {q_col} FROM {source} WHERE {q_col} IS NOT NULL LIMIT {_KEY_CANDIDATES}")]
            if not fk:
                values.append(_fresh_value(sandbox, q_table, quote_ident(col.name), col.json_type))
            candidates.append(values)
        taken = set(sandbox.conn.execute(
            f"SELECT {', '.join(quote_ident(c.name) for c in key)} FROM {q_table}").fetchall())
    except sqlite3.Error:
        return {}
    for combo in itertools.islice(itertools.product(*candidates), _KEY_COMBINATIONS):
        if combo not in taken:
            return {assigned[c.name]: v for c, v in zip(key, combo)}
    return {}


def _fresh_value(sandbox: Sandbox, q_table: str, q_col: str, json_type: str) -> Any:
    if json_type in ("integer", "number"):
        row = sandbox.conn.execute(f"SELECT MAX(CAST({q_col} AS INTEGER)) FROM {q_table}").fetchone()
        return int(row[0] or 0) + 1
    n = sandbox.conn.execute(f"SELECT COUNT(*) FROM {q_table}").fetchone()[0]
    return f"new-{n + 1}"


def _default_for(json_type: str, name: str, prop: dict[str, Any]) -> Any:
    if "limit" in name:
        return 5
    return {"integer": 1, "number": 1.0, "boolean": True}.get(json_type, "a")


def run_check(tool: Tool, schema: DatabaseSchema, sandbox: Sandbox) -> str | None:
    """Run the tool once with sample arguments inside a savepoint that is rolled back."""
    try:
        args = sample_arguments(tool, schema, sandbox)
    except (sqlglot.errors.SqlglotError, KeyError, ValueError) as exc:
        return f"could not build sample arguments: {exc}"
    sandbox.conn.execute("SAVEPOINT tool_check")
    try:
        result = sandbox.run(tool, args)
    finally:
        sandbox.conn.execute("ROLLBACK TO tool_check")
        sandbox.conn.execute("RELEASE tool_check")
    if result.error is not None and not (tool.kind == "delete" and result.error.type == "constraint_violation"):
        # A delete refused by a foreign key is the data protecting itself, not a broken tool.
        return f"failed on sample arguments {args}: {result.error.message}"
    return None


def check_tool(tool: Tool, schema: DatabaseSchema, sandbox: Sandbox) -> str | None:
    """The reason a tool is refused, or None when it is accepted."""
    return static_problems(tool, schema.dialect or DIALECT) or run_check(tool, schema, sandbox)
