"""Schema-derived SQL tools: lookups, searches, ranges, joins, aggregates and writes.

Deterministic: the same schema always yields the same toolset.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp

from environment.sources.sqlite.names import quote_ident as q
from environment.sqlnames import singular, snake
from state.schema import Column, DatabaseSchema, Table
from state.tools import Tool

_SEARCH_HINTS = ("name", "title", "description", "city", "reason", "species", "email", "type", "status")
_UPDATE_HINTS = ("status", "paid", "notes", "note", "phone", "email", "price", "amount", "cost", "active", "name")
_LIST_LIMIT = 50
_MAX_NAME = 64  # tool names must match ^[a-z][a-z0-9_]{0,63}$ (see tool_checks.TOOL_NAME)


@lru_cache(maxsize=4096)
def _placeholder_ok(name: str) -> bool:
    """Whether `:name` reads back as a placeholder (`:from`, `:select`, … are taken for keywords)."""
    try:
        statement = sqlglot.parse_one(f"SELECT * FROM t WHERE a = :{name}", read="sqlite")
    except sqlglot.errors.SqlglotError:
        return False
    return [p.name for p in statement.find_all(exp.Placeholder)] == [name]


def _param(column: str) -> str:
    """The placeholder (and parameter) name for a column: snake_case, never an SQL keyword."""
    name = snake(column, "p")
    return name if _placeholder_ok(name) else f"{name}_value"


def _prop(col: Column, description: str | None = None) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": col.json_type}
    text = description or f"Value of {col.name}."
    if col.is_date:
        text += " ISO 8601 text, e.g. 2025-03-14."
    prop["description"] = text
    return prop


def _params(props: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


class _Namer:
    """Unique snake_case names for tools and parameters."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def tool(self, name: str) -> str:
        base, n = snake(name, "tool")[:_MAX_NAME].rstrip("_"), 2
        candidate = base
        while candidate in self.used:
            suffix = f"_{n}"
            candidate, n = base[: _MAX_NAME - len(suffix)].rstrip("_") + suffix, n + 1
        self.used.add(candidate)
        return candidate


def _param_names(columns: list[Column]) -> dict[str, str]:
    """column name -> placeholder name, unique within one tool."""
    out: dict[str, str] = {}
    for col in columns:
        base = _param(col.name)
        name, n = base, 2
        while name in out.values():
            name, n = f"{base}_{n}", n + 1
        out[col.name] = name
    return out


def _usable(table: Table) -> list[Column]:
    return [c for c in table.columns if not c.is_blob]


def _ordering(table: Table, dialect: str = "sqlite") -> str:
    pk = table.primary_key
    if pk:
        return ", ".join(q(c.name) for c in pk)
    # Postgres has no rowid: every column, in order, is the one stable ordering a keyless table has
    return "rowid" if dialect != "postgres" else ", ".join(q(c.name) for c in _usable(table)) or "1"


def _spelling(dialect: str) -> tuple[str, str, str]:
    """(cast before a text match, case-insensitive LIKE, cast before ROUND): SQLite's LIKE ignores case and
    matches any value, its ROUND takes any number; Postgres needs ILIKE on text (an enum is not), and
    ROUND(x, 2) only exists for numeric."""
    return ("::text", "ILIKE", "::numeric") if dialect == "postgres" else ("", "LIKE", "")


def _pick(columns: list[Column], hints: tuple[str, ...]) -> list[Column]:
    def rank(col: Column) -> tuple[int, int]:
        lowered = col.name.lower()
        hit = next((i for i, h in enumerate(hints) if h in lowered), len(hints))
        return hit, 0
    return sorted(columns, key=rank)


def derive_table_tools(table: Table, namer: _Namer, schema: DatabaseSchema) -> list[Tool]:
    tools: list[Tool] = []
    t = snake(table.name, "t")
    entity = singular(t)
    qt = q(table.name)
    usable = _usable(table)
    pk = [c for c in table.primary_key if not c.is_blob]
    fk_cols = {fk.column for fk in table.foreign_keys}
    order = _ordering(table, schema.dialect)
    as_text, like, as_numeric = _spelling(schema.dialect)

    def add(name: str, description: str, params: dict[str, Any], sql: str, mode: str, kind: str) -> None:
        tools.append(Tool(name=namer.tool(name), description=description, parameters=params, sql=sql,
                             mode=mode, kind=kind, table=table.name, origin="schema"))

    if pk and len(pk) == len(table.primary_key):
        names = _param_names(pk)
        where = " AND ".join(f"{q(c.name)} = :{names[c.name]}" for c in pk)
        add(f"get_{entity}", f"Look up one {entity.replace('_', ' ')} record in {table.name} by its primary key.",
            _params({names[c.name]: _prop(c, f"{c.name} of the {entity.replace('_', ' ')}.") for c in pk},
                    [names[c.name] for c in pk]),
            f"SELECT * FROM {qt} WHERE {where}", "read", "lookup")

    texts = [c for c in usable if c.json_type == "string" and not c.is_date and not c.pk_position and c.name not in fk_cols]
    for col in _pick(texts, _SEARCH_HINTS)[:2]:
        p = _param(col.name)
        add(f"search_{t}_by_{snake(col.name)}",
            f"Find {table.name} rows whose {col.name} contains the given text (case-insensitive).",
            _params({p: {"type": "string", "description": f"Text to look for in {col.name}."}}, [p]),
            f"SELECT * FROM {qt} WHERE {q(col.name)}{as_text} {like} '%' || :{p} || '%' ORDER BY {order} "
            f"LIMIT {_LIST_LIMIT}",
            "read", "search")

    ranged = [c for c in usable if (c.is_date or c.json_type in ("integer", "number"))
              and not c.pk_position and c.name not in fk_cols]
    numeric = [c for c in ranged if c.json_type in ("integer", "number") and not c.is_date
               and not c.name.lower().startswith(("is_", "has_"))]
    if ranged:
        col = ranged[0]
        lo, hi = f"min_{snake(col.name, 'p')}", f"max_{snake(col.name, 'p')}"
        add(f"find_{t}_by_{snake(col.name)}_range",
            f"List {table.name} rows whose {col.name} lies between two bounds (inclusive).",
            _params({lo: _prop(col, f"Lower bound for {col.name}."), hi: _prop(col, f"Upper bound for {col.name}.")},
                    [lo, hi]),
            f"SELECT * FROM {qt} WHERE {q(col.name)} BETWEEN :{lo} AND :{hi} ORDER BY {q(col.name)}, {order} "
            f"LIMIT {_LIST_LIMIT}", "read", "range")

    by_name = {tb.name: tb for tb in schema.tables}
    for fk in table.foreign_keys:
        parent = by_name.get(fk.ref_table)
        if parent is None or fk.column not in {c.name for c in usable}:
            continue
        col = table.column(fk.column)
        p = _param(fk.column)
        parent_entity = singular(snake(parent.name, "t"))
        add(f"list_{t}_for_{parent_entity}",
            f"List the {table.name} rows that belong to one {parent.name} record (by {fk.column}).",
            _params({p: _prop(col, f"{fk.column} of the {parent_entity.replace('_', ' ')}.")}, [p]),
            f"SELECT * FROM {qt} WHERE {q(fk.column)} = :{p} ORDER BY {order} LIMIT {_LIST_LIMIT}", "read", "join")

    joinable = [fk for fk in table.foreign_keys if fk.ref_table in by_name and fk.ref_column]
    if joinable and pk and len(pk) == len(table.primary_key):
        fk = joinable[0]
        parent = by_name[fk.ref_table]
        parent_entity = singular(snake(parent.name, "t"))
        shown = [c for c in _pick([c for c in _usable(parent) if c.json_type == "string" and not c.pk_position],
                                  _SEARCH_HINTS)[:3]]
        if fk.ref_column in {c.name for c in parent.columns}:
            names = _param_names(pk)
            extra = "".join(f", p.{q(c.name)} AS {q(parent_entity + '_' + snake(c.name))}" for c in shown)
            where = " AND ".join(f"c.{q(c.name)} = :{names[c.name]}" for c in pk)
            add(f"get_{entity}_with_{parent_entity}",
                f"Look up one {entity.replace('_', ' ')} together with details of its {parent_entity.replace('_', ' ')}.",
                _params({names[c.name]: _prop(c, f"{c.name} of the {entity.replace('_', ' ')}.") for c in pk},
                        [names[c.name] for c in pk]),
                f"SELECT c.*{extra} FROM {qt} AS c JOIN {q(parent.name)} AS p ON c.{q(fk.column)} = p.{q(fk.ref_column)} "
                f"WHERE {where}", "read", "join")

    categorical = [c for c in texts if c.name.lower() not in ("name", "email", "phone")]
    group = _pick(categorical, ("status", "type", "species", "category", "city", "specialty", "kind"))[:1]
    if group:
        g = group[0]
        if numeric:
            n = numeric[0]
            add(f"summarize_{t}_{snake(n.name)}_by_{snake(g.name)}",
                f"Per {g.name}: how many {table.name} rows, and the total and average {n.name} "
                f"(rows without a {g.name} are left out).",
                _params({}, []),
                f"SELECT {q(g.name)}, COUNT(*) AS row_count, ROUND(SUM({q(n.name)}){as_numeric}, 2) AS "
                f"total_{snake(n.name)}, ROUND(AVG({q(n.name)}){as_numeric}, 2) AS average_{snake(n.name)} "
                f"FROM {qt} WHERE {q(g.name)} IS NOT NULL "
                f"GROUP BY {q(g.name)} "
                f"ORDER BY row_count DESC, {q(g.name)}", "read", "aggregate")
        else:
            add(f"count_{t}_by_{snake(g.name)}",
                f"How many {table.name} rows there are for each {g.name} (rows without a {g.name} are left out).",
                _params({}, []),
                f"SELECT {q(g.name)}, COUNT(*) AS row_count FROM {qt} WHERE {q(g.name)} IS NOT NULL "
                f"GROUP BY {q(g.name)} "
                f"ORDER BY row_count DESC, {q(g.name)}", "read", "aggregate")
    if numeric:
        n = numeric[0]
        add(f"top_{t}_by_{snake(n.name)}", f"The {table.name} rows with the highest {n.name}.",
            _params({"limit": {"type": "integer", "minimum": 1, "maximum": _LIST_LIMIT,
                               "description": "How many rows to return."}}, ["limit"]),
            f"SELECT * FROM {qt} WHERE {q(n.name)} IS NOT NULL ORDER BY {q(n.name)} DESC, {order} LIMIT :limit",
            "read", "top")

    blocked = [c for c in table.columns if c.is_blob and c.not_null and not c.has_default]
    # An auto-assigned key is left to SQLite, unless it also points at a parent (a one-to-one extension
    # table): then the caller must say which parent row the new row belongs to.
    insertable = [c for c in usable if not (table.key_assigned_on_insert and c.pk_position and c.name not in fk_cols)
                  and not c.has_default]
    if insertable and not blocked and not table.read_only:  # a view is only read
        names = _param_names(insertable)
        required = [names[c.name] for c in insertable if c.not_null or c.pk_position]
        add(f"add_{entity}", f"Insert a new {entity.replace('_', ' ')} into {table.name}.",
            _params({names[c.name]: _prop(c) for c in insertable}, required),
            f"INSERT INTO {qt} ({', '.join(q(c.name) for c in insertable)}) "
            f"VALUES ({', '.join(':' + names[c.name] for c in insertable)})", "write", "insert")

    if pk and len(pk) == len(table.primary_key) and not table.read_only:
        names = _param_names(pk)
        where = " AND ".join(f"{q(c.name)} = :{names[c.name]}" for c in pk)
        key_props = {names[c.name]: _prop(c, f"{c.name} of the record to change.") for c in pk}
        mutable = [c for c in usable if not c.pk_position and c.name not in fk_cols and not c.unique]
        for col in _pick(mutable, _UPDATE_HINTS)[:1]:
            value = "new_" + snake(col.name, "p")
            add(f"update_{entity}_{snake(col.name)}", f"Change the {col.name} of one {entity.replace('_', ' ')}.",
                _params({**key_props, value: _prop(col, f"The new {col.name}.")}, [*key_props, value]),
                f"UPDATE {qt} SET {q(col.name)} = :{value} WHERE {where}", "write", "update")
        add(f"delete_{entity}", f"Delete one {entity.replace('_', ' ')} from {table.name} by its primary key.",
            _params(key_props, list(key_props)), f"DELETE FROM {qt} WHERE {where}", "write", "delete")
    return tools


def derive_tools(schema: DatabaseSchema, max_tools: int = 60) -> list[Tool]:
    """Schema-derived tools for every table, most connected tables first, capped at max_tools.

    Tools are taken round-robin by kind so a cap keeps a mix of reads and writes.
    """
    namer = _Namer()
    degree = {t.name: 0 for t in schema.tables}
    for table in schema.tables:
        for fk in table.foreign_keys:
            degree[table.name] += 1
            if fk.ref_table in degree:
                degree[fk.ref_table] += 1
    ordered = sorted(schema.tables, key=lambda t: (-degree[t.name], -t.row_count, t.name))
    per_table = [derive_table_tools(t, namer, schema) for t in ordered]
    priority = ["lookup", "search", "join", "update", "insert", "aggregate", "range", "top", "delete"]
    picked: list[Tool] = []
    for kind in priority:
        for tools in per_table:
            picked.extend(tool for tool in tools if tool.kind == kind)
    picked = picked[:max_tools]
    keep = {id(t) for t in picked}
    return [tool for tools in per_table for tool in tools if id(tool) in keep]
