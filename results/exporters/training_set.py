"""`export`: runs → one training set in a folder, written whole (a temporary folder renamed into place)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from environment.errors import InputError
from environment.sqlnames import snake
from results.exporters.dedup import DroppedCopy, drop_near_copies, embed_dialogues
from results.exporters.openai_format import openai_line, trl_line
from results.exporters.sharegpt import NotShareGPT, dataset_info, to_sharegpt
from results.exporters.source import Selection, SourceDialogue, load_runs, select
from results.exporters.splits import split_of
from results.exporters.task_samples import task_samples
from results.exporters.template_check import ChatTemplate, TemplateReport, check_lines

Format = Literal["openai", "trl", "sharegpt", "hf"]
Sampling = Literal["dialogues", "tasks"]
MANIFEST = "export.json"


class ExportRequest(BaseModel):
    run_dirs: list[Path] = Field(min_length=1)
    format: Format
    out: Path
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of dialogues hashed into the test split.")
    only: Selection = "valid"
    dedup: float | None = Field(None, gt=0.0, le=1.0, description="Cosine similarity at which a dialogue is a copy.")
    embedding_model: str = ""
    check_template: Path | None = Field(None, description="A tokenizer folder or .jinja chat template to render with.")
    max_tokens: int | None = Field(None, ge=1, description="Leave out samples whose rendering is longer.")
    split: Sampling = Field("dialogues", description="One sample per dialogue, or one per task (growing prefixes).")


class ExportResult(BaseModel):
    """What was written, and what was left out and why (also saved as export.json)."""

    format: Format
    out: Path
    runs: list[str]
    only: Selection
    test_fraction: float
    splits: dict[str, int]
    dedup_threshold: float | None = None
    dropped_copies: list[DroppedCopy] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict, description="Dialogue id → why the format cannot carry it.")
    changes: dict[str, int] = Field(default_factory=dict,
                                    description="ShareGPT: what had to change for the turns to alternate, and how often.")
    split: Sampling = "dialogues"
    variants: dict[str, list[str]] = Field(default_factory=dict, description="Each exported dialogue with a hard "
                                           "case (docs/hard-cases.md) → its tasks' variants, in order.")
    samples: int = Field(0, description="Samples before --max-tokens (dialogues, or tasks with --split tasks).")
    max_tokens: int | None = None
    over_max_tokens: list[str] = Field(default_factory=list, description="Samples left out for --max-tokens.")
    template_check: TemplateReport | None = None


def task_variants(metadata: dict) -> list[str]:
    """Each task's hard case (a task recorded without one is standard)."""
    return [str(t.get("variant", "standard")) for t in metadata.get("tasks", [])]


def _chat_line(fmt: Format) -> Callable[[SourceDialogue], dict]:
    """The chat line a trainer renders, per format: the hf dataset holds the trl line's messages and tools."""
    return openai_line if fmt == "openai" else trl_line


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output already exists: {out} (choose another --out)")


def _split(dialogues: list[SourceDialogue], test_fraction: float) -> dict[str, list[SourceDialogue]]:
    splits: dict[str, list[SourceDialogue]] = {"train": [], "test": []} if test_fraction > 0 else {"train": []}
    for d in dialogues:
        splits[split_of(d.id, test_fraction)].append(d)
    return splits


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _write(request: ExportRequest, splits: dict[str, list[SourceDialogue]], folder: Path,
           result: ExportResult, advance: Callable[[], None]) -> None:
    if request.format in ("openai", "trl"):
        line_of = _chat_line(request.format)
        for name, rows in splits.items():
            lines = []
            for d in rows:
                lines.append(line_of(d))
                advance()
            _write_jsonl(folder / f"{name}.jsonl", lines)
    elif request.format == "sharegpt":
        files = {}
        for name, rows in splits.items():
            samples = []
            for d in rows:
                advance()
                try:
                    converted = to_sharegpt(d)
                except NotShareGPT as exc:
                    result.skipped[d.id] = str(exc)
                    continue
                for change, count in converted.changes.items():
                    result.changes[change] = result.changes.get(change, 0) + count
                samples.append(converted.sample)
            (folder / f"{name}.json").write_text(json.dumps(samples, ensure_ascii=False, indent=1), encoding="utf-8")
            files[f"{snake(request.out.name) or 'dialogues'}_{name}"] = f"{name}.json"
        (folder / "dataset_info.json").write_text(json.dumps(dataset_info(files), indent=2), encoding="utf-8")
    else:
        from results.exporters.card import dataset_card
        from results.exporters.hf import write_hf
        from results.stats import read_run_stats

        write_hf(splits, folder, advance)
        card = dataset_card(request.out.name, splits, read_run_stats(request.run_dirs), request.only,
                            len(result.dropped_copies), request.dedup, result.template_check, result.max_tokens,
                            len(result.over_max_tokens))
        (folder / "README.md").write_text(card, encoding="utf-8")


def _template(request: ExportRequest) -> ChatTemplate | None:
    """The template to check with, refused in one line before anything is read or written."""
    if request.check_template is None:
        if request.max_tokens is not None:
            raise InputError("--max-tokens counts tokens with the tokenizer given to --check-template TOKENIZER_DIR")
        return None
    if request.format == "sharegpt":
        raise InputError("--check-template renders chat lines (openai, trl, hf); LLaMA-Factory renders ShareGPT "
                         "with its own templates (cutoff_len limits the length there)")
    template = ChatTemplate(request.check_template)
    if request.max_tokens is not None and template.tokenizer is None:
        raise InputError("--max-tokens needs a tokenizer folder for --check-template, not a .jinja file alone")
    return template


def _check(request: ExportRequest, template: ChatTemplate, splits: dict[str, list[SourceDialogue]],
           result: ExportResult, progress: Progress) -> dict[str, list[SourceDialogue]]:
    """Render every sample as its format carries it; leave out those over --max-tokens (counted, not checked)."""
    samples = [d for rows in splits.values() for d in rows]
    task = progress.add_task(f"rendering through {template.source.name}", total=len(samples))
    line_of = _chat_line(request.format)
    result.template_check, tokens = check_lines(template, [line_of(d) for d in samples],
                                                lambda: progress.advance(task))
    if request.max_tokens is None:
        return splits
    result.over_max_tokens = [d.id for d in samples if tokens.get(d.id, 0) > request.max_tokens]
    over = set(result.over_max_tokens)
    return {name: [d for d in rows if d.id not in over] for name, rows in splits.items()}


def export_training_set(request: ExportRequest, console: Console) -> ExportResult:
    _check_out(request.out)
    template = _template(request)
    runs = load_runs(request.run_dirs)
    dialogues = select(runs, request.only)
    if not dialogues:
        raise InputError(f"no {request.only} dialogues in {', '.join(map(str, request.run_dirs))}; "
                         "try --only all")
    result = ExportResult(format=request.format, out=request.out, runs=[str(r.path) for r in runs],
                          only=request.only, test_fraction=request.test_fraction, splits={},
                          dedup_threshold=request.dedup, split=request.split, max_tokens=request.max_tokens)
    if request.dedup is not None:
        from knowledge.embedder import get_embedder

        vectors = embed_dialogues(dialogues, get_embedder(request.embedding_model), console)
        dialogues, result.dropped_copies = drop_near_copies(dialogues, vectors, request.dedup)
    splits = _split(dialogues, request.test_fraction)  # by dialogue: a dialogue's task samples share its split
    if request.split == "tasks":
        splits = {name: [s for d in rows for s in task_samples(d)] for name, rows in splits.items()}
    result.samples = sum(len(rows) for rows in splits.values())
    kinds = {d.id: task_variants(d.metadata) for d in dialogues}
    result.variants = {i: k for i, k in kinds.items() if any(v != "standard" for v in k)}
    # Written into a hidden sibling and renamed into place: an interrupted export leaves no half-written dataset.
    request.out.parent.mkdir(parents=True, exist_ok=True)
    staging = request.out.parent / f".{request.out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with Progress(console=console, transient=True) as progress:
            if template is not None:
                splits = _check(request, template, splits, result, progress)
            task = progress.add_task(f"writing the {request.format} dataset",
                                     total=sum(len(rows) for rows in splits.values()))
            _write(request, splits, staging, result, lambda: progress.advance(task))
        result.splits = {name: len(rows) - sum(1 for d in rows if d.id in result.skipped)
                         for name, rows in splits.items()}
        (staging / MANIFEST).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if request.out.exists():
            request.out.rmdir()  # empty (checked above); rename needs the name free
        os.rename(staging, request.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def export_summary(result: ExportResult) -> Table:
    table = Table(title=f"{result.format} export: {result.out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    unit = "task samples" if result.split == "tasks" else "dialogues"
    for name, count in result.splits.items():
        table.add_row(f"{name} {unit}", str(count))
    if result.dedup_threshold is not None:
        table.add_row(f"near-copies dropped (similarity ≥ {result.dedup_threshold})", str(len(result.dropped_copies)))
    if result.max_tokens is not None:
        table.add_row(f"{unit} over {result.max_tokens} tokens (left out)", str(len(result.over_max_tokens)))
    if result.skipped:
        table.add_row("dialogues ShareGPT cannot carry (skipped)", str(len(result.skipped)))
    for change, count in result.changes.items():
        table.add_row(change, str(count))
    check = result.template_check
    if check is not None:
        table.add_row(f"lines rendered through {Path(check.template).name}", str(check.lines))
        table.add_row("lines the template refuses", str(len(check.refused)))
        table.add_row("tool calls with double-encoded arguments", str(sum(check.double_encoded.values())))
        table.add_row("tool results the template drops", str(sum(check.dropped_tool_results.values())))
        table.add_row("reasoning traces rendered",
                      f"{check.reasoning_messages - sum(check.dropped_reasoning.values())} of {check.reasoning_messages}")
        if check.tokens is not None:
            t = check.tokens
            table.add_row("tokens per line (min / median / p95 / max)", f"{t.min} / {t.median} / {t.p95} / {t.max}")
    return table
