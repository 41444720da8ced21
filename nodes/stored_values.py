"""Values that do not change during a dialogue (its toolset, its database schema) are kept once in the
graph's store under their content hash, and the state holds only the hash: a checkpoint then costs what a
step changed, not tens of kilobytes of tool specs again. A graph compiled without a store keeps them inline.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from environment.errors import RunError
from state.dialogue import DialogueState
from state.schema import DatabaseSchema
from state.tools import Tool

TOOLSETS = ("toolsets",)
SCHEMAS = ("schemas",)

# Parsed values by (namespace, key): content-addressed, so never stale; bounded, so memory stays flat.
_parsed: OrderedDict[tuple[tuple[str, ...], str], Any] = OrderedDict()
_PARSED_MAX = 64


def content_key(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _remember(namespace: tuple[str, ...], key: str, value: Any) -> Any:
    _parsed[(namespace, key)] = value
    _parsed.move_to_end((namespace, key))
    while len(_parsed) > _PARSED_MAX:
        _parsed.popitem(last=False)
    return value


async def _keep(store: BaseStore, namespace: tuple[str, ...], data: dict[str, Any], value: Any) -> str:
    key = content_key(data)
    if (namespace, key) not in _parsed and await store.aget(namespace, key) is None:
        await store.aput(namespace, key, data, index=False)
    _remember(namespace, key, value)
    return key


async def _load(store: BaseStore | None, namespace: tuple[str, ...], key: str) -> dict[str, Any]:
    if store is None:
        raise RunError(f"the state refers to {namespace[0]} {key} but the graph runs without a store "
                       f"(compile it with the store it was written with)")
    item = await store.aget(namespace, key)
    if item is None:
        raise RunError(f"{namespace[0]} {key} is not in the graph's store (the run folder may be damaged)")
    return item.value


async def keep_toolset(store: BaseStore, tools: list[Tool]) -> str:
    return await _keep(store, TOOLSETS, {"tools": [t.model_dump(mode="json") for t in tools]}, list(tools))


async def toolset_by_key(store: BaseStore | None, key: str) -> list[Tool]:
    if (TOOLSETS, key) in _parsed:
        return _remember(TOOLSETS, key, _parsed[(TOOLSETS, key)])
    data = await _load(store, TOOLSETS, key)
    return _remember(TOOLSETS, key, [Tool.model_validate(t) for t in data["tools"]])


async def keep_schema(store: BaseStore, schema: DatabaseSchema) -> str:
    return await _keep(store, SCHEMAS, schema.model_dump(mode="json"), schema)


async def schema_by_key(store: BaseStore | None, key: str) -> DatabaseSchema:
    if (SCHEMAS, key) in _parsed:
        return _remember(SCHEMAS, key, _parsed[(SCHEMAS, key)])
    return _remember(SCHEMAS, key, DatabaseSchema.model_validate(await _load(store, SCHEMAS, key)))


def store_of(runtime: Runtime | None) -> BaseStore | None:
    return getattr(runtime, "store", None)


async def toolset_of(state: DialogueState, store: BaseStore | None) -> list[Tool]:
    """The dialogue's tools, inline or kept in `store` (a node's or a reader's of the run folder)."""
    return await toolset_by_key(store, state.toolset_key) if state.toolset_key else state.toolset


async def tools_of(state: DialogueState, runtime: Runtime | None) -> list[Tool]:
    """The dialogue's tools, wherever its graph keeps them."""
    return await toolset_of(state, store_of(runtime))


async def schema_of(state: DialogueState, runtime: Runtime | None) -> DatabaseSchema | None:
    """The dialogue's database schema, wherever it is kept (None before `prepare` read it)."""
    return await schema_by_key(store_of(runtime), state.schema_key) if state.schema_key else state.database
