"""The messages channel's reducer: every write of a step folded into the conversation in one pass.

A delta channel (a checkpoint stores what a step added) needs a reducer that gives the same list whether
writes come one batch at a time or all at once: `merge_messages(merge_messages(s, xs), ys) ==
merge_messages(s, xs + ys)`. A message whose id is already there replaces it in place; a `RemoveMessage`
drops the message of its id (an unknown id is ignored); `RemoveMessage(id=REMOVE_ALL_MESSAGES)` clears
everything before it; a message without an id is appended. Raw inputs (OpenAI dicts, strings, tuples, as an
HTTP client or Studio sends them) become typed messages.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, RemoveMessage, convert_to_messages
from langgraph.graph.message import REMOVE_ALL_MESSAGES


def merge_messages(state: list[Any], writes: list[Any]) -> list[AnyMessage]:
    flat: list[Any] = []
    for write in writes:  # a write is a list of messages or one message
        if isinstance(write, list):
            flat.extend(write)
        else:
            flat.append(write)
    # the reducer's own output is typed already: only raw input (a first dict, a read blob) is converted
    current: list[Any] = state if state and isinstance(state[0], BaseMessage) else convert_to_messages(state)
    incoming: list[Any] = convert_to_messages(flat)
    for i in range(len(incoming) - 1, -1, -1):  # the last "remove all" wins: what came before it goes
        if isinstance(incoming[i], RemoveMessage) and incoming[i].id == REMOVE_ALL_MESSAGES:
            current, incoming = [], incoming[i + 1:]
            break
    where = {m.id: i for i, m in enumerate(current) if m.id is not None}
    merged: list[Any] = list(current)
    for message in incoming:
        if message.id is None:
            merged.append(message)
        elif isinstance(message, RemoveMessage):
            if message.id in where:
                merged[where.pop(message.id)] = None
        elif message.id in where:
            merged[where[message.id]] = message
        else:
            where[message.id] = len(merged)
            merged.append(message)
    return [m for m in merged if m is not None]
