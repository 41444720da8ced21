"""Dataset statistics of finished runs: Steps, Turns and Tasks (the paper's definitions), pass rates and
throughput, from the per-dialogue figures each dataset line carries (runner/export.py writes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, Callable, Iterable

from pydantic import BaseModel, Field
from rich.table import Table

from environment.errors import InputError
from results.exporters.source import SourceDialogue
from runner import layout
from runner.layout import RunFiles, run_labels


class DatabaseStats(BaseModel):
    """One database's share of a run that spans several."""

    database: str
    tools: int
    samples: int
    rejected: int
    valid_rate: float
    turns_mean: float
    steps_mean: float


class RunStats(BaseModel):
    samples: int = 0
    rejected: int = 0
    failed: int = Field(0, description="Dialogues that stopped on an error (counted among the rejected).")
    steps_mean: float = 0.0
    steps_max: int = 0
    turns_mean: float = 0.0
    turns_max: int = 0
    tasks_mean: float = 0.0
    tasks_max: int = 0
    valid_rate: float = 0.0
    tools_proposed: int = 0
    tools_accepted: int = 0
    dialogues_completed: int = 0
    premature_completions: int = 0
    replay_diverged: int = Field(0, description="Dialogues with a recorded call whose replay gave another result.")
    latency_per_sample_s: float = 0.0
    tokens_per_second: float | None = None
    backend: str = ""
    models: dict[str, str] = Field(default_factory=dict, description="The model of each role (LLM backend).")
    structured_outputs: dict[str, str] = Field(
        default_factory=dict, description="The structured-output mode each endpoint settled on.")
    parse_failures: int = Field(0, description="JSON replies that did not parse (each was fed back).")
    empty_replies: int = Field(0, description="Assistant replies with neither text nor tool calls.")
    unknown_tools: int = Field(0, description="Assistant calls to a tool that does not exist.")
    bad_arguments: int = Field(0, description="Assistant calls whose arguments were not a JSON object.")
    per_database: list[DatabaseStats] = Field(default_factory=list, description="When a run spans several databases.")
    plan_refusals: int = Field(0, description="Candidate tasks refused at the plan check (then fed back or replaced).")
    tasks_verified: int = Field(0, description="Judged tasks whose state was checked against a goal diff.")
    state_matches: int = Field(0, description="Of those, tasks whose real diff matched the goal diff.")
    facts_required: int = 0
    facts_told: int = 0
    judge_vs_state: dict[str, int] = Field(
        default_factory=dict, description="Judged tasks by 'judge pass|fail / state pass|fail' (a 2x2 table).")
    per_variant: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Judged tasks by hard case (docs/hard-cases.md): 'tasks' and 'valid'.")


# Replies a model gave that were fed back, counted per run (see backends/llm/replies.py).
FAULTS = ("parse_failures", "empty_replies", "unknown_tools", "bad_arguments")


@dataclass
class _Tally:
    """Count, sum and maximum of a series, so a mean needs no list of every value."""

    count: int = 0
    total: float = 0.0
    largest: float = 0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.largest = max(self.largest, value)

    def mean(self, digits: int) -> float:
        return round(self.total / self.count, digits) if self.count else 0.0


@dataclass
class StatsTally:
    """A run's statistics gathered one dataset line at a time: nothing per dialogue is kept."""

    steps: _Tally = field(default_factory=_Tally)
    turns: _Tally = field(default_factory=_Tally)
    tasks: _Tally = field(default_factory=_Tally)
    latency: _Tally = field(default_factory=_Tally)
    samples: int = 0
    rejected: int = 0
    failed: int = 0
    completed: int = 0
    premature: int = 0
    diverged: int = 0
    tokens: int = 0
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))
    structured_outputs: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=lambda: {
        "plan_refusals": 0, "tasks_verified": 0, "state_matches": 0, "facts_required": 0, "facts_told": 0,
        "judge_vs_state": {f"judge {j} / state {s}": 0 for j in ("pass", "fail") for s in ("pass", "fail")},
        "per_variant": {}})

    def add_checks(self, meta: dict[str, Any]) -> None:
        """The plan check's refusals and each judged task's state, facts and judge (metadata.verification)."""
        self.checks["plan_refusals"] += sum(len((t.get("expected") or {}).get("refused", []))
                                            for t in meta.get("tasks", []))
        for entry in meta.get("verification", []):
            block = entry["verification"]
            if block["state"] != "unchecked":
                self.checks["tasks_verified"] += 1
                self.checks["state_matches"] += block["state"] == "match"
                state = "pass" if block["state"] == "match" else "fail"
                self.checks["judge_vs_state"][f"judge {block['judge']} / state {state}"] += 1
            variant = self.checks["per_variant"].setdefault(block.get("variant", "standard"), {"tasks": 0, "valid": 0})
            variant["tasks"] += 1
            variant["valid"] += bool(block.get("valid"))
            self.checks["facts_required"] += len(entry["facts"])
            self.checks["facts_told"] += sum(f["told"] for f in entry["facts"])

    def add(self, record: dict[str, Any], valid: bool) -> None:
        meta = record["metadata"]
        if valid:
            self.samples += 1
            for step in meta["stats"]["steps"]:
                self.steps.add(step)
            self.turns.add(meta["stats"]["turns"])
            self.tasks.add(meta["stats"]["tasks"])
        else:
            self.rejected += 1
            self.failed += bool(meta.get("error"))
        self.latency.add(meta.get("latency_s", 0.0))
        usage = meta.get("usage", {})
        self.tokens += usage.get("completion_tokens", 0)
        for name in FAULTS:
            self.faults[name] += usage.get(name, 0)
        self.structured_outputs.update(meta.get("structured_outputs") or {})
        self.models.update(meta.get("models") or {})
        self.completed += bool(meta.get("completed"))
        self.diverged += bool(meta.get("replay_diverged"))
        self.premature += meta["stats"].get("premature_completions", 0) if "stats" in meta else 0
        self.add_checks(meta)

    def stats(self, tools_proposed: int, tools_accepted: int, backend: str) -> RunStats:
        total = self.samples + self.rejected
        return RunStats(
            **self.faults, structured_outputs=self.structured_outputs, models=self.models,
            samples=self.samples, rejected=self.rejected, failed=self.failed,
            steps_mean=self.steps.mean(2), steps_max=int(self.steps.largest),
            turns_mean=self.turns.mean(2), turns_max=int(self.turns.largest),
            tasks_mean=self.tasks.mean(2), tasks_max=int(self.tasks.largest),
            valid_rate=round(self.samples / total, 4) if total else 0.0,
            tools_proposed=tools_proposed, tools_accepted=tools_accepted,
            dialogues_completed=self.completed, premature_completions=self.premature,
            replay_diverged=self.diverged,
            latency_per_sample_s=self.latency.mean(4),
            tokens_per_second=round(self.tokens / self.latency.total, 2) if self.tokens and self.latency.total
            else None,
            backend=backend, **self.checks,
        )


def run_stats(accepted: Iterable[dict[str, Any]], rejected: Iterable[dict[str, Any]], tools_proposed: int,
              tools_accepted: int, backend: str) -> RunStats:
    """Statistics of a run from its dataset lines (accepted and rejected), read one line at a time."""
    tally = StatsTally()
    for valid, records in ((True, accepted), (False, rejected)):
        for record in records:
            tally.add(record, valid)
    return tally.stats(tools_proposed, tools_accepted, backend)


def per_database_stats(accepted: list[dict[str, Any]], rejected: list[dict[str, Any]],
                       tools: dict[str, int]) -> list[DatabaseStats]:
    """Each database's dialogues, valid and rejected, in the run's order of databases."""
    rows = []
    for database, count in tools.items():
        mine = [r for r in accepted if r["metadata"].get("source_database") == database]
        theirs = [r for r in rejected if r["metadata"].get("source_database") == database]
        whole = run_stats(mine, theirs, tools_proposed=count, tools_accepted=count, backend="")
        rows.append(DatabaseStats(database=database, tools=count, samples=whole.samples, rejected=whole.rejected,
                                  valid_rate=whole.valid_rate, turns_mean=whole.turns_mean,
                                  steps_mean=whole.steps_mean))
    return rows


def database_table(stats: RunStats) -> Table:
    """One row per database of a run that spans several."""
    table = Table(title="Per database")
    table.add_column("database", no_wrap=True)
    for col in ("tools", "valid", "rejected", "valid rate", "turns", "steps"):
        table.add_column(col, justify="right")
    for row in stats.per_database:
        table.add_row(Path(row.database).stem, str(row.tools), str(row.samples), str(row.rejected),
                      f"{100 * row.valid_rate:.1f}%", f"{row.turns_mean}", f"{row.steps_mean}")
    return table


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"


# Each figure of the statistics table, rendered from a run's stats: `stats` prints them and `report` shows them.
STATS_ROWS: list[tuple[str, Callable[[RunStats], str]]] = [
    ("Steps (mean / max)", lambda s: f"{s.steps_mean} / {s.steps_max}"),
    ("Turns (mean / max)", lambda s: f"{s.turns_mean} / {s.turns_max}"),
    ("Tasks (mean / max)", lambda s: f"{s.tasks_mean} / {s.tasks_max}"),
    ("Samples", lambda s: str(s.samples)),
    ("Valid rate", lambda s: f"{100 * s.valid_rate:.1f}%"),
    ("Tools accepted", lambda s: _pct(s.tools_accepted, s.tools_proposed)),
    ("Dialogues completed", lambda s: _pct(s.dialogues_completed, s.samples + s.rejected)),
    ("Dialogues valid", lambda s: _pct(s.samples, s.samples + s.rejected)),
    ("Premature completions", lambda s: str(s.premature_completions)),
    ("Replays diverged", lambda s: str(s.replay_diverged)),
    ("Latency per sample", lambda s: f"{s.latency_per_sample_s:.3f} s"),
    ("Tokens per second", lambda s: "n/a (no tokens reported)" if s.tokens_per_second is None
     else f"{s.tokens_per_second:.1f}"),
    ("Backend", lambda s: s.backend),
    ("Replies fed back", lambda s: f"{s.parse_failures} JSON, {s.empty_replies} empty, "
                                   f"{s.unknown_tools} unknown tool, {s.bad_arguments} bad arguments"),
    ("Structured outputs", lambda s: ", ".join(sorted(set(s.structured_outputs.values()))) or "-"),
    ("Tasks refused at the plan check", lambda s: str(s.plan_refusals)),
    ("State match rate", lambda s: _pct(s.state_matches, s.tasks_verified)),
    ("Facts told rate", lambda s: _pct(s.facts_told, s.facts_required)),
    ("Judge pass / state fail", lambda s: str(s.judge_vs_state.get("judge pass / state fail", 0))),
    ("Judge fail / state pass", lambda s: str(s.judge_vs_state.get("judge fail / state pass", 0))),
    ("Tasks valid by variant", lambda s: ", ".join(
        f"{name} {c['valid']}/{c['tasks']}" for name, c in sorted(s.per_variant.items(), key=lambda kv: (
            kv[0] != "standard", kv[0]))) or "-"),
    ("Judge vs state (pass/pass, fail/fail)", lambda s: f"{s.judge_vs_state.get('judge pass / state pass', 0)}, "
                                                       f"{s.judge_vs_state.get('judge fail / state fail', 0)}"),
]


def stats_rows(columns: dict[str, RunStats]) -> list[tuple[str, list[str]]]:
    """The statistics table as text: one row per figure, one cell per run."""
    return [(label, [render(s) for s in columns.values()]) for label, render in STATS_ROWS]


def stats_table(columns: dict[str, RunStats]) -> Table:
    """The statistics table, one column per run."""
    table = Table(title="Dataset statistics", show_lines=False)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for label, cells in stats_rows(columns):
        table.add_row(label, *cells)
    return table


def read_run_stats(run_dirs: list[Path]) -> dict[str, RunStats]:
    """Each finished run's stats.json, by run label (the folder name; the path where two names clash)."""
    columns: dict[str, RunStats] = {}
    for run_dir, label in zip(run_dirs, run_labels(run_dirs)):
        files = RunFiles(run_dir)
        if not files.file(layout.STATS).exists():
            raise InputError(f"no {layout.STATS} in {run_dir} (is it a finished run folder?)")
        columns[label] = RunStats.model_validate(files.read_json(layout.STATS))
    return columns


class DatabaseRow(BaseModel):
    """One source database's share of a dataset."""

    database: str
    runs: str
    toolsets: int = Field(description="Distinct toolsets its dialogues used (one per database unless mixed).")
    valid: int
    rejected: int
    valid_rate: float
    tasks: int = Field(description="Tasks in its valid dialogues.")
    turns_mean: float = Field(description="Mean turns of its valid dialogues.")


def database_rows(dialogues: list[SourceDialogue]) -> list[DatabaseRow]:
    """Per source database (metadata.source_database), in name order."""
    groups: dict[str, list[SourceDialogue]] = {}
    for d in dialogues:
        groups.setdefault(d.database, []).append(d)
    rows = []
    for name in sorted(groups):
        group = groups[name]
        valid = [d for d in group if d.valid]
        turns = [d.metadata.get("stats", {}).get("turns", 0) for d in valid]
        rows.append(DatabaseRow(
            database=name, runs=", ".join(dict.fromkeys(d.run for d in group)),
            toolsets=len({str(d.metadata.get("toolset") or d.run) for d in group}),
            valid=len(valid), rejected=len(group) - len(valid), valid_rate=round(len(valid) / len(group), 4),
            tasks=sum(d.metadata.get("stats", {}).get("tasks", 0) for d in valid),
            turns_mean=round(fmean(turns), 2) if turns else 0.0))
    return rows
