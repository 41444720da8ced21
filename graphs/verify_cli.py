"""The `verify` subcommand of `python -m graphs.run`: a finished run re-checked from its files alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

COMMAND = "verify"


def add_parser(sub: argparse._SubParsersAction) -> None:
    ver = sub.add_parser(COMMAND, help="replay every call of a finished run on a fresh copy of its database and "
                                       "re-check every diff and fact; non-zero exit on any mismatch")
    ver.add_argument("run_dir", type=Path, help="a finished run folder (or a dataset folder laid out the same way)")
    ver.add_argument("--db", default=None, help="the source database, where the lines' own path is not on this machine")


async def run(args: argparse.Namespace, console: Console) -> int:
    from results.verify import verify_run

    report = await verify_run(args.run_dir, args.db)
    table = Table(title=f"Verification of {args.run_dir}")
    for column in ("dialogue", "calls replayed", "simulated", "tasks: state match", "facts told", "holds"):
        table.add_column(column, justify="left" if column == "dialogue" else "right", no_wrap=column == "dialogue")
    for d in report.dialogues:
        table.add_row(d.dialogue, f"{d.replayed}/{d.calls}", str(d.simulated), f"{d.state_matches}/{d.tasks}",
                      f"{d.facts_told}/{d.facts}", "yes" if not d.problems else "[red]NO[/red]")
    console.print(table)
    for problem in report.problems:
        console.print(f"[red]mismatch[/red] {problem}", markup=True, highlight=False)
    held = sum(not d.problems for d in report.dialogues)
    console.print(f"{held} of {len(report.dialogues)} dialogues hold")
    return 1 if report.problems else 0
