"""Reading a dialogue against a task's reference plan: what was asked, what ran, what it returned."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage

from backends.offline.phrasing import CONFIRM_ASKS
from state.dialogue import ExecutedCall
from state.tasks import PlannedCall, ResultRef, Task

_CALL_ID = re.compile(r"^call_(?P<unit>[sv]\d+)_(?P<step>\d+)_(?P<j>\d+)_")


def call_id(unit: str, step: int, j: int, serial: int) -> str:
    return f"call_{unit}_{step}_{j}_{serial:03d}"


def norm(text: str) -> str:
    return " ".join(text.casefold().split())


def asked_subtasks(task: Task, message: str) -> list[int]:
    text = norm(message)
    return [i for i, s in enumerate(task.subtasks) if s.ask and norm(s.ask) in text]


def is_confirmation(message: str) -> bool:
    text = norm(message)
    return any(norm(c) in text for c in CONFIRM_ASKS)


def last_user_index(messages: list[AnyMessage]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return i
    return -1


@dataclass
class Unit:
    """Something the user asked for in one message: a subtask, or a re-check of one."""

    label: str
    subtask: int
    steps: list[list[PlannedCall]]


@dataclass
class Progress:
    done: dict[tuple[str, int], list[ExecutedCall]] = field(default_factory=dict)

    @classmethod
    def of(cls, calls: list[ExecutedCall]) -> "Progress":
        progress = cls()
        for call in calls:
            m = _CALL_ID.match(call.tool_call_id)
            if m:
                key = (m["unit"], int(m["step"]))
                if m["j"] == "0":  # a step run again replaces its earlier run
                    progress.done[key] = []
                progress.done.setdefault(key, []).append(call)
        return progress

    def first_row(self, ref: ResultRef) -> dict[str, Any] | None:
        calls = self.done.get((f"s{ref.subtask}", ref.step))
        if not calls or not calls[0].result.ok or not calls[0].result.rows:
            return None
        return calls[0].result.rows[0]

    def resolve(self, call: PlannedCall) -> dict[str, Any] | None:
        """Concrete arguments, or None when a referenced result is missing or empty."""
        args: dict[str, Any] = {}
        for name, value in call.arguments.items():
            if isinstance(value, ResultRef):
                row = self.first_row(value)
                if row is None or value.field not in row:
                    return None
                args[name] = row[value.field]
            else:
                args[name] = value
        return args


def units_for(task: Task, message: str) -> list[Unit]:
    if is_confirmation(message):
        # Re-check each change by reading the record back the way the change's own check did
        # (by key, so a renamed record is still found).
        return [Unit(label=f"v{i}", subtask=i, steps=[sub.steps[-1]])
                for i, sub in enumerate(task.subtasks) if sub.changes_data and len(sub.steps) > 1]
    asked = asked_subtasks(task, message)
    held = task.held_back
    if held is not None and held.subtask not in asked and norm(held.reveal) in norm(message):
        asked.append(held.subtask)  # the value the assistant asked for: the change it waited on can go ahead
    return [Unit(label=f"s{i}", subtask=i, steps=task.subtasks[i].steps) for i in asked]


def held_value_given(task: Task, messages: list[AnyMessage]) -> bool:
    """Whether the user has said the value a missing-information task holds back (always, for other tasks)."""
    held = task.held_back
    if held is None:
        return True
    value = norm(str(held.value))
    return any(isinstance(m, HumanMessage) and value in norm(m.text) for m in messages)
