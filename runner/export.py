"""A finished dialogue as one dataset line: OpenAI chat messages, tools and metadata (with its own figures:
turns, steps, tasks, which the statistics of a finished run add up)."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from backends.llm.replies import REASONING
from prompts import load_prompt
from prompts.render import sandbox_paths_line
from state.dialogue import DialogueState
from state.tasks import Task
from state.tools import Tool


class DialogueStats(BaseModel):
    turns: int = Field(description="User, assistant and tool messages in the dialogue.")
    steps: list[int] = Field(description="Tool-use iterations for each user request that used tools.")
    tasks: int
    user_turns: int
    premature_completions: int = 0


def dialogue_stats(state: DialogueState) -> DialogueStats:
    turns = sum(1 for m in state.messages if not isinstance(m, SystemMessage))
    steps: list[int] = []
    current = 0
    for m in state.messages:
        if isinstance(m, HumanMessage):
            if current:
                steps.append(current)
            current = 0
        elif isinstance(m, AIMessage) and m.tool_calls:
            current += 1
    if current:
        steps.append(current)
    return DialogueStats(
        turns=turns, steps=steps, tasks=len(state.tasks),
        user_turns=sum(1 for m in state.messages if isinstance(m, HumanMessage)),
        premature_completions=sum(1 for v in state.verdicts if v.premature_completion),
    )


class DialogueRecord(BaseModel):
    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    metadata: dict[str, Any]
    reason: str | None = None


def openai_message(message: AnyMessage) -> dict[str, Any]:
    """One message in chat-completions format; tool-call arguments are always a JSON string."""
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.text}
    if isinstance(message, HumanMessage):
        return {"role": "user", "content": message.text}
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "name": message.name, "content": message.text}
    if isinstance(message, AIMessage):
        out: dict[str, Any] = {"role": "assistant", "content": message.text or None}
        if message.additional_kwargs.get(REASONING):
            out[REASONING] = message.additional_kwargs[REASONING]
        if message.tool_calls:
            out["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c.get("args") or {}, ensure_ascii=False)}}
                for c in message.tool_calls
            ]
        return out
    raise TypeError(f"cannot export a {type(message).__name__}")


def _sources(state: DialogueState) -> str:
    """Whether the dialogue's tool results were executed, simulated, or both."""
    kinds = {"simulated" if c.simulated else "executed" for c in state.calls}
    return "mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "none")


def acceptance(state: DialogueState) -> tuple[bool, str | None]:
    """Valid when every task was judged valid; otherwise the reason it was rejected."""
    invalid = next((v for v in state.verdicts if v.judgment == "invalid"), None)
    if invalid is not None:
        return False, f"task {invalid.task_index + 1}: {invalid.reasoning}"
    if len(state.verdicts) < state.tasks_per_dialogue:
        return False, f"only {len(state.verdicts)} of {state.tasks_per_dialogue} tasks were completed"
    return True, None


def verification_records(state: DialogueState) -> list[dict[str, Any]]:
    """Per judged task: its goal diff, the real diff, each fact and whether it was told, and the verdict's
    verification block (state, facts, judge, user conduct)."""
    out = []
    for verdict in state.verdicts:
        check = verdict.verification
        task = state.tasks[verdict.task_index] if verdict.task_index < len(state.tasks) else None
        if check is None or task is None:
            continue
        expected = task.expected
        out.append({
            "task": verdict.task_index,
            "goal_diff": [d.model_dump(mode="json") for d in expected.alternatives] if expected else [],
            "real_diff": check.state.real_diff.model_dump(mode="json"),
            "facts": [{**c.fact.model_dump(mode="json"), "told": c.told} for c in check.facts],
            "verification": {
                "state": check.state.status, "alternative": check.state.alternative,
                "differences": [d.model_dump(mode="json") for d in check.state.differences],
                "facts_told": check.facts_told, "judge": check.judge, "user_conduct": check.user_conduct,
                "user_fault": check.user_fault, "valid": check.passed,
                **({"variant": check.variant} if check.variant != "standard" else {}),
                **({"variant_failures": check.variant_failures} if check.variant_failures else {}),
            },
        })
    return out


_HARD_CASE_DEFAULTS = {"variant": "standard", "held_back": None, "withheld_tools": [], "decoys": [], "persona": None}


def task_record(task: Task) -> dict[str, Any]:
    """A task as its line's metadata keeps it; a standard task's hard-case fields are left out at their defaults
    (readers take a task without `variant` as standard)."""
    record = task.model_dump(mode="json", exclude={"expected": {"alternatives", "facts"}})
    for name, default in _HARD_CASE_DEFAULTS.items():
        if record.get(name) == default:
            record.pop(name, None)
    for subtask in record.get("subtasks", []):
        if not subtask.get("cannot"):
            subtask.pop("cannot", None)
    return record


def export_dialogue(state: DialogueState, tools: list[Tool], extra: dict[str, Any]) \
        -> tuple[DialogueRecord, bool, DialogueStats]:
    ok, reason = acceptance(state)
    stats = dialogue_stats(state)
    # A continued conversation comes first exactly as it was given; otherwise our assistant's system prompt.
    head = list(state.prelude) or [{"role": "system",
                                    "content": load_prompt("assistant").text.strip() + sandbox_paths_line(tools)}]
    record = DialogueRecord(
        id=state.dialogue_id,
        messages=[*head, *(openai_message(m) for m in state.messages[len(state.prelude):])],
        tools=[t.openai_tool() for t in tools],
        metadata={
            # the goal diffs and facts travel in `verification`, next to what the dialogue really did
            "tasks": [task_record(t) for t in state.tasks],
            "verdicts": [v.model_dump(mode="json", exclude={"verification"}) for v in state.verdicts],
            "verification": verification_records(state),
            "stats": stats.model_dump(mode="json"),
            "seed": state.seed,
            "source_database": state.source_label,
            "task_message_starts": state.task_starts,
            "tool_results": _sources(state),
            # a write's clock: the time columns defaulting to now were given, so a replay can give them too
            "tool_calls": [{"id": c.tool_call_id, "tool": c.tool, "result": "simulated" if c.simulated else "executed",
                            **({"clock": c.clock} if c.clock and c.result.ok else {})}
                           for c in state.calls],
            **({"forked_from": state.forked_from.model_dump()} if state.forked_from else {}),
            **({"prelude_messages": len(state.prelude)} if state.prelude else {}),
            **extra,
        },
        reason=reason,
    )
    return record, ok, stats
