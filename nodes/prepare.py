"""The prepare node: a dialogue's first step reads its source's schema, takes over a given conversation and
makes its toolset when none is given (nodes/tool_synthesizer.py)."""

from __future__ import annotations

import asyncio

from langchain_core.messages import convert_to_messages
from langgraph.runtime import Runtime

from environment.errors import InputError
from environment.sources.dialogue_time import reference_time_for
from environment.sources.registry import open_source
from nodes.common import backend_of, settings_of
from nodes.stored_values import keep_schema, keep_toolset, schema_of, store_of, tools_of
from nodes.tool_synthesizer import toolset_for
from state.config import Settings
from state.dialogue import DialogueState


async def prepare(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    """Read the source's schema, take over a given conversation, and make a toolset when none is given.

    With a store, the toolset and the schema are kept there once and the state refers to them by hash."""
    update: dict = {}
    store = store_of(runtime)
    if state.prelude and not state.messages:
        update["messages"] = convert_to_messages(state.prelude)  # the conversation being continued
    tools = await tools_of(state, runtime)
    if state.sources:
        source = await asyncio.to_thread(open_source, state.sources)
        database = await schema_of(state, runtime)
        if database is None and not state.schema_key:
            database = (await asyncio.to_thread(source.catalog)).database
        if database is not None and store is not None and not state.schema_key:
            update["schema_key"] = await keep_schema(store, database)
        elif database is not None and store is None and state.database is None:
            update["database"] = database
        if not tools:
            toolset, usage = await toolset_for(source, database, backend_of(runtime, state), settings_of(runtime))
            tools = toolset.tools
            update["toolset"] = tools
            update["usage"] = usage
    elif not tools:  # tools that need no named source: nothing to inspect or synthesize from
        raise InputError("a dialogue without a source needs a toolset (pass --toolset)")
    if store is not None and not state.toolset_key:
        update["toolset_key"] = await keep_toolset(store, tools)
        update["toolset"] = []
    if not state.reference_time:
        update["reference_time"] = reference_time_for(state.seed)
    return update
