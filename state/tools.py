"""Tools: OpenAI function specs bound to parameterized SQL, and what executing one returns."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

# argument names that hold a path: path, paths, file, source, destination, repo_path, root, directory, ...
PATH_ARGUMENT = re.compile(r"(^|_)(path|paths|file|files|filename|dir|directory|root|source|destination|repo)$")


def is_path_argument(name: str) -> bool:
    return bool(PATH_ARGUMENT.search(name.lower()))


ToolKind = Literal["lookup", "search", "range", "join", "aggregate", "top", "insert", "update", "delete", "other"]


class Tool(BaseModel):
    """An OpenAI function spec bound to a kind of tool source: one parameterized SQL statement run on a
    database's sandbox, an output schema its simulated results follow, or a source's own tool."""

    name: str = Field(description="snake_case function name, unique in the toolset.")
    description: str
    parameters: dict[str, Any] = Field(description="JSON Schema (type object) of the arguments.")
    source: str = Field("", description="The kind of source that runs it ('sqlite', 'simulated', or a registered "
                                        "kind); empty in older toolsets: 'sqlite' with SQL, else 'simulated'.")
    sql: str = Field("", description="One parameterized statement using :name placeholders; empty when simulated.")
    mode: Literal["read", "write"] = "read"
    kind: ToolKind = "other"
    table: str = Field("", description="The main table (or entity) the tool works on.")
    origin: Literal["model", "schema", "seed"] = Field(
        "schema", description="'model' when an LLM proposed it, 'schema' when derived, 'seed' when given."
    )
    output_schema: dict[str, Any] = Field(default_factory=dict, description="JSON Schema of the return value.")

    @model_validator(mode="after")
    def _bound(self) -> "Tool":
        if not self.source:
            self.source = "sqlite" if self.sql else "simulated"
        return self

    def function_spec(self) -> dict[str, Any]:
        """The OpenAI function spec (name, description, parameters)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def openai_tool(self) -> dict[str, Any]:
        """The tool as the chat-completions `tools` array expects it."""
        return {"type": "function", "function": self.function_spec()}

    def toolset_entry(self) -> dict[str, Any]:
        """The tool as written to toolset.json: its function spec plus its SQL (or output schema) and mode."""
        entry = {**self.function_spec(), "source": self.source, "mode": self.mode, "kind": self.kind,
                 "table": self.table, "origin": self.origin}
        if self.sql:
            entry["sql"] = self.sql
        if self.output_schema:
            entry["output_schema"] = self.output_schema
        return entry

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.parameters.get("properties", {}))


class DroppedTool(BaseModel):
    name: str
    reason: str


class Toolset(BaseModel):
    tools: list[Tool]
    dropped: list[DroppedTool] = []
    proposed: int = Field(0, description="How many tools the backend proposed.")
    repaired: int = Field(0, description="How many proposals were accepted after one repair.")
    completed_from_schema: bool = Field(
        False, description="True when too few proposals survived and schema-derived tools were added."
    )
    notes: list[str] = []

    def get(self, name: str) -> Tool | None:
        for tool in self.tools:
            if tool.name == name:
                return tool
        return None


class ToolError(BaseModel):
    # unavailable: the dialogue has no source for the tool; tool_error: the tool itself answered with an error
    # (an MCP result with isError)
    type: Literal["unknown_tool", "invalid_arguments", "constraint_violation", "sql_error", "budget_exceeded",
                  "unavailable", "tool_error"]
    message: str
    field: str | None = Field(None, description="The argument that was refused, when one was.")


class ToolResult(BaseModel):
    """What one tool call returned. Errors are results too: they never raise.

    `rows` holds the records a result carries (a simulated object counts as one row), so later calls
    can refer to them whatever the tool's output shape.
    """

    ok: bool
    value: Any = Field(None, description="A simulated tool's result, exactly as the tool returns it.")
    rows: list[dict[str, Any]] | None = None
    row_count: int | None = Field(None, description="Rows the query produced (before truncation).")
    truncated: bool = False
    rows_affected: int | None = None
    last_row_id: int | None = None
    error: ToolError | None = None

    @classmethod
    def from_content(cls, content: dict[str, Any]) -> "ToolResult":
        """A result read back from a tool message's JSON object (one given in a conversation, not run here)."""
        if "error" in content:
            return cls(ok=False, error=ToolError(type="sql_error", message=str(content["error"])))
        if "rows" in content:
            return cls(ok=True, rows=content["rows"], row_count=content.get("row_count", len(content["rows"])))
        return cls(ok=True, rows_affected=content.get("rows_affected"), last_row_id=content.get("last_row_id"))

    def first_row(self) -> dict[str, Any] | None:
        """The first record it carries: its first row, or its value when that is a record (or a list of them)."""
        if self.rows:
            return self.rows[0]
        if isinstance(self.value, dict):
            return self.value
        if isinstance(self.value, list) and self.value and isinstance(self.value[0], dict):
            return self.value[0]
        return None

    def to_content(self) -> Any:
        """The JSON object the tool message carries."""
        if self.error is not None:
            return {"error": self.error.model_dump(exclude_none=True)}
        if self.value is not None:
            return self.value
        if self.rows is not None:
            content: dict[str, Any] = {"rows": self.rows, "row_count": self.row_count}
            if self.truncated:
                content["note"] = f"showing the first {len(self.rows)} of {self.row_count} rows"
            return content
        return {"rows_affected": self.rows_affected, "last_row_id": self.last_row_id}
