"""The offline validator: checks the rubric against the calls that actually ran and their results."""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from backends.protocols import JudgeRequest
from state.dialogue import ExecutedCall, JudgedItem, Verdict
from state.tasks import RubricItem

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.casefold() == actual.casefold()
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and not isinstance(expected, bool):
        return abs(float(expected) - float(actual)) < 1e-9
    return expected == actual


def _satisfies(item: RubricItem, call: ExecutedCall) -> bool:
    return call.tool == item.tool and call.result.ok and all(
        name in call.arguments and _same(value, call.arguments[name]) for name, value in item.arguments.items()
    )


def _numbers(text: str) -> set[str]:
    return {n.lstrip("-").rstrip("0").rstrip(".") if "." in n else n.lstrip("-") for n in _NUMBER.findall(text)}


def ungrounded_numbers(request: JudgeRequest) -> list[str]:
    """Numbers the assistant stated that appear in no tool result and no user message."""
    known: set[str] = set()
    for m in request.messages:
        if isinstance(m, (ToolMessage, HumanMessage)):
            known |= _numbers(m.text)
    for call in request.calls:
        dump = json.dumps(call.result.to_content())
        known |= _numbers(dump) | _numbers(dump.replace("_", " "))  # field names are read out as words
    claims: set[str] = set()
    for m in request.messages:
        if isinstance(m, AIMessage) and not m.tool_calls:
            claims |= _numbers(m.text)
    return sorted(claims - known)


def judge(request: JudgeRequest) -> Verdict:
    items: list[JudgedItem] = []
    for item in request.task.rubric.items:
        if item.category != "Critical" or item.tool is None:
            items.append(JudgedItem(text=item.text, category=item.category, met=None, note="not enforced"))
            continue
        met = any(_satisfies(item, call) for call in request.calls)
        items.append(JudgedItem(text=item.text, category=item.category, met=met,
                                note="" if met else "no successful call matches"))
    ungrounded = ungrounded_numbers(request)
    items.append(JudgedItem(text="Every value the assistant states comes from a tool result or the user.",
                            category="Critical", met=not ungrounded,
                            note=f"ungrounded values: {ungrounded}" if ungrounded else ""))
    errors = [c for c in request.calls if c.result.error is not None]
    if errors:
        last_text = " ".join(m.text.lower() for m in request.messages if isinstance(m, AIMessage) and not m.tool_calls)
        surfaced = any(w in last_text for w in ("fail", "error", "couldn't", "could not", "not found", "no match"))
        retried = all(any(c2.tool == e.tool and c2.result.ok for c2 in request.calls) for e in errors)
        items.append(JudgedItem(text="Tool errors are reported honestly or recovered from.", category="Critical",
                                met=surfaced or retried))
    unmet = [i for i in items if i.category == "Critical" and i.met is False]
    premature = request.user_declared_complete and bool(unmet)
    if not request.user_declared_complete:
        reasoning = "The user never declared the goal complete: the turn budget ran out first."
        judgment = "invalid"
    elif unmet:
        reasoning = "Critical rubric items are unmet: " + "; ".join(f"{i.text} ({i.note})" for i in unmet)
        if premature:
            reasoning = "Premature completion. " + reasoning
        judgment = "invalid"
    else:
        met = sum(1 for i in items if i.met)
        reasoning = f"All {met} enforced rubric items are met by successful tool calls, and every stated value is grounded."
        judgment = "valid"
    return Verdict(task_index=request.task_index, judgment=judgment, reasoning=reasoning, items=items,
                   premature_completion=premature)
