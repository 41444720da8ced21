"""The facts of a task: what the user must be told (read off the reference plan's results at the plan check)
and whether the assistant's words told it (at the verdict): numbers normalised, dates in common formats,
text case-insensitive.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage

from state.dialogue import ExecutedCall
from state.tasks import PlannedCall, Task
from state.tools import ToolResult
from state.verification import Fact, FactCheck

Plan = list[list[list[PlannedCall]]]  # per subtask, its steps: what the plan check runs

_NUMBER = re.compile(r"(?<![\w.])-?\$?\d[\d,]*(?:\.\d+)?")
_WORD_NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NOTHING = re.compile(r"\bno matching\b|\bno such\b|\bno (?:\w+ )?(?:records?|results?|rows?|match(?:es)?|entries|one)\b"
                      r"|\bnone\b|\bnothing\b|n't find|not find|\bfound 0\b|\b0 (?:records?|results?|rows?|matches)\b")
_CANNOT = re.compile(r"\b(?:can ?not|can't|can’t|unable|not able|no tool|don't have|do not have|isn't something i|"
                     r"is not something i|outside (?:of )?(?:what|my)|beyond what|not possible)\b")
_CONFIRM_WORDS = ("done", "updated", "added", "changed", "saved", "deleted", "removed", "set ", "recorded",
                  "created", "booked", "cancelled", "canceled", "registered", "scheduled")
_DATE_FORMATS = ("%Y-%m-%d", "%B %d, %Y", "%B %-d, %Y", "%d %B %Y", "%-d %B %Y", "%b %d, %Y", "%b %-d, %Y",
                 "%d %b %Y", "%-d %b %Y", "%m/%d/%Y", "%-m/%-d/%Y", "%d/%m/%Y", "%-d/%-m/%Y", "%d.%m.%Y",
                 "%B %-d", "%-d %B")
def norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _numbers(text: str) -> list[float]:
    found = []
    for raw in _NUMBER.findall(text):
        try:
            found.append(float(raw.replace("$", "").replace(",", "")))
        except ValueError:
            continue
    for word in re.findall(r"[a-z]+", text.casefold()):
        if word in _WORD_NUMBERS:
            found.append(float(_WORD_NUMBERS[word]))
    return found


def _date(value: str) -> dt.date | None:
    try:
        return dt.datetime.fromisoformat(value.strip()[:19].replace(" ", "T")).date() if len(value) >= 10 else None
    except ValueError:
        return None


def told(value: Any, kind: str, text: str) -> bool:
    """Whether the assistant's words carry a fact: numbers normalised, dates in common formats, text
    case-insensitive."""
    said = norm(text)
    if kind == "cannot":
        return bool(_CANNOT.search(said))
    if kind == "confirmation":
        return any(w in said for w in _CONFIRM_WORDS)
    if kind == "none":
        return bool(_NOTHING.search(said))
    if value is None:
        return any(w in said for w in ("none", "null", "not set", "empty", "no "))
    if isinstance(value, bool):
        return str(value).casefold() in said or ("yes" if value else "no") in said.split()
    if isinstance(value, (int, float)):
        return any(abs(n - float(value)) < 1e-6 * max(1.0, abs(float(value))) for n in _numbers(text))
    value = str(value)
    if re.search(rf"(?<!\w){re.escape(norm(value))}(?!\w)", said):  # "Ada" is not told by "Adams"
        return True
    day = _date(value)
    if day is not None and re.match(r"^\d{4}-\d\d-\d\d", value.strip()):
        return any(norm(day.strftime(f)) in said for f in _DATE_FORMATS)
    return False


def assistant_text(messages: list[AnyMessage]) -> str:
    return "\n".join(m.text for m in messages if isinstance(m, AIMessage) and m.text)


def resolve_facts(facts: list[Fact], task: Task, calls: list[ExecutedCall]) -> list[Fact]:
    """Simulated tools draw their values when called: a fact's value is read from the task's real result of
    the tool that the subtask's plan ends with."""
    out = []
    for fact in facts:
        if fact.resolved:
            out.append(fact)
            continue
        steps = task.subtasks[fact.subtask].steps
        tool = steps[-1][0].tool if steps and steps[-1] else ""
        real = next((c for c in reversed(calls) if c.tool == tool and c.result.ok), None)
        row = None
        if real is not None:
            rows = real.result.rows or ([real.result.value] if isinstance(real.result.value, dict) else [])
            row = rows[0] if rows else None
        field = fact.field or (label_field(row) if row else "") or ""
        out.append(fact.model_copy(update={"field": field, "value": row.get(field) if row else None,
                                           "resolved": row is not None}))
    return out


def check_facts(facts: list[Fact], messages: list[AnyMessage]) -> list[FactCheck]:
    text = assistant_text(messages)
    return [FactCheck(fact=f, told=f.resolved and told(f.value, f.kind, text)) for f in facts]


# -- the facts a plan yields ----------------------------------------------------------------------

def label_field(row: dict[str, Any], window: int = 3) -> str | None:
    """The field a short answer names a record by: the first text among its first `window` values, else the
    first value that is not an id, else the first value."""
    present = [(k, v) for k, v in row.items() if v is not None and not (isinstance(v, str) and v.startswith("<BLOB"))]
    text = [k for k, v in present[:window] if isinstance(v, str)]
    if text:
        return text[0]
    plain = [k for k, _ in present[:window] if not (k.lower() == "id" or k.lower().endswith("_id"))]
    return (plain or [k for k, _ in present])[0] if present else None


def facts_for(task: Task, plan: Plan, results: dict[tuple[int, int], ToolResult], simulated: bool) -> list[Fact]:
    """What the user must be told: per subtask, from its last step's result, the fields it asks for (the
    record's label and, for several rows, their count), that nothing matched, or the confirmation of a write."""
    facts: list[Fact] = []
    for i, steps in enumerate(plan):
        if not steps:
            if task.subtasks[i].cannot:  # the user must hear that it cannot be done
                facts.append(Fact(subtask=i, kind="cannot"))
            continue
        result = results[(i, len(steps) - 1)]
        subtask = task.subtasks[i]
        if result.rows is None and result.value is None:
            facts.append(Fact(subtask=i, kind="confirmation"))
            continue
        row = result.first_row()
        if row is None:
            facts.append(Fact(subtask=i, kind="none"))
            continue
        # a single record is described in full (its first six values), several by their first three each
        window = 6 if (result.row_count or 1) == 1 else 3
        fields = subtask.answer_fields or [f for f in [label_field(row, window)] if f]
        for name in fields:
            facts.append(Fact(subtask=i, field=name, value=None if simulated else row.get(name),
                              resolved=not simulated))
        if not subtask.answer_fields and (result.row_count or 0) > 1 and not simulated:
            facts.append(Fact(subtask=i, kind="count", value=result.row_count))
    return facts
