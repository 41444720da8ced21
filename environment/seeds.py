"""Seed tools: read the formats people actually have, normalize them, say exactly what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from environment.errors import InputError, read_json_input
from environment.sqlnames import singular, snake
from environment.tool_specs import spec_problems
from state.tools import Tool

# Types as they appear in the wild (Python names, BFCL-style "dict") -> JSON Schema types.
_TYPE_ALIASES = {"dict": "object", "float": "number", "double": "number", "int": "integer", "long": "integer",
                 "bool": "boolean", "str": "string", "list": "array", "tuple": "array", "any": "string"}


def normalize_schema(schema: Any) -> Any:
    """A JSON Schema with type aliases replaced, recursively."""
    if isinstance(schema, dict):
        out = {k: normalize_schema(v) for k, v in schema.items()}
        t = out.get("type")
        if isinstance(t, str) and t in _TYPE_ALIASES:
            out["type"] = _TYPE_ALIASES[t]
        elif isinstance(t, list):
            out["type"] = [_TYPE_ALIASES.get(x, x) if isinstance(x, str) else x for x in t]
        return out
    if isinstance(schema, list):
        return [normalize_schema(v) for v in schema]
    return schema


def _function(item: Any, i: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InputError(f"seed tool {i}: expected a JSON object, got {type(item).__name__}")
    if item.get("type") == "function" and isinstance(item.get("function"), dict):
        item = item["function"]
    label = f"seed tool {i}" + (f" ({item['name']})" if isinstance(item.get("name"), str) else "")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{label}: missing field 'name' (a function name)")
    params = item.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise InputError(f"{label}: field 'parameters' must be a JSON Schema object")
    params = normalize_schema(params)
    params.setdefault("type", "object")
    if params["type"] != "object":
        raise InputError(f"{label}: field 'parameters.type' must be 'object' (or 'dict'), not {params['type']!r}")
    properties = params.setdefault("properties", {})
    if not isinstance(properties, dict):
        raise InputError(f"{label}: field 'parameters.properties' must be an object")
    required = params.get("required", [])
    if not isinstance(required, list) or any(r not in properties for r in required):
        raise InputError(f"{label}: field 'parameters.required' must list names from 'properties'")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{label}: field 'description' must be text")
    return {"name": name, "description": description, "parameters": params}


def read_seed_tools(path: str | Path) -> list[Tool]:
    """Seed tools from a JSON file: a list of OpenAI function specs, `{"type": "function", ...}`
    wrappers, or bare function objects (also under a top-level "tools" key)."""
    p = Path(path)
    data = read_json_input(p, "seed tools")
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise InputError(f"seed tools {p}: expected a non-empty JSON list of function specs")
    tools, seen = [], set()
    for i, item in enumerate(data):
        fn = _function(item, i)
        name = snake(fn["name"], "tool")
        if name in seen:
            raise InputError(f"seed tool {i} ({fn['name']}): the name appears twice")
        seen.add(name)
        tool = Tool(name=name, description=fn["description"], parameters=fn["parameters"],
                    mode=tool_mode(name), kind=tool_kind(name), table=tool_entity(name), origin="seed")
        problems = spec_problems(tool)
        if problems:
            raise InputError(f"seed tool {i} ({fn['name']}): {problems[0]}")
        tools.append(tool)
    return tools


_WRITE_VERBS = ("create", "add", "update", "set", "delete", "remove", "cancel", "book", "place", "submit",
                "register", "assign", "send", "change", "edit", "insert", "make", "schedule", "pay", "transfer")
_KINDS = {"get": "lookup", "fetch": "lookup", "search": "search", "find": "search", "list": "join",
          "create": "insert", "add": "insert", "register": "insert", "book": "insert", "update": "update",
          "set": "update", "change": "update", "delete": "delete", "remove": "delete", "cancel": "update",
          "count": "aggregate", "summarize": "aggregate", "top": "top"}


def _verb(name: str) -> str:
    return name.split("_", 1)[0]


def tool_mode(name: str) -> str:
    """read or write, from the verb the name starts with."""
    return "write" if _verb(name) in _WRITE_VERBS else "read"


def tool_kind(name: str) -> str:
    return _KINDS.get(_verb(name), "other")


def tool_entity(name: str) -> str:
    """The entity a tool works on, from its name: get_user_orders -> user_order."""
    parts = name.split("_")[1:]
    if "by" in parts:
        parts = parts[: parts.index("by")]
    for skip in ("for", "of", "with"):
        if skip in parts:
            parts = parts[: parts.index(skip)]
    return singular("_".join(parts)) if parts else name


