"""`generate --target EVAL_DIR`: an evaluation's failures as weights on the slices of task making.

The evaluation folder is read through its own files (tasks.jsonl, trials.jsonl): each task's slices
(state/targeting.task_slices) and the rewards of its trials the model is answerable for. The weights go in
the run's settings, so every dialogue (in any worker process, and after a resume) draws its tasks from them.
"""

from __future__ import annotations

import random
from pathlib import Path

from rich.table import Table

from environment.errors import InputError
from environment.sources.registry import label_of
from runner import layout
from state.benchmark import BenchmarkTask, EvaluationConfig, TrialRecord
from state.config import RunConfig, RunSource
from state.targeting import Targeting, slice_figures, task_slices

TOOLS_SHOWN = 8  # the tool axis has a slice per tool: the most aimed-at ones are printed


def read_targeting(eval_dir: Path) -> Targeting:
    """The weights an evaluation gives, or one line saying why the folder gives none."""
    kind = layout.run_kind(eval_dir)
    if kind is None:
        raise InputError(f"--target: no evaluation in {eval_dir} (no readable {layout.CONFIG}); give the folder "
                         "`evaluate` wrote")
    if kind != "evaluate":
        raise InputError(f"--target: {eval_dir} is a {'dialogue' if kind == 'dialogues' else kind} run, not an "
                         f"evaluation: evaluate a model on it first (python -m graphs.run evaluate RUN --out EVAL_DIR)")
    files = layout.RunFiles(eval_dir)
    config = EvaluationConfig.model_validate(files.read_json(layout.CONFIG))
    tasks = [BenchmarkTask.model_validate(line) for line in files.iter_lines(layout.TASKS)]
    rewards: dict[str, list[int]] = {t.task_id: [] for t in tasks}
    for line in files.iter_lines(layout.TRIALS):
        trial = TrialRecord.model_validate(line)
        # the simulator's faults and the server's failures say nothing of the model
        if trial.reward is not None and trial.fault != "simulator" and trial.task_id in rewards:
            rewards[trial.task_id].append(trial.reward)
    scored = [r for rs in rewards.values() for r in rs]
    if not scored:
        raise InputError(f"--target: {eval_dir} has no trial the model is answerable for (none scored, or every "
                         "failure the simulator's): finish it with `evaluate --resume` or evaluate again")
    overall = sum(1 for r in scored if not r) / len(scored)
    targeting = Targeting(source=str(eval_dir), model=config.model, overall_failure=round(overall, 6))
    targeting.slices = slice_figures([(task_slices(t.task, t.database, t.writes), rewards[t.task_id]) for t in tasks],
                                     targeting.prior)
    return targeting


def targeted_source(config: RunConfig, targeting: Targeting | None, i: int) -> RunSource:
    """Dialogue i's source: in turn without targeting (or with one source), else drawn by the databases' weights."""
    sources = config.sources()
    if targeting is None or len(sources) < 2:
        return config.source_of(i)
    labels = [label_of(s.sources) if s.sources else "simulated" for s in sources]
    shares = targeting.shares("database", list(dict.fromkeys(labels)))
    rng = random.Random(f"{config.seed}:database:{i}")
    return rng.choices(sources, weights=[shares[label] / labels.count(label) for label in labels])[0]


def targeting_table(targeting: Targeting) -> Table:
    """The weights as the run starts: per axis and slice, the evaluation's figures and the share it will get."""
    table = Table(title=f"task making aimed by {targeting.source} ({targeting.model or 'model'}: "
                        f"{1 - targeting.overall_failure:.0%} of trials passed)")
    for column in ("axis", "slice", "tasks", "trials", "pass rate", "weight", "share"):
        table.add_column(column, justify="left" if column in ("axis", "slice") else "right")
    for axis, slices in targeting.slices.items():
        shares = targeting.shares(axis)
        shown = sorted(slices, key=lambda v: -shares[v])[:TOOLS_SHOWN] if axis == "tool" else list(slices)
        if len(shown) < len(slices):
            table.add_row(axis, f"({len(slices) - len(shown)} more, less aimed at)", "", "", "", "", "")
        for name in shown:
            figures = slices[name]
            rate = "-" if figures.pass_rate is None else f"{figures.pass_rate:.0%}"
            table.add_row(axis, name, str(figures.tasks), str(figures.scored), rate, f"{figures.weight:.3f}",
                          f"{shares.get(name, 0):.0%}")
    return table
