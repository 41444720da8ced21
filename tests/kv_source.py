"""A tiny tool source of the tests' own, written against the protocol alone: a key-value store in a JSON file.

Named `kv://PATH` (PATH: a JSON object of text values). Its tools (search, get, add, put, delete, list) are
its own; each dialogue works on a private copy of the store; writes replay from the recorded calls.
Importing this module registers the kind (FORGE_SOURCE_KINDS='["tests.kv_source"]' does it in every process).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from environment.errors import InputError
from environment.sources.arguments import check_arguments
from environment.sources.base import CallContext, CallOutcome, Catalog
from environment.sources.kind import SourceKind
from environment.sources.registry import register_source_kind
from state.dialogue import ExecutedCall
from state.tools import Tool, ToolError, ToolResult
from state.verification import ColumnChange, RowChange, StateDiff, TableDiff

SCHEME = "kv://"
_ITEM = {"type": "object", "properties": {"item_id": {"type": "string"}, "value": {"type": "string"}},
         "required": ["item_id", "value"]}


def _tool(name: str, description: str, params: dict[str, Any], kind: str, mode: str = "read",
          output: dict[str, Any] | None = None) -> Tool:
    return Tool(name=name, description=description, source="kv", kind=kind, mode=mode, table="item",
                parameters={"type": "object", "properties": params, "required": list(params)},
                output_schema=output or _ITEM)


TOOLS = [
    _tool("search_items", "Items whose key or value contains the words.", {"query": {"type": "string"}}, "search",
          output={"type": "array", "items": _ITEM}),
    _tool("get_item", "One item by its key.", {"item_id": {"type": "string"}}, "lookup"),
    _tool("list_items", "Every key in the store.", {}, "other",
          output={"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "string"}}}}),
    _tool("add_item", "Store a new item under a key.", {"item_id": {"type": "string"}, "value": {"type": "string"}},
          "insert", "write"),
    _tool("update_item", "Replace an item's value.", {"item_id": {"type": "string"}, "value": {"type": "string"}},
          "update", "write"),
    _tool("delete_item", "Remove an item.", {"item_id": {"type": "string"}}, "delete", "write"),
]


class KvSandbox:
    def __init__(self, data: dict[str, str]) -> None:
        self.data = dict(data)

    def _run(self, tool: Tool, args: dict[str, Any]) -> ToolResult:
        key = args.get("item_id")
        missing = ToolResult(ok=False, error=ToolError(type="unavailable", message=f"no item {key!r}"))
        if tool.name == "search_items":
            words = str(args["query"]).lower().split()
            found = [{"item_id": k, "value": v} for k, v in sorted(self.data.items())
                     if all(w in f"{k} {v}".lower() for w in words)]
            return ToolResult(ok=True, value=found, rows=found, row_count=len(found))
        if tool.name == "list_items":
            return ToolResult(ok=True, value={"keys": sorted(self.data)}, rows=[], row_count=len(self.data))
        if tool.name == "add_item" and key in self.data:
            return ToolResult(ok=False, error=ToolError(type="constraint_violation", message=f"{key!r} exists"))
        if tool.name != "add_item" and key not in self.data:
            return missing
        if tool.name in ("add_item", "update_item"):
            self.data[key] = args["value"]
        if tool.name == "delete_item":
            return ToolResult(ok=True, value={"item_id": key, "value": self.data.pop(key)}, rows_affected=1)
        item = {"item_id": key, "value": self.data[key]}
        return ToolResult(ok=True, value=item, rows=[item], row_count=1)

    async def call(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> CallOutcome:
        error = check_arguments(tool, arguments, context.max_argument_chars)
        return CallOutcome(result=ToolResult(ok=False, error=error) if error else self._run(tool, arguments))

    def replay(self, call: ExecutedCall, tool: Tool) -> ToolResult | None:
        return self._run(tool, call.arguments) if call.mode == "write" and call.result.ok else None

    def snapshot(self) -> dict[str, str]:
        return dict(sorted(self.data.items()))

    def diff(self, before: dict[str, str], after: dict[str, str]) -> StateDiff:
        """The store as one table `item`, keyed by item_id."""
        table = TableDiff()
        for key in sorted(set(after) - set(before)):
            table.inserted.append(RowChange(key={"item_id": key}, values={"item_id": key, "value": after[key]}))
        for key in sorted(set(before) - set(after)):
            table.deleted.append(RowChange(key={"item_id": key}, values={"item_id": key, "value": before[key]}))
        for key in sorted(k for k in set(before) & set(after) if before[k] != after[k]):
            table.updated.append(RowChange(key={"item_id": key},
                                           changes={"value": ColumnChange(old=before[key], new=after[key])}))
        return StateDiff(tables={} if table.is_empty() else {"item": table})

    def close(self) -> None:
        self.data = {}


class KvSource:
    kind = "kv"
    simulated = False

    def __init__(self, name: str) -> None:
        self.name = name
        path = Path(name.removeprefix(SCHEME))
        try:
            self.data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the key-value store {path}: {exc}") from None
        if not isinstance(self.data, dict):
            raise InputError(f"not a key-value store (a JSON object): {path}")
        self.label = path.stem

    def catalog(self) -> Catalog:
        return Catalog(tools=TOOLS)

    def open(self, seed: int) -> KvSandbox:
        return KvSandbox(self.data)

    def check_tool(self, tool: Tool, sandbox: Any) -> str | None:
        return None if tool.name in {t.name for t in TOOLS} else f"the store has no tool {tool.name}"

    def derive_tools(self, database: Any, limit: int) -> list[Tool]:
        return []  # no schema: its tools are all there is


class KvKind(SourceKind):
    kind = "kv"
    named = True

    def claims(self, name: str) -> bool:
        return name.startswith(SCHEME)

    def expand(self, arg: str) -> list[str]:
        return [arg]

    def open(self, name: str) -> KvSource:
        return KvSource(name)


register_source_kind(KvKind())
