"""A toolset's tools as typed Python callables with Google-style docstrings, the shape trainers read tools in
(TRL and transformers' `get_json_schema`, verifiers' tool environments): the signature and docstring are made
from the tool's JSON Schema, the call goes to the episode, which checks the arguments as the executor does.
"""

from __future__ import annotations

import inspect
import keyword
import re
from typing import Any, Callable

from state.tools import Tool

_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                          "object": dict}
RESERVED = {"reset", "get_reward", "send_message_to_user"}
RESULT_DOC = "The tool's result as JSON: its rows or what it changed, or an error saying what to correct."


def python_name(name: str, taken: set[str]) -> str:
    """A valid, unused Python identifier for a tool or argument name (odd schemas have spaces, dashes, ...)."""
    base = re.sub(r"\W", "_", name) or "arg"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = f"_{base}" if base[0].isdigit() else f"{base}_"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _annotation(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if kinds else None
    return _TYPES.get(kind, Any) if isinstance(kind, str) else Any


def _one_line(text: str) -> str:
    return " ".join(str(text or "").split()) or "(no description)"


def docstring(tool: Tool, names: dict[str, str]) -> str:
    """Google style: the description, one `Args:` line per argument (choices where the schema lists them)."""
    properties = (tool.parameters or {}).get("properties") or {}
    lines = [_one_line(tool.description), ""]
    if names:
        lines.append("Args:")
        for original, name in names.items():
            schema = properties.get(original) or {}
            text = _one_line(schema.get("description") or original)
            if schema.get("enum"):
                text += f" (choices: {list(schema['enum'])})"
            lines.append(f"    {name}: {text}")
        lines.append("")
    lines += ["Returns:", f"    {RESULT_DOC}"]
    return "\n".join(lines)


def typed_callable(tool: Tool, invoke: Callable[..., Any], method: bool = False, taken: set[str] | None = None) \
        -> Callable[..., Any]:
    """A function named after the tool, whose keyword arguments are the tool's (optional ones default to None)
    and whose call is `invoke(tool_name, arguments)`, or `invoke(self, tool_name, arguments)` for a method."""
    properties = (tool.parameters or {}).get("properties") or {}
    required = set((tool.parameters or {}).get("required") or [])
    names: dict[str, str] = {}
    used: set[str] = {"self"}
    for original in properties:
        names[original] = python_name(original, used)
    back = {v: k for k, v in names.items()}
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] if method else []
    annotations: dict[str, Any] = {}
    ordered = sorted(properties, key=lambda p: p not in required)  # required ones first, as Python needs
    for original in ordered:
        hint = _annotation(properties[original])
        name = names[original]
        if original in required:
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint))
        else:
            hint = hint | None if hint is not Any else Any
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint, default=None))
        annotations[name] = hint
    annotations["return"] = str

    def arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
        # an optional argument left at None is left out, as a model that did not give it would
        return {back.get(k, k): v for k, v in kwargs.items() if not (v is None and back.get(k, k) not in required)}

    if method:
        def call(self, **kwargs: Any) -> str:
            return invoke(self, tool.name, arguments(kwargs))
    else:
        def call(**kwargs: Any) -> str:
            return invoke(tool.name, arguments(kwargs))
    call.__name__ = call.__qualname__ = python_name(tool.name, set(taken or set()) | RESERVED)
    call.__doc__ = docstring(tool, {o: names[o] for o in ordered})
    call.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    call.__annotations__ = annotations
    return call


def callables_of(tools: list[Tool], invoke: Callable[..., Any], method: bool = False) -> list[Callable[..., Any]]:
    """Every tool as a typed callable, their names unique and clear of the environment's own methods."""
    taken: set[str] = set()
    out = []
    for tool in tools:
        fn = typed_callable(tool, invoke, method, taken)
        taken.add(fn.__name__)
        out.append(fn)
    return out

