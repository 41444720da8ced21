"""Offline tool preparation: template questions, convention-following tool specs, rule-based gap
analysis and output schemas from naming conventions. Deterministic under the request's key."""

from __future__ import annotations

import random
from typing import Any

from backends.protocols import ExpansionRequest, OutputSchemaRequest, Question, QuestionRequest, ToolDesignRequest
from environment.seeds import tool_entity, tool_kind
from environment.tool_specs import fields
from state.tools import Tool

PERSONAS = ["a support agent", "a store manager", "a first-time customer", "an operations analyst",
            "a busy parent", "a team lead", "an auditor", "a new employee"]
# action -> (tool-name verb, kind, mode)
ACTIONS = {"get": ("get", "lookup", "read"), "search": ("search", "search", "read"), "list": ("list", "join", "read"),
           "create": ("create", "insert", "write"), "update": ("update", "update", "write"),
           "delete": ("delete", "delete", "write"), "count": ("count", "aggregate", "read")}
_NOT_FIELDS = {"query", "limit", "offset", "page", "sort", "order_by", "min", "max"}


def entities_of(tools: list[Tool]) -> list[str]:
    """Entities in order of appearance: tool subjects and the `<entity>_id` fields they mention."""
    found: list[str] = []
    for tool in tools:
        for name in [tool.table or tool_entity(tool.name), *(f[:-3] for f, _ in fields(tool.parameters)
                                                             if f.endswith("_id"))]:
            if name and name not in found:
                found.append(name)
    return found


def entity_fields(entity: str, tools: list[Tool]) -> dict[str, dict[str, Any]]:
    """What an entity looks like: its id plus every field its tools take or return."""
    words = entity.replace("_", " ")
    out: dict[str, dict[str, Any]] = {
        f"{entity}_id": {"type": "integer", "description": f"Id of the {words}."},
        # every record has a name and a status people ask about and change
        "name": {"type": "string", "description": f"Name of the {words}."},
        "status": {"type": "string", "description": f"Status of the {words}."},
    }
    for tool in tools:
        if (tool.table or tool_entity(tool.name)) != entity or tool.kind in ("aggregate", "delete"):
            continue
        for source in (tool.parameters, tool.output_schema.get("items", tool.output_schema)):
            for name, prop in (source.get("properties") or {}).items() if isinstance(source, dict) else []:
                if name not in _NOT_FIELDS and not name.startswith(("min_", "max_", "new_")) and isinstance(prop, dict):
                    out.setdefault(name, {k: v for k, v in prop.items() if k in ("type", "description", "enum",
                                                                                 "format")})
    return out


def _types(tools: list[Tool]) -> dict[str, str]:
    found: dict[str, str] = {}
    for tool in tools:
        for name, t in [*fields(tool.parameters), *fields(tool.output_schema)]:
            found.setdefault(name, t)
    return found


def spec(action: str, entity: str, tools: list[Tool]) -> dict[str, Any]:
    """A tool spec for `action` on `entity`, following the toolset's field names and types."""
    verb, kind, mode = ACTIONS[action]
    known = _types(tools)
    ent_fields = entity_fields(entity, tools)
    idf = f"{entity}_id"
    id_prop = {"type": known.get(idf, ent_fields[idf]["type"]), "description": f"Id of the {entity}."}
    words = entity.replace("_", " ")
    data = {k: {**v, "type": known.get(k, v.get("type", "string"))} for k, v in ent_fields.items() if k != idf}
    if action == "get":
        props, required, text = {idf: id_prop}, [idf], f"Get one {words} by its id."
    elif action == "search":
        props = {"query": {"type": "string", "description": f"Words to look for in the {words}."},
                 "limit": {"type": "integer", "description": "How many results at most."}}
        required, text = ["query"], f"Search {words}s by free text."
    elif action == "list":
        parents = [f for f in data if f.endswith("_id")]
        props = {p: {**data[p]} for p in parents[:1]} or {"status": {"type": "string",
                                                                     "description": f"Only {words}s with this status."}}
        required, text = list(props)[:1] if parents else [], f"List {words}s" + (
            f" of one {parents[0][:-3].replace('_', ' ')}." if parents else ", optionally by status.")
    elif action == "create":
        props = data or {"name": {"type": "string", "description": f"Name of the {words}."}}
        required, text = [k for k in props if k.endswith("_id") or k == "name"][:3] or list(props)[:1], \
            f"Create a new {words}."
    elif action == "update":
        editable = {k: v for k, v in data.items() if not k.endswith("_id")} or {
            "status": {"type": "string", "description": f"New status of the {words}."}}
        props, required, text = {idf: id_prop, **editable}, [idf], f"Update fields of one {words}."
    elif action == "delete":
        props, required, text = {idf: id_prop}, [idf], f"Delete one {words}."
    else:
        numeric = [k for k, v in data.items() if v.get("type") in ("integer", "number") and not k.endswith("_id")]
        props = {"status": {"type": "string", "description": f"Only count {words}s with this status."}}
        required = []
        text = f"Count {words}s" + (f" and total their {numeric[0].replace('_', ' ')}." if numeric else ".")
    name = f"{verb}_{entity}s" if action in ("list", "search", "count") else f"{verb}_{entity}"
    return {"name": name, "description": text, "parameters": {"type": "object", "properties": props,
                                                              "required": required},
            "mode": mode, "kind": kind, "table": entity}


def generate_questions(request: QuestionRequest) -> list[Question]:
    rng = random.Random(request.rng_key)
    entities = entities_of(request.seed_tools) or [request.domain.replace(" ", "_")]
    seeds = {(tool_kind(t.name), t.table or tool_entity(t.name)) for t in request.seed_tools}
    kind_to_action = {v[1]: k for k, v in ACTIONS.items()}
    pool: list[Question] = []
    templates = {
        "get": "Can you pull up the details of {a} {e} I'm looking at?",
        "search": "I need to find {e}s matching a few keywords; what do you have?",
        "list": "Show me every {e} we have on file, please.",
        "create": "Please set up a new {e} for me.",
        "update": "I need to change some details of an existing {e}.",
        "delete": "Remove {a} {e} that was entered by mistake.",
        "count": "How many {e}s do we have, and what do they add up to?",
    }
    for entity in entities:
        words = entity.replace("_", " ")
        article = "an" if words[:1] in "aeiou" else "a"
        for action, template in templates.items():
            pool.append(Question(text=f"As {rng.choice(PERSONAS)}: " + template.format(a=article, e=words),
                                 persona=rng.choice(PERSONAS), complexity="simple", intents=[f"{action}:{entity}"]))
        pool.append(Question(text=f"What happens if I ask for a {words} that does not exist?",
                             persona=rng.choice(PERSONAS), complexity="edge_case", intents=[f"get:{entity}"]))
    for a, b in zip(entities, entities[1:] + entities[:1]):
        if a == b:
            continue
        pool.append(Question(
            text=f"Find the {a.replace('_', ' ')} I mean, then list the {b.replace('_', ' ')}s linked to it and "
                 f"update the first one.", persona=rng.choice(PERSONAS), complexity="multi_step",
            intents=[f"search:{a}", f"list:{b}", f"update:{b}"]))
    for kind, entity in sorted(seeds):
        action = kind_to_action.get(kind)
        if action:
            pool.append(Question(text=f"Help me {action} a {entity.replace('_', ' ')} the usual way.",
                                 persona=rng.choice(PERSONAS), complexity="simple", intents=[f"{action}:{entity}"]))
    rng.shuffle(pool)
    count = max(20, min(30, request.count))
    while len(pool) < count:  # small domains: vary personas on the same needs
        q = pool[len(pool) % max(1, len(pool))]
        pool.append(q.model_copy(update={"persona": rng.choice(PERSONAS), "text": q.text.replace("please",
                                                                                               "if you can")}))
    return pool[:count]


def design_tools(request: ToolDesignRequest) -> list[dict[str, Any]]:
    out = []
    for intent in request.question.intents:
        action, _, entity = intent.partition(":")
        if action not in ACTIONS:
            continue
        seed = next((t for t in request.known_tools if t.origin == "seed" and
                     (t.table or tool_entity(t.name)) == entity and tool_kind(t.name) == ACTIONS[action][1]), None)
        out.append(seed.model_dump(exclude={"output_schema"}) if seed else spec(action, entity, request.known_tools))
    return out


def expand_tools(request: ExpansionRequest) -> list[dict[str, Any]]:
    """What each entity is missing, in a fixed order: get, search, list, create, update, delete, count."""
    have = {(t.table or tool_entity(t.name), t.kind) for t in request.tools}
    names = {t.name for t in request.tools}
    added: list[dict[str, Any]] = []
    for action in ("get", "search", "list", "create", "update", "delete", "count"):
        for entity in entities_of(request.tools):
            if len(added) >= request.max_new:
                return added
            kind = ACTIONS[action][1]
            if (entity, kind) in have:
                continue
            new = spec(action, entity, request.tools)
            if new["name"] in names:
                continue
            added.append(new)
            have.add((entity, kind))
            names.add(new["name"])
    return added


def predict_output_schema(request: OutputSchemaRequest) -> dict[str, Any]:
    """The return value from the tool's kind, with every field at its registered type."""
    tool = request.tool
    entity = tool.table or tool_entity(tool.name)
    tools = [*request.previous, tool]
    record = {k: {**v, "type": request.registry.get(k, v.get("type", "string"))}
              for k, v in entity_fields(entity, tools).items()}
    record.setdefault("created_at", {"type": "string", "format": "date-time", "description": "When it was created."})
    obj = {"type": "object", "description": f"One {entity.replace('_', ' ')}.", "properties": record,
           "required": [f"{entity}_id"]}
    if tool.kind in ("search", "join"):
        return {"type": "array", "description": f"Matching {entity.replace('_', ' ')}s.", "items": obj}
    if tool.kind == "delete":
        idf = f"{entity}_id"
        return {"type": "object", "description": "Outcome of the deletion.",
                "properties": {idf: record[idf], "deleted": {"type": "boolean", "description": "True when removed."}},
                "required": [idf, "deleted"]}
    if tool.kind == "aggregate":
        numeric = [k for k, v in record.items() if v.get("type") in ("integer", "number") and not k.endswith("_id")]
        props = {"count": {"type": "integer", "description": "How many match."}}
        if numeric:
            props[f"total_{numeric[0]}"] = {"type": "number", "description": f"Sum of {numeric[0]}."}
        return {"type": "object", "description": "Counts and totals.", "properties": props, "required": ["count"]}
    return obj
