"""The `optimize` subcommand of `python -m graphs.run` (method B's trilevel optimization)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console

from environment.errors import InputError
from graphs.commands_cli import Command
from graphs.reasoning_cli import add_common_args, settings_of
from runner.layout import run_kind

if TYPE_CHECKING:
    from state.optimize import OptimizeBudget

COMMAND = "optimize"
BUDGET_FLAGS = {"generations": int, "population": int, "steps": int, "dialogues": int, "mu": float, "lr": float,
                "depth": int}


def arguments(opt: argparse.ArgumentParser) -> None:
    from state.optimize import OptimizeBudget  # its defaults and descriptions are the flags' help

    add_common_args(opt, "dialogues generated per evaluation (default 4)")
    opt.set_defaults(dialogues=None, users=None)
    described = OptimizeBudget.model_fields
    for name, kind in BUDGET_FLAGS.items():
        if name == "dialogues":
            continue
        default = described[name].default
        opt.add_argument(f"--{name}", type=kind, help=f"{described[name].description.rstrip('.')} (default {default})")


def _budget(args: argparse.Namespace) -> OptimizeBudget:
    from state.optimize import OptimizeBudget

    given = {name: getattr(args, name) for name in BUDGET_FLAGS if getattr(args, name, None) is not None}
    try:
        return OptimizeBudget(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"--{first['loc'][0]}: {first['msg']}") from None


async def run(args: argparse.Namespace, console: Console) -> None:
    from graphs.optimize import build_optimizer_graph
    from graphs.user_agent import build_user_agent_graph
    from runner.optimize import run_optimize
    from state.optimize import OptimizeRunConfig

    budget = _budget(args)
    if args.concurrency < 1:
        raise InputError(f"--concurrency must be at least 1 (got {args.concurrency})")
    users = args.users if args.users is not None else budget.dialogues
    if users < 1:
        raise InputError(f"--users must be at least 1 (got {users})")
    settings = settings_of(args)
    stem = args.scenario.parent.name if args.scenario.name in ("scenario.md", "scenario.txt") else args.scenario.stem
    from runner.run_folder import default_run_dir

    out = args.out or default_run_dir(stem, "optimize", seed=args.seed)
    args.started_out = out
    config = OptimizeRunConfig(run_id=out.name, scenario_file=str(args.scenario.resolve()),
                               corpus=str(args.corpus.resolve()), users=users, dialogues=budget.dialogues,
                               seed=args.seed, concurrency=args.concurrency, budget=budget,
                               settings=settings.public())
    await run_optimize(config, settings, out, console, build_optimizer_graph, build_user_agent_graph)


def is_optimize_run(run_dir: Path) -> bool:
    return run_kind(run_dir) == COMMAND


async def resume(run_dir: Path, console: Console) -> None:
    from graphs.optimize import build_optimizer_graph
    from graphs.user_agent import build_user_agent_graph
    from runner.optimize import resume_optimize

    await resume_optimize(run_dir, console, build_optimizer_graph, build_user_agent_graph)


COMMANDS = {
    COMMAND: Command("evolve a dialogue-quality metric and tune the user agent's and the assistant's prompts against "
                     "it (trilevel optimization)", arguments, run),
}
