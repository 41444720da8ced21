"""RL environments: how cheap an episode is, for 1, 64 and 1,024 instances at once.

    python -m benchmarks.environments [--instances 1 64 1024] [--rows 1000000] [--big-instances 1 64]

Makes an offline run over the bundled database (4 dialogues x 2 tasks) and, per instance count, opens that
many episodes (rl.from_run(...).episode()) and, all at once on the episode loop: resets them (a sandbox at a
task's start and the user's opening), makes 5 lookups on each, plays the reference policy on each to its end
(tool calls and user turns), and scores each (the state check). Prints the rate of each and the memory the
instances hold (resident set growth after the resets and after the episodes; a sandbox opens on its first call or
replay, so a reset to a first task holds none yet). With --rows N it does the same over a copy of the
database whose treatments table is grown to N rows (deterministic, a few seconds to build), for
--big-instances counts. Figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
CLINIC = ROOT / "examples" / "clinic.sqlite"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2 ** 20


def grown_copy(rows: int, folder: Path) -> Path:
    """The bundled database with its treatments table grown to `rows` rows (values cycled from its own rows)."""
    path = folder / f"clinic-{rows}.sqlite"
    shutil.copyfile(CLINIC, path)
    conn = sqlite3.connect(path)
    have = conn.execute("SELECT COUNT(*) FROM treatments").fetchone()[0]
    columns = [r[1] for r in conn.execute("PRAGMA table_info(treatments)") if r[1] != "treatment_id"]
    names = ", ".join(columns)
    conn.execute(f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows - have})
                     INSERT INTO treatments ({names})
                     SELECT {names} FROM n JOIN treatments t ON t.treatment_id = 1 + (n.i % {have})""")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    return path


def make_run(db: Path, out: Path) -> Path:
    from graphs.run import main

    code = main(["generate", "--db", str(db), "--dialogues", "4", "--tasks-per-dialogue", "2", "--seed", "3",
                 "--concurrency", "4", "--out", str(out)])
    if code != 0:
        raise SystemExit(f"generate failed ({code})")
    return out


def _lookup(environments, task) -> tuple[str, dict]:
    """A lookup by an integer key on the task's toolset, for id 1."""
    for tool in environments.tools_of(task).values():
        required = tool.parameters.get("required") or []
        props = tool.parameters.get("properties") or {}
        if tool.kind == "lookup" and len(required) == 1 and props[required[0]].get("type") == "integer":
            return tool.name, {required[0]: 1}
    raise SystemExit("no lookup by an integer key in the toolset")


async def measure(run: Path, instances: int) -> dict[str, float]:
    import rl
    from rl.oracle import play_reference

    environments = rl.from_run(run, split="all")
    tasks = environments.task_ids
    episodes = [environments.episode() for _ in range(instances)]
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    await asyncio.gather(*(e.areset(tasks[i % len(tasks)]) for i, e in enumerate(episodes)))
    resets = time.perf_counter() - started
    held = rss_mb() - before
    name, arguments = _lookup(environments, environments.tasks[0])
    started = time.perf_counter()
    await asyncio.gather(*(e.acall_tool(name, arguments) for e in episodes for _ in range(5)))
    calls = time.perf_counter() - started
    started = time.perf_counter()
    await asyncio.gather(*(play_reference(e, tasks[i % len(tasks)]) for i, e in enumerate(episodes)))
    plays = time.perf_counter() - started
    played_calls = sum(len(e.calls) for e in episodes)
    started = time.perf_counter()
    rewards = await asyncio.gather(*(e.areward() for e in episodes))
    scoring = time.perf_counter() - started
    played = rss_mb() - before
    for e in episodes:
        e.close()
    environments.close()
    return {"resets/s": instances / resets, "tool calls/s": 5 * instances / calls,
            "episodes/s": instances / plays, "calls in episodes/s": played_calls / plays,
            "rewards/s": instances / scoring, "mean reward": sum(r.value for r in rewards) / instances,
            "MB after resets": held, "MB after episodes": played, "MB/instance": played / instances}


def table(title: str, results: dict[int, dict[str, float]]) -> Table:
    out = Table(title=title)
    out.add_column("instances", justify="right")
    keys = list(next(iter(results.values())))
    for key in keys:
        out.add_column(key, justify="right")
    for n, row in results.items():
        out.add_row(str(n), *(f"{row[k]:,.2f}" if row[k] < 100 else f"{row[k]:,.0f}" for k in keys))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--rows", type=int, default=0, help="also over a copy grown to this many treatments rows")
    parser.add_argument("--big-instances", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    console = Console(width=200)
    from rl import loop

    with tempfile.TemporaryDirectory(prefix="forge-rl-bench-") as scratch:
        scratch_path = Path(scratch)
        run = make_run(CLINIC, scratch_path / "clinic-run")
        results = {n: loop.run(measure(run, n)) for n in args.instances}
        console.print(table("RL episodes over the bundled database (offline user, reference policy)", results))
        if args.rows:
            started = time.perf_counter()
            db = grown_copy(args.rows, scratch_path)
            built = time.perf_counter() - started
            started = time.perf_counter()
            big = make_run(db, scratch_path / "big-run")
            console.print(f"built {args.rows:,} rows ({db.stat().st_size / 2 ** 20:.0f} MB) in {built:.1f}s; "
                          f"the run over it in {time.perf_counter() - started:.1f}s")
            results = {n: loop.run(measure(big, n)) for n in args.big_instances}
            console.print(table(f"RL episodes over a {args.rows:,}-row copy", results))


if __name__ == "__main__":
    main()
