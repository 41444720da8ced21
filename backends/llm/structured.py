"""Structured outputs: how a JSON role asks a server for JSON, and the ladder `auto` walks down when a
server refuses (HTTP 400/422, or a 5xx naming the response_format): `json_schema` (OpenAI, vLLM,
SGLang), then `json_object` with the schema (llama.cpp's form, which it turns into a grammar), then
the prompt alone. The mode an endpoint accepts is found once and remembered for the run.
"""

from __future__ import annotations

from typing import Any

LADDER = ("json_schema", "json_object", "prompt")

# The probe asks for the smallest object a schema can describe; only whether the server accepts the
# response format matters, not the answer.
PROBE_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
PROBE_PROMPT = 'Answer with the JSON object {"ok": true} and nothing else.'


def response_format(mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The `response_format` of a request in this mode (None: the prompt alone asks for JSON)."""
    if mode == "json_schema":
        # not strict: OpenAI's strict mode wants every property required and no open objects,
        # which our reply models (and most open servers) do not need
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def first_mode(wanted: str) -> str:
    """Where a request starts: the mode asked for, or the top of the ladder for auto."""
    return LADDER[0] if wanted == "auto" else wanted


def next_mode(mode: str, wanted: str) -> str | None:
    """The mode to try after a refusal of `mode`; None when there is nowhere further to go (a mode
    given explicitly is not second-guessed)."""
    if wanted != "auto" or mode == LADDER[-1]:
        return None
    return LADDER[LADDER.index(mode) + 1]


def describe(endpoint_modes: dict[str, str | None], refusals: dict[str, list[str]]) -> list[str]:
    """One line per endpoint for the start of a run: the mode settled on, and what was refused on the way."""
    lines = []
    for url, mode in endpoint_modes.items():
        refused = refusals.get(url) or []
        why = f" ({'; '.join(refused)})" if refused else ""
        lines.append(f"structured outputs: {mode or 'not probed'} at {url}{why}")
    return lines


# Bounds a schema sent to the server carries on every string and list it leaves open. A server that
# turns the schema into a grammar (llama.cpp, vLLM, SGLang) cannot let a string run on: a small model
# otherwise writes a whole imagined conversation into one message until the token limit cuts the JSON
# off (seen with SmolLM2-135M: 'Unterminated string'). Only what is sent is bounded; replies are read
# by the role's own model, so a longer reply from a server that ignores the bounds is still taken.
#
# llama.cpp's grammar parser refuses a string repeated past about 1,000 characters ("number of rules
# that are going to be repeated multiplied by the new repetition exceeds sane defaults") and
# llama-cpp-python's server dies of it, so no bound goes above that.
LLAMA_CPP_MAX_STRING = 1000
MAX_STRING = 800
MAX_ITEMS = 12
LONGER = {"sql": LLAMA_CPP_MAX_STRING, "description": LLAMA_CPP_MAX_STRING}  # by property name
MORE_ITEMS = {"tools": 64, "questions": 32}


def bounded(schema: Any, name: str = "") -> Any:
    """A copy of a JSON Schema with maxLength on open strings and maxItems on open arrays."""
    if isinstance(schema, list):
        return [bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {k: bounded(v, k) for k, v in value.items()}  # named: the name may choose the bound
        else:
            out[key] = bounded(value)
    kinds = out.get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds}
    if "string" in kinds and not {"enum", "const", "maxLength", "format", "pattern"} & out.keys():
        out["maxLength"] = LONGER.get(name, MAX_STRING)
    if "array" in kinds and "maxItems" not in out:
        out["maxItems"] = max(MORE_ITEMS.get(name, MAX_ITEMS), int(out.get("minItems", 0)))
    return out

