"""What an MCP call leaves behind: its record, its result in the project's terms, and replay divergences."""

from __future__ import annotations

import json
from typing import Any, Literal

from mcp import types
from pydantic import BaseModel, Field

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


class McpCallRecord(BaseModel):
    """One MCP tool call as it ran, enough to replay it and to show it like a SQL call."""

    name: str = Field(description="The tool's name in the toolset (server__tool).")
    server: str
    tool: str = Field(description="The tool's own name on its server.")
    mode: Literal["read", "write"]
    arguments: dict[str, Any]
    content: list[dict[str, Any]] = Field(default_factory=list, description="The result's content blocks.")
    structured_content: Any = Field(None, description="The result's structured content, when it gave one.")
    is_error: bool = False
    latency_ms: float = Field(0.0, description="Wall time of the call over the session, in milliseconds.")
    failure: str | None = Field(None, description="Why the server could not answer (crash, timeout), if it did not.")
    refused: str | None = Field(None, description="Why the call was refused before reaching the server.")

    @property
    def reached_server(self) -> bool:
        return self.refused is None

    def outcome(self) -> dict[str, Any]:
        """What replay compares: everything the server answered, nothing about timing."""
        return {"content": self.content, "structured_content": self.structured_content,
                "is_error": self.is_error, "failure": self.failure}


class McpCallOutcome(BaseModel):
    """A call's result for the assistant and its record for the dialogue."""

    result: ToolResult
    record: McpCallRecord


class Divergence(BaseModel):
    """A replayed write whose result is not the recorded one."""

    index: int = Field(description="Position of the call among the dialogue's recorded calls.")
    name: str
    arguments: dict[str, Any]
    recorded: dict[str, Any]
    replayed: dict[str, Any]

    def describe(self) -> str:
        def short(outcome: dict[str, Any]) -> str:
            return json.dumps(outcome, sort_keys=True, default=str)[:200]
        return f"call {self.index} ({self.name}): recorded {short(self.recorded)}, replayed {short(self.replayed)}"


class ReplayReport(BaseModel):
    """The recorded writes re-run on a fresh sandbox, and those whose results differed."""

    replayed: int = 0
    divergences: list[Divergence] = Field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    @property
    def first_divergent_index(self) -> int | None:
        """The first recorded call whose replay differed: a fork from past it cannot be rebuilt."""
        return self.divergences[0].index if self.divergences else None


def content_blocks(result: types.CallToolResult) -> list[dict[str, Any]]:
    return [block.model_dump(mode="json", exclude_none=True) for block in result.content]


def _text(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b.get("text", "") for b in blocks if b.get("type") == "text")


def _rows(value: Any) -> list[dict[str, Any]]:
    """The records a result carries: a list of objects, an object holding one such list, or one object."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
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
