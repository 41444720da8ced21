"""Checkpoint serialization: strict, so only our own state models and LangChain messages load back,
and they load back as models (not dicts)."""

from __future__ import annotations

import typing
import zlib
from typing import Any

from langchain_core.messages import (AIMessage, AIMessageChunk, FunctionMessage, HumanMessage, RemoveMessage,
                                     SystemMessage, ToolMessage)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel

_MESSAGES = (AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage, FunctionMessage, RemoveMessage)


def model_types(root: type[BaseModel]) -> set[type[BaseModel]]:
    """Every pydantic model reachable from a model's fields."""
    found: set[type[BaseModel]] = set()
    pending: list[object] = [root]
    while pending:
        tp = pending.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in found:
                continue
            found.add(tp)
            pending.extend(f.annotation for f in tp.model_fields.values())
        else:
            pending.extend(typing.get_args(tp))
    return found


class CompressingSerializer(JsonPlusSerializer):
    """Larger values are stored deflated: a checkpoint repeats its channel names and versions, which
    compress several times over."""

    SUFFIX = "+zlib"
    MIN_SIZE = 256

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        type_, data = super().dumps_typed(obj)
        if len(data) >= self.MIN_SIZE:
            return type_ + self.SUFFIX, zlib.compress(data, 6)
        return type_, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        type_, raw = data
        if type_.endswith(self.SUFFIX):
            return super().loads_typed((type_.removesuffix(self.SUFFIX), zlib.decompress(raw)))
        return super().loads_typed(data)


def strict_serializer(*roots: type[BaseModel]) -> JsonPlusSerializer:
    """A serializer that revives only the given state models (and what they contain) and messages."""
    if not roots:
        from state.dialogue import DialogueInput, DialogueOutput, DialogueState
        from state.toolprep import ToolprepInput, ToolprepOutput, ToolprepState

        roots = (DialogueState, DialogueInput, DialogueOutput, ToolprepState, ToolprepInput, ToolprepOutput)
    types = set(_MESSAGES)
    for root in roots:
        types |= model_types(root)
    return CompressingSerializer(allowed_msgpack_modules=sorted((t.__module__, t.__name__) for t in types))
