"""Scale: memory, throughput and bytes per dialogue as a run grows.

    python -m benchmarks.scale [--sizes 500 5000] [--workers 2] [--concurrency 16] [--executor local|ray]

Runs `generate` on the example database (offline backend, 1 task per dialogue) once per size, each in
a process of its own, and prints for each: wall time, dialogues per second, the peak resident memory
of the whole run (the command and every process it started, sampled), the CPU time per dialogue (and
the rate the machine's cores would give if the run had them to itself: on a shared machine the wall
rate says more about the neighbours), and the bytes per dialogue of the checkpoints and of the dataset. Then the peak memory of the largest run over the smallest's: flat
memory keeps it near 1. Prints figures; asserts nothing. Run folders go to a temporary folder and are
removed (the checkpoints of 5,000 dialogues may take a few GB while the run lasts).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
CLINIC = ROOT / "examples" / "clinic.sqlite"
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ScaleRun(BaseModel):
    dialogues: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    checkpoint_bytes: int
    dataset_bytes: int

    @property
    def per_second(self) -> float:
        return self.dialogues / self.seconds


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(parent, []).append(int(entry))
    return tree


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, now."""
    tree, total, pending = _children(), 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm") as fh:
                total += int(fh.read().split()[1]) * _PAGE
        except OSError:
            pass
        pending.extend(tree.get(current, []))
    return total


def _file_bytes(folder: Path, stem: str) -> int:
    """A file's size with its SQLite sidecars (-wal, -shm), if any."""
    return sum(p.stat().st_size for p in folder.glob(f"{stem}*") if p.is_file())


def run_once(dialogues: int, workers: int, concurrency: int, executor: str, scratch: Path) -> ScaleRun:
    out = scratch / f"scale-{dialogues}"
    command = [sys.executable, "-m", "graphs.run", "generate", "--db", str(CLINIC), "--dialogues", str(dialogues),
               "--tasks-per-dialogue", "1", "--concurrency", str(concurrency), "--executor", executor,
               "--out", str(out)]
    if executor == "local":
        command += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FORGE_"))}
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.25)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and the processes it waited for
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    if proc.returncode:
        raise SystemExit(f"generate failed ({proc.returncode}): {proc.stderr.read().decode()[-500:]}")
    run = ScaleRun(dialogues=dialogues, seconds=seconds, peak_rss_mb=peak / 2**20, cpu_seconds=cpu,
                   checkpoint_bytes=_file_bytes(out, "checkpoints.sqlite"),
                   dataset_bytes=_file_bytes(out, "dialogues.jsonl") + _file_bytes(out, "rejected.jsonl"))
    shutil.rmtree(out, ignore_errors=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--workers", type=int, default=2, help="local executor processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--scratch", type=Path, help="where the run folders go while they run (default: a temp folder)")
    args = parser.parse_args()
    console = Console(width=160)  # the table whole, also when the output goes to a file
    scratch = Path(tempfile.mkdtemp(prefix="scale-", dir=args.scratch))
    table = Table(title=f"scale: clinic, offline, 1 task, concurrency {args.concurrency}, "
                        f"{args.executor}" + (f" x{args.workers} workers" if args.executor == "local" else "")
                        + f", {os.cpu_count()} cores")
    for column in ("dialogues", "wall s", "dialogues/s", "CPU s/dialogue", f"dialogues/s on {os.cpu_count()} idle cores",
                   "peak RSS MB", "checkpoint B/dialogue", "dataset B/dialogue"):
        table.add_column(column, justify="right")
    runs = []
    try:
        for size in args.sizes:
            console.print(f"running {size} dialogues…")
            run = run_once(size, args.workers, args.concurrency, args.executor, scratch)
            runs.append(run)
            cpu_each = run.cpu_seconds / size
            table.add_row(str(size), f"{run.seconds:.1f}", f"{run.per_second:.2f}", f"{cpu_each:.3f}",
                          f"{(os.cpu_count() or 1) / cpu_each:.1f}", f"{run.peak_rss_mb:.0f}",
                          f"{run.checkpoint_bytes / size:,.0f}", f"{run.dataset_bytes / size:,.0f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    console.print(table)
    if len(runs) > 1:
        small, large = min(runs, key=lambda r: r.dialogues), max(runs, key=lambda r: r.dialogues)
        ratio = large.peak_rss_mb / small.peak_rss_mb
        console.print(f"peak RSS, {large.dialogues} over {small.dialogues} dialogues: {ratio:.3f} "
                      f"({'within' if ratio <= 1.15 else 'over'} the 15% bound)")
    console.print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
                  "(the machine may be shared: compare figures within one run)")


if __name__ == "__main__":
    main()
