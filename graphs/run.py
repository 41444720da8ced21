"""Command line: `python -m graphs.run generate | resume | stats`.

Bad input is reported as one line on stderr with exit code 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from environment.errors import InputError
from graphs.dialogue import build_dialogue_graph
from runner import run_folder as rf
from runner.batch import generate, load_toolset, resume
from runner.run_folder import RunFolder
from runner.stats import RunStats, stats_table
from state.config import RunConfig, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graphs.run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="synthesize a dataset of dialogues from a SQLite database")
    gen.add_argument("--db", required=True, help="path of the source SQLite database (never modified)")
    gen.add_argument("--dialogues", type=int, default=10, help="how many dialogues (default 10)")
    gen.add_argument("--tasks-per-dialogue", type=int, default=2, help="tasks per dialogue (default 2)")
    gen.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    gen.add_argument("--concurrency", type=int, default=8, help="dialogues run at once (default 8)")
    gen.add_argument("--workers", type=int, default=1,
                     help="processes to spread the dialogues over (default 1; 2 uses both cores of a 2-core machine)")
    gen.add_argument("--out", type=Path, help="run folder (default runs/<database>-s<seed>-<time>)")
    gen.add_argument("--toolset", type=Path, help="reuse a toolset.json instead of synthesizing one")
    _backend_args(gen)

    res = sub.add_parser("resume", help="finish an interrupted run")
    res.add_argument("run_dir", type=Path)
    _backend_args(res)

    st = sub.add_parser("stats", help="print the statistics of one or more runs side by side")
    st.add_argument("run_dirs", type=Path, nargs="+")
    return parser


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", help="offline | openai (default: openai when a base URL is set, else offline)")
    p.add_argument("--model", help="model name (or OPENAI_MODEL)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (or OPENAI_BASE_URL)")


def _settings(args: argparse.Namespace) -> Settings:
    given = {k: v for k, v in {"backend": args.backend, "model": args.model, "base_url": args.base_url}.items()
             if v is not None}
    return Settings(**given)


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InputError(f"--{name} must be at least 1 (got {value})")


async def _main(args: argparse.Namespace, console: Console) -> int:
    builder = build_dialogue_graph
    if args.command == "generate":
        for name in ("dialogues", "tasks-per-dialogue", "concurrency", "workers"):
            _positive(name, getattr(args, name.replace("-", "_")))
        settings = _settings(args)
        db = Path(args.db)
        run_id = f"{db.stem}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = args.out or Path("runs") / run_id
        toolset = load_toolset(args.toolset) if args.toolset else None
        config = RunConfig(run_id=out.name, source_db=str(db.resolve()), dialogues=args.dialogues,
                           tasks_per_dialogue=args.tasks_per_dialogue, seed=args.seed,
                           concurrency=args.concurrency, workers=args.workers, settings=settings.public())
        if args.workers > 1 and settings.backend_kind == "custom":
            raise InputError(f"--workers needs the offline or openai backend, not {settings.backend!r}")
        await generate(builder, config, settings, out, console, toolset)
    elif args.command == "resume":
        given = any(v is not None for v in (args.backend, args.model, args.base_url))
        await resume(builder, args.run_dir, _settings(args) if given else None, console)
    elif args.command == "stats":
        columns: dict[str, RunStats] = {}
        for run_dir in args.run_dirs:
            folder = RunFolder(run_dir)
            if not folder.file(rf.STATS).exists():
                raise InputError(f"no {rf.STATS} in {run_dir} (is it a finished run folder?)")
            columns[run_dir.name] = RunStats.model_validate(folder.read_json(rf.STATS))
        console.print(stats_table(columns))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return asyncio.run(_main(args, console))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"error: invalid input: {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finish the run with `python -m graphs.run resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
