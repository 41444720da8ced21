"""What the dialogue browser shows of each dialogue, as plain JSON for the page's script."""

from __future__ import annotations

import json
from typing import Any

from results.exporters.openai_format import chat_message
from results.exporters.source import SourceDialogue

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


def browser_entry(dialogue: SourceDialogue) -> dict[str, Any]:
    meta = dialogue.metadata
    return {
        "id": dialogue.id, "run": dialogue.run, "valid": dialogue.valid, "reason": dialogue.reason or "",
        "database": dialogue.database,
        "messages": [_message(m) for m in dialogue.messages],
        "tasks": [{"goal": t.get("goal", ""), "difficulty": t.get("difficulty", ""), "rubric": t.get("rubric", {})}
                  for t in meta.get("tasks", [])],
        "verdicts": [{"task": v.get("task_index", 0), "judgment": v.get("judgment", ""),
                      "reasoning": v.get("reasoning", ""), "items": v.get("items", [])}
                     for v in meta.get("verdicts", [])],
        "error": str(meta.get("error") or ""),
    }


def browser_json(dialogues: list[SourceDialogue]) -> str:
    """The entries as JSON safe inside a <script> element (no `</` can close it early)."""
    return json.dumps([browser_entry(d) for d in dialogues], ensure_ascii=False).replace("</", "<\\/")
