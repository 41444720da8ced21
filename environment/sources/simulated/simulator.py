"""Simulated tools: results drawn from a tool's output schema, kept consistent by a per-dialogue world.

The world remembers every entity a tool has returned (by id), so the same id keeps its fields for the
rest of the dialogue, and writes (create, update, delete) are reflected in later reads. Results are
validated against the output schema; whatever a model simulates is checked and repaired the same way.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from typing import Any

import jsonschema
from state.dialogue import SimulatedWorld
from state.tools import Tool

_FIRST = ["Ava", "Liam", "Maya", "Noah", "Zoe", "Omar", "Lena", "Ravi", "Iris", "Theo", "Nina", "Hugo"]
_LAST = ["Garcia", "Chen", "Okafor", "Novak", "Silva", "Kim", "Moreau", "Patel", "Jensen", "Rossi"]
_WORDS = ["standard", "premium", "basic", "express", "classic", "compact", "deluxe", "eco", "pro", "mini"]
_STATUS = ["active", "pending", "confirmed", "shipped", "completed"]


def id_field(tool: Tool) -> str:
    props = set(_props(tool.output_schema)) | set(tool.properties)
    own = f"{tool.table}_id"
    return own if own in props else ("id" if "id" in props else own)


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return schema["items"].get("properties", {})
    return schema.get("properties", {}) or {}


def _type(schema: dict[str, Any]) -> str:
    t = schema.get("type", "string")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    return t


class Drawer:
    """Draws plausible values for a field from its name, its schema and the dialogue's reference time."""

    def __init__(self, rng: random.Random, reference: dt.datetime, world: SimulatedWorld) -> None:
        self.rng, self.reference, self.world = rng, reference, world

    def new_id(self, field: str, json_type: str) -> Any:
        self.world.serial += 1
        if json_type == "integer":
            return 1000 + self.world.serial * 7 + self.rng.randrange(7)
        prefix = (field[:-3] if field.endswith("_id") else field)[:3].upper() or "ID"
        return f"{prefix}-{10000 + self.world.serial * 37 + self.rng.randrange(37)}"

    def value(self, field: str, schema: dict[str, Any]) -> Any:
        t, name, rng = _type(schema), field.lower(), self.rng
        if "enum" in schema and schema["enum"]:
            return rng.choice(schema["enum"])
        if t == "object":
            return self.fill(schema, {})
        if t == "array":
            items = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
            return [self.value(field, items) for _ in range(rng.randint(1, 3))]
        if t == "boolean":
            return rng.random() < 0.7
        if name == "id" or name.endswith("_id"):
            return self.new_id(field, t)
        if t == "integer":
            if any(k in name for k in ("count", "quantity", "qty", "number", "total", "stock")):
                return rng.randint(1, 40)
            if "year" in name:
                return rng.randint(2015, self.reference.year)
            return rng.randint(1, 500)
        if t == "number":
            if any(k in name for k in ("rating", "score")):
                return round(rng.uniform(1, 5), 1)
            return round(rng.uniform(5, 500), 2)
        fmt = schema.get("format", "")
        if fmt in ("date-time", "date") or name.endswith(("_at", "_date", "_time", "date", "time")) or \
                name in ("timestamp", "created", "updated"):
            moment = self.reference + dt.timedelta(days=rng.randint(-60, 30), minutes=rng.randrange(0, 600, 15))
            return moment.date().isoformat() if fmt == "date" or name.endswith("date") else \
                moment.isoformat(timespec="minutes")
        if "email" in name:
            return f"{rng.choice(_FIRST).lower()}.{rng.choice(_LAST).lower()}@example.com"
        if name == "name":
            return f"{rng.choice(_WORDS).title()} {rng.choice(['Edition', 'Plan', 'Kit', 'Series', 'Model', 'Set'])}"
        if "name" in name:
            return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" if any(k in name for k in ("user", "customer", "full",
                                                                                          "person", "owner")) \
                else f"{rng.choice(_WORDS).title()} {field.replace('_name', '').replace('_', ' ').title()}"
        if "status" in name:
            return rng.choice(_STATUS)
        if "phone" in name:
            return f"555-01{rng.randint(10, 99)}"
        if "currency" in name:
            return "USD"
        if "url" in name or "link" in name:
            return f"https://example.com/{field}/{rng.randint(100, 999)}"
        if any(k in name for k in ("city", "location", "address")):
            return rng.choice(["Portland", "Lisbon", "Osaka", "Denver", "Lyon", "Austin"])
        return f"{rng.choice(_WORDS)} {field.replace('_', ' ')}"

    def fill(self, schema: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        """An object for `schema`: fields the record knows keep their values, the others are drawn."""
        out = {}
        for name, sub in (schema.get("properties") or {}).items():
            sub = sub if isinstance(sub, dict) else {}
            if name in record and _fits(record[name], sub):
                out[name] = copy.deepcopy(record[name])
            else:
                out[name] = self.value(name, sub)
        return out


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(value, schema)
        return True
    except jsonschema.ValidationError:
        return False


def validation_error(tool: Tool, result: Any) -> str | None:
    """Why a result does not match the tool's output schema, or None."""
    if not tool.output_schema:
        return None
    errors = sorted(jsonschema.validators.validator_for(tool.output_schema)(tool.output_schema).iter_errors(result),
                    key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    where = ".".join(str(p) for p in errors[0].absolute_path)
    return f"{where}: {errors[0].message}" if where else errors[0].message


def _key(entity: str, ident: Any) -> str:
    return f"{entity}:{ident}"


def simulate(tool: Tool, args: dict[str, Any], world: SimulatedWorld, rng: random.Random,
             reference: dt.datetime) -> Any:
    """A result for one call, drawn from the output schema and consistent with the world (which it updates)."""
    draw = Drawer(rng, reference, world)
    schema = tool.output_schema or {"type": "object", "properties": {}}
    idf = id_field(tool)
    entity = tool.table
    filters = {k: v for k, v in args.items() if v is not None}
    if schema.get("type") == "array":
        item_schema = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "object"}
        known = [r for k, r in world.entities.items() if k.startswith(entity + ":")
                 and all(r.get(f) == v for f, v in filters.items() if f in r)]
        fresh = [draw.fill(item_schema, {**filters}) for _ in range(rng.randint(1, 3))] if not known else []
        items = [draw.fill(item_schema, r) for r in known[:5]] + fresh
        for item in items:
            if idf in item:
                world.entities[_key(entity, item[idf])] = {**world.entities.get(_key(entity, item[idf]), {}), **item}
        return items
    ident = args.get(idf)
    record = world.entities.get(_key(entity, ident), {}) if ident is not None else {}
    verb = tool.kind
    if verb == "insert":
        ident = ident if ident is not None else draw.new_id(idf, _type(_props(schema).get(idf, {"type": "integer"})))
        record = {**filters, idf: ident}
    elif tool.mode == "write" and verb == "delete":
        world.entities.pop(_key(entity, ident), None)
        return draw.fill(schema, {idf: ident, "deleted": True, "success": True, "status": "deleted"})
    elif tool.mode == "write":
        record = {**record, **filters}
        if tool.name.startswith("cancel") and "status" in _props(schema):
            record["status"] = "cancelled"
    else:
        record = {**filters, **record}  # what the world knows wins over what was asked
    result = draw.fill(schema, record)
    if ident is not None or idf in result:
        ident = result.get(idf, ident)
        world.entities[_key(entity, ident)] = {**record, **result}
    return result


def reconcile(tool: Tool, args: dict[str, Any], result: Any, world: SimulatedWorld) -> Any:
    """Make a model's simulated result agree with the world: known entities keep their fields."""
    idf = id_field(tool)
    entity = tool.table

    if tool.kind == "delete" and args.get(idf) is not None:
        world.entities.pop(_key(entity, args[idf]), None)
        return result

    def one(obj: Any) -> Any:
        if not isinstance(obj, dict) or obj.get(idf) is None:
            return obj
        known = world.entities.get(_key(entity, obj[idf]), {})
        merged = {**obj, **{k: v for k, v in known.items() if k in obj}}
        if tool.mode == "write":
            merged.update({k: v for k, v in args.items() if k in merged})
        world.entities[_key(entity, obj[idf])] = {**known, **merged}
        return merged

    return [one(x) for x in result] if isinstance(result, list) else one(result)
