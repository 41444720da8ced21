"""What a hard case asks beyond state and facts (docs/hard-cases.md), at the plan check and at the verdict.

At the plan check a task must be the hard case it says it is: a held-back value the plan writes and the
user's words leave out, a withheld tool that is the toolset's, parts that cannot be done with no plan. At
the verdict, a missing-information task needs the assistant's question before the user gives the value (a
user who gives it unasked is a simulator fault), and an out-of-scope request no tool call.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from state.dialogue import ExecutedCall
from state.tasks import ResultRef, Task
from state.tools import Tool
from state.verification import Verification
from verification.facts import told


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def user_words(task: Task) -> str:
    """Everything the user's part of a task states: its goal, and each subtask's statement and ask."""
    return " ".join([task.goal, *(s.ask for s in task.subtasks), *(s.description for s in task.subtasks)])


def variant_problem(task: Task, tools: list[Tool]) -> str:
    """Why a task is not the hard case it claims to be ('' when it is)."""
    cannot = [i for i, s in enumerate(task.subtasks) if s.cannot]
    names = {t.name for t in tools}
    if task.variant in ("standard", "crowded", "missing-info") and cannot:
        return f"subtask {cannot[0] + 1} is marked as impossible, but only missing-tool and out-of-scope tasks " \
               f"have parts that cannot be done"
    if task.variant == "missing-info":
        held = task.held_back
        if held is None:
            return "a missing-info task must name its held-back value (held_back)"
        if not 0 <= held.subtask < len(task.subtasks) or not task.subtasks[held.subtask].changes_data:
            return f"the held-back value belongs to subtask {held.subtask + 1}, which is no write of the task"
        planned = [c.arguments.get(held.argument) for step in task.subtasks[held.subtask].steps for c in step]
        if not any(v is not None and not isinstance(v, ResultRef) and _shown(v) == _shown(held.value)
                   for v in planned):
            return f"no planned call of subtask {held.subtask + 1} gives {held.argument}={held.value!r}"
        if _shown(held.value).casefold() in user_words(task).casefold():
            return f"the held-back value {held.value!r} is stated in the user's goal or requests: it is not held back"
    elif task.held_back is not None:
        return "only a missing-info task holds a value back"
    if task.variant == "missing-tool":
        if not task.withheld_tools or not cannot:
            return "a missing-tool task withholds a tool of the toolset and has a part that cannot be done for it"
        unknown = [n for n in task.withheld_tools if n not in names]
        if unknown:
            return f"the withheld tool {unknown[0]!r} is not a tool of this dialogue"
    if task.variant == "out-of-scope" and len(cannot) != len(task.subtasks):
        return "every part of an out-of-scope task is something the tools cannot do (no plan)"
    return ""


def _told_value(task: Task, text: str) -> bool:
    assert task.held_back is not None
    return told(task.held_back.value, "value", text)


def _asks(message: AnyMessage) -> bool:
    return isinstance(message, AIMessage) and "?" in message.text


def volunteered(task: Task, messages: list[AnyMessage]) -> str:
    """A user that states the held-back value before the assistant asked anything: a simulator fault."""
    if task.variant != "missing-info" or task.held_back is None:
        return ""
    for message in messages:
        if _asks(message):
            return ""
        if isinstance(message, HumanMessage) and _told_value(task, message.text):
            return f"the user gave the held-back {task.held_back.label} before the assistant asked for it: " \
                   f"{message.text[:120]!r}"
    return ""


def variant_failures(task: Task, messages: list[AnyMessage], calls: list[ExecutedCall]) -> list[str]:
    """What the task's hard case asks of the assistant beyond state and facts, and it did not do."""
    if task.variant == "out-of-scope" and calls:
        return [f"a tool was called for a request outside the domain ({', '.join(sorted({c.tool for c in calls}))})"]
    if task.variant != "missing-info" or task.held_back is None:
        return []
    held = task.held_back
    asked = given = -1
    for i, message in enumerate(messages):
        if asked < 0 and _asks(message):
            asked = i
        if given < 0 and isinstance(message, HumanMessage) and _told_value(task, message.text):
            given = i
    if given < 0 or asked < 0 or asked > given:
        return [f"the assistant did not ask for the {held.label} (the user gives it only when asked)"]
    ids = {c.tool_call_id for c in calls if c.mode == "write" and held.argument in c.arguments}
    first_write = next((i for i, m in enumerate(messages) if isinstance(m, AIMessage)
                        and any(tc.get("id") in ids for tc in m.tool_calls)), -1)
    if 0 <= first_write < given:
        return [f"the assistant wrote {held.argument} before the user gave the {held.label}"]
    return []


def checked(task: Task, messages: list[AnyMessage], calls: list[ExecutedCall], verification: Verification) \
        -> Verification:
    """The verification with the hard case's own checks added."""
    update: dict = {"variant": task.variant, "variant_failures": variant_failures(task, messages, calls)}
    fault = volunteered(task, messages)
    if fault and verification.user_conduct == "ok":
        update |= {"user_conduct": "fault", "user_fault": fault}
    return verification.model_copy(update=update)
