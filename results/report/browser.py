"""What the dialogue browser shows of each dialogue, as plain JSON for the page's script."""

from __future__ import annotations

import json
from typing import Any

from results.exporters.openai_format import chat_message
from results.exporters.source import SourceDialogue
from state.verification import Difference, Fact, describe_fact

MAX_TOOL_RESULT = 4000  # characters of one tool result shown; the rest is counted, to keep the page light


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def _clip(text: str) -> str:
    if len(text) <= MAX_TOOL_RESULT:
        return text
    return text[:MAX_TOOL_RESULT] + f"\n… ({len(text) - MAX_TOOL_RESULT} more characters)"


def _message(message: dict[str, Any]) -> dict[str, Any]:
    m = chat_message(message)
    out: dict[str, Any] = {"role": m["role"], "content": str(m.get("content") or "")}
    if m.get("reasoning_content"):
        out["reasoning"] = str(m["reasoning_content"])
    if m.get("tool_calls"):
        out["calls"] = [{"id": c["id"], "name": c["function"]["name"], "arguments": _pretty(c["function"]["arguments"])}
                        for c in m["tool_calls"]]
    if m["role"] == "tool":
        out["name"] = str(m.get("name") or "")
        out["content"] = _clip(out["content"])
    return out


def checked(meta: dict[str, Any], task: int) -> dict[str, Any]:
    """A task's verification for the browser: its state, and for a failed task the rows and columns that differ
    from the goal diff and the facts the user was not told."""
    entry = next((e for e in meta.get("verification", []) if e.get("task") == task), None)
    if entry is None:
        return {}
    block = entry["verification"]
    return {"state": block["state"], "facts_told": block["facts_told"],
            "differences": [Difference.model_validate(d).describe() for d in block.get("differences", [])],
            "untold": [describe_fact(Fact.model_validate(f)) for f in entry.get("facts", []) if not f["told"]],
            "real_diff": diff_lines(entry.get("real_diff", {})) if not block.get("valid", True) else []}


def diff_lines(diff: dict[str, Any]) -> list[str]:
    """A diff as lines a person reads: table, what happened to which row, old -> new."""
    lines = []
    for name, table in diff.get("tables", {}).items():
        for kind in ("inserted", "deleted", "updated"):
            for row in table.get(kind, []):
                key = ", ".join(f"{k}={v!r}" for k, v in row["key"].items())
                what = ", ".join(f"{c}: {ch['old']!r} -> {ch['new']!r}" for c, ch in row.get("changes", {}).items()) \
                    or json.dumps(row.get("values", {}), ensure_ascii=False, default=str)
                lines.append(f"{name} {kind} {key}: {what}")
    return lines


def browser_entry(dialogue: SourceDialogue) -> dict[str, Any]:
    meta = dialogue.metadata
    return {
        "id": dialogue.id, "run": dialogue.run, "valid": dialogue.valid, "reason": dialogue.reason or "",
        "database": dialogue.database,
        "messages": [_message(m) for m in dialogue.messages],
        "tasks": [{"goal": t.get("goal", ""), "difficulty": t.get("difficulty", ""), "rubric": t.get("rubric", {})}
                  for t in meta.get("tasks", [])],
        "verdicts": [{"task": v.get("task_index", 0), "judgment": v.get("judgment", ""),
                      "reasoning": v.get("reasoning", ""), "items": v.get("items", []),
                      **checked(meta, v.get("task_index", 0))}
                     for v in meta.get("verdicts", [])],
        "error": str(meta.get("error") or ""),
    }


def browser_json(dialogues: list[SourceDialogue]) -> str:
    """The entries as JSON safe inside a <script> element (no `</` can close it early)."""
    return json.dumps([browser_entry(d) for d in dialogues], ensure_ascii=False).replace("</", "<\\/")
