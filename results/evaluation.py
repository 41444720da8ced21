"""An evaluation folder's figures: pass^k with a bootstrap interval, the flip rate, the breakdowns, and a
regrade of its saved trials.

pass^k is the chance that k trials of a task all pass, estimated without bias from n trials with c passes as
C(c,k)/C(n,k) and averaged over tasks. Trials that failed for infrastructure are never scored; the figures
'without simulator faults' also set aside the trials the simulated user spoiled.
"""

from __future__ import annotations

import random
from math import comb
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field
from rich.table import Table

from environment.decoys import with_decoys
from environment.errors import InputError
from verification.scoring import classify, reward_parts, rescore, task_messages
from runner import layout
from state.benchmark import BenchmarkTask, EvaluationConfig, TrialRecord
from state.tools import Tool

BOOTSTRAP_ROUNDS = 1000


class PassHat(BaseModel):
    k: int
    value: float | None = Field(description="Mean over tasks with at least k scored trials; None: no such task.")
    low: float | None = None
    high: float | None = None
    tasks: int = 0


class GroupFigures(BaseModel):
    tasks: int
    pass_hat: list[PassHat]


class EvaluationSummary(BaseModel):
    model: str
    trials_per_task: int
    tasks: int
    trials: int
    scored: int
    passed: int
    infrastructure: int = Field(description="Trials that failed for infrastructure: counted apart, never scored.")
    simulator_faults: int
    assistant_faults: int
    pass_hat: list[PassHat]
    pass_hat_without_simulator_faults: list[PassHat]
    flip_rate: float | None = Field(description="Share of tasks (with 2+ scored trials) that both passed and failed.")
    breakdowns: dict[str, dict[str, GroupFigures]] = Field(
        default_factory=dict, description="By database, difficulty, subtasks, writes and variant: the pass^k of "
                                          "each group.")


def pass_hat_k(counts: list[tuple[int, int]], k: int) -> float | None:
    """The unbiased pass^k over tasks given as (scored trials n, passes c); tasks with n < k do not count."""
    usable = [(n, c) for n, c in counts if n >= k]
    if not usable:
        return None
    return sum(comb(c, k) / comb(n, k) for n, c in usable) / len(usable)


def bootstrap(counts: list[tuple[int, int]], k: int, seed: int, rounds: int = BOOTSTRAP_ROUNDS) \
        -> tuple[float | None, float | None]:
    """A 95% percentile interval of pass^k, resampling tasks with replacement (seeded)."""
    usable = [(n, c) for n, c in counts if n >= k]
    if not usable:
        return None, None
    rng = random.Random(f"{seed}:bootstrap:{k}")
    values = sorted(pass_hat_k([rng.choice(usable) for _ in usable], k) or 0.0 for _ in range(rounds))
    return values[int(0.025 * (rounds - 1))], values[int(0.975 * (rounds - 1))]


def _curve(counts: list[tuple[int, int]], trials: int, seed: int, interval: bool = True) -> list[PassHat]:
    out = []
    for k in range(1, trials + 1):
        low, high = bootstrap(counts, k, seed) if interval else (None, None)
        out.append(PassHat(k=k, value=pass_hat_k(counts, k), low=low, high=high,
                           tasks=sum(n >= k for n, _ in counts)))
    return out


def _counts(trials: list[TrialRecord], task_ids: list[str], scored: Callable[[TrialRecord], bool]) \
        -> dict[str, tuple[int, int]]:
    by_task: dict[str, list[int]] = {t: [] for t in task_ids}
    for trial in trials:
        if trial.reward is not None and scored(trial) and trial.task_id in by_task:
            by_task[trial.task_id].append(trial.reward)
    return {t: (len(r), sum(r)) for t, r in by_task.items() if r}


def _groups(task: BenchmarkTask) -> dict[str, str]:
    return {"database": task.database or "?", "difficulty": task.task.difficulty,
            "subtasks": str(len(task.task.subtasks)), "writes": "write" if task.writes else "read-only",
            "variant": task.task.variant}


def summarize(config: EvaluationConfig, tasks: list[BenchmarkTask], trials: list[TrialRecord]) -> EvaluationSummary:
    ids = [t.task_id for t in tasks]
    counts = _counts(trials, ids, lambda t: True)
    clean = _counts(trials, ids, lambda t: t.fault != "simulator")
    breakdowns: dict[str, dict[str, GroupFigures]] = {}
    for task in tasks:
        for axis, group in _groups(task).items():
            breakdowns.setdefault(axis, {}).setdefault(group, GroupFigures(tasks=0, pass_hat=[])).tasks += 1
    for axis, groups in breakdowns.items():
        for group, figures in groups.items():
            members = [counts[t.task_id] for t in tasks if _groups(t)[axis] == group and t.task_id in counts]
            figures.pass_hat = _curve(members, config.trials, config.seed, interval=False)
    several = [(n, c) for n, c in counts.values() if n >= 2]
    scored = [t for t in trials if t.reward is not None]
    return EvaluationSummary(
        model=config.model, trials_per_task=config.trials, tasks=len(tasks), trials=len(trials), scored=len(scored),
        passed=sum(t.reward or 0 for t in scored), infrastructure=sum(t.reward is None for t in trials),
        simulator_faults=sum(t.fault == "simulator" for t in scored),
        assistant_faults=sum(t.fault == "assistant" for t in scored),
        pass_hat=_curve(list(counts.values()), config.trials, config.seed),
        pass_hat_without_simulator_faults=_curve(list(clean.values()), config.trials, config.seed),
        flip_rate=sum(0 < c < n for n, c in several) / len(several) if several else None,
        breakdowns={axis: dict(sorted(groups.items())) for axis, groups in breakdowns.items()})


def read_evaluation(eval_dir: Path) -> tuple[EvaluationConfig, list[BenchmarkTask], list[TrialRecord]]:
    folder = layout.RunFiles(eval_dir)
    if not folder.file(layout.CONFIG).exists() or layout.run_kind(eval_dir) != "evaluate":
        raise InputError(f"not an evaluation folder (no evaluate config.json): {eval_dir}")
    config = EvaluationConfig.model_validate(folder.read_json(layout.CONFIG))
    tasks = [BenchmarkTask.model_validate(line) for line in folder.iter_lines(layout.TASKS)]
    trials = [TrialRecord.model_validate(line) for line in folder.iter_lines(layout.TRIALS)]
    return config, tasks, sorted(trials, key=lambda t: (t.task_id, t.trial))


async def regrade(eval_dir: Path) -> list[TrialRecord]:
    """Every saved trial scored again from its recorded calls (replayed on fresh sandboxes) and words, with
    the checks as they are now; no model is asked anything (the judge's recorded verdict stands)."""
    config, tasks, trials = read_evaluation(eval_dir)
    by_id = {t.task_id: t for t in tasks}
    folder = layout.RunFiles(eval_dir)
    toolsets: dict[str, dict[str, Tool]] = {}
    out = []
    for trial in trials:
        task = by_id.get(trial.task_id)
        if trial.reward is None or task is None:
            out.append(trial)
            continue
        if task.toolset not in toolsets:
            toolsets[task.toolset] = {t.name: t for t in layout.load_toolset(folder.file(task.toolset))}
        tools = with_decoys(toolsets[task.toolset], task.task.decoys, task.sources)  # a crowded task's decoys too
        check = await rescore(task, trial.messages, trial.calls, trial.judge_valid, tools)
        reward, parts = reward_parts(check, config.judge)
        fault, detail = classify(task, check, task_messages(trial.messages), trial.calls, reward, config.judge)
        out.append(trial.model_copy(update={"reward": reward, "parts": parts, "fault": fault, "fault_detail": detail,
                                            "real_diff": check.state.real_diff}))
    return out


def _figure(p: PassHat) -> str:
    if p.value is None:
        return "-"
    interval = f" [{p.low:.2f}, {p.high:.2f}]" if p.low is not None and p.high is not None else ""
    return f"{p.value:.3f}{interval}"


def summary_rows(summaries: dict[str, EvaluationSummary]) -> list[list[str]]:
    """pass^k of one or more evaluations side by side, with the counts that qualify them: a row per figure."""
    first = next(iter(summaries.values()))
    rows: list[tuple[str, Callable[[EvaluationSummary], Any]]] = [
        ("model", lambda s: s.model), ("tasks x trials", lambda s: f"{s.tasks} x {s.trials_per_task}"),
        ("scored trials (passed)", lambda s: f"{s.scored} ({s.passed})"),
        ("infrastructure failures (not scored)", lambda s: s.infrastructure),
        ("simulator / assistant faults", lambda s: f"{s.simulator_faults} / {s.assistant_faults}")]
    for k in range(1, max(s.trials_per_task for s in summaries.values()) + 1):
        rows.append((f"pass^{k} [95% CI]", lambda s, k=k: _figure(s.pass_hat[k - 1]) if k <= len(s.pass_hat) else "-"))
    for k in range(1, first.trials_per_task + 1):
        rows.append((f"pass^{k} without simulator faults", lambda s, k=k: _figure(
            s.pass_hat_without_simulator_faults[k - 1]) if k <= len(s.pass_hat) else "-"))
    rows.append(("flip rate", lambda s: "-" if s.flip_rate is None else f"{s.flip_rate:.2f}"))
    return [[name, *(str(value(s)) for s in summaries.values())] for name, value in rows]


def summary_table(summaries: dict[str, EvaluationSummary]) -> Table:
    table = Table(title="Evaluation")
    table.add_column("")
    for label in summaries:
        table.add_column(label, justify="right")
    for row in summary_rows(summaries):
        table.add_row(*row)
    return table


def breakdown_table(summary: EvaluationSummary) -> Table:
    table = Table(title=f"pass^k by group ({summary.model})")
    for column in ("by", "group", "tasks", *(f"pass^{k}" for k in range(1, summary.trials_per_task + 1))):
        table.add_column(column, justify="left" if column in ("by", "group") else "right")
    for axis, groups in summary.breakdowns.items():
        for group, figures in groups.items():
            table.add_row(axis, group, str(figures.tasks), *(_figure(p) for p in figures.pass_hat))
    return table
