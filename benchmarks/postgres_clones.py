"""Clone time per dialogue database on the bundled example: Postgres (CREATE DATABASE … TEMPLATE from the
run's template, then DROP) against SQLite (the in-memory copy a dialogue's sandbox is); and dialogues per
second of whole offline runs (`generate --db`) over each.

    python benchmarks/postgres_clones.py [--clones 20] [--dialogues 20] [--uri postgresql://USER@HOST:PORT/DATABASE]
    python -m benchmarks.postgres_clones --strategies 10k 1M 10M [--clones 4]

`--strategies` compares CREATE DATABASE … STRATEGY WAL_LOG (Postgres 15's default: the template's blocks are
copied and WAL-logged one by one) with STRATEGY FILE_COPY (a checkpoint, then the files copied whole) on the
shop databases of benchmarks/db_size.py, each size a database of its own on a throwaway server: time per clone
(create, then drop) of each strategy, one at a time and 4 at once.

Without --uri a throwaway server is started (initdb and pg_ctl, as the tests do) and the example is loaded
into it with examples/load_postgres.py; with --uri the example is loaded into that (empty) database.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sqlite3
import tempfile
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from environment.sources.postgres.clones import CloneManager  # noqa: E402
from environment.sources.postgres.execute import PostgresClone  # noqa: E402

CLINIC = ROOT / "examples" / "clinic.sqlite"


def _figures(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (f"{name:<34} n={len(ms):<4} mean {statistics.mean(ms):8.1f} ms   median {statistics.median(ms):8.1f} ms   "
            f"max {ms[-1]:8.1f} ms")


def postgres_figures(uri: str, clones: int) -> list[str]:
    runs = CloneManager(uri, f"benchmark-{time.time_ns()}")
    started = time.perf_counter()
    runs.prepare()
    template = time.perf_counter() - started
    create, connect, drop = [], [], []
    try:
        for i in range(clones):
            t0 = time.perf_counter()
            clone_uri = runs.clone(f"d{i}")
            t1 = time.perf_counter()
            with PostgresClone(clone_uri) as clone:
                clone.execute("SELECT count(*) FROM owners", {}, "read")
            t2 = time.perf_counter()
            runs.release(f"d{i}")
            t3 = time.perf_counter()
            create.append(t1 - t0)
            connect.append(t2 - t1)
            drop.append(t3 - t2)
        concurrent = _concurrent_figure(runs, clones)
    finally:
        runs.close()
    return [f"{'postgres: run template (once)':<34} {template * 1000:8.1f} ms",
            _figures("postgres: clone per dialogue", create),
            _figures("postgres: connect + first query", connect),
            _figures("postgres: drop per dialogue", drop),
            _figures("postgres: clone + connect + drop", [a + b + c for a, b, c in zip(create, connect, drop)]),
            concurrent]


def _concurrent_figure(runs: CloneManager, clones: int, at_once: int = 8) -> str:
    """Clones made `at_once` at a time (as a run's concurrent dialogues make them): wall time per clone."""
    names = [f"c{i}" for i in range(clones)]
    started = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(runs.clone, names))
    wall = time.perf_counter() - started
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(runs.release, names))
    return f"{f'postgres: clone, {at_once} at a time':<34} n={clones:<4} {wall / clones * 1000:8.1f} ms per clone (wall)"


def sqlite_figures(clones: int) -> list[str]:
    seconds = []
    for _ in range(clones):
        started = time.perf_counter()
        source = sqlite3.connect(f"file:{CLINIC}?mode=ro", uri=True)
        copy = sqlite3.connect(":memory:")
        source.backup(copy)
        copy.execute("SELECT count(*) FROM owners").fetchone()
        source.close()
        copy.close()
        seconds.append(time.perf_counter() - started)
    return [_figures("sqlite: in-memory copy per dialogue", seconds)]


def run_figures(db: str, name: str, dialogues: int) -> str:
    """A whole offline run over one source, in this process: wall time (toolset synthesis included) and the
    dialogues per second it makes."""
    from graphs.run import main as forge

    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        started = time.perf_counter()
        code = forge(["generate", "--db", db, "--dialogues", str(dialogues), "--concurrency", "8", "--seed", "1",
                      "--out", str(Path(folder) / "run")])
        wall = time.perf_counter() - started
    if code != 0:
        return f"{name + ': offline run':<34} failed (exit {code})"
    return f"{name + ': offline run':<34} n={dialogues:<4} {wall:8.2f} s wall   {dialogues / wall:8.2f} dialogues/s"


def strategy_figures(uri: str, clones: int, at_once: int = 4) -> dict[str, tuple[float, float]]:
    """Seconds per clone of `uri`'s database with each strategy: (one at a time, `at_once` at a time)."""
    import psycopg
    from psycopg import sql as pgsql

    from state.postgres_uri import database_name, with_database

    source, admin_uri = database_name(uri), with_database(uri, "postgres")

    def clone(name: str, strategy: str) -> None:
        with psycopg.connect(admin_uri, autocommit=True) as admin:
            admin.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
                pgsql.Identifier(name), pgsql.Identifier(source), pgsql.SQL(strategy)))

    def drop(name: str) -> None:
        with psycopg.connect(admin_uri, autocommit=True) as admin:
            admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {}").format(pgsql.Identifier(name)))

    figures = {}
    for strategy in ("WAL_LOG", "FILE_COPY"):
        serial = []
        for i in range(clones):
            started = time.perf_counter()
            clone(f"bench_{i}", strategy)
            serial.append(time.perf_counter() - started)
            drop(f"bench_{i}")
        names = [f"bench_c{i}" for i in range(at_once)]
        started = time.perf_counter()
        with ThreadPoolExecutor(at_once) as pool:
            list(pool.map(lambda n, strategy=strategy: clone(n, strategy), names))
        concurrent = (time.perf_counter() - started) / at_once
        for name in names:
            drop(name)
        figures[strategy] = (statistics.median(serial), concurrent)
    return figures


def strategies_main(sizes: list[str], clones: int) -> int:
    from benchmarks.db_size import build_postgres, parse_rows
    from tests.postgres_server import PostgresServer, missing_reason
    import psycopg

    if missing_reason():
        print(f"cannot run: {missing_reason()}", file=sys.stderr)
        return 2
    server = PostgresServer().start()
    rows_out = []
    try:
        for text in sizes:
            rows = parse_rows(text)
            uri = server.create_database(f"shop_{rows}")
            build_postgres(rows, uri)
            with psycopg.connect(uri) as conn:
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
            figures = strategy_figures(uri, clones)
            rows_out.append((rows, size, figures))
            print(f"{rows:>12,} rows {size:8.0f} MB  " + "  ".join(
                f"{k}: {1000 * a:8.1f} ms serial, {1000 * b:8.1f} ms/clone 4 at once" for k, (a, b) in figures.items()),
                flush=True)
    finally:
        server.stop()
    return 0


def main() -> int:
    if "--strategies" in sys.argv:
        at = sys.argv.index("--strategies")
        clones = int(sys.argv[sys.argv.index("--clones") + 1]) if "--clones" in sys.argv else 4
        sizes = []
        for word in sys.argv[at + 1:]:
            if word.startswith("--"):
                break
            sizes.append(word)
        return strategies_main(sizes, clones)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clones", type=int, default=20)
    parser.add_argument("--dialogues", type=int, default=20, help="dialogues per offline run (0: no runs)")
    parser.add_argument("--uri", help="an empty Postgres database to load the example into (default: a throwaway "
                                      "server of its own)")
    args = parser.parse_args()
    from examples.load_postgres import load

    server = None
    uri = args.uri
    if uri is None:
        from tests.postgres_server import PostgresServer, missing_reason

        if missing_reason():
            print(f"cannot run: {missing_reason()}", file=sys.stderr)
            return 2
        server = PostgresServer().start()
        uri = server.create_database("clinic")
    try:
        load(CLINIC, uri, replace=True)
        lines = postgres_figures(uri, args.clones) + sqlite_figures(args.clones)
        if args.dialogues:
            lines += [run_figures(uri, "postgres", args.dialogues), run_figures(str(CLINIC), "sqlite", args.dialogues)]
    finally:
        if server is not None:
            server.stop()
    print(f"clone time per dialogue database, bundled example ({CLINIC.name}), {args.clones} clones; "
          f"offline runs of {args.dialogues} dialogues:")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
