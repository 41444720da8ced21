"""Time `export` in each format, `--dedup`, and `report` over existing runs; print seconds and sizes.

    python -m benchmarks.export_report RUN_DIR [RUN_DIR ...] [--copies K]

With --copies K each run's valid dialogues are repeated K times under new ids (a lightly reworded first
user message each time) in a scratch copy, to see how export, dedup and the report grow with the
number of dialogues, and how many of the planted copies --dedup 0.97 finds. Nothing is written next to
the given runs.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from dialogue_forge.run import write_stats  # noqa: E402
from graphs.run import main  # noqa: E402
from runner import run_folder as rf  # noqa: E402
from runner.run_folder import RunFolder  # noqa: E402


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _grown(run: Path, copies: int, scratch: Path) -> Path:
    out = scratch / run.name
    out.mkdir()
    for name in (rf.CONFIG, rf.TOOLSET, rf.TOOLSET_REPORT, rf.REJECTED):
        if (run / name).exists():
            shutil.copy(run / name, out / name)
    lines = RunFolder(run).read_lines(rf.DIALOGUES)
    grown = list(lines)
    for k in range(1, copies):
        for line in lines:
            twin = copy.deepcopy(line)
            twin["id"] = f"{line['id']}-c{k}"
            first = next(m for m in twin["messages"] if m["role"] == "user")
            first["content"] = f"(again, {k}) " + first["content"]
            grown.append(twin)
    folder = RunFolder(out)
    folder.rewrite_lines(rf.DIALOGUES, grown)
    folder.sort_dataset()
    write_stats(folder)
    return out


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    code = main(argv)
    if code != 0:
        raise SystemExit(f"`{' '.join(argv)}` exited {code}")
    return time.perf_counter() - start


def run(run_dirs: list[Path], copies: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        runs = [_grown(r, copies, scratch) for r in run_dirs] if copies > 1 else run_dirs
        dialogues = sum(len(RunFolder(r).read_lines(rf.DIALOGUES)) for r in runs)
        table = Table(title=f"export and report over {dialogues} valid dialogues in {len(runs)} run(s)")
        for col in ("step", "seconds", "output size", "note"):
            table.add_column(col, justify="left" if col in ("step", "note") else "right")
        args = [str(r) for r in runs]
        for fmt in ("openai", "sharegpt", "hf"):
            out = scratch / f"out-{fmt}"
            seconds = _timed(["export", *args, "--format", fmt, "--out", str(out), "--test-fraction", "0.1"])
            table.add_row(f"export --format {fmt}", f"{seconds:.2f}", f"{_size(out) / 1e6:.1f} MB", "")
        out = scratch / "out-dedup"
        seconds = _timed(["export", *args, "--format", "openai", "--out", str(out), "--dedup", "0.97"])
        manifest = (out / "export.json").read_text()
        dropped = manifest.count('"copy_of"')
        planted = f" ({dialogues - dialogues // copies} planted)" if copies > 1 else ""
        table.add_row("export --dedup 0.97", f"{seconds:.2f}", f"{_size(out) / 1e6:.1f} MB",
                      f"{dropped} dropped of {dialogues}{planted}; includes loading the model")
        out = scratch / "report.html"
        seconds = _timed(["report", *args, "--out", str(out)])
        table.add_row("report", f"{seconds:.2f}", f"{_size(out) / 1e6:.1f} MB", "model already loaded")
        Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--copies", type=int, default=1)
    ns = parser.parse_args()
    run(ns.run_dirs, ns.copies)
