"""Command line of Dialogue Forge (`python -m graphs.run COMMAND`, or `dialogue-forge COMMAND`).

Runs of dialogues:
  generate     synthesize a dataset of dialogues from one or more tool sources (SQLite, Postgres, MCP servers)
  resume       finish an interrupted run, or continue one dialogue from a checkpoint
  fork         start a new dialogue from another dialogue's checkpoint
  history      list every checkpoint of a dialogue
  show         print a dialogue as it stood at a checkpoint
  toolprep     grow a consistent toolset with output schemas from a few seed tools
  stats        print the statistics of one or more runs side by side
User agents grounded in a knowledge corpus:
  reasoning    dialogues with reasoning questions kept hard by k solvers
  ablate       the same dialogues three ways, their quality side by side
  optimize     evolve a dialogue-quality metric and tune the prompts against it
From finished runs:
  export       a training set (openai, trl, sharegpt, hf, rl), or preference pairs from evaluations (dpo)
  report       a self-contained HTML dataset card with a dialogue browser
  verify       replay every call of a finished run and re-check every diff and fact
  evaluate     a run's tasks as a benchmark for a model: pass^k

Bad input is reported as one line on stderr with exit code 2; nothing half-written is left behind. The commands
that make or read datasets are calls of the `dialogue_forge` API; this module parses, calls and prints.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Collection
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from dialogue_forge.errors import ForgeError, forge_errors
from environment.errors import InputError
from graphs import dataset_cli, evaluate_cli, optimize_cli, reasoning_cli, verify_cli
from graphs.commands_cli import Command
from graphs.llm_options import add_llm_args, llm_options_given, llm_settings

PROG = "python -m graphs.run"


def _generate_arguments(gen: argparse.ArgumentParser) -> None:
    from runner.workers import DIALOGUES_PER_WORKER

    gen.add_argument("--db", "--source", dest="db", nargs="+", metavar="SOURCE",
                     help="tool source(s), never modified: SQLite files, folders (every *.sqlite, *.sqlite3, *.db "
                          "under them) or globs, Postgres URIs (postgresql://...), or the URI of another registered "
                          "kind (mcp://SERVERS.json); without it, --mcp or --toolset with simulated tools")
    gen.add_argument("--mcp", type=Path, metavar="SERVERS.json",
                     help="MCP servers (the mcpServers format) whose tools the dialogues call, each dialogue on its "
                          "own servers started on fresh copies of their declared files (see the README's MCP section)")
    gen.add_argument("--pipeline", choices=["user", "task"], default="user",
                     help="user-oriented dialogues (default) or task-oriented direct questions")
    count = gen.add_mutually_exclusive_group()
    count.add_argument("--dialogues", type=int, default=10, help="how many dialogues in all (default 10)")
    count.add_argument("--dialogues-per-db", "--dialogues-per-source", dest="dialogues_per_db", type=int, metavar="N",
                       help="how many dialogues for each usable source")
    gen.add_argument("--tasks-per-dialogue", type=int, default=2, help="tasks per dialogue (default 2)")
    gen.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    gen.add_argument("--concurrency", type=int, default=8, help="dialogues run at once (default 8)")
    gen.add_argument("--workers", default="auto", metavar="auto|N",
                     help="processes to spread the dialogues over: a number, or auto (the default): on a model server "
                          f"min(cores, ceil(concurrency / {DIALOGUES_PER_WORKER})), offline 1")
    gen.add_argument("--out", type=Path, help="run folder (default runs/<source>-<pipeline>-s<seed>-<time>)")
    gen.add_argument("--toolset", type=Path, help="reuse a toolset.json instead of synthesizing one")
    gen.add_argument("--target", type=Path, metavar="EVAL_DIR",
                     help="lean task making toward the slices (databases, tools, writes, difficulties, subtasks, "
                          "variants) the model of this evaluation failed most; the weights go in config.json")
    add_llm_args(gen)

    gen.add_argument("--from-conversation", type=Path,
                     help="a JSON list of OpenAI chat messages: every dialogue continues this conversation")
    gen.add_argument("--cache", action="store_true", help="cache LLM responses in the run folder (llm_cache.sqlite)")
    gen.add_argument("--checkpoints", choices=["all", "final"],
                     help="all (default): every step of every dialogue; final: only the last state of a finished one")
    gen.add_argument("--checkpointer", metavar="postgresql://USER@HOST:PORT/DATABASE",
                     help="keep the checkpoints and the store in this Postgres database instead of the run folder's "
                          "checkpoints.sqlite (or FORGE_CHECKPOINTER); the password comes from PGPASSWORD or "
                          "~/.pgpass and is never written to the run folder")
    gen.add_argument("--variants", metavar="NAME=SHARE,...",
                     help="make this share of tasks hard cases, e.g. missing-info=0.2,missing-tool=0.1,"
                          "out-of-scope=0.05,crowded=0.2 (default none; see docs/hard-cases.md)")
    gen.add_argument("--crowd", type=int, metavar="N", help="decoy tools a crowded dialogue is offered (default 50)")
    gen.add_argument("--personas", type=int, metavar="N",
                     help="a pool of N user personas per source, made from its domain; each dialogue's user plays "
                          "one (default 0: none)")
    _executor_args(gen)


def _resume_arguments(res: argparse.ArgumentParser) -> None:
    res.add_argument("run_dir", type=Path)
    res.add_argument("--dialogue", help="the dialogue to continue (with --checkpoint)")
    res.add_argument("--checkpoint", help="checkpoint id to continue from (see `history`)")
    res.add_argument("--cache", action="store_true", help="use the run folder's LLM response cache")
    add_llm_args(res)
    _executor_args(res)


def _fork_arguments(fork: argparse.ArgumentParser) -> None:
    fork.add_argument("run_dir", type=Path)
    fork.add_argument("--dialogue", required=True)
    fork.add_argument("--checkpoint", required=True)
    fork.add_argument("--seed", type=int, help="a new seed for what happens after the fork")
    fork.add_argument("--user-message", help="replace the next user message with this text")
    fork.add_argument("--cache", action="store_true", help="use the run folder's LLM response cache")
    add_llm_args(fork)


def _history_arguments(hist: argparse.ArgumentParser) -> None:
    hist.add_argument("run_dir", type=Path)
    hist.add_argument("--dialogue", required=True)


def _show_arguments(show: argparse.ArgumentParser) -> None:
    _history_arguments(show)
    show.add_argument("--checkpoint")


def _toolprep_arguments(prep: argparse.ArgumentParser) -> None:
    prep.add_argument("--tools", type=Path, required=True, help="seed tools: a JSON list of OpenAI function specs")
    prep.add_argument("--domain", required=True, help="the domain the tools serve, e.g. 'online bookstore'")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--out", type=Path, help="run folder (default runs/toolprep-<domain>-s<seed>-<time>)")
    add_llm_args(prep)


def _stats_arguments(st: argparse.ArgumentParser) -> None:
    st.add_argument("run_dirs", type=Path, nargs="+")
    st.add_argument("--diversity", action="store_true",
                    help="also the diversity of each run's users (embedding similarity of user turns, distinct-n, "
                         "topics), e.g. a run with personas beside one without (shown without the flag when a run "
                         "has personas)")


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], help="run dialogues on this machine (local, the default) "
                   "or as Ray tasks (ray); resume keeps the run's unless given")
    p.add_argument("--ray-address", help="Ray cluster head host:port (default: a local Ray of the run's own)")
    p.add_argument("--keep-sandboxes", action="store_true", default=None,
                   help="keep each dialogue's sandbox for inspection instead of dropping it when the dialogue ends "
                        "(Postgres: its database, and the run's template; see README)")


def _executor_of(args: argparse.Namespace) -> dict[str, object]:
    return {k: v for k, v in {"executor": getattr(args, "executor", None),
                              "ray_address": getattr(args, "ray_address", None),
                              "keep_sandboxes": getattr(args, "keep_sandboxes", None)}.items() if v is not None}


def _settings(args: argparse.Namespace):
    """The Settings the flags give (the environment fills the rest)."""
    from state.config import Settings

    where = {k: v for k in ("checkpointer", "checkpoints") if (v := getattr(args, k, None)) is not None}
    hard = {k: v for k in ("variants", "crowd", "personas") if (v := getattr(args, k, None)) is not None}
    try:
        return Settings(**llm_settings(args), **_executor_of(args), **where, **hard)
    except ValidationError as exc:  # a hard-case flag's value, said in one line (others keep their own message)
        error = exc.errors()[0]
        if not error["loc"] or error["loc"][0] not in hard:
            raise
        raise InputError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None


def read_conversation(path: Path) -> list[dict]:
    """A --from-conversation file, checked (the API's reader)."""
    from dialogue_forge.generation import read_conversation as read

    return read(path)


async def _generate(args: argparse.Namespace, console: Console) -> int:
    import dialogue_forge as forge

    request = forge.GenerateRequest(
        sources=args.db or [], mcp=args.mcp, toolset=args.toolset, pipeline=args.pipeline, dialogues=args.dialogues,
        dialogues_per_source=args.dialogues_per_db, tasks_per_dialogue=args.tasks_per_dialogue, seed=args.seed,
        concurrency=args.concurrency, workers=args.workers, out=args.out, target=args.target,
        conversation=args.from_conversation, cache=args.cache, settings=_settings(args))
    await forge.agenerate(request, console=console, on_folder=lambda out: setattr(args, "started_out", out))
    return 0


async def _resume(args: argparse.Namespace, console: Console) -> int:
    if args.dialogue:
        if not args.checkpoint:
            raise InputError("--dialogue goes with --checkpoint "
                             "(see: python -m graphs.run history RUN_DIR --dialogue ID)")
        return await _checkpoint_command(args, console)
    if reasoning_cli.is_reasoning_run(args.run_dir):
        await reasoning_cli.resume(args.run_dir, console)
        return 0
    if optimize_cli.is_optimize_run(args.run_dir):
        await optimize_cli.resume(args.run_dir, console)
        return 0
    if args.checkpoint:
        raise InputError("--checkpoint goes with --dialogue")
    import dialogue_forge as forge

    executor = _executor_of(args)
    await forge.aresume(forge.ResumeRequest(run=args.run_dir, settings=_settings(args) if llm_options_given(args)
                                            else None, **executor), console=console)
    return 0


async def _checkpoint_command(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from dialogue_forge.generation import pipeline_of
    from dialogue_forge.run import write_stats
    from results.stats import stats_table
    from runner.checkpoints import DialogueCheckpoints, render_conversation
    from runner.layout import LLM_CACHE

    settings = _settings(args) if llm_options_given(args) else None
    owner = args.command if args.command in ("resume", "fork") else None  # history and show only read
    async with DialogueCheckpoints(args.run_dir, pipeline_of(args.run_dir), settings, console, owner) as store:
        if getattr(args, "cache", False):
            store.settings = store.settings.model_copy(update={"llm_cache": str(args.run_dir / LLM_CACHE)})
        if args.command == "history":
            rows = await store.history(args.dialogue)
            table = Table(title=f"checkpoints of {args.dialogue}")
            table.add_column("checkpoint id", no_wrap=True, min_width=36)
            for col in ("step", "written by", "task", "turn", "next", "last message"):
                table.add_column(col, no_wrap=col != "last message")
            for r in rows:
                table.add_row(r.checkpoint_id, str(r.step), r.node, str(r.task), str(r.turn), r.next, r.excerpt)
            console.print(table)
        elif args.command == "show":
            state = await store.state(args.dialogue, args.checkpoint)
            render_conversation(state, await store.tools_of(state), console)
        elif args.command == "resume":
            await store.resume(args.dialogue, args.checkpoint)
            console.print(f"resumed {args.dialogue} from {args.checkpoint}; its line in the dataset was replaced")
        elif args.command == "fork":
            new_id = await store.fork(args.dialogue, args.checkpoint, args.seed, args.user_message)
            console.print(f"forked {args.dialogue} at {args.checkpoint} into {new_id}")
        if owner:
            console.print(stats_table({args.run_dir.name: write_stats(store.folder)}))
    return 0


async def _toolprep(args: argparse.Namespace, console: Console) -> int:

    from environment.sqlnames import snake
    from graphs.toolprep import build_toolprep_graph
    from runner.toolprep import run_toolprep

    if not args.domain.strip():
        raise InputError("--domain must name the domain the tools serve, e.g. 'online bookstore'")
    from runner.run_folder import default_run_dir

    out = args.out or default_run_dir("toolprep", snake(args.domain), seed=args.seed)
    await run_toolprep(build_toolprep_graph, args.tools, args.domain, out, _settings(args), args.seed, console)
    return 0


def _stats(args: argparse.Namespace, console: Console) -> int:
    from results.stats import read_run_stats, stats_table
    from results.targeting import slice_shares, slice_table
    from runner import layout

    columns = read_run_stats(args.run_dirs)
    console.print(stats_table(columns))
    for run_dir, label in zip(args.run_dirs, layout.run_labels(args.run_dirs)):
        targeted = slice_shares(run_dir)  # a run made with --target: its slices beside the evaluation's
        if targeted is not None:
            console.print(slice_table(label, *targeted))
    if args.diversity or any((run / layout.PERSONAS).exists() for run in args.run_dirs):
        from results.diversity import diversity_table, read_diversity  # loads the embedding model

        console.print(diversity_table(read_diversity(dict(zip(columns, args.run_dirs)))))
    return 0


COMMANDS: dict[str, Command] = {
    "generate": Command("synthesize a dataset of dialogues from one or more tool sources (SQLite, Postgres, MCP)",
                        _generate_arguments, _generate),
    "resume": Command("finish an interrupted run, or continue one dialogue from a checkpoint", _resume_arguments,
                      _resume),
    "fork": Command("start a new dialogue from another dialogue's checkpoint", _fork_arguments, _checkpoint_command),
    "history": Command("list every checkpoint of a dialogue", _history_arguments, _checkpoint_command),
    "show": Command("print a dialogue as it stood at a checkpoint (default: the last)", _show_arguments,
                    _checkpoint_command),
    "toolprep": Command("grow a consistent toolset with output schemas from a few seed tools", _toolprep_arguments,
                        _toolprep),
    "stats": Command("print the statistics of one or more runs side by side", _stats_arguments, _stats),
    **reasoning_cli.COMMANDS,
    **dataset_cli.COMMANDS,
    **optimize_cli.COMMANDS,
    **verify_cli.COMMANDS,
    **evaluate_cli.COMMANDS,
}


def parser(only: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole argument parser (for the CLI reference); with `only`, just those commands' arguments are added
    (the others are listed), so parsing one command imports only what its flags need."""
    top = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                  epilog="`COMMAND --help` describes a command's options.")
    sub = top.add_subparsers(dest="command", required=True)
    for name, entry in COMMANDS.items():
        p = sub.add_parser(name, help=entry.help, description=entry.help)
        if only is None or name in only:
            entry.arguments(p)
    return top


def _interrupted(args: argparse.Namespace) -> int:
    target = getattr(args, "run_dir", None) or getattr(args, "started_out", None)
    if args.command == evaluate_cli.COMMAND:
        target = getattr(args, "resume", None) or getattr(args, "started_out", None)
        if target is not None and Path(target).exists():
            print(f"interrupted: finish it with `python -m graphs.run evaluate --resume {target}`", file=sys.stderr)
            return 130
    if target is not None and Path(target).exists():
        print(f"interrupted: finish the run with `python -m graphs.run resume {target}`", file=sys.stderr)
    else:
        print("interrupted", file=sys.stderr)
    return 130


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run the way Ctrl-C does: cleanly, resumable


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    level = os.environ.get("FORGE_LOG_LEVEL", "WARNING").upper()  # INFO shows e.g. each reply that did not parse
    logging.basicConfig(level=level if level in logging.getLevelNamesMapping() else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2"):  # a line per request says nothing the run's own log does not
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # a checkpointer's lost connection is said once, in the run's own line, not again per pipeline psycopg drops
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(argv[:1]).parse_args(argv)
    console = Console(stderr=False)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        with forge_errors():
            code = COMMANDS[args.command].handler(args, console)
            if inspect.iscoroutine(code):
                from runner import event_loop

                code = event_loop.run(code)
        return code or 0
    except ForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(args)


if __name__ == "__main__":
    sys.exit(main())
