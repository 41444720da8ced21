"""Robustness sweep: one `generate` run over every database of a folder (such as Spider's), and its figures.

    python benchmarks/spider_sweep.py --spider DIR [--dialogues-per-db N] [--tasks-per-dialogue T]
                                      [--seed S] [--concurrency C] [--checkpoints all|final] [--out RUN_DIR]

It runs exactly what a user would, `python -m graphs.run generate --db DIR --dialogues-per-db N`,
offline unless OPENAI_BASE_URL is set, and then prints: databases found, used and skipped (with the
reasons, grouped), dialogues valid / total, the databases where no dialogue was valid, wall time,
dialogues per second, and bytes per dialogue of the checkpoints and of the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def _reason(line: str) -> str:
    """A skip reason without the database's path, so that alike reasons count together."""
    reason = line.split(": ", 1)[1] if ": " in line else line
    return re.sub(r"/\S+", "<db>", reason)[:100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, required=True, help="folder of databases (<db>/<db>.sqlite)")
    parser.add_argument("--dialogues-per-db", type=int, default=2, help="dialogues per database (default 2)")
    parser.add_argument("--tasks-per-dialogue", type=int, default=2, help="tasks per dialogue (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checkpoints", choices=["all", "final"], default="all")
    parser.add_argument("--out", type=Path, help="run folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    console = Console()
    out = args.out or Path(tempfile.mkdtemp(prefix="spider-sweep-")) / "run"
    command = [sys.executable, "-m", "graphs.run", "generate", "--db", str(args.spider),
               "--dialogues-per-db", str(args.dialogues_per_db), "--tasks-per-dialogue", str(args.tasks_per_dialogue),
               "--seed", str(args.seed), "--concurrency", str(args.concurrency), "--checkpoints", args.checkpoints,
               "--out", str(out)]
    console.print("running: " + " ".join(command[1:]), highlight=False, soft_wrap=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        console.print(proc.stderr.strip() or proc.stdout[-2000:], highlight=False)
        return proc.returncode
    found = sum(1 for p in args.spider.rglob("*") if p.suffix.lower() in (".sqlite", ".sqlite3", ".db"))
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("skipped database")]
    stats = json.loads((out / "stats.json").read_text())
    config = json.loads((out / "config.json").read_text())
    total = stats["samples"] + stats["rejected"]
    checkpoint_bytes = sum(p.stat().st_size for p in out.glob("checkpoints.sqlite*"))
    dataset_bytes = sum((out / n).stat().st_size for n in ("dialogues.jsonl", "rejected.jsonl") if (out / n).exists())
    rows = stats.get("per_database") or []
    none_valid = sorted(Path(r["database"]).stem for r in rows if r["samples"] == 0)

    table = Table(title=f"sweep of {args.spider}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, value in [
        ("databases found", found),
        ("databases used", len(config["databases"])),
        ("databases skipped", len(skipped)),
        ("dialogues valid / total", f"{stats['samples']} / {total}"),
        ("databases with no valid dialogue", len(none_valid)),
        ("tools accepted", stats["tools_accepted"]),
        ("wall time", f"{wall:.1f} s"),
        ("dialogues per second", f"{total / wall:.2f}" if wall else "n/a"),
        ("checkpoint bytes per dialogue", f"{checkpoint_bytes / max(total, 1):,.0f}"),
        ("dataset bytes per dialogue", f"{dataset_bytes / max(total, 1):,.0f}"),
    ]:
        table.add_row(label, str(value))
    console.print(table)
    for reason, count in Counter(_reason(line) for line in skipped).most_common():
        console.print(f"  skipped x{count}: {reason}", highlight=False, soft_wrap=True)
    if none_valid:
        console.print("  no valid dialogue: " + ", ".join(none_valid), highlight=False, soft_wrap=True)
    console.print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
