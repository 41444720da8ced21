"""The figures a report charts, per run, from the same dataset lines `stats` is computed from."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
from pydantic import BaseModel, Field

from results.exporters.source import SourceRun
from results.stats import RunStats

DIFFICULTIES = ("easy", "medium", "hard")


class StageRates(BaseModel):
    """Share passing each stage, 0–1 (None where the stage saw nothing)."""

    tools_accepted: float | None
    dialogues_completed: float | None
    tasks_state_match: float | None = None
    tasks_valid: float | None
    dialogues_valid: float | None


class RunSummary(BaseModel):
    label: str
    turns: list[int] = Field(description="Turns of each valid dialogue.")
    steps: list[int] = Field(description="Tool-use iterations of each user request that used tools (valid dialogues).")
    tasks: list[int] = Field(description="Tasks of each valid dialogue.")
    tool_calls: dict[str, int] = Field(description="Calls per tool in valid dialogues.")
    stages: StageRates
    rejection_reasons: dict[str, int]
    difficulty: dict[str, int] = Field(description="Tasks per difficulty, every dialogue.")
    difficulty_valid: dict[str, int] = Field(description="Tasks per difficulty judged valid.")
    similarity: list[float] = Field(description="Each valid dialogue's cosine similarity to its nearest other one.")


def reason_kind(reason: str | None) -> str:
    """A rejection reason without what varies between dialogues (task numbers, counts), so like ones group."""
    text = re.sub(r"^task \d+: ", "", (reason or "no reason recorded").strip())
    text = re.sub(r"\d+", "N", text.splitlines()[0] if text else "no reason recorded")
    return text if len(text) <= 90 else text[:89] + "…"


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summarize_run(run: SourceRun, stats: RunStats, similarity: list[float]) -> RunSummary:
    accepted = run.accepted
    verdicts = [v for d in run.dialogues for v in d.metadata.get("verdicts", [])]
    difficulty: Counter[str] = Counter()
    difficulty_valid: Counter[str] = Counter()
    for d in run.dialogues:
        judged = {v.get("task_index"): v.get("judgment") for v in d.metadata.get("verdicts", [])}
        for i, task in enumerate(d.metadata.get("tasks", [])):
            level = str(task.get("difficulty") or "unknown")
            difficulty[level] += 1
            difficulty_valid[level] += judged.get(i) == "valid"
    calls: Counter[str] = Counter(c.get("function", {}).get("name", "?") for d in accepted for m in d.messages
                                  if m.get("role") == "assistant" for c in m.get("tool_calls") or [])
    total = stats.samples + stats.rejected
    return RunSummary(
        label=run.label,
        turns=[d.metadata.get("stats", {}).get("turns", 0) for d in accepted],
        steps=[s for d in accepted for s in d.metadata.get("stats", {}).get("steps", [])],
        tasks=[d.metadata.get("stats", {}).get("tasks", 0) for d in accepted],
        tool_calls=dict(calls.most_common()),
        stages=StageRates(tools_accepted=_rate(stats.tools_accepted, stats.tools_proposed),
                          dialogues_completed=_rate(stats.dialogues_completed, total),
                          tasks_state_match=_rate(stats.state_matches, stats.tasks_verified),
                          tasks_valid=_rate(sum(v.get("judgment") == "valid" for v in verdicts), len(verdicts)),
                          dialogues_valid=_rate(stats.samples, total)),
        rejection_reasons=dict(Counter(reason_kind(d.reason) for d in run.rejected).most_common()),
        difficulty={k: difficulty[k] for k in (*DIFFICULTIES, *sorted(set(difficulty) - set(DIFFICULTIES)))
                    if difficulty[k] or k in DIFFICULTIES},
        difficulty_valid=dict(difficulty_valid),
        similarity=similarity,
    )


def similarity_summary(values: list[float]) -> str:
    if not values:
        return "fewer than two valid dialogues"
    a = np.asarray(values)
    return f"mean {a.mean():.3f}, max {a.max():.3f}, min {a.min():.3f}"
