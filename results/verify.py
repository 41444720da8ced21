"""`verify RUN`: a finished run re-checked from its files alone.

Each dialogue of `dialogues.jsonl` is replayed on fresh sandboxes of its sources, opened through the
tool-source protocol (environment/sources): every executed call runs again (writes at the time recorded
with them) and must give the result the line records; at each task's end the sandboxes' diff is
recomputed and must equal the recorded real diff and one of the task's goal diffs; every required fact is
looked up again in the assistant's words. Simulated results cannot be re-drawn: they are replayed as
recorded, which rebuilds their world and its diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.messages import convert_to_messages
from pydantic import BaseModel, Field

from environment.decoys import with_decoys
from verification.hard_cases import variant_failures, volunteered

from environment.errors import InputError
from environment.sources.base import CallContext
from environment.sources.dialogue_time import reference_time_for
from environment.sources.pool import DialogueSandboxes
from environment.state_match import match
from verification.facts import told
from runner import layout
from state.config import RunConfig
from state.dialogue import ExecutedCall
from state.sources import SourceRef, joined_name, read_joined
from state.tasks import Task
from state.tools import Tool, ToolResult
from state.verification import StateDiff

# Results the executor gives without running anything: a replay cannot run them either.
_NOT_RUN = ("unknown_tool", "budget_exceeded")


class DialogueCheck(BaseModel):
    dialogue: str
    calls: int = 0
    replayed: int = 0
    simulated: int = 0
    tasks: int = 0
    state_matches: int = 0
    facts: int = 0
    facts_told: int = 0
    problems: list[str] = Field(default_factory=list, description="Each names the dialogue, and the call or task.")


class RunCheck(BaseModel):
    run: str
    dialogues: list[DialogueCheck] = []

    @property
    def problems(self) -> list[str]:
        return [p for d in self.dialogues for p in d.problems]


def _content(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


class _Replay:
    """One dialogue line replayed call by call, task by task, on its own fresh sandboxes."""

    def __init__(self, line: dict[str, Any], tools: dict[str, Tool], boxes: DialogueSandboxes,
                 limits: dict[str, int]) -> None:
        self.line, self.tools, self.boxes, self.limits = line, tools, boxes, limits
        meta = line["metadata"]
        self.meta = meta
        self.check = DialogueCheck(dialogue=line["id"])
        self.reference = reference_time_for(boxes.seed)
        self.clocks = {c["id"]: c.get("clock") for c in meta.get("tool_calls", [])}
        self.simulated = {c["id"] for c in meta.get("tool_calls", []) if c.get("result") == "simulated"}
        offset = 0 if meta.get("prelude_messages") else 1  # the exported system message comes first
        starts = [s + offset for s in meta.get("task_message_starts", [])]
        self.ranges = [(s, starts[i + 1] if i + 1 < len(starts) else len(line["messages"]))
                       for i, s in enumerate(starts)]

    def problem(self, text: str) -> None:
        self.check.problems.append(f"{self.check.dialogue}: {text}")

    async def run(self) -> DialogueCheck:
        messages = self.line["messages"]
        results = {m.get("tool_call_id"): m for m in messages if m.get("role") == "tool"}
        entries = {e["task"]: e for e in self.meta.get("verification", [])}
        try:
            for task, (start, end) in enumerate(self.ranges):
                before = self.boxes.mark()
                for message in messages[start:end]:
                    for call in message.get("tool_calls") or [] if message.get("role") == "assistant" else []:
                        await self._call(call, results.get(call["id"]))
                if task in entries:
                    actual = self.boxes.since(before)
                    self._task(task, entries[task], actual, messages[start:end])
        finally:
            self.boxes.close()
        return self.check

    async def _call(self, call: dict[str, Any], message: dict[str, Any] | None) -> None:
        self.check.calls += 1
        name, call_id = call["function"]["name"], call["id"]
        if message is None:
            self.problem(f"call {call_id} ({name}) has no tool result")
            return
        recorded = _content(message.get("content"))
        args = _content(call["function"].get("arguments") or "{}")
        args = args if isinstance(args, dict) else {}
        tool = self.tools.get(name)
        error = recorded.get("error") if isinstance(recorded, dict) else None
        if isinstance(error, dict) and (error.get("type") in _NOT_RUN or str(
                error.get("message", "")).startswith("arguments are not valid JSON")):
            return  # nothing ran for it in the dialogue either
        if tool is None:
            self.problem(f"call {call_id} names {name!r}, which is no tool of the run's toolset")
            return
        if call_id in self.simulated:
            self.check.simulated += 1
            if not error:  # a drawn result cannot be drawn again: it is folded into its world as recorded
                self.boxes.replay([ExecutedCall(tool_call_id=call_id, tool=name, arguments=args, mode=tool.mode,
                                                result=ToolResult(ok=True, value=recorded), simulated=True)],
                                  self.tools)
            return
        clock = self.clocks.get(call_id) or self.reference
        outcome = await self.boxes.call(tool, args, CallContext(reference_time=self.reference, clock=clock,
                                                                rng_key=f"verify:{call_id}", **self.limits))
        self.check.replayed += 1
        again = json.loads(json.dumps(outcome.result.to_content(), ensure_ascii=False, default=str))
        if again != recorded:
            shown = json.dumps(recorded, ensure_ascii=False, default=str)[:160]
            self.problem(f"call {call_id} ({name}): the recorded result {shown} differs from the replay "
                         f"{json.dumps(again, ensure_ascii=False, default=str)[:160]}")

    def _task(self, task: int, entry: dict[str, Any], actual: StateDiff, messages: list[dict[str, Any]]) -> None:
        self.check.tasks += 1
        goals = [StateDiff.model_validate(d) for d in entry.get("goal_diff", [])]
        recorded = StateDiff.model_validate(entry.get("real_diff", {}))
        if actual.model_dump_json() != recorded.model_dump_json():
            self.problem(f"task {task + 1}: the recomputed diff differs from the recorded real diff")
        chosen, found = match(goals, actual) if goals else (None, [])
        if chosen is not None:
            self.check.state_matches += 1
        elif goals:
            self.problem(f"task {task + 1}: state mismatch: " + "; ".join(d.describe() for d in found[:3]))
        text = "\n".join(m.get("content") or "" for m in messages if m.get("role") == "assistant")
        self._variant(task, messages)
        for fact in entry.get("facts", []):
            self.check.facts += 1
            if fact.get("resolved", True) and told(fact.get("value"), fact.get("kind", "value"), text):
                self.check.facts_told += 1
            else:
                label = fact.get("field") or fact.get("kind")
                self.problem(f"task {task + 1}: fact not told: subtask {fact['subtask'] + 1} {label} = "
                             f"{fact.get('value')!r}")


    def _variant(self, task: int, messages: list[dict[str, Any]]) -> None:
        """A hard case's own checks again (docs/hard-cases.md): the question asked, no call out of scope, no
        value volunteered."""
        tasks = self.meta.get("tasks", [])
        if task >= len(tasks) or tasks[task].get("variant", "standard") == "standard":
            return
        spec = Task.model_validate(tasks[task])
        said = convert_to_messages([m for m in messages if m.get("role") in ("user", "assistant", "tool")])
        calls = [ExecutedCall(tool_call_id=c["id"], tool=c["function"]["name"], arguments=_content(
                     c["function"].get("arguments") or "{}") or {}, result=ToolResult(ok=True),
                     mode=self.tools[c["function"]["name"]].mode if c["function"]["name"] in self.tools else None)
                 for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []]
        for failure in [*variant_failures(spec, said, calls), *filter(None, [volunteered(spec, said)])]:
            self.problem(f"task {task + 1} ({spec.variant}): {failure}")


def _limits(folder: layout.RunFiles) -> dict[str, int]:
    """The run's own limits on results and arguments (the protocol's defaults where it names none)."""
    config = folder.read_json(layout.CONFIG) if folder.file(layout.CONFIG).exists() else {}
    settings = config.get("settings", {}) if isinstance(config, dict) else {}
    names = {"max_result_rows": "max_rows", "max_argument_chars": "max_argument_chars"}
    return {ours: settings[theirs] for theirs, ours in names.items() if isinstance(settings.get(theirs), int)}


def _sandboxes(sources: list[SourceRef], seed: int, dialogue: Any) -> DialogueSandboxes:
    try:
        return DialogueSandboxes(sources, seed)
    except InputError as exc:
        raise InputError(f"the source {joined_name(sources)} of dialogue {dialogue} cannot be opened (give its "
                         f"copy with --db): {exc}") from None


def _sources_by_name(folder: layout.RunFiles) -> dict[str, list[SourceRef]]:
    """A line names its sources for people (joined); the run's config holds them as references."""
    if not folder.file(layout.CONFIG).exists():
        return {}
    return {s.label: s.sources for s in RunConfig.model_validate(folder.read_json(layout.CONFIG)).sources()}


async def verify_run(run_dir: Path, database: str | None = None) -> RunCheck:
    """Every valid dialogue of a finished run, replayed and re-checked. `database` overrides the source
    the lines name (a dataset moved to another machine)."""
    folder = layout.RunFiles(run_dir)
    if not folder.file(layout.DIALOGUES).exists():
        raise InputError(f"no {layout.DIALOGUES} in {run_dir} (is it a run folder?)")
    limits = _limits(folder)
    report = RunCheck(run=str(run_dir))
    by_name = _sources_by_name(folder)
    for line, tools in folder.lines_with_tools():
        meta = line.get("metadata", {})
        named = meta.get("source_database") or ""
        sources = read_joined(database) if database else by_name.get(named) or read_joined(named)
        boxes = _sandboxes(sources, int(meta.get("seed") or 0), line.get("id"))
        decoys = sorted({n for t in meta.get("tasks", []) for n in t.get("decoys", [])})
        report.dialogues.append(await _Replay(line, with_decoys(tools, decoys, sources), boxes, limits).run())
    return report
