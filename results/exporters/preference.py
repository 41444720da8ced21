"""`export EVAL_DIR [EVAL_DIR ...] --format dpo`: preference pairs from evaluations, proven by state.

A pair is two trials of one task, one that passed and one that failed by the assistant's own fault, whose
conversations are the same up to an assistant turn and differ from there: the user said the same things and
the tools returned the same results until the assistant chose differently. The shared part is the `prompt`
(the system prompt, the conversation before the task, the task's messages up to the divergence), the passing
trial's turn from there (up to the user's next message) is `chosen`, the failing trial's is `rejected`: the
conversational form TRL's DPOTrainer reads, with the task's `tools`, tool-call arguments as objects.

Trials of one evaluation meet different users (a seed per trial), so they seldom share an opening; two
evaluations made with the same --seed meet the same user trial by trial, and a model that passed against one
that failed there is where pairs come from (or one evaluation made with --same-user: one user for every trial
of a task, the model's own sampling making the difference). Simulator faults and infrastructure failures never make a pair.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from environment.errors import InputError
from prompts import load_prompt
from results.evaluation import read_evaluation
from results.exporters.openai_format import chat_message
from results.exporters.splits import split_of
from results.exporters.template_check import ChatTemplate, TemplateReport, check_lines
from runner import layout
from state.benchmark import BenchmarkTask, TrialRecord

MANIFEST = "export.json"


class PreferenceRequest(BaseModel):
    eval_dirs: list[Path] = Field(min_length=1)
    out: Path
    pairs_per_task: int = Field(3, ge=1, description="Most pairs one task gives, so no task dominates the set.")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of tasks hashed into the test split.")
    check_template: Path | None = Field(None, description="A tokenizer folder or .jinja chat template to render with.")


class PlayedTrial(BaseModel):
    """A trial with what it needs to be compared: its evaluation and its whole conversation."""

    evaluation: str
    trial: TrialRecord
    conversation: list[dict[str, Any]]

    @property
    def ref(self) -> str:
        return f"{self.evaluation}/{self.trial.id}"


class PreferenceResult(BaseModel):
    """What was written and what was left out (also saved as export.json)."""

    format: str = "dpo"
    out: Path
    evaluations: list[str]
    pairs_per_task: int
    test_fraction: float
    splits: dict[str, int] = Field(default_factory=dict)
    tasks_with_pairs: int = 0
    tasks_passed_and_failed: int = Field(0, description="Tasks with a passing and an assistant-fault failing trial.")
    left_out: dict[str, int] = Field(default_factory=dict, description="Why trials or couples made no pair: count.")
    template_check: TemplateReport | None = None


def _key(message: dict[str, Any]) -> tuple:
    """What makes two messages the same turn: who said what, which calls with which arguments (a call's id is
    the model's own label, not what it did)."""
    calls = tuple((c["function"]["name"], json.dumps(c["function"].get("arguments"), sort_keys=True))
                  for c in message.get("tool_calls") or [])
    return message.get("role"), message.get("content") or "", calls, message.get("name") or ""


def common_prefix(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> int:
    """How many messages the two conversations share from their start."""
    n = 0
    while n < min(len(first), len(second)) and _key(first[n]) == _key(second[n]):
        n += 1
    return n


def turn_from(conversation: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """The assistant's turn starting at `start`: its messages and tool results, up to the user's next message."""
    end = start
    while end < len(conversation) and conversation[end].get("role") != "user":
        end += 1
    return conversation[start:end]


def _head(task: BenchmarkTask) -> list[dict[str, Any]]:
    """What the assistant saw before the task: our system prompt (a given conversation brings its own)."""
    prefix = [chat_message(m, objects=True) for m in task.prefix]
    if prefix and prefix[0].get("role") == "system":
        return prefix
    return [{"role": "system", "content": load_prompt("assistant").text.strip()}, *prefix]


def _evaluations(eval_dirs: list[Path]) -> tuple[dict[str, BenchmarkTask], list[PlayedTrial], dict[str, list[dict]]]:
    """Every evaluation's tasks and trials (refused in one line where a folder is no evaluation, or where they
    evaluated different runs), and each toolset's tools in chat form."""
    tasks: dict[str, BenchmarkTask] = {}
    played: list[PlayedTrial] = []
    tools: dict[str, list[dict]] = {}
    runs: set[str] = set()
    names = layout.run_labels(eval_dirs)
    for eval_dir, name in zip(eval_dirs, names):
        if layout.run_kind(eval_dir) == "dialogues":
            raise InputError(f"{eval_dir} is a dialogue run, not an evaluation: --format dpo takes evaluation "
                             f"folders (make one with: python -m graphs.run evaluate {eval_dir} --out EVAL_DIR)")
        config, own_tasks, trials = read_evaluation(eval_dir)
        runs.add(str(Path(config.run_dir).resolve()))
        if len(runs) > 1:
            raise InputError(f"{eval_dir} evaluated another run ({config.run_dir}) than the folders before it: "
                             "pairs compare trials of the same tasks")
        files = layout.RunFiles(eval_dir)
        for task in own_tasks:
            tasks.setdefault(task.task_id, task)
            if task.task_id not in tools:
                tools[task.task_id] = [t.openai_tool() for t in layout.load_toolset(files.file(task.toolset))]
        for trial in trials:
            task = tasks.get(trial.task_id)
            if task is None:
                continue
            conversation = [*_head(task), *(chat_message(m, objects=True) for m in trial.messages)]
            played.append(PlayedTrial(evaluation=name, trial=trial, conversation=conversation))
    return tasks, played, tools


def _pairs_of_task(passed: list[PlayedTrial], failed: list[PlayedTrial], limit: int,
                   left_out: Counter) -> list[tuple[PlayedTrial, PlayedTrial, int]]:
    """Up to `limit` couples (chosen, rejected, divergence) whose conversations part at an assistant turn; the
    failures take turns, so a task's pairs cover as many different failures as it has."""
    partners: list[list[tuple[PlayedTrial, int]]] = []
    for bad in failed:
        found = []
        for good in passed:
            n = common_prefix(good.conversation, bad.conversation)
            if n >= min(len(good.conversation), len(bad.conversation)):
                left_out["one conversation holds the other"] += 1
            elif good.conversation[n]["role"] != "assistant" or bad.conversation[n]["role"] != "assistant":
                left_out["the users (or tool results) differ before the assistants do"] += 1
            else:
                found.append((good, n))
        partners.append(found)
    out: list[tuple[PlayedTrial, PlayedTrial, int]] = []
    for round_ in range(max((len(p) for p in partners), default=0)):
        for bad, found in zip(failed, partners):
            if round_ < len(found) and len(out) < limit:
                out.append((found[round_][0], bad, found[round_][1]))
    left_out["over --pairs-per-task"] += sum(len(p) for p in partners) - len(out)
    return out


def preference_pairs(eval_dirs: list[Path], pairs_per_task: int) -> tuple[list[dict[str, Any]], PreferenceResult]:
    """The pairs of the evaluations, one dict each (the exported line), in task order."""
    tasks, played, tools = _evaluations(eval_dirs)
    result = PreferenceResult(out=Path("."), evaluations=[str(d) for d in eval_dirs], pairs_per_task=pairs_per_task,
                              test_fraction=0.0)
    left_out: Counter = Counter()
    by_task: dict[str, tuple[list[PlayedTrial], list[PlayedTrial]]] = {}
    for p in played:
        passed, failed = by_task.setdefault(p.trial.task_id, ([], []))
        if p.trial.reward is None:
            left_out["infrastructure failures (never scored)"] += 1
        elif p.trial.reward:
            passed.append(p)
        elif p.trial.fault == "assistant":
            failed.append(p)
        else:
            left_out[f"{p.trial.fault} faults"] += 1
    lines = []
    for task_id in sorted(by_task):
        passed, failed = by_task[task_id]
        if not passed or not failed:
            continue
        result.tasks_passed_and_failed += 1
        task = tasks[task_id]
        couples = _pairs_of_task(passed, failed, pairs_per_task, left_out)
        result.tasks_with_pairs += bool(couples)
        for good, bad, n in couples:
            lines.append(_line(task, good, bad, n, tools[task_id]))
    result.left_out = {k: v for k, v in sorted(left_out.items()) if v}
    if not result.tasks_passed_and_failed:
        raise InputError(f"no task of {', '.join(map(str, eval_dirs))} both passed and failed by the assistant's "
                         "fault: no preference pair to make (evaluate a model that fails some of them)")
    if not lines:
        raise InputError(f"{result.tasks_passed_and_failed} task(s) passed and failed, but no passing and failing "
                         "trial met the same user up to the assistant's turn: evaluate with --same-user, or another "
                         "model with the same --seed and export both folders together")
    return lines, result


def _line(task: BenchmarkTask, good: PlayedTrial, bad: PlayedTrial, n: int, tools: list[dict]) -> dict[str, Any]:
    def side(p: PlayedTrial) -> dict[str, Any]:
        return {"evaluation": p.evaluation, "trial": p.trial.id, "model": p.trial.model, "seed": p.trial.seed}

    start = len(_head(task))
    return {
        "id": f"{task.task_id}:{good.ref}>{bad.ref}",
        "prompt": good.conversation[:n], "chosen": turn_from(good.conversation, n),
        "rejected": turn_from(bad.conversation, n), "tools": tools,
        "metadata": {
            "task_id": task.task_id, "database": task.database, "difficulty": task.task.difficulty,
            "writes": task.writes, "diverged_at_task_message": n - start,
            "chosen": side(good),
            # why the rejected trial failed: the state difference (a row) or the fact it never told
            "rejected": {**side(bad), "fault": bad.trial.fault, "why": bad.trial.fault_detail,
                         "parts": bad.trial.parts},
        },
    }


def _rendered_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair as the two conversations a trainer renders: prompt + chosen, prompt + rejected."""
    return [{"id": f"{line['id']}:{side}", "messages": line["prompt"] + line[side], "tools": line["tools"]}
            for line in lines for side in ("chosen", "rejected")]


def export_preferences(request: PreferenceRequest, console: Console) -> PreferenceResult:
    if request.out.exists() and (not request.out.is_dir() or any(request.out.iterdir())):
        raise InputError(f"output already exists: {request.out} (choose another --out)")
    template = ChatTemplate(request.check_template) if request.check_template is not None else None
    lines, result = preference_pairs(request.eval_dirs, request.pairs_per_task)
    result.out, result.test_fraction = request.out, request.test_fraction
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []} if request.test_fraction > 0 else {"train": []}
    for line in lines:  # by task: a task's pairs share a split, so no test prompt was trained on
        splits[split_of(line["metadata"]["task_id"], request.test_fraction)].append(line)
    result.splits = {name: len(rows) for name, rows in splits.items()}
    request.out.parent.mkdir(parents=True, exist_ok=True)
    staging = request.out.parent / f".{request.out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with Progress(console=console, transient=True) as progress:
            if template is not None:
                rendered = _rendered_lines(lines)
                bar = progress.add_task(f"rendering through {template.source.name}", total=len(rendered))
                result.template_check, _ = check_lines(template, rendered, lambda: progress.advance(bar))
            for name, rows in splits.items():
                (staging / f"{name}.jsonl").write_text(
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        (staging / MANIFEST).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if request.out.exists():
            request.out.rmdir()
        os.rename(staging, request.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def preference_summary(result: PreferenceResult) -> Table:
    table = Table(title=f"dpo export: {result.out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, count in result.splits.items():
        table.add_row(f"{name} pairs", str(count))
    table.add_row("tasks that passed and failed (assistant's fault)", str(result.tasks_passed_and_failed))
    table.add_row("tasks with pairs", str(result.tasks_with_pairs))
    for why, count in result.left_out.items():
        table.add_row(f"left out: {why}", str(count))
    check = result.template_check
    if check is not None:
        table.add_row(f"conversations rendered through {Path(check.template).name}", str(check.lines))
        table.add_row("refused by the template", str(len(check.refused)))
        table.add_row("tool calls with double-encoded arguments", str(sum(check.double_encoded.values())))
        table.add_row("tool results the template drops", str(sum(check.dropped_tool_results.values())))
        if check.tokens is not None:
            t = check.tokens
            table.add_row("tokens per conversation (min / median / p95 / max)",
                          f"{t.min} / {t.median} / {t.p95} / {t.max}")
    return table

