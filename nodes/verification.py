"""The validator's state-first checks: at the end of a task, the database's real diff since the task began
against the goal diff, the required facts against what the assistant said, and the user's conduct.

The judge (LLM or offline) still scores the rubric's non-state items; a task is valid only when state,
facts and judge all pass and the simulated user stayed in character.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from environment.sources.pool import DialogueSandboxes
from environment.state_match import match
from nodes.plan_check import label_field
from state.dialogue import ExecutedCall
from state.sources import Sources
from state.tasks import Task
from state.tools import Tool
from state.verification import Fact, FactCheck, StateCheck, StateDiff, Verification

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
# Lines of the user simulator's own instructions (prompts/user_simulator.md) that a person would never say.
SCAFFOLDING = ("hidden from the assistant", "never paste it", "what you want (", "the parts of it, in the order",
               "how to behave:", "reveal your goal a piece at a time", "is_task_complete", "user_message",
               "you might say:", "answer with one json object", "stay in character")


# -- facts ----------------------------------------------------------------------------------------

def _norm(text: str) -> str:
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
    said = _norm(text)
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
    if re.search(rf"(?<!\w){re.escape(_norm(value))}(?!\w)", said):  # "Ada" is not told by "Adams"
        return True
    day = _date(value)
    if day is not None and re.match(r"^\d{4}-\d\d-\d\d", value.strip()):
        return any(_norm(day.strftime(f)) in said for f in _DATE_FORMATS)
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


# -- the user's conduct ----------------------------------------------------------------------------

def user_fault(messages: list[AnyMessage]) -> str:
    """A user message that quotes its instructions' scaffolding, or repeats the user's previous message
    verbatim while the assistant has not moved (no tool call between them): a simulator fault; '' when the
    user behaved."""
    previous = ""
    moved = False
    for message in messages:
        if isinstance(message, HumanMessage):
            text = _norm(message.text)
            quoted = next((s for s in SCAFFOLDING if s in text), None)
            if quoted:
                return f"the user quoted its instructions' scaffolding ({quoted!r}): {message.text[:120]!r}"
            if text and text == previous and not moved:
                return f"the user repeated itself verbatim while the assistant had not moved: {message.text[:120]!r}"
            previous, moved = text, False
        elif isinstance(message, AIMessage) and message.tool_calls:
            moved = True
    return ""


# -- the state -------------------------------------------------------------------------------------

def real_diff(source_name: Sources, seed: int, earlier: list[ExecutedCall], this_task: list[ExecutedCall],
              tools: dict[str, Tool]) -> tuple[StateDiff, list[str]]:
    """What the task's own calls changed, replayed on fresh sandboxes of the dialogue's sources (a saved
    trial rescored, a kind that cannot capture its changes): the earlier tasks' calls replayed, a mark, this
    task's calls replayed, and the changes since the mark (blocking: run it in a worker thread); and the ids of
    replayed calls that gave another result than recorded (a source that does not replay the same is
    reported, never hidden). Reads change nothing, so a task without a successful write has an empty diff."""
    if not any(c.mode == "write" and c.result.ok for c in this_task):
        return StateDiff(), []
    boxes = DialogueSandboxes(source_name, seed)
    try:
        boxes.replay(earlier, tools)
        boxes.open_for(tools[c.tool] for c in this_task if c.tool in tools)
        before = boxes.mark()
        boxes.replay(this_task, tools)
        return boxes.since(before), list(boxes.diverged)
    finally:
        boxes.close()


def live_diff(boxes: DialogueSandboxes, earlier: list[ExecutedCall], this_task: list[ExecutedCall],
              tools: dict[str, Tool]) -> tuple[StateDiff, list[str]]:
    """What the task's own calls changed, read from the change logs of the dialogue's live sandboxes (which hold
    every recorded call: the pool's checkout); where a sandbox does not capture its changes, from a replay on
    fresh sandboxes (`real_diff`). Blocking: run it in a worker thread."""
    if not any(c.mode == "write" and c.result.ok for c in this_task):
        return StateDiff(), []
    found = boxes.changes_since_call(len(earlier))
    if found is None:
        return real_diff(boxes.source_name, boxes.seed, earlier, this_task, tools)
    return found, []


def check_state(task: Task, actual: StateDiff) -> StateCheck:
    if task.expected is None:
        return StateCheck(status="unchecked", real_diff=actual)
    chosen, found = match(task.expected.alternatives, actual)
    if chosen is not None:
        return StateCheck(status="match", real_diff=actual, alternative=chosen)
    return StateCheck(status="mismatch", real_diff=actual, differences=found)


def verify(task: Task, messages: list[AnyMessage], calls: list[ExecutedCall], actual: StateDiff,
           judge_passed: bool) -> Verification:
    """Every part of one finished task's check (the real diff computed already)."""
    facts = resolve_facts(task.expected.facts, task, calls) if task.expected else []
    checked = check_facts(facts, messages)
    fault = user_fault(messages)
    return Verification(state=check_state(task, actual), facts=checked, facts_told=all(c.told for c in checked),
                        judge="pass" if judge_passed else "fail", user_conduct="fault" if fault else "ok",
                        user_fault=fault)
