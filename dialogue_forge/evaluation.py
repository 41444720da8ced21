"""`evaluate`: a finished run's tasks as a benchmark for a model, K trials each, scored by the source's end state
and the facts told; the result is the evaluation folder with its pass^k figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from dialogue_forge.errors import forge_errors
from dialogue_forge.generation import FolderNamed, _builder, _positive
from dialogue_forge.requests import EvaluateRequest, ExportRequest, ReportRequest
from dialogue_forge.sync import quiet, run_sync
from state.config import Settings

if TYPE_CHECKING:
    from dialogue_forge.outputs import Export
    from results.evaluation import EvaluationSummary
    from runner.run_folder import RunFolder
    from state.benchmark import TrialRecord

COMMAND = "evaluate"


@dataclass(frozen=True)
class Evaluation:
    """An evaluation folder (`path`) and its `summary` (as its summary.json holds it: pass^k with intervals,
    faults, flip rate, breakdowns)."""

    path: Path
    summary: EvaluationSummary

    @classmethod
    def open(cls, path: str | Path) -> Evaluation:
        """An evaluation folder made earlier, its summary computed from its trials."""
        from results.evaluation import read_evaluation, summarize

        with forge_errors():
            return cls(path=Path(path), summary=summarize(*read_evaluation(Path(path))))

    @property
    def pass_hat(self) -> dict[int, float | None]:
        """pass^k for each k from 1 to the trials per task (None: no task with k scored trials)."""
        return {p.k: p.value for p in self.summary.pass_hat}

    def trials(self) -> list[TrialRecord]:
        """Every trial, by task and trial number."""
        from results.evaluation import read_evaluation

        return read_evaluation(self.path)[2]

    def export_pairs(self, out: str | Path, console: Console | None = None, **options: Any) -> Export:
        """Preference pairs (prompt, chosen, rejected) for TRL's DPOTrainer: passing vs assistant-fault trials of
        a task (options: pairs_per_task, test_fraction, check_template)."""
        from dialogue_forge.outputs import export

        return export(ExportRequest(runs=[self.path], format="dpo", out=Path(out), **options), console=console)

    def report(self, out: str | Path, console: Console | None = None) -> Path:
        """An HTML page of this evaluation: pass^k curves, sources and failed trials; its path."""
        from dialogue_forge.outputs import report

        return report(ReportRequest(runs=[self.path], out=Path(out)), console=console)


def _graph_of(run_config: dict) -> Callable[[], Any]:
    # a trial plays its task on the graph its run was made with: a user simulator's dialogue, or a direct question
    return _builder(run_config.get("pipeline") or "user")


def _finish(folder: RunFolder, console: Console) -> Evaluation:
    from results.evaluation import breakdown_table, read_evaluation, summarize, summary_table
    from runner import layout

    summary = summarize(*read_evaluation(folder.path))
    folder.write_json(layout.SUMMARY, summary.model_dump(mode="json"))
    console.print(breakdown_table(summary))
    console.print(summary_table({folder.path.name: summary}))
    console.print(f"trials: {folder.file(layout.TRIALS)}; summary: {folder.file(layout.SUMMARY)}")
    return Evaluation(path=folder.path, summary=summary)


async def aevaluate(request: EvaluateRequest, *, console: Console | None = None,
                    on_folder: FolderNamed | None = None) -> Evaluation:
    """A new evaluation on the caller's event loop (the model under test plays the assistant); `on_folder` is
    called with the evaluation folder once it is named. Raises `InvalidInput`, `RunFailed`, `ModelServerError`."""
    from runner.evaluate import evaluate, model_under_test, run_trials
    from runner.layout import dialogue_run_config
    from runner.workers import choose_workers
    from runner.run_folder import default_run_dir

    console = quiet(console)
    with forge_errors():
        for name in ("trials", "concurrency", "tasks"):
            value = getattr(request, name)
            if value is not None:
                _positive(name, value)
        settings = request.settings if request.settings is not None else Settings()
        model = model_under_test(settings).replace("/", "_")
        out = request.out or default_run_dir("eval", request.run.name, model, seed=request.seed)
        if on_folder is not None:
            on_folder(out)
        workers, auto = choose_workers(str(request.workers), settings, request.concurrency)
        console.print(workers.line(auto))
        graph = _graph_of(dialogue_run_config(request.run, "evaluate works on dialogue runs"))
        folder = await evaluate(graph, request.run, out, settings, console, request.trials, request.seed,
                                request.tasks, request.task_ids, request.judge, request.concurrency, workers.workers,
                                request.same_user)
        with folder.own(COMMAND):
            if request.rerun_simulator_faults:
                await run_trials(graph, folder, settings, console, rerun_faults=True)
            return _finish(folder, console)


def evaluate(request: EvaluateRequest, *, console: Console | None = None,
             on_folder: FolderNamed | None = None) -> Evaluation:
    """`aevaluate` on an event loop of its own."""
    return run_sync(aevaluate(request, console=console, on_folder=on_folder))


async def aresume_evaluation(path: Path, *, settings: Settings | None = None, rerun_simulator_faults: bool = False,
                             console: Console | None = None) -> Evaluation:
    """An evaluation that was cut off finished (every trial once), with its settings (`settings` on top)."""
    from runner import layout
    from runner.evaluate import evaluation_settings, run_trials
    from runner.run_folder import RunFolder
    from state.benchmark import EvaluationConfig

    console = quiet(console)
    with forge_errors():
        folder = RunFolder(path)
        settings = evaluation_settings(folder, settings)  # says in one line when it is no evaluation folder
        with folder.own(COMMAND):
            graph = _graph_of(EvaluationConfig.model_validate(folder.read_json(layout.CONFIG)).run_config)
            await run_trials(graph, folder, settings, console, rerun_simulator_faults)
            return _finish(folder, console)


def resume_evaluation(path: Path, *, settings: Settings | None = None, rerun_simulator_faults: bool = False,
                      console: Console | None = None) -> Evaluation:
    """`aresume_evaluation` on an event loop of its own."""
    return run_sync(aresume_evaluation(path, settings=settings, rerun_simulator_faults=rerun_simulator_faults,
                                       console=console))


async def aregrade(path: Path, *, console: Console | None = None) -> Evaluation:
    """The saved trials scored again from their recorded calls, without any model."""
    from results.evaluation import regrade as regrade_trials
    from runner import layout
    from runner.evaluate import evaluation_settings
    from runner.run_folder import RunFolder

    console = quiet(console)
    with forge_errors():
        folder = RunFolder(path)
        evaluation_settings(folder, None)  # says in one line when it is no evaluation folder
        with folder.own(COMMAND):
            folder.rewrite_lines(layout.TRIALS, [t.model_dump(mode="json") for t in await regrade_trials(path)])
            return _finish(folder, console)


def regrade(path: Path, *, console: Console | None = None) -> Evaluation:
    """`aregrade` on an event loop of its own."""
    return run_sync(aregrade(path, console=console))


__all__ = ["Evaluation", "aevaluate", "aregrade", "aresume_evaluation", "evaluate", "regrade", "resume_evaluation"]
