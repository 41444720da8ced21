"""A run's checkpoints and store in PostgreSQL (LangGraph's own Postgres saver and store), for runs whose
workers on several machines share them. Chosen with `--checkpointer postgresql://…`.

Every failure to reach the database (no server, a refused password, a database that does not exist) is
one line naming the URI without its password.
"""

from __future__ import annotations

import zlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import dict_row

from environment.errors import InputError, RunError
from environment.sources.postgres.connection import CONNECT_TIMEOUT_S, failure
from state.config import Settings
from state.persistence import strict_serializer
from state.postgres_uri import without_password

# One advisory lock for creating and migrating the tables: worker processes open a new run at the same
# moment, and two processes repeating a migration fail on its version row.
_SETUP_LOCK = zlib.crc32(b"dialogue-forge checkpointer setup")


def unreachable(uri: str, exc: BaseException) -> InputError:
    return failure(uri, exc, "checkpointer")


def checkpointer_lost(exc: BaseException) -> bool:
    """A dialogue stopped because the checkpointer's server went away (a Postgres source never raises: its
    errors come back as tool results), not through any fault of its own."""
    return isinstance(exc, psycopg.OperationalError)


def checkpointer_lost_error(uri: str, exc: BaseException, folder: Path) -> RunError:
    return RunError(f"the checkpointer {without_password(uri)} went away ({' '.join(str(exc).split())[:200]}); "
                    f"once it is back, continue the run with: python -m graphs.run resume {folder}")


async def _connect(uri: str) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(uri, autocommit=True, prepare_threshold=0,
                                                     row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise unreachable(uri, exc) from None


async def _set_up(conn: psycopg.AsyncConnection, *parts: AsyncPostgresSaver | AsyncPostgresStore) -> None:
    await conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
    try:
        for part in parts:
            await part.setup()
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))


@asynccontextmanager
async def open_postgres_persistence(uri: str) -> AsyncIterator[tuple[AsyncPostgresSaver, AsyncPostgresStore]]:
    """The saver and the store, each on its own connection, their tables created if they are not there."""
    saver_conn = await _connect(uri)
    try:
        store_conn = await _connect(uri)
        try:
            saver = AsyncPostgresSaver(saver_conn, serde=strict_serializer())
            store = AsyncPostgresStore(store_conn)
            try:
                await _set_up(saver_conn, saver, store)
            except psycopg.Error as exc:  # e.g. a role that may not create tables in that database
                raise unreachable(uri, exc) from None
            yield saver, store
        finally:
            await store_conn.close()
    finally:
        await saver_conn.close()


async def check_checkpointer(settings: Settings, run_id: str) -> None:
    """Before a new run writes anything: the database answers, its tables are there, and it holds no
    dialogue of a run with the same id (thread ids are `<run id>-d<n>`, so two such runs would mix)."""
    uri = settings.checkpointer
    if not uri:
        return
    if settings.checkpoints == "final":
        raise InputError("--checkpoints final works with the run folder's checkpoints.sqlite only; with "
                         "--checkpointer postgresql://… every step is kept (leave --checkpoints out)")
    async with open_postgres_persistence(uri) as (saver, _):
        cur = await saver.conn.execute("SELECT 1 FROM checkpoints WHERE thread_id LIKE %s LIMIT 1",
                                       (_like_prefix(run_id) + "-d%",))
        taken = await cur.fetchone()
    if taken:
        raise InputError(f"the checkpointer {without_password(uri)} already holds dialogues of a run named "
                         f"{run_id!r} (choose another --out, or continue that run with resume)")


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
