"""Rendering our state for prompts: database schemas, tools, tool outcomes, transcripts, rubrics.

Plain text the prompt templates embed; one home so every role shows the same things the same way.
"""

from __future__ import annotations

import json
from typing import Iterable

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

from state.dialogue import ExecutedCall
from state.schema import DatabaseSchema
from state.tasks import ResultRef, Task
from state.tools import Tool, is_path_argument

# What a tool-writing prompt says of the source's SQL dialect (the schema's `dialect`): its name, and notes
# where it differs from what models write by habit.
_DIALECTS = {
    "sqlite": ("SQLite", ""),
    "postgres": ("PostgreSQL", "\n- In PostgreSQL: search text with ILIKE (cast a non-text column with ::text "
                               "first), round with ROUND(x::numeric, 2), and an INSERT may end with RETURNING."),
}


def dialect_of(database: DatabaseSchema) -> dict[str, str]:
    """The `engine` and `dialect_notes` a tool-writing prompt embeds for this schema's SQL dialect."""
    engine, notes = _DIALECTS.get(database.dialect or "sqlite", _DIALECTS["sqlite"])
    return {"engine": engine, "dialect_notes": notes}


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters)"


def render_schema(database: DatabaseSchema | None) -> str:
    """Tables with typed columns, keys, row counts and the data view, one JSON array per row."""
    if database is None:  # a source that offers its own tools (MCP servers, simulated tools): no tables to show
        return "(no database schema: the tools below are all there is; their argument examples show real values)"
    blocks = []
    for table in database.tables:
        cols = []
        for col in table.columns:
            flags = [col.declared_type or "(untyped)"]
            if col.pk_position:
                flags.append("PRIMARY KEY" if len(table.primary_key) == 1 else f"PRIMARY KEY part {col.pk_position}")
            if col.not_null and not col.pk_position:
                flags.append("NOT NULL")
            if col.unique and not col.pk_position:
                flags.append("UNIQUE")
            if col.has_default:
                flags.append("with a default")
            cols.append(f"{col.name} {' '.join(flags)}")
        lines = [f"Table {table.name} ({table.row_count} rows)", "  columns: " + ", ".join(cols)]
        if table.key_assigned_on_insert:
            lines.append(f"  {table.primary_key[0].name} is assigned automatically on insert")
        for fk in table.foreign_keys:
            lines.append(f"  foreign key: {fk.column} -> {fk.ref_table}.{fk.ref_column or '(primary key)'}")
        if table.sample_rows:
            names = list(table.sample_rows[0])
            lines.append(f"  data view, first {len(table.sample_rows)} rows as {_json(names)}:")
            lines.extend(f"    {_json([row.get(n) for n in names])}" for row in table.sample_rows)
        blocks.append("\n".join(lines))
    if database.skipped:
        blocks.append("Not usable by tools: " + "; ".join(f"{s.name} ({s.reason})" for s in database.skipped))
    return "\n\n".join(blocks)


def render_tools(tools: Iterable[Tool]) -> str:
    lines, optional = [], False
    for tool in tools:
        required = set(tool.required)
        optional = optional or any(p not in required for p in tool.properties)
        params = ", ".join(p if p in required else f"{p}?" for p in tool.properties)
        lines.append(f"- {tool.name}({params}): {tool.description}")
    if optional:
        lines.append("(an argument marked ? is optional)")
    return "\n".join(lines) or "(no tools)"


def render_known_values(tools: Iterable[Tool]) -> str:
    """The values the tools' schemas show (a source's probed values, the paths its sandbox holds), so a model
    writing tasks asks for what is there instead of guessing; empty when none shows any."""
    lines = [f"- {tool.name}.{name}: " + ", ".join(json.dumps(v, ensure_ascii=False) for v in prop["examples"][:6])
             for tool in tools for name, prop in tool.properties.items() if prop.get("examples")]
    return ("\n\nValues the source holds (use these, never invented ones):\n" + "\n".join(lines)) if lines else ""


def sandbox_paths_line(tools: Iterable[Tool]) -> str:
    """For tools of a service that works on files: the paths it holds, relative to its root (empty otherwise)."""
    paths = list(dict.fromkeys(str(v) for tool in tools if tool.source == "mcp"
                               for name, prop in tool.properties.items() if is_path_argument(name)
                               for v in prop.get("examples") or []))
    if not paths:
        return ""
    return ("\n\nThe service's files are named relative to its root; a path outside it is refused. Paths it "
            "holds: " + ", ".join(paths[:20]) + ".")


def summarize_call(call: ExecutedCall, limit: int = 300) -> str:
    result = call.result
    if result.error is not None:
        outcome = f"error ({result.error.type}): {result.error.message}"
    elif result.rows is not None:
        count = result.row_count if result.row_count is not None else len(result.rows)
        outcome = f"{count} row(s)" + (f", first: {_json(result.rows[0])}" if result.rows else "")
    else:
        outcome = f"{result.rows_affected} row(s) changed" + (
            f", new id {result.last_row_id}" if result.last_row_id else "")
    return _clip(f"- {call.tool}({_json(call.arguments)}) -> {outcome}", limit)


def render_transcript(messages: list[AnyMessage], *, user: str, result_chars: int | None,
                      marker_at: int | None = None, marker: str = "") -> str:
    """A readable conversation: texts, every tool call with its JSON arguments, and each result."""
    names: dict[str, str] = {}
    lines = []
    for i, message in enumerate(messages):
        if marker_at is not None and i == marker_at:
            lines.append(marker)
        if isinstance(message, HumanMessage):
            lines.append(f"{user}: {message.text}")
        elif isinstance(message, AIMessage):
            if message.text.strip():
                lines.append(f"Assistant: {message.text}")
            for call in message.tool_calls:
                names[call.get("id") or ""] = call["name"]
                lines.append(f"Assistant calls {call['name']}({_json(call.get('args') or {})})")
        elif isinstance(message, ToolMessage):
            name = message.name or names.get(message.tool_call_id, "tool")
            lines.append(f"Result of {name}: {_clip(message.text, result_chars)}")
    if marker_at is not None and marker_at >= len(messages):
        lines.append(marker)
    return "\n".join(lines)


def _arg(value: object) -> object:
    if isinstance(value, ResultRef):
        return f"<{value.field} from the result of subtask {value.subtask + 1}>"
    return value


def render_rubric(task: Task) -> str:
    rubric = task.rubric
    sections = []
    if rubric.items:
        items = []
        for item in rubric.items:
            line = f"- [{item.category}] {item.text}"
            if item.tool:
                line += f" (expects {item.tool}({_json({k: _arg(v) for k, v in item.arguments.items()})}))"
            items.append(line)
        sections.append("Items:\n" + "\n".join(items))
    for title, entries in (("Success criteria", rubric.success_criteria),
                           ("Expected tool-use pattern", rubric.expected_tool_pattern),
                           ("Checkpoints", rubric.checkpoints)):
        if entries:
            sections.append(f"{title}:\n" + "\n".join(f"- {e}" for e in entries))
    return "\n\n".join(sections) or "(no rubric: judge against the goal and its parts)"


def render_subtasks(task: Task) -> str:
    lines = []
    for i, sub in enumerate(task.subtasks, 1):
        lines.append(f"{i}. {sub.description}" + (f' (you might say: "{sub.ask}")' if sub.ask else ""))
    return "\n".join(lines) or "1. " + task.goal
