"""Decoy tools for crowded toolsets: real, executable SQL tools over the dialogue's own database that its
tasks do not need.

A crowded dialogue offers its assistant the toolset among many decoys. They are same-domain tools, so a
decoy looks as plausible as a real one; they run for real, so calling a decoy that writes changes rows the
goal diff does not hold and the state check catches it. Made deterministically from the schema and the
toolset (the same pool every time), a dialogue records only the names it drew.
"""

from __future__ import annotations

import random
from collections import OrderedDict

from environment.sources.sqlite.derive import _param, derive_tools
from environment.sources.sqlite.names import quote_ident as q
from environment.sqlnames import singular, snake
from state.schema import Column, DatabaseSchema, Table
from state.tools import Tool

_POOL_LIMIT = 1000


def _usable(table: Table) -> list[Column]:
    return [c for c in table.columns if not c.is_blob]


def _extra_tools(table: Table) -> list[Tool]:
    """Per column: an exact-match listing, a count, a sorted listing and (for plain columns) a setter."""
    t, qt = snake(table.name, "t"), q(table.name)
    entity = singular(t)
    pk = [c for c in table.primary_key if not c.is_blob]
    fks = {fk.column for fk in table.foreign_keys}
    tools: list[Tool] = []
    for col in _usable(table):
        name, p = snake(col.name, "c"), _param(col.name)
        prop = {"type": col.json_type, "description": f"Value of {col.name}."}
        tools.append(Tool(name=f"list_{t}_where_{name}_is", kind="search", table=table.name, mode="read",
                          description=f"List {table.name} rows whose {col.name} equals the given value.",
                          parameters={"type": "object", "properties": {p: prop}, "required": [p]},
                          sql=f"SELECT * FROM {qt} WHERE {q(col.name)} = :{p} LIMIT 20"))
        tools.append(Tool(name=f"count_{t}_with_{name}", kind="aggregate", table=table.name, mode="read",
                          description=f"How many {table.name} rows have the given {col.name}.",
                          parameters={"type": "object", "properties": {p: prop}, "required": [p]},
                          sql=f"SELECT COUNT(*) AS row_count FROM {qt} WHERE {q(col.name)} = :{p}"))
        tools.append(Tool(name=f"list_{t}_sorted_by_{name}", kind="other", table=table.name, mode="read",
                          description=f"The first {table.name} rows in order of {col.name}.",
                          parameters={"type": "object", "properties": {}, "required": []},
                          sql=f"SELECT * FROM {qt} ORDER BY {q(col.name)} LIMIT 20"))
        if pk and len(pk) == len(table.primary_key) and not col.pk_position and col.name not in fks \
                and not col.unique and not table.read_only:
            keys = {_param(c.name): {"type": c.json_type, "description": f"{c.name} of the record."} for c in pk}
            where = " AND ".join(f"{q(c.name)} = :{_param(c.name)}" for c in pk)
            value = f"new_{snake(col.name, 'p')}"
            tools.append(Tool(name=f"set_{entity}_{name}", kind="update", table=table.name, mode="write",
                              description=f"Set the {col.name} of one {entity.replace('_', ' ')}.",
                              parameters={"type": "object", "properties": {**keys, value: {
                                  "type": col.json_type, "description": f"The new {col.name}."}},
                                          "required": [*keys, value]},
                              sql=f"UPDATE {qt} SET {q(col.name)} = :{value} WHERE {where}"))
    return tools


def _writes_same(tool: Tool, real: list[Tool]) -> bool:
    """A decoy that changes the same column as a real tool would be a second way to do the task, not a decoy."""
    if tool.mode != "write":
        return False
    column = tool.sql.split(" SET ", 1)[-1].split(" = ", 1)[0]
    return any(r.mode == "write" and r.kind == "update" and r.table == tool.table and f"SET {column} =" in r.sql
               for r in real)


_made: OrderedDict[tuple[int, tuple[str, ...]], tuple[DatabaseSchema, list[Tool]]] = OrderedDict()


def decoy_pool(schema: DatabaseSchema | None, tools: list[Tool]) -> list[Tool]:
    """Every decoy the database offers beside `tools`, in a fixed order (empty without a database). Kept for
    the schema objects seen last (the store hands a dialogue's nodes the same one), so a step costs no rebuild."""
    if schema is None:
        return []
    key = (id(schema), tuple(t.name for t in tools))
    if key in _made and _made[key][0] is schema:
        _made.move_to_end(key)
        return _made[key][1]
    pool = _pool(schema, tools)
    _made[key] = (schema, pool)
    while len(_made) > 16:
        _made.popitem(last=False)
    return pool


def _pool(schema: DatabaseSchema, tools: list[Tool]) -> list[Tool]:
    taken = {t.name for t in tools}
    sql = {" ".join(t.sql.split()) for t in tools if t.sql}
    pool: list[Tool] = []
    candidates = derive_tools(schema, _POOL_LIMIT) + [x for table in schema.tables
                                                      for x in _extra_tools(table)]
    for tool in candidates:
        if tool.name in taken or " ".join(tool.sql.split()) in sql or _writes_same(tool, tools):
            continue
        if len(tool.name) > 64:
            continue
        taken.add(tool.name)
        sql.add(" ".join(tool.sql.split()))
        pool.append(tool)
    return pool


def draw_decoys(schema: DatabaseSchema | None, tools: list[Tool], count: int, rng: random.Random) -> list[str]:
    """The names of `count` decoys (all the pool has, when it has fewer), in the pool's order."""
    pool = decoy_pool(schema, tools)
    chosen = set(rng.sample(range(len(pool)), min(count, len(pool))))
    return [t.name for i, t in enumerate(pool) if i in chosen]


def decoys_named(schema: DatabaseSchema | None, tools: list[Tool], names: list[str]) -> list[Tool]:
    """The decoy tools a dialogue drew, rebuilt from its schema and toolset."""
    if not names:
        return []
    wanted = set(names)
    return [t for t in decoy_pool(schema, tools) if t.name in wanted]


def with_decoys(tools: dict[str, Tool], names: list[str], source: str) -> dict[str, Tool]:
    """A toolset by name with the decoys a dialogue drew, rebuilt from its source's schema (what a re-check of
    its recorded calls needs)."""
    if not names or not source:
        return tools
    from environment.sources.registry import open_source  # the registry opens sources; decoys only need a schema

    schema = open_source(source).catalog().database
    return {**tools, **{t.name: t for t in decoys_named(schema, list(tools.values()), names)}}
