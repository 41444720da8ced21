"""MCP calls as a dialogue keeps them: each call's record, and what replaying the writes found.

Plain data, so the dialogue's state can hold them (the environment that makes them imports this).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field


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
