"""Where a run keeps its graph state: the checkpointer (one thread per dialogue) and the store that holds
each toolset and schema once, both in the run folder's checkpoints.sqlite, or both in PostgreSQL when the
run was started with `--checkpointer postgresql://…` (runner/postgres_checkpoints.py)."""

from __future__ import annotations

import asyncio
import fcntl
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiosqlite
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.store.base import BaseStore
from langgraph.store.sqlite.aio import AsyncSqliteStore

from environment.errors import InputError
from runner.run_folder import CHECKPOINTS
from state.config import Settings
from state.persistence import strict_serializer
from state.postgres_uri import is_postgres_uri


async def _tune(conn: aiosqlite.Connection) -> None:
    # WAL without a sync per commit: a killed process loses nothing committed (only a power cut
    # could), and a checkpoint costs a write instead of an fsync.
    await conn.execute("PRAGMA busy_timeout=60000")  # first: worker processes share the file
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=NORMAL")


@asynccontextmanager
async def _one_setup_at_a_time(path: Path) -> AsyncIterator[None]:
    """Creating and migrating the tables, one process at a time: worker processes open a new run's file
    at the same moment, and the store's migrations (ALTER TABLE, then a row per version) fail when a
    second process repeats them ('duplicate column name', 'UNIQUE constraint failed')."""
    with (path.parent / f".{path.name}.setup.lock").open("a") as lock:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)  # the loop keeps going meanwhile
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _check_file(path: Path) -> None:
    if path.exists() and path.stat().st_size and path.read_bytes()[:16] != b"SQLite format 3\x00":
        raise InputError(f"{path} is not a SQLite checkpoint file (it may be damaged)")


@asynccontextmanager
async def open_checkpointer(path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    _check_file(path)
    async with aiosqlite.connect(str(path)) as conn:
        await _tune(conn)
        saver = AsyncSqliteSaver(conn, serde=strict_serializer())
        async with _one_setup_at_a_time(path):
            await saver.setup()
        yield saver


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[AsyncSqliteStore]:
    """The run's store (its own connection to the checkpoint file): toolsets and schemas by content hash."""
    _check_file(path)
    async with aiosqlite.connect(str(path), isolation_level=None) as conn:
        await _tune(conn)
        store = AsyncSqliteStore(conn)
        async with _one_setup_at_a_time(path):
            await store.setup()
        yield store


def checkpoint_location(folder: Path, settings: Settings) -> Path | str:
    """Where a dialogue run's checkpoints are: its Postgres URI, or the run folder's SQLite file."""
    return settings.checkpointer or folder / CHECKPOINTS


@asynccontextmanager
async def open_persistence(where: Path | str) -> AsyncIterator[tuple[BaseCheckpointSaver, BaseStore]]:
    """The one place a dialogue run's checkpointer and store are opened: a SQLite file, or a Postgres URI."""
    if is_postgres_uri(where):
        from runner.postgres_checkpoints import open_postgres_persistence  # psycopg only where it is used

        async with open_postgres_persistence(str(where)) as pair:
            yield pair
        return
    async with open_checkpointer(Path(where)) as saver, open_store(Path(where)) as store:
        yield saver, store


async def threads_with_history(saver: AsyncSqliteSaver) -> set[str]:
    """Threads that keep more than one checkpoint."""
    async with saver.lock, saver.conn.execute(
            "SELECT thread_id FROM checkpoints GROUP BY thread_id HAVING COUNT(*) > 1") as cursor:
        return {row[0] for row in await cursor.fetchall()}


async def release_free_pages(path: Path) -> None:
    """Give the pages of deleted checkpoints back to the file system. While a run goes on they are reused by
    the next dialogues; once every writer is done, the file is rewritten compact."""
    async with aiosqlite.connect(str(path), isolation_level=None) as conn:
        for statement in ("PRAGMA busy_timeout=60000", "VACUUM"):
            async with conn.execute(statement):
                pass


async def keep_only_last_checkpoint(graph: Any, saver: AsyncSqliteSaver, thread_id: str) -> None:
    """Drop every checkpoint of a thread but its last, which then holds its growing lists whole (they are
    otherwise rebuilt from the earlier steps' writes) and stays readable, resumable and forkable."""
    cfg = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    last = await saver.aget_tuple(cfg)
    if last is None:
        return
    checkpoint_id = last.checkpoint["id"]
    # A last state without a parent is whole already: a pruning cut off after writing it (a kill between its
    # two steps) only has the older rows left to delete.
    if last.parent_config is not None:
        snapshot = await graph.aget_state(cfg)
        if snapshot.next or snapshot.tasks:  # not finished: every step stays, so it can go on
            return
        values = snapshot.values
        checkpoint = {**last.checkpoint, "channel_values": dict(last.checkpoint["channel_values"])}
        for name, channel in graph.channels.items():
            if isinstance(channel, DeltaChannel) and name in values:
                checkpoint["channel_values"][name] = _DeltaSnapshot(values[name])
        metadata = {k: v for k, v in last.metadata.items() if k != "counters_since_delta_snapshot"}
        # Same id: the row is replaced in place, so a crash part way leaves the thread whole.
        await saver.aput(cfg, checkpoint, metadata, {})
    async with saver.lock:
        for table in ("checkpoints", "writes"):
            await saver.conn.execute(f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_id != ?",
                                     (thread_id, checkpoint_id))
        await saver.conn.commit()


async def keep_only_final_states(where: Path | str, builder_factory: Callable[[], Any], done: set[str]) -> None:
    """Dialogues written just before a run was cut off may still keep every step: prune them now."""
    async with open_persistence(where) as (saver, store):
        graph = builder_factory().compile(checkpointer=saver, store=store)
        for thread_id in sorted(await threads_with_history(saver) & done):
            await keep_only_last_checkpoint(graph, saver, thread_id)
