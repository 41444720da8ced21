"""Command line: `python -m graphs.run generate | resume | fork | history | show | toolprep | stats | export | report | evaluate`.

Bad input is reported as one line on stderr with exit code 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import openai
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from backends.llm.replies import BackendOutputError
from environment.errors import InputError, RunError, read_json_input
from environment.sources.registry import combined_name, identity, label_of, recordable_configs, source_names
from environment.sqlnames import snake
from graphs import dataset_cli, evaluate_cli, optimize_cli, reasoning_cli, verify_cli
from graphs.dialogue import build_dialogue_graph
from graphs.llm_options import add_llm_args, llm_options_given, llm_settings
from graphs.task_oriented import build_task_oriented_graph
from graphs.toolprep import build_toolprep_graph
from graphs.finish import finish_run, write_stats
from results.stats import RunStats, read_run_stats, stats_table
from results.targeting import slice_shares, slice_table
from runner import event_loop
from runner import layout
from runner.lifecycle import generate, resume
from runner.checkpoints import DialogueCheckpoints, render_conversation
from runner.layout import LLM_CACHE, dialogue_run_config, load_toolset
from runner.targeting import read_targeting, targeting_table
from runner.toolprep import run_toolprep
from runner.workers import DIALOGUES_PER_WORKER, choose_workers
from state.config import RunConfig, Settings
from state.dialogue import DialogueInput


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graphs.run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="synthesize a dataset of dialogues from a SQLite database")
    gen.add_argument("--db", nargs="+", help="tool source(s), never modified: SQLite files, folders (every "
                                              "*.sqlite, *.sqlite3, *.db under them) or globs, or the URI of a "
                                              "registered kind (mcp://SERVERS.json); without it, --mcp or --toolset "
                                              "with simulated tools")
    gen.add_argument("--mcp", type=Path, metavar="SERVERS.json",
                     help="MCP servers (the mcpServers format) whose tools the dialogues call, each dialogue on its own "
                          "servers started on fresh copies of their declared files (see the README's MCP section)")
    gen.add_argument("--pipeline", choices=["user", "task"], default="user",
                     help="user-oriented dialogues (default) or task-oriented direct questions")
    count = gen.add_mutually_exclusive_group()
    count.add_argument("--dialogues", type=int, default=10, help="how many dialogues in all (default 10)")
    count.add_argument("--dialogues-per-db", type=int, help="how many dialogues for each usable database")
    gen.add_argument("--tasks-per-dialogue", type=int, default=2, help="tasks per dialogue (default 2)")
    gen.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    gen.add_argument("--concurrency", type=int, default=8, help="dialogues run at once (default 8)")
    gen.add_argument("--workers", default="auto", metavar="auto|N",
                     help="processes to spread the dialogues over: a number, or auto (the default): on a model server "
                          f"min(cores, ceil(concurrency / {DIALOGUES_PER_WORKER})), offline 1")
    gen.add_argument("--out", type=Path, help="run folder (default runs/<database>-s<seed>-<time>)")
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
                     help="a pool of N user personas per database, made from its domain; each dialogue's user plays "
                          "one (default 0: none)")
    _executor_args(gen)

    res = sub.add_parser("resume", help="finish an interrupted run, or continue one dialogue from a checkpoint")
    res.add_argument("run_dir", type=Path)
    res.add_argument("--dialogue", help="the dialogue to continue (with --checkpoint)")
    res.add_argument("--checkpoint", help="checkpoint id to continue from (see `history`)")
    res.add_argument("--cache", action="store_true", help="use the run folder's LLM response cache")
    add_llm_args(res)
    _executor_args(res)

    fork = sub.add_parser("fork", help="start a new dialogue from another dialogue's checkpoint")
    fork.add_argument("run_dir", type=Path)
    fork.add_argument("--dialogue", required=True)
    fork.add_argument("--checkpoint", required=True)
    fork.add_argument("--seed", type=int, help="a new seed for what happens after the fork")
    fork.add_argument("--user-message", help="replace the next user message with this text")
    fork.add_argument("--cache", action="store_true", help="use the run folder's LLM response cache")
    add_llm_args(fork)

    hist = sub.add_parser("history", help="list every checkpoint of a dialogue")
    hist.add_argument("run_dir", type=Path)
    hist.add_argument("--dialogue", required=True)

    show = sub.add_parser("show", help="print a dialogue as it stood at a checkpoint (default: the last)")
    show.add_argument("run_dir", type=Path)
    show.add_argument("--dialogue", required=True)
    show.add_argument("--checkpoint")

    prep = sub.add_parser("toolprep", help="grow a consistent toolset with output schemas from a few seed tools")
    prep.add_argument("--tools", type=Path, required=True, help="seed tools: a JSON list of OpenAI function specs")
    prep.add_argument("--domain", required=True, help="the domain the tools serve, e.g. 'online bookstore'")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--out", type=Path, help="run folder (default runs/toolprep-<domain>-s<seed>-<time>)")
    add_llm_args(prep)

    st = sub.add_parser("stats", help="print the statistics of one or more runs side by side")
    st.add_argument("run_dirs", type=Path, nargs="+")
    st.add_argument("--diversity", action="store_true",
                    help="also the diversity of each run's users (embedding similarity of user turns, distinct-n, "
                         "topics), e.g. a run with personas beside one without (shown without the flag when a run "
                         "has personas)")
    reasoning_cli.add_parsers(sub)
    dataset_cli.add_parsers(sub)
    optimize_cli.add_parser(sub)
    verify_cli.add_parser(sub)
    evaluate_cli.add_parser(sub)
    return parser


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


def _settings(args: argparse.Namespace) -> Settings:
    where = {"checkpointer": args.checkpointer} if getattr(args, "checkpointer", None) is not None else {}
    hard = {k: v for k in ("variants", "crowd", "personas") if (v := getattr(args, k, None)) is not None}
    try:
        return Settings(**llm_settings(args), **_executor_of(args), **where, **hard)
    except ValidationError as exc:  # a hard-case flag's value, said in one line (others keep their own message)
        error = exc.errors()[0]
        if not error["loc"] or error["loc"][0] not in hard:
            raise
        raise InputError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InputError(f"--{name} must be at least 1 (got {value})")


def read_conversation(path: Path) -> list[dict]:
    data = read_json_input(path, "conversation")
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if not isinstance(data, list) or not data or not all(isinstance(m, dict) for m in data):
        raise InputError(f"conversation {path} must be a non-empty JSON list of chat messages (or {{'messages': [...]}})")
    try:
        DialogueInput(prelude=data)
    except ValidationError as exc:
        raise InputError(f"conversation {path}: {exc.errors()[0]['msg']}") from None
    return data


PIPELINES = {"user": build_dialogue_graph, "task": build_task_oriented_graph}


def _pipeline_of(run_dir: Path):
    """The graph builder a dialogue run folder was made with."""
    config = dialogue_run_config(run_dir, "this command works on dialogue runs")
    return PIPELINES[config.get("pipeline", "user")]


async def _checkpoint_command(args: argparse.Namespace, console: Console) -> None:
    settings = _settings(args) if llm_options_given(args) else None
    owner = args.command if args.command in ("resume", "fork") else None  # history and show only read
    async with DialogueCheckpoints(args.run_dir, _pipeline_of(args.run_dir), settings, console, owner) as store:
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


def _outcome(stats: RunStats, out: Path) -> int:
    """A run that produced no valid dialogue failed, whatever the reasons: say so and exit non-zero."""
    if stats.samples == 0 and stats.rejected:
        print(f"error: no dialogue was valid; the reasons are in {out / layout.REJECTED}", file=sys.stderr)
        return 1
    return 0


async def _main(args: argparse.Namespace, console: Console) -> int:
    if args.command == "generate":
        for name in ("dialogues", "tasks-per-dialogue", "concurrency"):
            _positive(name, getattr(args, name.replace("-", "_")))
        if args.dialogues_per_db is not None:
            _positive("dialogues-per-db", args.dialogues_per_db)
        settings = _settings(args)
        if args.checkpoints:
            settings = settings.model_copy(update={"checkpoints": args.checkpoints})
        if args.target is not None:
            targeting = read_targeting(args.target)
            settings = settings.model_copy(update={"targeting": targeting})
            console.print(targeting_table(targeting))
        if not args.db and not args.toolset and not args.mcp:
            raise InputError("pass --db with a SQLite database, --mcp with MCP servers, or --toolset with a "
                             "toolset.json (simulated tools)")
        named = (args.db or []) + ([f"mcp://{args.mcp}"] if args.mcp else [])
        databases = source_names(named)
        if args.db and args.mcp:  # each dialogue over a database calls the MCP servers' tools too
            databases = [combined_name([d, databases[-1]]) for d in databases[:-1]]
        db = databases[0] if len(databases) == 1 else None
        several = Path(named[0].rstrip("/*")).name or "databases" if named else ""
        stem = label_of(db) if db else several or args.toolset.resolve().parent.name
        run_id = f"{stem}-{args.pipeline}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = args.out or Path("runs") / run_id
        args.started_out = out
        if args.cache:
            settings = settings.model_copy(update={"llm_cache": str(out.resolve() / LLM_CACHE)})
        toolset = load_toolset(args.toolset) if args.toolset else None
        prelude = read_conversation(args.from_conversation) if args.from_conversation else []
        workers, auto = choose_workers(args.workers, settings, args.concurrency)
        config = RunConfig(run_id=out.name, source_db=identity(db) if db else "", dialogues=args.dialogues,
                           tasks_per_dialogue=args.tasks_per_dialogue, seed=args.seed,
                           concurrency=args.concurrency, workers=workers.workers, prelude=prelude,
                           pipeline=args.pipeline, settings=settings.public(),
                           source_configs=recordable_configs(databases))
        if (workers.workers > 1 or settings.executor == "ray") and settings.backend_kind == "custom":
            raise InputError(f"--workers and --executor ray need the offline or openai backend, not {settings.backend!r}")
        if workers.workers > 1 and settings.executor == "ray":
            raise InputError("--workers is for the local executor; with --executor ray every CPU of the cluster runs tasks")
        console.print(workers.line(auto))
        stats = await generate(PIPELINES[args.pipeline], config, settings, out, console,
                               lambda folder: finish_run(folder, console), toolset, databases, args.dialogues_per_db)
        return _outcome(stats, out)
    elif args.command == "resume" and not args.dialogue and reasoning_cli.is_reasoning_run(args.run_dir):
        await reasoning_cli.resume(args.run_dir, console)
    elif args.command == "resume" and not args.dialogue and optimize_cli.is_optimize_run(args.run_dir):
        await optimize_cli.resume(args.run_dir, console)
    elif args.command == "resume" and not args.dialogue:
        if args.checkpoint:
            raise InputError("--checkpoint goes with --dialogue")
        stats = await resume(_pipeline_of(args.run_dir), args.run_dir,
                             _settings(args) if llm_options_given(args) else None, console,
                             lambda folder: finish_run(folder, console), _executor_of(args))
        return _outcome(stats, args.run_dir)
    elif args.command in ("resume", "fork", "history", "show"):
        if args.command == "resume" and not args.checkpoint:
            raise InputError("--dialogue goes with --checkpoint (see: python -m graphs.run history RUN_DIR --dialogue ID)")
        await _checkpoint_command(args, console)
    elif args.command == "toolprep":
        if not args.domain.strip():
            raise InputError("--domain must name the domain the tools serve, e.g. 'online bookstore'")
        out = args.out or Path("runs") / f"toolprep-{snake(args.domain)}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        await run_toolprep(build_toolprep_graph, args.tools, args.domain, out, _settings(args), args.seed, console)
    elif args.command == "stats":
        columns = read_run_stats(args.run_dirs)
        console.print(stats_table(columns))
        for run_dir, label in zip(args.run_dirs, layout.run_labels(args.run_dirs)):
            targeted = slice_shares(run_dir)  # a run made with --target: its slices beside the evaluation's
            if targeted is not None:
                console.print(slice_table(label, *targeted))
        if args.diversity or any((run / layout.PERSONAS).exists() for run in args.run_dirs):
            from results.diversity import diversity_table, read_diversity  # loads the embedding model

            console.print(diversity_table(read_diversity(dict(zip(columns, args.run_dirs)))))
    elif args.command == verify_cli.COMMAND:
        return await verify_cli.run(args, console)
    elif args.command == evaluate_cli.COMMAND:
        return await evaluate_cli.run(args, console)
    if args.command in reasoning_cli.COMMANDS:
        await reasoning_cli.run(args, console)
    if args.command in dataset_cli.COMMANDS:
        return dataset_cli.run(args, console)
    elif args.command == optimize_cli.COMMAND:
        await optimize_cli.run(args, console)
    return 0


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
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return event_loop.run(_main(args, console))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"error: invalid input: {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BackendOutputError, openai.APIError) as exc:  # the model server failed us, not the user's input
        print(f"error: the model server: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
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


if __name__ == "__main__":
    sys.exit(main())
