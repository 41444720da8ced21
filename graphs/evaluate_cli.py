"""The `evaluate` subcommand of `python -m graphs.run`: a run's tasks as a benchmark for a model.

    evaluate RUN --trials K --out EVAL_DIR     a new evaluation (the model under test is the assistant role)
    evaluate --resume EVAL_DIR                 finish one that was cut off (every trial once)
    evaluate --regrade EVAL_DIR                score the saved trials again, without any model
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from environment.errors import InputError
from graphs.dialogue import build_dialogue_graph
from graphs.task_oriented import build_task_oriented_graph
from graphs.llm_options import add_llm_args, llm_options_given, llm_settings
from results.evaluation import breakdown_table, read_evaluation, regrade, summarize, summary_table
from runner import layout
from runner.evaluate import evaluate, evaluation_settings, model_under_test, run_trials
from runner.layout import dialogue_run_config
from runner.run_folder import RunFolder
from runner.workers import choose_workers
from state.benchmark import EvaluationConfig
from state.config import Settings

COMMAND = "evaluate"
# a trial plays its task on the graph its run was made with: a user simulator's dialogue, or a direct question
GRAPHS = {"user": build_dialogue_graph, "task": build_task_oriented_graph}


def _graph_of(run_config: dict) -> object:
    return GRAPHS[run_config.get("pipeline") or "user"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(COMMAND, help="play a run's tasks with a model under test, K trials each, scored by the "
                                      "database's end state and the facts told; reports pass^k")
    ev.add_argument("run_dir", type=Path, nargs="?", help="a finished dialogue run whose valid dialogues' tasks "
                                                         "are the benchmark")
    ev.add_argument("--trials", type=int, default=3, help="trials per task, K (default 3)")
    ev.add_argument("--out", type=Path, help="evaluation folder (default runs/eval-<run>-<model>-s<seed>-<time>)")
    pick = ev.add_mutually_exclusive_group()
    pick.add_argument("--tasks", type=int, help="evaluate on N tasks drawn with the seed (default: every task)")
    pick.add_argument("--task-ids", help="comma-separated task ids, e.g. run-d0003-t1,run-d0004-t2")
    ev.add_argument("--seed", type=int, default=0, help="seeds the task sample, every trial's user and the bootstrap")
    ev.add_argument("--judge", action="store_true", help="score the judge's non-state rubric items too")
    ev.add_argument("--same-user", action="store_true",
                    help="every trial of a task meets the same user, so trials differ by the model's sampling alone "
                         "(for preference pairs from one evaluation: export EVAL_DIR --format dpo)")
    ev.add_argument("--concurrency", type=int, default=8, help="trials run at once (default 8)")
    ev.add_argument("--workers", default="auto", metavar="auto|N",
                    help="processes to spread the trials over, as for generate (default auto: 1 offline)")
    again = ev.add_mutually_exclusive_group()
    again.add_argument("--resume", type=Path, metavar="EVAL_DIR", help="finish an evaluation that was cut off")
    again.add_argument("--regrade", type=Path, metavar="EVAL_DIR",
                       help="score the saved trials again from their recorded calls, without any model")
    ev.add_argument("--rerun-simulator-faults", action="store_true",
                    help="run each trial the simulated user spoiled again, with a fresh user sample")
    add_llm_args(ev)


def _finish(folder: RunFolder, console: Console) -> None:
    config, tasks, trials = read_evaluation(folder.path)
    summary = summarize(config, tasks, trials)
    folder.write_json(layout.SUMMARY, summary.model_dump(mode="json"))
    console.print(breakdown_table(summary))
    console.print(summary_table({folder.path.name: summary}))
    console.print(f"trials: {folder.file(layout.TRIALS)}; summary: {folder.file(layout.SUMMARY)}")


async def run(args: argparse.Namespace, console: Console) -> int:
    given = Settings(**llm_settings(args)) if llm_options_given(args) else None
    target = args.resume or args.regrade
    if target is not None:
        if args.run_dir is not None:
            raise InputError("--resume and --regrade take the evaluation folder; give no run folder with them")
        folder = RunFolder(target)
        settings = evaluation_settings(folder, given)  # says in one line when it is no evaluation folder
        with folder.own(COMMAND):
            if args.regrade:
                folder.rewrite_lines(layout.TRIALS, [t.model_dump(mode="json") for t in await regrade(target)])
            else:
                graph = _graph_of(EvaluationConfig.model_validate(folder.read_json(layout.CONFIG)).run_config)
                await run_trials(graph, folder, settings, console, args.rerun_simulator_faults)
            _finish(folder, console)
        return 0
    if args.run_dir is None:
        raise InputError("name the run to evaluate (or pass --resume / --regrade EVAL_DIR)")
    for name in ("trials", "concurrency", "tasks"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name} must be at least 1 (got {value})")
    settings = given or Settings()
    ids = [i.strip() for i in args.task_ids.split(",") if i.strip()] if args.task_ids else []
    model = model_under_test(settings).replace("/", "_")
    out = args.out or Path("runs") / f"eval-{args.run_dir.name}-{model}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    args.started_out = out
    workers, auto = choose_workers(args.workers, settings, args.concurrency)
    console.print(workers.line(auto))
    graph = _graph_of(dialogue_run_config(args.run_dir, "evaluate works on dialogue runs"))
    folder = await evaluate(graph, args.run_dir, out, settings, console, args.trials, args.seed,
                            args.tasks, ids, args.judge, args.concurrency, workers.workers, args.same_user)
    with folder.own(COMMAND):
        if args.rerun_simulator_faults:
            await run_trials(graph, folder, settings, console, rerun_faults=True)
        _finish(folder, console)
    return 0
