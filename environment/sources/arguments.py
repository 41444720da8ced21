"""Arguments checked before any source sees them: the tool's JSON Schema, text size, finite numbers."""

from __future__ import annotations

import math
from typing import Any

import jsonschema

from state.tools import Tool, ToolError

DEFAULT_MAX_ARGUMENT_CHARS = 10_000
_MESSAGE_CHARS = 300  # an error quotes what it refused; a megabyte of it helps nobody


def refusal(field: str, message: str) -> ToolError:
    text = f"{field}: {message}" if field else message
    return ToolError(type="invalid_arguments", message=text[:_MESSAGE_CHARS], field=field or None)


def _value_problem(value: Any, max_chars: int) -> str | None:
    """What no tool accepts anywhere in an argument: text over the size limit, NaN or an infinity."""
    if isinstance(value, str) and len(value) > max_chars:
        return f"text of {len(value)} characters is longer than the {max_chars} allowed"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, dict):
        return next((p for v in value.values() if (p := _value_problem(v, max_chars))), None)
    if isinstance(value, list):
        return next((p for v in value if (p := _value_problem(v, max_chars))), None)
    return None


def check_arguments(tool: Tool, arguments: Any, max_chars: int = DEFAULT_MAX_ARGUMENT_CHARS) -> ToolError | None:
    """Validate call arguments against the tool's JSON Schema (no unknown keys), refusing over-long text and
    non-finite numbers. A source adds its own rules on top (SQL binds single values only)."""
    if not isinstance(arguments, dict):
        return refusal("", f"arguments must be a JSON object, not {type(arguments).__name__}")
    for name, value in arguments.items():
        problem = _value_problem(value, max_chars)
        if problem:
            return refusal(str(name)[:80], problem)
    schema = {"additionalProperties": False, **tool.parameters}
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.absolute_path)
        if not field and first.validator == "additionalProperties":
            field = next((str(k) for k in arguments if k not in tool.properties), "")[:80]
        elif not field and first.validator == "required":
            field = next((k for k in tool.required if k not in arguments), "")
        return refusal(field, first.message)
    return None


def typed_arguments(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """Checked arguments as values of their declared types: an integer given as 3.0 is 3. The one binding of a
    call, whether it runs for the first time or is replayed."""
    out = dict(arguments)
    for name, value in arguments.items():
        declared = tool.properties.get(name, {}).get("type")
        integer = declared == "integer" or (isinstance(declared, list) and "integer" in declared)
        if integer and isinstance(value, float) and value.is_integer():
            out[name] = int(value)
    return out
