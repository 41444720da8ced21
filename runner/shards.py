"""Shards: the files one Ray task writes in the run folder, and folding them into the run's own files.

A task owns `shards/<name>/` (its dialogues, rejected dialogues, timings and checkpoints) and is its only
writer, so tasks on different machines never contend for a file. The run's files are merged from the
shards at the end of a run and when it is resumed; merging is idempotent (a line whose id the run
already has is skipped, checkpoints are copied by their keys), so a merge cut off part way is simply
done again.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing, nullcontext
from pathlib import Path
from typing import Iterator

from langgraph.checkpoint.sqlite import SqliteSaver

from runner import run_folder as rf
from runner.run_folder import RunFolder

SHARDS = "shards"
_CHECKPOINT_TABLES = ("checkpoints", "writes")
_IDS_PER_QUERY = 500  # below SQLite's limit on bound parameters


def shard_folder(run: RunFolder, name: str) -> RunFolder:
    path = run.file(SHARDS) / name
    path.mkdir(parents=True, exist_ok=True)
    return RunFolder(path)


def _open_checkpoints(path: Path) -> sqlite3.Connection:
    """A checkpoint database with LangGraph's tables in place."""
    conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    SqliteSaver(conn).setup()
    return conn


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA {schema}.table_info({table})")]


def _tables(conn: sqlite3.Connection, schema: str) -> dict[str, str]:
    """The tables of an attached database, with the statement that created each."""
    return {name: sql for name, sql in conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}


def _copy_rows(conn: sqlite3.Connection, source: str, target: str, where: str = "",
               params: tuple[str, ...] = (), tables: tuple[str, ...] | None = None) -> None:
    """Copy rows between attached databases by the columns both have: every table of the source (the
    checkpointer's and whatever else is kept there, a store for one), or only `tables`. Checkpoint rows
    are keyed, so a row copied twice replaces itself."""
    present = _tables(conn, target)
    for table, create in _tables(conn, source).items():
        if tables is not None and table not in tables:
            continue
        if table not in present:  # e.g. a store the shard's tasks kept values in
            conn.execute(create.replace(f"CREATE TABLE {table}", f"CREATE TABLE {target}.{table}", 1))
        shared = [c for c in _columns(conn, source, table) if c in set(_columns(conn, target, table))]
        names = ", ".join(f'"{c}"' for c in shared)
        verb = "INSERT OR REPLACE" if table in _CHECKPOINT_TABLES else "INSERT OR IGNORE"
        conn.execute(f'{verb} INTO {target}."{table}" ({names}) SELECT {names} FROM {source}."{table}" {where}',
                     params)


def seed_threads(run: RunFolder, shard: RunFolder, thread_ids: list[str]) -> None:
    """Give a shard the checkpoints the run already has for its dialogues, so they go on from there
    (a dialogue cut off in an earlier attempt was merged into the run's checkpoints)."""
    source = run.file(rf.CHECKPOINTS)
    with closing(_open_checkpoints(shard.file(rf.CHECKPOINTS))) as conn:
        if not source.exists() or not thread_ids:
            return
        conn.execute("ATTACH DATABASE ? AS run", (str(source),))  # only read: the driver writes it between tasks
        try:
            if not _columns(conn, "run", "checkpoints"):
                return
            conn.execute("BEGIN")
            for start in range(0, len(thread_ids), _IDS_PER_QUERY):
                chunk = tuple(thread_ids[start:start + _IDS_PER_QUERY])
                marks = ",".join("?" * len(chunk))
                _copy_rows(conn, "run", "main", f"WHERE thread_id IN ({marks})", chunk, _CHECKPOINT_TABLES)
            conn.execute("COMMIT")
        finally:
            conn.execute("DETACH DATABASE run")


def shard_names(run: RunFolder) -> list[str]:
    root = run.file(SHARDS)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def merge_shards(run: RunFolder) -> int:
    """Fold every shard into the run's files and remove it; how many dataset lines were added."""
    names = shard_names(run)
    if not names:
        shutil.rmtree(run.file(SHARDS), ignore_errors=True)
        return 0
    seen = run.finished_ids()
    added = 0
    # Tasks that kept their checkpoints in Postgres left none here: the run folder then gets no file either.
    local = any((run.file(SHARDS) / name / rf.CHECKPOINTS).exists() for name in names)
    with closing(_open_checkpoints(run.file(rf.CHECKPOINTS))) if local else nullcontext() as conn:
        for name in names:
            shard = RunFolder(run.file(SHARDS) / name)
            if shard.file(rf.CHECKPOINTS).exists():
                conn.execute("ATTACH DATABASE ? AS shard", (str(shard.file(rf.CHECKPOINTS)),))
                try:
                    conn.execute("BEGIN")
                    _copy_rows(conn, "shard", "main")
                    conn.execute("COMMIT")
                finally:
                    conn.execute("DETACH DATABASE shard")
            for file in (rf.DIALOGUES, rf.REJECTED):
                added += run.append_raw_lines(file, _unseen(shard.iter_raw_lines(file), seen))
            run.append_raw_lines(rf.TIMINGS, shard.iter_raw_lines(rf.TIMINGS))  # the last of a dialogue counts
            shutil.rmtree(shard.path)
    shutil.rmtree(run.file(SHARDS), ignore_errors=True)
    return added


def _unseen(lines: Iterator[bytes], seen: set[str]) -> Iterator[bytes]:
    """Lines whose dialogue the run does not have yet (a retried task may have written one twice)."""
    for raw in lines:
        dialogue_id = json.loads(raw)["id"]
        if dialogue_id not in seen:
            seen.add(dialogue_id)
            yield raw


class ShardProgress:
    """Counts the dataset lines the shards have written so far, reading only what is new."""

    def __init__(self, run: RunFolder) -> None:
        self.run = run
        self.offsets: dict[Path, int] = {}

    def new_lines(self) -> int:
        count = 0
        for name in shard_names(self.run):
            for file in (rf.DIALOGUES, rf.REJECTED):
                path = self.run.file(SHARDS) / name / file
                offset = self.offsets.get(path, 0)
                try:
                    with path.open("rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read()
                except FileNotFoundError:
                    continue
                complete = chunk.rfind(b"\n") + 1  # a line still being written is counted next time
                count += chunk.count(b"\n", 0, complete)
                self.offsets[path] = offset + complete
        return count
