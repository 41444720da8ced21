"""The verdict on one finished task: its state, its facts and the user's conduct, with the judge's result.

The judge (LLM or offline) still scores the rubric's non-state items; a task is valid only when state,
facts and judge all pass and the simulated user stayed in character.
"""

from __future__ import annotations

from langchain_core.messages import AnyMessage

from state.dialogue import ExecutedCall
from state.tasks import Task
from state.verification import StateDiff, Verification
from verification.conduct import user_fault
from verification.facts import check_facts, resolve_facts
from verification.state_check import check_state


def verify(task: Task, messages: list[AnyMessage], calls: list[ExecutedCall], actual: StateDiff,
           judge_passed: bool) -> Verification:
    """Every part of one finished task's check (the real diff computed already)."""
    facts = resolve_facts(task.expected.facts, task, calls) if task.expected else []
    checked = check_facts(facts, messages)
    fault = user_fault(messages)
    return Verification(state=check_state(task, actual), facts=checked, facts_told=all(c.told for c in checked),
                        judge="pass" if judge_passed else "fail", user_conduct="fault" if fault else "ok",
                        user_fault=fault)
