"""An MCP call's result in the project's terms, and the failure that ends a dialogue."""

from __future__ import annotations

import json
from typing import Any, Literal

from mcp import types
from pydantic import BaseModel

from state.mcp import McpCallRecord
from state.tools import ToolError, ToolResult

_MESSAGE_CHARS = 500

FailureKind = Literal["start", "crash", "timeout"]


class McpServerFailure(Exception):
    """A server that failed to start, crashed or hung: the dialogue using it cannot go on and ends as rejected
    with `reason` (one line). Raised by the session, never turned into a tool message."""

    def __init__(self, server: str, kind: FailureKind, detail: str) -> None:
        self.server = server
        self.kind = kind
        self.detail = " ".join(detail.split())[:_MESSAGE_CHARS]
        verb = {"start": "did not start", "crash": "crashed", "timeout": "timed out"}[kind]
        self.reason = f"MCP server {server!r} {verb}: {self.detail}"
        self.record: McpCallRecord | None = None  # the call it happened on, when it happened on one
        super().__init__(self.reason)


class McpCallOutcome(BaseModel):
    """A call's result for the assistant and its record for the dialogue."""

    result: ToolResult
    record: McpCallRecord


def content_blocks(result: types.CallToolResult) -> list[dict[str, Any]]:
    return [block.model_dump(mode="json", exclude_none=True) for block in result.content]


def _text(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b.get("text", "") for b in blocks if b.get("type") == "text")


def _rows(value: Any) -> list[dict[str, Any]]:
    """The records a result carries: a list of objects, an object holding one such list, or one object."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list) and all(isinstance(x, dict) for x in v)]
        if len(lists) == 1:
            return lists[0]
        return [value]
    if isinstance(value, list):
        return [x for x in value if isinstance(x, dict)]
    return []


def to_tool_result(record: McpCallRecord) -> ToolResult:
    """The record as the assistant sees it: structured content when given, else the text (or the blocks); a
    server's isError is a tool error the assistant can read and recover from."""
    if record.refused is not None:
        return ToolResult(ok=False, error=ToolError(type="invalid_arguments", message=record.refused))
    if record.is_error:
        message = _text(record.content) or json.dumps(record.content, default=str)
        return ToolResult(ok=False, error=ToolError(type="tool_error", message=message[:_MESSAGE_CHARS]))
    if record.structured_content is not None:
        value: Any = record.structured_content
    elif all(b.get("type") == "text" for b in record.content):
        value = _text(record.content)
    else:
        value = record.content
    rows = _rows(value)
    return ToolResult(ok=True, value=value, rows=rows, row_count=len(rows))
