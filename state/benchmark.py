"""An evaluation's tasks and trials: each task of a run's valid dialogues, with everything a trial needs to
start where that task began (the conversation before it and the calls that made its state), and one line of
trials.jsonl per trial.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator

from state.dialogue import ExecutedCall
from state.sources import SourceRef, as_refs, read_joined
from state.tasks import Task
from state.tools import Tool, ToolError, ToolResult
from state.verification import Fact, StateDiff, TaskExpectation

Fault = Literal["none", "simulator", "assistant", "infrastructure"]


class BenchmarkTask(BaseModel):
    """One task of a run, ready to be played again from the state it began in."""

    task_id: str = Field(description="'<dialogue id>-t<task number>', stable across evaluations of the run.")
    dialogue_id: str
    index: int = Field(description="The task's position in its dialogue (0 = first).")
    task: Task = Field(description="Goal, subtasks, plan and the expected outcome (goal diffs, facts).")
    earlier_tasks: list[Task] = []
    earlier_starts: list[int] = Field(default_factory=list, description="Message index where each earlier task began.")
    prefix: list[dict[str, Any]] = Field(default_factory=list,
                                         description="OpenAI chat messages before the task (a given conversation "
                                                     "and the earlier tasks), without the system prompt.")
    prefix_calls: list[ExecutedCall] = Field(default_factory=list, description="The earlier tasks' calls: replayed "
                                                                               "onto a fresh sandbox they make the "
                                                                               "state the task began in.")
    sources: list[SourceRef] = Field(default_factory=list, validation_alias=AliasChoices("sources", "source_db"),
                                     description="The dialogue's sources (tasks saved before: `source_db`, joined).")
    seed: int = Field(0, description="The dialogue's seed: its sandboxes' and its clock's.")
    toolset: str = Field("toolset.json", description="The run's toolset file the dialogue used.")
    task_style: Literal["descriptive", "question"] = "descriptive"
    database: str = Field("", description="A short name of the source, for the breakdowns.")

    @property
    def writes(self) -> bool:
        expected = self.task.expected
        return any(s.changes_data for s in self.task.subtasks) or bool(
            expected and any(not d.is_empty() for d in expected.alternatives))

    @field_validator("sources", mode="before")
    @classmethod
    def _joined_sources(cls, value: Any) -> Any:
        return as_refs(value)


class TrialRecord(BaseModel):
    """One line of trials.jsonl."""

    id: str = Field(description="'<task id>#<trial>'.")
    task_id: str
    trial: int
    attempt: int = Field(0, description="0; n for the n-th re-run after a simulator fault.")
    seed: int = Field(description="The user simulator's seed of this trial (the same for every model).")
    model: str = ""
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The task's messages (OpenAI format).")
    calls: list[ExecutedCall] = []
    real_diff: StateDiff = Field(default_factory=StateDiff)
    reward: int | None = Field(None, description="1 when every scored part passed, 0 otherwise; None: not scored "
                                                 "(the trial failed for infrastructure).")
    parts: dict[str, str] = Field(default_factory=dict, description="state, facts, judge, user_conduct: each verdict.")
    fault: Fault = "none"
    fault_detail: list[str] = []
    tokens: dict[str, int] = Field(default_factory=dict)
    latency_s: float = 0.0
    error: str = ""
    rerun_of_seed: int | None = Field(None, description="Set on a trial re-run after a simulator fault: the seed "
                                                        "of the user sample it replaced.")
    rerun_from: str = Field("", description="Where a re-run started: the checkpoint id (of the spoiled trial's "
                                            "thread) before the user's turn that ended the task, or 'task start'.")
    judge_valid: bool = Field(True, description="The judge's own verdict, kept so a regrade need not ask it again.")
    user_ended: bool = Field(False, description="The user declared the task done (rather than running out of turns).")


def trial_seed(seed: int, task_id: str, trial: int, attempt: int = 0) -> int:
    """The user's seed of a trial: from the evaluation's seed, the task and the trial only, so every model
    evaluated with the same seed meets the same users; a re-run (attempt > 0) draws a fresh one."""
    digest = hashlib.sha256(f"{seed}:{task_id}:{trial}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _content(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def recorded_result(content: Any, simulated: bool) -> ToolResult:
    """A call's result as its tool message recorded it."""
    if simulated:
        return ToolResult(ok=True, value=content)
    if not isinstance(content, dict):
        return ToolResult(ok=True, value=content)
    if isinstance(content.get("error"), dict):
        return ToolResult(ok=False, error=ToolError.model_validate(content["error"]))
    if "rows" in content:
        return ToolResult(ok=True, rows=content["rows"], row_count=content.get("row_count"),
                          truncated="note" in content)
    if "rows_affected" in content or "last_row_id" in content:
        return ToolResult(ok=True, rows_affected=content.get("rows_affected"), last_row_id=content.get("last_row_id"))
    return ToolResult(ok=True, value=content)


def _calls(messages: list[dict[str, Any]], meta: dict[str, Any], task: int,
           tools: dict[str, Tool]) -> list[ExecutedCall]:
    results = {m.get("tool_call_id"): m for m in messages if m.get("role") == "tool"}
    info = {c["id"]: c for c in meta.get("tool_calls", [])}
    calls = []
    for message in messages:
        for call in message.get("tool_calls") or [] if message.get("role") == "assistant" else []:
            name, call_id = call["function"]["name"], call["id"]
            args = _content(call["function"].get("arguments") or "{}")
            simulated = info.get(call_id, {}).get("result") == "simulated"
            tool = tools.get(name)
            calls.append(ExecutedCall(
                tool_call_id=call_id, tool=name, arguments=args if isinstance(args, dict) else {},
                result=recorded_result(_content((results.get(call_id) or {}).get("content")), simulated),
                mode=tool.mode if tool else None, task_index=task, simulated=simulated,
                clock=info.get(call_id, {}).get("clock")))
    return calls


def tasks_of_line(line: dict[str, Any], tools: dict[str, Tool], database: str,
                  task_style: Literal["descriptive", "question"] = "descriptive") -> list[BenchmarkTask]:
    """Every task of one valid dialogue line that has an expected outcome (goal diffs and facts)."""
    meta = line.get("metadata", {})
    messages = line["messages"]
    offset = 0 if meta.get("prelude_messages") else 1  # the exported system prompt comes first
    starts = list(meta.get("task_message_starts", []))
    entries = {e["task"]: e for e in meta.get("verification", [])}
    tasks = [Task.model_validate(t) for t in meta.get("tasks", [])]
    for i, task in enumerate(tasks):  # the goal diffs and facts travel in `verification`
        if i in entries:
            entry = entries[i]
            kept = task.expected.model_dump() if task.expected else {}
            task.expected = TaskExpectation(**{**kept, "alternatives": [StateDiff.model_validate(d)
                                                                       for d in entry.get("goal_diff", [])],
                                               "facts": [Fact.model_validate(f) for f in entry.get("facts", [])]})
    out = []
    for i, task in enumerate(tasks):
        if i not in entries or i >= len(starts):
            continue
        earlier = []
        for j in range(i):
            end = starts[j + 1] + offset
            earlier.extend(_calls(messages[starts[j] + offset:end], meta, j, tools))
        out.append(BenchmarkTask(
            task_id=f"{line['id']}-t{i + 1}", dialogue_id=line["id"], index=i, task=task, earlier_tasks=tasks[:i],
            earlier_starts=starts[:i], prefix=messages[offset:starts[i] + offset], prefix_calls=earlier,
            sources=read_joined(meta.get("source_database") or ""), seed=int(meta.get("seed") or 0),
            toolset=meta.get("toolset") or "toolset.json", task_style=task_style, database=database))
    return out


class EvaluationConfig(BaseModel):
    """config.json of an evaluation folder."""

    command: Literal["evaluate"] = "evaluate"
    run_dir: str = Field(description="The run whose tasks are the benchmark.")
    run_config: dict[str, Any] = Field(default_factory=dict, description="That run's own config.json.")
    trials: int = Field(ge=1, description="Trials per task (K).")
    seed: int = Field(0, description="Seeds the task sample, every trial's user and the bootstrap.")
    task_ids: list[str] = Field(default_factory=list, description="The tasks evaluated, in order.")
    judge: bool = Field(False, description="Score the judge's non-state rubric items too.")
    concurrency: int = Field(8, ge=1)
    workers: int = Field(1, ge=1, description="Processes the trials are spread over.")
    model: str = Field("", description="The model under test (the assistant role).")
    same_user: bool = Field(False, description="Every trial of a task meets the same user (one seed per task): the "
                                               "trials differ by the model's own sampling alone, and its passing and "
                                               "failing ones make preference pairs.")
    settings: dict[str, Any] = Field(default_factory=dict, description="The public settings (no secrets).")
