"""Worker processes open a new run's checkpoint file at the same moment: creating and migrating its
tables must work from several processes at once. LangGraph's store reads its migration version, then
applies the missing ALTER TABLEs; a second process in between repeats them ('duplicate column name',
'UNIQUE constraint failed: store_migrations.v')."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path

from runner import event_loop
from runner.persistence import open_persistence

PROCESSES = 4


async def _open(path: Path) -> None:
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    setup = AsyncSqliteStore.setup

    async def slow_setup(self: AsyncSqliteStore) -> None:
        migrate = self.conn.executescript

        async def slowly(sql: str):  # widen the window between reading the version and migrating
            await asyncio.sleep(0.3)
            return await migrate(sql)

        self.conn.executescript = slowly
        await setup(self)

    AsyncSqliteStore.setup = slow_setup
    async with open_persistence(path) as (_, store):
        await store.asearch(("probe",))  # the tables are there and readable


def _opener(path: str, start: "multiprocessing.synchronize.Barrier") -> None:
    start.wait(timeout=60)  # all at once, as workers starting on a new run do
    event_loop.run(_open(Path(path)))


def test_processes_that_open_a_new_checkpoint_file_at_once_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    path = tmp_path / "checkpoints.sqlite"
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_opener, args=(str(path), start)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    with sqlite3.connect(path) as conn:  # each migration applied once
        applied, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT v) FROM store_migrations").fetchone()
        assert applied == distinct > 0
