"""The `evaluate` subcommand of `python -m graphs.run`: a run's tasks as a benchmark for a model.

    evaluate RUN --trials K --out EVAL_DIR     a new evaluation (the model under test is the assistant role)
    evaluate --resume EVAL_DIR                 finish one that was cut off (every trial once)
    evaluate --regrade EVAL_DIR                score the saved trials again, without any model
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from environment.errors import InputError
from graphs.commands_cli import Command
from graphs.llm_options import add_llm_args, llm_options_given, llm_settings

COMMAND = "evaluate"


def arguments(ev: argparse.ArgumentParser) -> None:
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


async def run(args: argparse.Namespace, console: Console) -> int:
    import dialogue_forge as forge

    given = forge.Settings(**llm_settings(args)) if llm_options_given(args) else None
    target = args.resume or args.regrade
    if target is not None:
        if args.run_dir is not None:
            raise InputError("--resume and --regrade take the evaluation folder; give no run folder with them")
        if args.regrade:
            await forge.aregrade(target, console=console)
        else:
            await forge.aresume_evaluation(target, settings=given, rerun_simulator_faults=args.rerun_simulator_faults,
                                           console=console)
        return 0
    if args.run_dir is None:
        raise InputError("name the run to evaluate (or pass --resume / --regrade EVAL_DIR)")
    ids = [i.strip() for i in args.task_ids.split(",") if i.strip()] if args.task_ids else []
    request = forge.EvaluateRequest(run=args.run_dir, trials=args.trials, out=args.out, tasks=args.tasks, task_ids=ids,
                                    seed=args.seed, judge=args.judge, same_user=args.same_user,
                                    concurrency=args.concurrency, workers=args.workers,
                                    rerun_simulator_faults=args.rerun_simulator_faults, settings=given)
    await forge.aevaluate(request, console=console, on_folder=lambda out: setattr(args, "started_out", out))
    return 0


COMMANDS = {
    COMMAND: Command("play a run's tasks with a model under test, K trials each, scored by the source's end state "
                     "and the facts told; reports pass^k", arguments, run),
}
