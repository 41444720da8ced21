"""The `verify` subcommand of `python -m graphs.run`: a finished run re-checked from its files alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from graphs.commands_cli import Command


def arguments(ver: argparse.ArgumentParser) -> None:
    ver.add_argument("run_dir", type=Path, help="a finished run folder (or a dataset folder laid out the same way)")
    ver.add_argument("--db", "--source", dest="db", default=None, metavar="SOURCE",
                     help="the source (a SQLite file, a Postgres URI...), where the lines' own is not on this machine")


async def run(args: argparse.Namespace, console: Console) -> int:
    import dialogue_forge as forge

    report = await forge.averify(forge.VerifyRequest(run=args.run_dir, source=args.db), console=console)
    return 1 if report.problems else 0


COMMANDS = {
    "verify": Command("replay every call of a finished run on a fresh copy of its source and re-check every diff "
                      "and fact; non-zero exit on any mismatch", arguments, run),
}
