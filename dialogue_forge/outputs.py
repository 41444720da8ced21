"""What is made from finished runs: `verify` (replayed and re-checked), `export` (a training set, RL tasks or
preference pairs) and `report` (an HTML dataset card)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from dialogue_forge.errors import forge_errors
from dialogue_forge.requests import ExportRequest, ReportRequest, VerifyRequest
from dialogue_forge.sync import quiet, run_sync
from environment.errors import InputError

if TYPE_CHECKING:
    from results.verify import RunCheck as Verification


@dataclass(frozen=True)
class Export:
    """An export folder (`path`) of one `format` (openai, trl, sharegpt, hf, rl or dpo), and the exporter's
    `summary`: splits, what was left out and why, the template check (also its export.json or rl.json)."""

    path: Path
    format: str
    summary: BaseModel

    @property
    def ok(self) -> bool:
        """False where the chat template checked with renders some line wrong (True without a check)."""
        check = getattr(self.summary, "template_check", None)
        return check is None or check.ok

    def lines(self, split: str = "train") -> list[dict[str, Any]]:
        """The samples of one split as written (rows of the saved dataset for format hf)."""
        if self.format == "hf":
            from datasets import load_from_disk

            from results.exporters.hf import DATASET_DIR

            return load_from_disk(str(self.path / DATASET_DIR))[split].to_list()
        if self.format == "sharegpt":
            return json.loads((self.path / f"{split}.json").read_text(encoding="utf-8"))
        text = (self.path / f"{split}.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _check_export(request: ExportRequest) -> None:
    """The request refused in one line before anything is read (the messages name the command line's flags)."""
    if request.format == "rl":
        if len(request.runs) != 1:
            raise InputError(f"--format rl exports one run at a time (got {len(request.runs)}); a run over several "
                             f"databases is one run")
        if not 0 < (request.test_fraction or 0.2) < 1:
            raise InputError(f"--test-fraction must be above 0 and below 1 for --format rl "
                             f"(got {request.test_fraction})")
        return
    if request.split.startswith("by-"):
        raise InputError(f"--split {request.split} is for --format rl; the {request.format} export takes "
                         f"dialogues or tasks")
    if not 0 <= request.test_fraction < 1:
        raise InputError(f"--test-fraction must be at least 0 and below 1 (got {request.test_fraction})")
    if request.dedup is not None and not 0 < request.dedup <= 1:
        raise InputError(f"--dedup must be a cosine similarity above 0 and at most 1 (got {request.dedup})")
    if request.max_tokens is not None and request.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1 (got {request.max_tokens})")
    if request.format == "dpo":
        for flag, given in (("--only", request.only != "valid"), ("--dedup", request.dedup is not None),
                            ("--max-tokens", request.max_tokens is not None),
                            ("--split", request.split != "dialogues")):
            if given:
                raise InputError(f"{flag} is for dialogue exports; --format dpo makes pairs of evaluation trials")
        if request.pairs_per_task is not None and request.pairs_per_task < 1:
            raise InputError(f"--pairs-per-task must be at least 1 (got {request.pairs_per_task})")
    elif request.pairs_per_task is not None:
        raise InputError("--pairs-per-task is for --format dpo (preference pairs from evaluations)")


def _export_rl(request: ExportRequest, console: Console) -> Export:
    from rl.export import export_rl

    by = "database" if request.split == "by-database" else "task"
    result = export_rl(request.runs[0], request.out, by, request.test_fraction or 0.2, seed=0)
    console.print(f"RL split by {result.by}: {result.train} train and {result.test} test tasks "
                  f"({', '.join(result.databases)}) in {result.out}; train with train_grpo.py, evaluate with "
                  f"vf-eval forge_env (docs/rl.md)")
    return Export(path=request.out, format="rl", summary=result)


def _export_preferences(request: ExportRequest, console: Console) -> Export:
    from results.exporters.preference import PreferenceRequest, export_preferences, preference_summary

    pairs_per_task = 3 if request.pairs_per_task is None else request.pairs_per_task
    result = export_preferences(PreferenceRequest(eval_dirs=request.runs, out=request.out,
                                                  pairs_per_task=pairs_per_task, test_fraction=request.test_fraction,
                                                  check_template=request.check_template), console)
    console.print(preference_summary(result))
    check = result.template_check
    if check is not None and not check.ok:
        for line_id, why in check.refused.items():
            console.print(f"refused by the template: {line_id}: {why}")
        console.print(f"[red]{check.template} renders some pairs wrong (see {request.out / 'export.json'})[/red]")
    return Export(path=request.out, format="dpo", summary=result)


def _export_training_set(request: ExportRequest, console: Console) -> Export:
    from results.exporters.training_set import ExportRequest as TrainingSetRequest
    from results.exporters.training_set import export_summary, export_training_set

    result = export_training_set(TrainingSetRequest(
        run_dirs=request.runs, format=request.format, out=request.out, test_fraction=request.test_fraction,
        only=request.only, dedup=request.dedup, embedding_model=request.embedding_model,
        check_template=request.check_template, max_tokens=request.max_tokens, split=request.split), console)
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
                          f"{request.out / 'export.json'})[/red]")
    return Export(path=request.out, format=request.format, summary=result)


def export(request: ExportRequest, *, console: Console | None = None) -> Export:
    """Runs written as one training set in a new folder (format rl: one run's verified tasks split for RL; dpo:
    evaluations' trials as preference pairs). A template check that fails is no exception: see `Export.ok`.
    Raises `InvalidInput`."""
    console = quiet(console)
    with forge_errors():
        _check_export(request)
        if request.format == "rl":
            return _export_rl(request, console)
        if request.format == "dpo":
            return _export_preferences(request, console)
        return _export_training_set(request, console)


def report(request: ReportRequest, *, console: Console | None = None) -> Path:
    """A self-contained HTML dataset card with a dialogue browser (or evaluations' pass^k curves); its path."""
    from results.report.page import write_report
    from rl.splits import split_line

    console = quiet(console)
    with forge_errors():
        path = write_report(request.runs, request.out, console, request.embedding_model, request.check_template)
        for run_dir in request.runs:
            if line := split_line(run_dir):
                console.print(f"{run_dir}: {line}")
        console.print(f"report written to {path}")
        return path


def _verification_table(request: VerifyRequest, report: Verification) -> Table:
    table = Table(title=f"Verification of {request.run}")
    for column in ("dialogue", "calls replayed", "simulated", "tasks: state match", "facts told", "holds"):
        table.add_column(column, justify="left" if column == "dialogue" else "right", no_wrap=column == "dialogue")
    for d in report.dialogues:
        table.add_row(d.dialogue, f"{d.replayed}/{d.calls}", str(d.simulated), f"{d.state_matches}/{d.tasks}",
                      f"{d.facts_told}/{d.facts}", "yes" if not d.problems else "[red]NO[/red]")
    return table


async def averify(request: VerifyRequest, *, console: Console | None = None) -> Verification:
    """Every call of a finished run replayed on a fresh copy of its source, every diff and fact checked again,
    on the caller's event loop. A mismatch is no exception: it is in the result's `problems`."""
    from results.verify import verify_run

    console = quiet(console)
    with forge_errors():
        result = await verify_run(request.run, None if request.source is None else str(request.source))
    console.print(_verification_table(request, result))
    for problem in result.problems:
        console.print(f"[red]mismatch[/red] {problem}", markup=True, highlight=False)
    held = sum(not d.problems for d in result.dialogues)
    console.print(f"{held} of {len(result.dialogues)} dialogues hold")
    return result


def verify(request: VerifyRequest, *, console: Console | None = None) -> Verification:
    """`averify` on an event loop of its own."""
    return run_sync(averify(request, console=console))
