"""`verify RUN`: a finished run re-checked from its files alone.

Each dialogue of `dialogues.jsonl` is replayed on a fresh copy of its source database: every SQL tool
call runs again (writes at the time recorded with them) and must give the result the line records; at
each task's end the database's diff is recomputed and must equal the recorded real diff and one of the
task's goal diffs; every required fact is looked up again in the assistant's words. Simulated results
cannot be re-drawn: their diff is recomputed from the calls, their results taken as recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from environment.diff import diff, match, snapshot
from environment.errors import InputError
from environment.sandbox import DEFAULT_MAX_ARGUMENT_CHARS, DEFAULT_MAX_ROWS, Sandbox
from nodes.plan_check import merged, simulated_diff
from nodes.verification import told
from runner import run_folder as rf
from runner.databases import load_toolset
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
    """One dialogue line replayed call by call, task by task."""

    def __init__(self, line: dict[str, Any], tools: dict[str, Tool], database: str, max_rows: int,
                 max_chars: int) -> None:
        self.line, self.tools, self.database = line, tools, database
        self.max_rows, self.max_chars = max_rows, max_chars
        meta = line["metadata"]
        self.meta = meta
        self.check = DialogueCheck(dialogue=line["id"])
        self.clocks = {c["id"]: c.get("clock") for c in meta.get("tool_calls", [])}
        self.simulated = {c["id"] for c in meta.get("tool_calls", []) if c.get("result") == "simulated"}
        offset = 0 if meta.get("prelude_messages") else 1  # the exported system message comes first
        starts = [s + offset for s in meta.get("task_message_starts", [])]
        self.ranges = [(s, starts[i + 1] if i + 1 < len(starts) else len(line["messages"]))
                       for i, s in enumerate(starts)]

    def problem(self, text: str) -> None:
        self.check.problems.append(f"{self.check.dialogue}: {text}")

    def run(self) -> DialogueCheck:
        messages = self.line["messages"]
        results = {m.get("tool_call_id"): m for m in messages if m.get("role") == "tool"}
        sandbox = Sandbox(self.database) if self.database else None
        entries = {e["task"]: e for e in self.meta.get("verification", [])}
        try:
            for task, (start, end) in enumerate(self.ranges):
                before = snapshot(sandbox.conn) if sandbox is not None else None
                simulated: list[tuple[Tool, dict[str, Any], Any]] = []
                for message in messages[start:end]:
                    for call in message.get("tool_calls") or [] if message.get("role") == "assistant" else []:
                        self._call(call, results.get(call["id"]), sandbox, simulated)
                sql = diff(before, snapshot(sandbox.conn)) if sandbox is not None and before is not None \
                    else StateDiff()
                if task in entries:
                    self._task(task, entries[task], merged(sql, simulated_diff(simulated)), messages[start:end])
        finally:
            if sandbox is not None:
                sandbox.close()
        return self.check

    def _call(self, call: dict[str, Any], message: dict[str, Any] | None, sandbox: Sandbox | None,
              simulated: list[tuple[Tool, dict[str, Any], Any]]) -> None:
        self.check.calls += 1
        name, call_id = call["function"]["name"], call["id"]
        if message is None:
            self.problem(f"call {call_id} ({name}) has no tool result")
            return
        recorded = _content(message.get("content"))
        args = _content(call["function"].get("arguments") or "{}")
        tool = self.tools.get(name)
        error = recorded.get("error") if isinstance(recorded, dict) else None
        if isinstance(error, dict) and (error.get("type") in _NOT_RUN or str(
                error.get("message", "")).startswith("arguments are not valid JSON")):
            return  # nothing ran for it in the dialogue either
        if tool is None:
            self.problem(f"call {call_id} names {name!r}, which is no tool of the run's toolset")
            return
        if call_id in self.simulated or tool.simulated:
            self.check.simulated += 1
            if not error:
                simulated.append((tool, args if isinstance(args, dict) else {}, ToolResult(ok=True, value=recorded)))
            return
        if sandbox is None:
            self.problem(f"call {call_id} ({name}) is a SQL call but the dialogue names no source database")
            return
        replayed = sandbox.run(tool, args if isinstance(args, dict) else {}, self.max_rows, self.clocks.get(call_id),
                               self.max_chars)
        self.check.replayed += 1
        again = json.loads(json.dumps(replayed.to_content(), ensure_ascii=False, default=str))
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
        for fact in entry.get("facts", []):
            self.check.facts += 1
            if fact.get("resolved", True) and told(fact.get("value"), fact.get("kind", "value"), text):
                self.check.facts_told += 1
            else:
                label = fact.get("field") or fact.get("kind")
                self.problem(f"task {task + 1}: fact not told: subtask {fact['subtask'] + 1} {label} = "
                             f"{fact.get('value')!r}")


def verify_run(run_dir: Path, database: str | None = None) -> RunCheck:
    """Every valid dialogue of a finished run, replayed and re-checked. `database` overrides the source
    database the lines name (a dataset moved to another machine)."""
    folder = rf.RunFolder(run_dir)
    if not folder.file(rf.DIALOGUES).exists():
        raise InputError(f"no {rf.DIALOGUES} in {run_dir} (is it a run folder?)")
    config = folder.read_json(rf.CONFIG) if folder.file(rf.CONFIG).exists() else {}
    settings = config.get("settings", {}) if isinstance(config, dict) else {}
    max_rows = settings.get("max_result_rows", DEFAULT_MAX_ROWS)
    max_chars = settings.get("max_argument_chars", DEFAULT_MAX_ARGUMENT_CHARS)
    toolsets: dict[str, dict[str, Tool]] = {}
    report = RunCheck(run=str(run_dir))
    for line in folder.iter_lines(rf.DIALOGUES):
        meta = line.get("metadata", {})
        toolset = meta.get("toolset") or rf.TOOLSET
        if toolset not in toolsets:
            if not folder.file(toolset).exists():
                raise InputError(f"{run_dir}: the toolset {toolset} that dialogue {line.get('id')} names is missing")
            toolsets[toolset] = {t.name: t for t in load_toolset(folder.file(toolset))}
        source = database or meta.get("source_database") or ""
        if source and not Path(source).exists():
            raise InputError(f"the source database {source} of dialogue {line.get('id')} is missing "
                             f"(give its copy with --db)")
        report.dialogues.append(_Replay(line, toolsets[toolset], source, max_rows, max_chars).run())
    return report
