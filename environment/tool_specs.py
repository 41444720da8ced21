"""Checks for tool specs, and the entity-field registry that keeps shared fields at one type."""

from __future__ import annotations

from typing import Any, Iterator

import jsonschema
from pydantic import BaseModel, Field

from environment.sources.sqlite.tool_checks import TOOL_NAME
from state.tools import Tool

# Fields whose values are open-ended: an enum on them invents a closed set that is not one.
_OPEN_ENDED = ("_id", "id", "name", "email", "query", "description", "text", "notes", "title", "address",
               "phone", "url", "comment", "message", "keyword", "date", "time", "_at")
_MAX_ENUM = 30


def fields(schema: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field name, JSON type) for every named property of a schema, nested objects and array items too."""
    if not isinstance(schema, dict):
        return
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            t = sub.get("type")
            if isinstance(t, list):
                t = next((x for x in t if x != "null"), None)
            if isinstance(t, str):
                yield name, t
            yield from fields(sub, name)
    if isinstance(schema.get("items"), dict):
        yield from fields(schema["items"], prefix)


def spec_problems(tool: Tool) -> list[str]:
    """Everything wrong with a tool spec: name, parameter schema, required, enums, output schema."""
    problems = []
    if not TOOL_NAME.match(tool.name):
        problems.append(f"name {tool.name!r} is not snake_case")
    for label, schema in (("parameters", tool.parameters), ("output_schema", tool.output_schema)):
        if not schema and label == "output_schema":
            continue
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"{label} is not a valid JSON Schema: {exc.message}")
    if tool.parameters.get("type") != "object":
        problems.append("parameters must be a JSON Schema of type object")
    missing = set(tool.required) - set(tool.properties)
    if missing:
        problems.append(f"required names unknown parameters: {sorted(missing)}")
    for name, prop in tool.properties.items():
        enum = prop.get("enum") if isinstance(prop, dict) else None
        if enum is None:
            continue
        lowered = name.lower()
        if not isinstance(enum, list) or not enum or len(enum) > _MAX_ENUM or len(set(map(str, enum))) != len(enum):
            problems.append(f"parameter {name!r}: enum must be a short list of distinct values")
        elif any(lowered == k or lowered.endswith(k) for k in _OPEN_ENDED):
            problems.append(f"parameter {name!r}: enum on an open-ended field (ids, names, dates are not closed sets)")
    return problems


class TypeConflict(BaseModel):
    field: str
    tool: str
    where: str
    found: str
    canonical: str
    first_seen: str

    def describe(self) -> str:
        return (f"{self.field} is {self.found} in {self.tool} ({self.where}) but {self.canonical} in "
                f"{self.first_seen}, where it first appeared")


def _compatible(field: str, a: str, b: str) -> bool:
    if a == b:
        return True
    is_id = field == "id" or field.endswith("_id")
    return not is_id and {a, b} == {"integer", "number"}


class EntityRegistry(BaseModel):
    """Each field's canonical type, fixed where it first appears (an input or an output)."""

    types: dict[str, str] = Field(default_factory=dict)
    first_seen: dict[str, str] = Field(default_factory=dict)

    def _occurrences(self, tool: Tool) -> Iterator[tuple[str, str, str]]:
        for name, t in fields(tool.parameters):
            yield name, t, "input"
        for name, t in fields(tool.output_schema):
            yield name, t, "output"

    def conflicts(self, tool: Tool) -> list[TypeConflict]:
        found = []
        local: dict[str, tuple[str, str]] = {}
        for name, t, where in self._occurrences(tool):
            canonical = self.types.get(name)
            origin = self.first_seen.get(name, "")
            if canonical is None and name in local:
                canonical, origin = local[name]
            if canonical is None:
                local[name] = (t, f"{tool.name} ({where})")
                continue
            if not _compatible(name, t, canonical):
                found.append(TypeConflict(field=name, tool=tool.name, where=where, found=t, canonical=canonical,
                                          first_seen=origin))
        return found

    def register(self, tool: Tool) -> None:
        for name, t, where in self._occurrences(tool):
            if name not in self.types:
                self.types[name] = t
                self.first_seen[name] = f"{tool.name} ({where})"

    def coerce(self, tool: Tool) -> Tool:
        """The tool with every registered field set to its canonical type."""
        def fix(schema: Any) -> Any:
            if isinstance(schema, dict):
                out = {k: fix(v) for k, v in schema.items()}
                for name, sub in (out.get("properties") or {}).items():
                    if isinstance(sub, dict) and name in self.types and isinstance(sub.get("type"), str) \
                            and not _compatible(name, sub["type"], self.types[name]):
                        sub["type"] = self.types[name]
                return out
            if isinstance(schema, list):
                return [fix(v) for v in schema]
            return schema
        return tool.model_copy(update={"parameters": fix(tool.parameters), "output_schema": fix(tool.output_schema)})
