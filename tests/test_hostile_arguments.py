"""Tool arguments a weak model really produces, seed-tool files and conversations as people have them:
never a traceback, never a change outside the declared parameters, the source database never modified."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from environment.sources.sqlite.derive import derive_tools
from environment.errors import InputError
from environment.sources.sqlite.introspect import inspect_database
from environment.sources.sqlite.sandbox import Sandbox
from environment.seeds import read_seed_tools
from environment.sources.sqlite.tool_checks import placeholder_columns
from graphs.run import read_conversation
from nodes.tool_executor import tool_executor
from state.config import Settings
from state.dialogue import DialogueState
from tests.conftest import CLINIC, sha256

LIMIT = 2_000  # a small size limit keeps the huge strings cheap to generate
TOOLS = derive_tools(inspect_database(str(CLINIC)))
SOURCE_HASH = sha256(CLINIC)
modest = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])

SQL_TEXT = st.sampled_from(["'; DROP TABLE owners; --", "1 OR 1=1", "\" OR \"\"=\"", "%", "_", "'", "''", "\\",
                            "x' UNION SELECT sql FROM sqlite_master --", ":owner_id", "?", "NULL", "\x00", "é✓"])
HUGE = st.integers(LIMIT + 1, LIMIT * 3).map(lambda n: "'" * n)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=40), SQL_TEXT, st.integers(-5, 500).map(str), HUGE)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=3), max_leaves=6)


def _typed(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the declared type, the strings among them hostile: these get as far as SQL."""
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    kind = prop.get("type")
    if kind == "integer":
        return st.integers(-3, 400) | st.integers(1, 50).map(float)
    if kind == "number":
        return st.floats(-1e6, 1e6, allow_nan=False) | st.integers(0, 300)
    if kind == "boolean":
        return st.booleans()
    return SQL_TEXT | st.text(max_size=30)


def _arguments(tool) -> st.SearchStrategy[dict[str, Any]]:
    declared = st.sampled_from(sorted(tool.properties)) if tool.properties else st.nothing()
    keys = st.one_of(declared, declared, st.text(max_size=12), st.sampled_from(["__proto__", "sql", "1; --"]))
    fitting = st.fixed_dictionaries({k: _typed(p) for k, p in tool.properties.items() if k in tool.required},
                                    optional={k: _typed(p) for k, p in tool.properties.items() if k not in tool.required})
    return st.one_of(fitting, fitting, st.dictionaries(keys, VALUES, max_size=5))


def _snapshot(conn: sqlite3.Connection) -> dict[str, dict[Any, tuple]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: {row[0]: row[1:] for row in conn.execute(f'SELECT rowid, * FROM "{t}"')} for t in tables}


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


def _same(stored: Any, given: Any) -> bool:
    if isinstance(given, bool):
        return stored == int(given)
    if isinstance(given, float) and isinstance(stored, (int, float)):
        return math.isclose(stored, given)
    return stored == given


@modest
@given(data=st.data())
def test_hostile_arguments_never_crash_and_change_only_declared_columns(data):
    tool = data.draw(st.sampled_from(TOOLS), label="tool")
    args = data.draw(_arguments(tool), label="arguments")
    box = Sandbox(str(CLINIC))
    try:
        before = _snapshot(box.conn)
        result = box.run(tool, args, clock="2025-03-14 09:30:00", max_chars=LIMIT)
        after = _snapshot(box.conn)
        names = _columns(box.conn, tool.table)
    finally:
        box.close()
    assert sha256(CLINIC) == SOURCE_HASH
    event(f"{tool.mode} {'ran' if result.ok else result.error.type}")
    if not result.ok:
        assert result.error is not None and result.error.message
        if result.error.type == "invalid_arguments":
            assert after == before
            assert result.error.field is None or result.error.field in {str(k)[:80] for k in args} | set(tool.properties)
        return
    # it ran: so every argument was a declared one, of a single value, within the limit
    assert set(args) <= set(tool.properties)
    assert all(not isinstance(v, (dict, list)) for v in args.values())
    assert all(not (isinstance(v, str) and len(v) > LIMIT) for v in args.values())
    if tool.mode == "read":
        assert after == before
        return
    assigned = {column: args.get(param) for param, (column, role) in placeholder_columns(tool.sql).items()
                if role == "assign"}
    for table in before:
        if table != tool.table:
            assert after[table] == before[table], f"{tool.name} changed {table}"
    old, new = before[tool.table], after[tool.table]
    if tool.kind == "delete":
        assert set(new) <= set(old) and all(new[k] == old[k] for k in new)
    elif tool.kind == "update":
        for key in old:
            for name, was, now in zip(names, old[key], new.get(key, old[key])):
                if was != now:
                    assert name in assigned and _same(now, assigned[name]), f"{tool.name} changed {name}"
    elif tool.kind == "insert":
        assert all(new[k] == old[k] for k in old)
        added = [new[k] for k in set(new) - set(old)]
        assert len(added) == 1
        row = dict(zip(names, added[0]))
        for column, value in assigned.items():
            if value is not None:
                assert _same(row[column], value), f"{column}: stored {row[column]!r}, given {value!r}"


def test_a_misfit_comes_back_to_the_assistant_naming_the_field():
    get_owner = next(t for t in TOOLS if t.name == "get_owner")
    (key,) = get_owner.required
    calls = [
        {"name": "get_owner", "args": {key: "12"}, "id": "c1"},                 # a number as a string
        {"name": "get_owner", "args": {key: 1, "and": "1=1"}, "id": "c2"},      # an extra key
        {"name": "get_owner", "args": {key: {"$gt": 0}}, "id": "c3"},           # nested where a scalar goes
        {"name": "get_owner", "args": {key: float("nan")}, "id": "c4"},         # NaN
        {"name": "get_owner", "args": {key: "x" * 20_000}, "id": "c5"},         # over the size limit
        {"name": "get_owner", "args": {}, "id": "c6"},                          # missing
        {"name": "get_owner", "args": {key: 3.0}, "id": "c7"},                  # an integer written as 3.0: fine
    ]
    state = DialogueState(dialogue_id="hostile", source_db=str(CLINIC), toolset=TOOLS,
                          messages=[AIMessage(content="", tool_calls=calls)])
    update = asyncio.run(tool_executor(state, Runtime(context=Settings(backend="offline", max_tool_calls_per_step=10))))
    contents = [json.loads(m.content) for m in update["messages"]]
    fields = [c["error"]["field"] for c in contents[:6]]
    assert fields == [key, "and", key, key, key, key]
    assert all(c["error"]["type"] == "invalid_arguments" and len(c["error"]["message"]) <= 300 for c in contents[:6])
    assert contents[6]["rows"][0][key] == 3


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=12)
FUNCTION = st.fixed_dictionaries({"name": st.one_of(st.text(max_size=20), st.sampled_from(["get_book", "add order"]))},
                                 optional={"description": JSON, "parameters": JSON, "type": JSON})
SEED_FILE = st.one_of(JSON, st.lists(st.one_of(FUNCTION, st.builds(lambda f: {"type": "function", "function": f},
                                                                         FUNCTION), JSON), max_size=4))


@modest
@given(content=st.one_of(SEED_FILE.map(json.dumps), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
def test_seed_tool_files_are_read_or_refused_in_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("seeds") / "seeds.json"
    path.write_text(content, encoding="utf-8")
    try:
        tools = read_seed_tools(path)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        event("refused")
        return
    event("read")
    assert tools and all(t.source == "simulated" for t in tools)


MESSAGE = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["system", "user", "assistant", "tool", "robot"]), "content": JSON,
    "tool_call_id": st.sampled_from(["c1", "c2"]),
    "tool_calls": st.lists(st.fixed_dictionaries({"id": st.sampled_from(["c1", "c2"]), "type": st.just("function"),
                                                  "function": st.fixed_dictionaries({
                                                      "name": st.text(max_size=8),
                                                      "arguments": st.one_of(JSON.map(json.dumps), JSON)})}),
                           max_size=2)})


@modest
@given(prefix=st.one_of(JSON, st.lists(MESSAGE, max_size=4), st.lists(MESSAGE, max_size=3).map(lambda m: {"messages": m})))
def test_conversation_prefixes_are_read_or_refused_in_one_line(tmp_path_factory, prefix):
    path = tmp_path_factory.mktemp("chat") / "chat.json"
    path.write_text(json.dumps(prefix), encoding="utf-8")
    try:
        messages = read_conversation(path)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        event("refused")
        return
    event("read")
    assert DialogueState(prelude=messages).prelude == messages
