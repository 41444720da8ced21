"""MCP tools as the project's tools: namespaced by server, read or write by their annotations, checked."""

from __future__ import annotations

import re
from typing import Any

from mcp import types
from pydantic import BaseModel, Field

from environment.tool_specs import spec_problems
from state.tools import DroppedTool, Tool, Toolset

SEPARATOR = "__"


class McpTool(BaseModel):
    """A tool of an MCP server, and the project's Tool made from it."""

    server: str
    remote_name: str = Field(description="The tool's own name on its server.")
    annotations: dict[str, Any] = Field(default_factory=dict)
    tool: Tool

    @property
    def name(self) -> str:
        return self.tool.name


class McpToolListing(BaseModel):
    """Every usable tool of a run's servers, and those left out with the reason."""

    tools: list[McpTool] = Field(default_factory=list)
    dropped: list[DroppedTool] = Field(default_factory=list)

    def get(self, name: str) -> McpTool | None:
        return next((t for t in self.tools if t.name == name), None)

    def toolset(self) -> Toolset:
        notes = [f"{len(self.tools)} tools from MCP servers {', '.join(sorted({t.server for t in self.tools}))}"]
        return Toolset(tools=[t.tool for t in self.tools], dropped=self.dropped, notes=notes)


def namespaced(server: str, tool: str) -> str:
    """`server__tool` in the characters every chat API accepts in a function name (lower snake case)."""
    def clean(text: str) -> str:
        return re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", text.lower())).strip("_")
    name = f"{clean(server)}{SEPARATOR}{clean(tool)}"
    return name if name[:1].isalpha() else f"t_{name}"


def _usability_problems(tool: Tool) -> list[str]:
    # the enum heuristics judge specs a model wrote; a real server's closed sets are its own business
    return [p for p in spec_problems(tool) if "enum" not in p]


_READER_NAMES = ("list_", "get_", "read_", "describe_", "search_", "show_", "find_")


def convert(server: str, listed: types.Tool, taken: set[str]) -> McpTool | DroppedTool:
    """One listed tool as an McpTool, or the reason it cannot be offered to a model."""
    name = namespaced(server, listed.name)
    label = f"{server}/{listed.name}"
    if name in taken:
        return DroppedTool(name=label, reason=f"its name {name!r} is already taken by another tool")
    annotations = listed.annotations.model_dump(exclude_none=True) if listed.annotations else {}
    # a server that says nothing of it (no readOnlyHint): a tool named as a reader is one (list_tables,
    # read_query); a wrong guess still shows in the state diff, which the sandbox's files make
    read_only = bool(annotations.get("readOnlyHint")) if "readOnlyHint" in annotations else \
        listed.name.lower().startswith(_READER_NAMES)
    tool = Tool(name=name, source="mcp", description=(listed.description or listed.title or listed.name).strip(),
                parameters=dict(listed.inputSchema or {}), mode="read" if read_only else "write",
                table=server, origin="seed", output_schema=dict(listed.outputSchema or {}))
    problems = _usability_problems(tool)
    if problems:
        return DroppedTool(name=label, reason="; ".join(problems))
    return McpTool(server=server, remote_name=listed.name, annotations=annotations, tool=tool)


def listing(tools_by_server: dict[str, list[types.Tool]]) -> McpToolListing:
    """The run's toolset from each server's tools/list answer, in server then listing order."""
    out = McpToolListing()
    for server, tools in tools_by_server.items():
        for listed in tools:
            converted = convert(server, listed, {t.name for t in out.tools})
            if isinstance(converted, McpTool):
                out.tools.append(converted)
            else:
                out.dropped.append(converted)
    return out
