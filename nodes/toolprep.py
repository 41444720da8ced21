"""Tool-preparation stages: questions, tool design, merge, expansion, output schemas, checks.

Each stage reads only its input model and returns its output model, so any one can be swapped.
"""

from __future__ import annotations

import logging
import re

from langgraph.runtime import Runtime
from pydantic import BaseModel, ValidationError

from backends.protocols import ExpansionRequest, OutputSchemaRequest, QuestionRequest, ToolDesignRequest
from environment.seeds import normalize_schema, tool_entity, tool_kind, tool_mode
from environment.sqlnames import snake
from environment.tool_specs import EntityRegistry, spec_problems
from nodes.common import backend_of
from state.config import Settings
from state.toolprep import Question, StageReport, ToolprepState
from state.tools import DroppedTool, Tool

log = logging.getLogger(__name__)
_SYNONYMS = {"fetch": "get", "retrieve": "get", "read": "get", "show": "get", "lookup": "search", "find": "search",
             "query": "search", "remove": "delete", "add": "create", "register": "create", "new": "create",
             "modify": "update", "edit": "update", "change": "update", "set": "update"}


class _Stage(BaseModel):
    domain: str
    seed: int


def _key(state: _Stage, stage: str, *parts: object) -> str:
    return ":".join(str(p) for p in (state.seed, "toolprep", stage, *parts))


def as_tool(raw: dict, origin: str = "model") -> tuple[Tool | None, str]:
    """A proposed spec as a Tool (mode, kind and entity filled in from its name), or why it is not one."""
    try:
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            return None, "no name"
        params = normalize_schema(raw.get("parameters") or {"type": "object", "properties": {}})
        tool = Tool(name=name, description=str(raw.get("description", "")), parameters=params,
                    mode=raw.get("mode") if raw.get("mode") in ("read", "write") else tool_mode(snake(name)),
                    kind=raw.get("kind") or tool_kind(snake(name)), table=raw.get("table") or tool_entity(snake(name)),
                    origin=origin)
    except (ValidationError, AttributeError, TypeError) as exc:
        return None, f"not a function spec: {str(exc).splitlines()[0]}"
    problems = spec_problems(tool)
    return (None, "; ".join(problems)) if problems else (tool, "")


class QuestionsIn(_Stage):
    seed_tools: list[Tool]
    question_count: int


async def questions(state: ToolprepState, runtime: Runtime[Settings]) -> dict:
    """(a) 20-30 realistic questions for the domain, inspired by the seeds."""
    s = QuestionsIn.model_validate(state.model_dump())
    found, _ = await backend_of(runtime).generate_questions(QuestionRequest(
        domain=s.domain, seed_tools=s.seed_tools, count=s.question_count, rng_key=_key(s, "questions")))
    report = StageReport(stage="questions", produced=len(found), kept=len(found))
    return {"questions": found, "reports": [*state.reports, report]}


class DesignIn(_Stage):
    questions: list[Question]
    seed_tools: list[Tool]


async def design(state: ToolprepState, runtime: Runtime[Settings]) -> dict:
    """(b) For each question, the tools that would solve it; later questions see earlier tools."""
    s = DesignIn.model_validate(state.model_dump())
    backend = backend_of(runtime)
    report = StageReport(stage="design")
    designed: list[Tool] = []
    for i, question in enumerate(s.questions):
        try:
            specs, _ = await backend.design_tools(ToolDesignRequest(
                domain=s.domain, question=question, known_tools=[*s.seed_tools, *designed],
                rng_key=_key(s, "design", i)))
        except Exception as exc:  # a stage output that stays malformed after retries: dropped, with the reason
            report.dropped.append(DroppedTool(name=f"question {i + 1}", reason=f"{type(exc).__name__}: {exc}"[:300]))
            continue
        for raw in specs:
            report.produced += 1
            tool, why = as_tool(raw, origin=raw.get("origin", "model") if raw.get("origin") == "seed" else "model")
            if tool is None:
                report.dropped.append(DroppedTool(name=str(raw.get("name", "?")), reason=why))
                continue
            designed.append(tool)
            report.kept += 1
    return {"designed": designed, "reports": [*state.reports, report]}


def _normal_name(name: str) -> str:
    verb, _, rest = name.partition("_")
    return f"{_SYNONYMS.get(verb, verb)}_{re.sub(r's$', '', rest)}"


def _settle_types(tool: Tool, registry: EntityRegistry, report: StageReport) -> Tool:
    """Register a tool's fields; one that contradicts an earlier type takes that type, and it is logged."""
    conflicts = registry.conflicts(tool)
    if conflicts:
        tool = registry.coerce(tool)
        report.repaired += 1
        report.notes += [f"repaired: {c.describe()}" for c in conflicts]
    registry.register(tool)
    return tool


class MergeIn(_Stage):
    seed_tools: list[Tool]
    designed: list[Tool]


async def merge(state: ToolprepState, runtime: Runtime[Settings]) -> dict:
    """(c) One tool per name: near-duplicates folded into the first, type conflicts resolved to the
    type a field had where it first appeared."""
    s = MergeIn.model_validate(state.model_dump())
    report = StageReport(stage="merge", produced=len(s.seed_tools) + len(s.designed))
    registry = EntityRegistry()
    kept: dict[str, Tool] = {}
    for tool in [*s.seed_tools, *s.designed]:
        key = _normal_name(tool.name)
        if key in kept:
            first = kept[key]
            if tool.name != first.name or tool.parameters != first.parameters:
                report.notes.append(f"folded {tool.name} into {first.name}")
            continue
        tool = _settle_types(tool, registry, report)
        kept[key] = tool
    report.kept = len(kept)
    return {"merged": list(kept.values()), "field_types": registry.types, "field_first_seen": registry.first_seen,
            "reports": [*state.reports, report]}


class ExpandIn(_Stage):
    merged: list[Tool]
    max_new_tools: int
    field_types: dict[str, str]
    field_first_seen: dict[str, str]


async def expand(state: ToolprepState, runtime: Runtime[Settings]) -> dict:
    """(d) Gap analysis of the whole set: at most max_new complementary tools in its conventions."""
    s = ExpandIn.model_validate(state.model_dump())
    report = StageReport(stage="expand")
    registry = EntityRegistry(types=s.field_types, first_seen=s.field_first_seen)
    taken = {_normal_name(t.name) for t in s.merged}
    try:
        specs, _ = await backend_of(runtime).expand_tools(ExpansionRequest(
            domain=s.domain, tools=s.merged, max_new=s.max_new_tools, rng_key=_key(s, "expand")))
    except Exception as exc:
        specs = []
        report.dropped.append(DroppedTool(name="expansion", reason=f"{type(exc).__name__}: {exc}"[:300]))
    added: list[Tool] = []
    for raw in specs:
        report.produced += 1
        tool, why = as_tool(raw)
        if tool is None or _normal_name(tool.name) in taken or len(added) >= s.max_new_tools:
            report.dropped.append(DroppedTool(name=str(raw.get("name", "?")),
                                              reason=why or "duplicates an existing tool or exceeds the limit"))
            continue
        tool = _settle_types(tool, registry, report)
        taken.add(_normal_name(tool.name))
        added.append(tool)
    report.kept = len(added)
    return {"expanded": added, "field_types": registry.types, "field_first_seen": registry.first_seen,
            "reports": [*state.reports, report]}


class OutputsIn(_Stage):
    merged: list[Tool]
    expanded: list[Tool]
    field_types: dict[str, str]
    field_first_seen: dict[str, str]


async def outputs(state: ToolprepState, runtime: Runtime[Settings]) -> dict:
    """(e) An output schema per tool, tool after tool in one running conversation. A schema that breaks
    a field's type is fed back once for repair; what still conflicts is set to the canonical type and
    reported."""
    s = OutputsIn.model_validate(state.model_dump())
    backend = backend_of(runtime)
    registry = EntityRegistry(types=s.field_types, first_seen=s.field_first_seen)
    report = StageReport(stage="output_schemas")
    done: list[Tool] = []
    for tool in [*s.merged, *s.expanded]:
        report.produced += 1
        request = OutputSchemaRequest(tool=tool, previous=done, registry=registry.types)
        try:
            schema, _ = await backend.predict_output_schema(request)
            candidate = tool.model_copy(update={"output_schema": normalize_schema(schema)})
            conflicts = registry.conflicts(candidate)
            if conflicts:
                feedback = "; ".join(c.describe() for c in conflicts)
                schema, _ = await backend.predict_output_schema(request.model_copy(update={"feedback": feedback}))
                candidate = tool.model_copy(update={"output_schema": normalize_schema(schema)})
                still = registry.conflicts(candidate)
                report.repaired += 1
                if still:
                    candidate = registry.coerce(candidate)
                    report.notes += [f"still conflicting after repair, set to the canonical type: {c.describe()}"
                                     for c in still]
                else:
                    report.notes.append(f"{tool.name}: repaired after feedback ({feedback})")
        except Exception as exc:
            report.dropped.append(DroppedTool(name=tool.name, reason=f"no output schema: {type(exc).__name__}: {exc}"[:300]))
            continue
        problems = spec_problems(candidate)
        if problems:
            report.dropped.append(DroppedTool(name=tool.name, reason="; ".join(problems)))
            continue
        registry.register(candidate)
        done.append(candidate)
        report.kept += 1
    return {"tools": done, "field_types": registry.types, "field_first_seen": registry.first_seen,
            "reports": [*state.reports, report]}


class CheckIn(_Stage):
    tools: list[Tool]
    field_types: dict[str, str]


async def check(state: ToolprepState, runtime: Runtime[Settings]) -> dict:
    """The last word: names unique and snake_case, schemas valid, every field at one type."""
    s = CheckIn.model_validate(state.model_dump())
    registry = EntityRegistry()
    report = StageReport(stage="check", produced=len(s.tools))
    kept, names = [], set()
    for tool in s.tools:
        problems = spec_problems(tool) + ([f"duplicate name {tool.name}"] if tool.name in names else [])
        conflicts = registry.conflicts(tool)
        problems += [c.describe() for c in conflicts]
        if problems:
            report.dropped.append(DroppedTool(name=tool.name, reason="; ".join(problems)))
            continue
        registry.register(tool)
        names.add(tool.name)
        kept.append(tool)
    report.kept = len(kept)
    return {"tools": kept, "field_types": registry.types, "reports": [*state.reports, report]}
