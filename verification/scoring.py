"""An evaluation trial's reward and, for a failed one, whose fault it was.

The reward reads the Verification the validator computed (verdict.py): 1 only when the state and the
facts pass (and the judge's items, where the evaluation scores them). A failed trial is the simulated user's
fault when the user misbehaved (user conduct), left part of its goal unsaid (a subtask neither asked for nor
acted on) or stated a value that neither its task nor the conversation holds; otherwise the assistant's:
wrong state, a missing fact, no tool call where one was needed.
"""

from __future__ import annotations

import asyncio
import json
import re

from langchain_core.messages import AnyMessage, HumanMessage, convert_to_messages

from state.benchmark import BenchmarkTask, Fault
from state.dialogue import ExecutedCall
from state.tasks import PlannedCall, ResultRef, Task
from state.tools import Tool
from state.verification import Verification
from verification.hard_cases import checked
from verification.state_check import real_diff
from verification.verdict import verify

_WORD = re.compile(r"[a-z0-9][a-z0-9'@.-]*")


def _literals(calls: list[PlannedCall]) -> list[str]:
    """The argument values a user must give for these calls (ids found by earlier calls are not theirs to say)."""
    return [str(v).casefold() for c in calls for v in c.arguments.values()
            if v is not None and not isinstance(v, (ResultRef, bool)) and str(v).strip()]


def unstated_subtasks(task: Task, user_text: str, calls: list[ExecutedCall]) -> list[int]:
    """Subtasks the user never made known: none of their planned values said, their ask's words mostly
    absent, and none of their tools called."""
    text = user_text.casefold()
    words = set(_WORD.findall(text))
    called = {c.tool for c in calls}
    out = []
    for i, sub in enumerate(task.subtasks):
        planned = [c for step in sub.steps for c in step]
        if any(c.tool in called for c in planned if c.tool):
            continue
        if any(v in text for v in _literals(planned)):
            continue
        asked = {w for w in _WORD.findall((sub.ask or sub.description).casefold()) if len(w) > 3}
        if asked and len(asked & words) * 2 >= len(asked):
            continue
        out.append(i)
    return out


_DIGITS = re.compile(r"\d{3,}")


def invented_values(task: BenchmarkTask, messages: list[AnyMessage]) -> list[str]:
    """Numbers (ids, phones, dates, amounts: 3 digits or more) a user message states that neither its task
    (goal, subtasks, plan, expected outcome) nor anything said before it holds: facts the simulator made up."""
    known = set(_DIGITS.findall(task.task.model_dump_json()))
    known.update(_DIGITS.findall(json.dumps(task.prefix, ensure_ascii=False)))
    out = []
    for message in messages:
        found = _DIGITS.findall(message.text)
        if isinstance(message, HumanMessage):
            out.extend(f"{n} (in {message.text[:80]!r})" for n in found if n not in known)
        known.update(found)
        known.update(_DIGITS.findall(json.dumps(getattr(message, "tool_calls", None) or [], default=str)))
    return out


def reward_parts(check: Verification, with_judge: bool) -> tuple[int, dict[str, str]]:
    parts = {"state": check.state.status, "facts": "pass" if check.facts_told else "fail",
             "judge": check.judge if with_judge else f"{check.judge} (not scored)", "user_conduct": check.user_conduct}
    passed = check.state.status != "mismatch" and check.facts_told and (check.judge == "pass" or not with_judge) \
        and not check.variant_failures
    if check.variant_failures:
        parts["variant"] = "; ".join(check.variant_failures)
    return int(passed), parts


def classify(bench: BenchmarkTask, check: Verification, messages: list[AnyMessage], calls: list[ExecutedCall],
             reward: int, with_judge: bool) -> tuple[Fault, list[str]]:
    """Whose fault a failed trial was, and why (each reason one line)."""
    if reward:
        return "none", []
    task = bench.task
    user_text = "\n".join(m.text for m in messages if isinstance(m, HumanMessage))
    if check.user_conduct == "fault":
        return "simulator", [f"user conduct: {check.user_fault}"]
    unsaid = unstated_subtasks(task, user_text, calls)
    if unsaid:
        return "simulator", [f"the user never stated subtask {i + 1}: {task.subtasks[i].description[:100]!r}"
                             for i in unsaid]
    invented = invented_values(bench, messages)
    if invented:
        return "simulator", [f"the user stated a value outside its task: {v}" for v in invented[:3]]
    reasons = []
    needs_tools = any(step for sub in task.subtasks for step in sub.steps)
    if needs_tools and not calls:
        reasons.append("no tool call")
    reasons.extend(r for r in check.failures() if not r.startswith("simulator fault"))
    if with_judge and check.judge == "fail":
        reasons.append("the judge failed the task's rubric")
    return "assistant", reasons or ["the task failed"]


def task_messages(messages: list[dict]) -> list[AnyMessage]:
    return convert_to_messages(messages)


async def rescore(task: BenchmarkTask, messages: list[dict], calls: list[ExecutedCall], judge_valid: bool,
                  tools: dict[str, Tool]) -> Verification:
    """A saved trial checked again from its recorded calls alone (replayed on fresh sandboxes), as verify does."""
    actual, _ = await asyncio.to_thread(real_diff, task.sources, task.seed, task.prefix_calls, calls, tools)
    return checked(task.task, task_messages(messages), calls,
                   verify(task.task, task_messages(messages), calls, actual, judge_valid))
