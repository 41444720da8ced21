"""Robustness sweep: run the offline pipeline on every Spider database and report what survives.

    python benchmarks/spider_sweep.py --spider DIR [--dialogues N] [--seed S] [--only NAME ...] [--json FILE]

DIR holds the Spider benchmark's databases, one folder each (`<db>/<db>.sqlite`). For each one it
runs the pipeline in-process, as `python -m graphs.run generate --backend offline` would (inspect the
schema, synthesize and check the toolset once, then run N dialogues of 2 tasks each through the
dialogue graph with an in-memory checkpointer), and records: tables, tools accepted, skipped tables
with their reasons, dialogues valid / total, and any exception as one line. One database never stops
the sweep. Nothing is written next to the databases; they are opened read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table as RichTable  # noqa: E402

from backends.registry import backend_for  # noqa: E402
from environment.derive import derive_tools  # noqa: E402
from environment.errors import InputError  # noqa: E402
from environment.introspect import inspect_database  # noqa: E402
from environment.sandbox import Sandbox  # noqa: E402
from environment.tool_checks import check_tool  # noqa: E402
from graphs.dialogue import build_dialogue_graph  # noqa: E402
from nodes.tool_synthesizer import synthesize_toolset  # noqa: E402
from runner.export import acceptance  # noqa: E402
from state.config import Settings  # noqa: E402
from state.dialogue import DialogueInput, DialogueState  # noqa: E402

TASKS_PER_DIALOGUE = 2


@dataclass
class DbResult:
    name: str
    tables: int = 0
    skipped: list[str] = field(default_factory=list)
    derived: int = 0
    accepted: int = 0
    refused: list[str] = field(default_factory=list)
    toolset: int = 0
    valid: int = 0
    total: int = 0
    error: str | None = None
    rejections: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        if self.valid:
            return "ok"
        return "error" if self.error else "none valid"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def normalize(reason: str) -> str:
    """A reason with database-specific names and values blanked, so equal causes count together."""
    text = re.sub(r"/\S+\.sqlite", "<db>", reason)
    text = re.sub(r"'[^']*'|“[^”]*”|\"[^\"]*\"", "<v>", text)
    text = re.sub(r"\{[^}]*\}", "<args>", text)
    text = re.sub(r"\b\d+(\.\d+)?\b", "<n>", text)
    text = re.sub(r"\(\d+ skipped: .*\)", "", text)
    text = re.sub(r"(constraint failed:) .*", r"\1 <columns>", text)
    return text[:160]


def recursion_limit(settings: Settings) -> int:
    per_task = settings.max_user_turns_per_task * (2 * settings.max_steps_per_turn + 3) + 4
    return 20 + TASKS_PER_DIALOGUE * per_task


async def sweep_one(path: Path, dialogues: int, seed: int, settings: Settings) -> DbResult:
    result = DbResult(name=path.parent.name, total=dialogues)
    started = time.perf_counter()
    try:
        schema = await asyncio.to_thread(inspect_database, path)
        result.tables = len(schema.tables)
        result.skipped = [f"{s.name}: {s.reason}" for s in schema.skipped]

        # The derived toolset on its own, every tool checked (no cap beyond the default one).
        def check_all() -> None:
            tools = derive_tools(schema, settings.max_tools)
            result.derived = len(tools)
            box = Sandbox(schema.path)
            try:
                for tool in tools:
                    problem = check_tool(tool, schema, box)
                    if problem is None:
                        result.accepted += 1
                    else:
                        result.refused.append(f"{tool.name}: {problem}")
            finally:
                box.close()

        await asyncio.to_thread(check_all)
        report, _ = await synthesize_toolset(schema, backend_for(settings), settings)
        result.toolset = len(report.tools)
        if not report.tools:
            raise InputError("no tool could be built")
        graph = build_dialogue_graph().compile(checkpointer=InMemorySaver())
        for i in range(dialogues):
            dialogue_id = f"{result.name}-d{i}"
            cfg = {"configurable": {"thread_id": dialogue_id}, "recursion_limit": recursion_limit(settings)}
            start = DialogueInput(dialogue_id=dialogue_id, source_db=str(path), seed=(seed * 1_000_003 + i) % 2**31,
                                  tasks_per_dialogue=TASKS_PER_DIALOGUE, toolset=report.tools)
            try:
                await graph.ainvoke(start, cfg, context=settings)
                error = None
            except Exception as exc:  # one dialogue failing is recorded, the sweep goes on
                error = one_line(exc)
            values = (await graph.aget_state(cfg)).values
            if error is not None:
                result.rejections.append(f"error: {error}")
                continue
            ok, reason = acceptance(DialogueState.model_validate(values))
            if ok:
                result.valid += 1
            else:
                result.rejections.append(reason or "rejected")
    except Exception as exc:  # one database never stops the sweep
        result.error = one_line(exc)
    result.seconds = time.perf_counter() - started
    return result


def summary_table(results: list[DbResult]) -> RichTable:
    table = RichTable(title="Spider sweep (offline backend)")
    for col, justify in [("database", "left"), ("tables", "right"), ("skipped", "right"), ("tools ok/derived", "right"),
                         ("toolset", "right"), ("valid", "right"), ("s", "right"), ("note", "left")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in results:
        style = {"ok": "green", "none valid": "yellow", "error": "red"}[r.outcome]
        note = r.error or (r.rejections[0] if r.rejections and not r.valid else "")
        note = note.replace("Premature completion. ", "").replace("Critical rubric items are unmet: ", "")
        table.add_row(r.name, str(r.tables), str(len(r.skipped)), f"{r.accepted}/{r.derived}", str(r.toolset),
                      f"[{style}]{r.valid}/{r.total}[/]", f"{r.seconds:.1f}", note[:140])
    return table


async def main_async(args: argparse.Namespace, console: Console) -> int:
    spider = args.spider.resolve()
    paths = sorted(p / f"{p.name}.sqlite" for p in spider.iterdir() if (p / f"{p.name}.sqlite").is_file()) \
        if spider.is_dir() else []
    if args.only:
        paths = [p for p in paths if p.parent.name in set(args.only)]
    if not paths:
        console.print(f"[red]no <db>/<db>.sqlite found under {spider}[/]")
        return 2
    settings = Settings(backend="offline")
    started = time.perf_counter()
    results: list[DbResult] = []
    for n, path in enumerate(paths, 1):
        r = await sweep_one(path, args.dialogues, args.seed, settings)
        results.append(r)
        if args.verbose:
            console.print(f"[dim]{n}/{len(paths)} {r.name}: {r.valid}/{r.total} valid "
                          f"{r.error or ''} ({r.seconds:.1f}s)[/]")
    elapsed = time.perf_counter() - started

    console.print(summary_table(results))
    with_valid = [r for r in results if r.valid]
    without = [r for r in results if not r.valid]
    errors = [r for r in results if r.error]
    console.print(f"\n[bold]databases:[/] {len(results)}   [green]≥1 valid dialogue: {len(with_valid)}[/]   "
                  f"[yellow]none valid: {len(without)}[/] (of which {len(errors)} raised)")
    console.print(f"dialogues valid: {sum(r.valid for r in results)}/{sum(r.total for r in results)}   "
                  f"tools accepted: {sum(r.accepted for r in results)}/{sum(r.derived for r in results)}   "
                  f"tables skipped: {sum(len(r.skipped) for r in results)}   sweep time: {elapsed:.1f}s")

    def counted(title: str, reasons: list[str]) -> None:
        if not reasons:
            return
        console.print(f"\n[bold]{title}[/]")
        for reason, count in Counter(reasons).most_common():
            console.print(f"  {count:4d}  {reason}")

    counted("why databases yield no valid dialogue", [normalize(r.error or (r.rejections or ["?"])[0]) for r in without])
    counted("rejected dialogues (all databases)", [normalize(x) for r in results for x in r.rejections])
    counted("skipped tables", [normalize(s.split(": ", 1)[1]) for r in results for s in r.skipped])
    counted("refused derived tools", [normalize(x.split(": ", 1)[1]) for r in results for x in r.refused])
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "outcome": r.outcome} for r in results], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, required=True,
                        help="folder of Spider databases, one <db>/<db>.sqlite per folder")
    parser.add_argument("--dialogues", type=int, default=2, help="dialogues per database, 2 tasks each (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--only", nargs="*", help="restrict to these database names")
    parser.add_argument("--json", type=Path, help="also write the per-database results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each database as it finishes")
    args = parser.parse_args(argv)
    if args.dialogues < 1:
        parser.error("--dialogues must be at least 1")
    return asyncio.run(main_async(args, Console()))


if __name__ == "__main__":
    sys.exit(main())
