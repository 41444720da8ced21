"""Bounded memory over many dialogues, and merging the shards Ray tasks write into the run's files."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tracemalloc

from rich.console import Console

from runner import run_folder as rf
from runner.batch import Batch
from runner.run_folder import RunFolder
from runner.shards import SHARDS, ShardProgress, merge_shards, seed_threads, shard_folder
from results.stats import run_stats
from state.config import RunConfig, Settings
from tests.conftest import CLINIC


def _line(dialogue_id: str, padding: int = 0) -> dict:
    return {"id": dialogue_id, "messages": [{"role": "user", "content": "x" * padding}], "tools": [],
            "metadata": {"stats": {"steps": [1, 2], "turns": 5, "tasks": 1}, "latency_s": 0.5, "completed": True}}


def _ids(folder: RunFolder, name: str) -> list[str]:
    return [r["id"] for r in folder.iter_lines(name)]


def test_statistics_and_finished_ids_read_a_large_dataset_without_holding_it(tmp_path):
    folder = RunFolder(tmp_path)
    with open(folder.file(rf.DIALOGUES), "w") as fh:
        for n in range(400):
            fh.write(json.dumps(_line(f"d{n}", padding=20_000)) + "\n")  # 8 MB of dataset
    tracemalloc.start()
    try:
        stats = run_stats(folder.iter_lines(rf.DIALOGUES), folder.iter_lines(rf.REJECTED), 1, 1, "offline")
        ids = folder.finished_ids()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.samples == 400 and stats.steps_mean == 1.5 and stats.turns_max == 5
    assert len(ids) == 400
    assert peak < 1_000_000, f"reading the dataset held {peak} bytes at once"


def test_dialogues_wait_their_turn_without_a_task_each(tmp_path):
    """However many dialogues a run has, only `concurrency` of them exist as running work at a time."""
    config = RunConfig(run_id="lanes", source_db=str(CLINIC), dialogues=300, tasks_per_dialogue=1, seed=0,
                       concurrency=4)
    batch = Batch(lambda: None, RunFolder(tmp_path), config, Settings(backend="offline"), {}, Console(quiet=True))
    seen: list[int] = []
    tasks_alive: list[int] = []

    async def fake_dialogue(graph, job, i):
        tasks_alive.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0)
        seen.append(i)

    class _Compiled:
        def compile(self, checkpointer, store=None):
            return None

    batch.builder_factory = _Compiled
    batch.lanes.dialogue = fake_dialogue
    asyncio.run(batch.run_shard(list(range(300)), lambda: None))
    assert sorted(seen) == list(range(300))
    assert max(tasks_alive) <= 4 + 2  # the lanes, the main task and the checkpoint store's background task


def _checkpoint_rows(path, thread_id: str, n: int) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(path))
    SqliteSaver(conn).setup()
    for k in range(n):
        conn.execute("INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, type, checkpoint, metadata) "
                     "VALUES (?, '', ?, 'msgpack', ?, ?)", (thread_id, f"{thread_id}-c{k}", b"state", b"{}"))
        conn.execute("INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, value) "
                     "VALUES (?, '', ?, 't', 0, 'messages', 'msgpack', ?)", (thread_id, f"{thread_id}-c{k}", b"w"))
    conn.commit()
    conn.close()


def _count(path, table: str, thread_id: str) -> int:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE thread_id = ?", (thread_id,)).fetchone()[0]
    finally:
        conn.close()


def test_shards_merge_once_each_and_a_cut_off_merge_is_done_again(tmp_path):
    run = RunFolder(tmp_path)
    run.append_line(rf.DIALOGUES, _line("a"))
    one, two = shard_folder(run, "x-0000"), shard_folder(run, "x-0001")
    for record in (_line("a"), _line("b")):  # a retried task wrote "a" again
        one.append_line(rf.DIALOGUES, record)
    two.append_line(rf.REJECTED, {**_line("c"), "reason": "task 1: wrong"})
    with open(two.file(rf.DIALOGUES), "ab") as fh:
        fh.write(b'{"id": "d", "mess')  # a line torn by a kill
    _checkpoint_rows(one.file(rf.CHECKPOINTS), "b", 3)
    _checkpoint_rows(two.file(rf.CHECKPOINTS), "c", 2)
    with sqlite3.connect(str(two.file(rf.CHECKPOINTS))) as conn:  # values a task kept beside its checkpoints
        conn.execute("CREATE TABLE store (prefix TEXT, key TEXT, value TEXT, PRIMARY KEY (prefix, key))")
        conn.execute("INSERT INTO store VALUES ('toolsets', 'abc', '[]')")

    assert ShardProgress(run).new_lines() == 3  # the torn line is not counted
    assert merge_shards(run) == 2
    assert _ids(run, rf.DIALOGUES) == ["a", "b"] and _ids(run, rf.REJECTED) == ["c"]
    assert _count(run.file(rf.CHECKPOINTS), "checkpoints", "b") == 3
    assert _count(run.file(rf.CHECKPOINTS), "writes", "c") == 2
    with sqlite3.connect(str(run.file(rf.CHECKPOINTS))) as conn:
        assert conn.execute("SELECT key FROM store").fetchall() == [("abc",)]
    assert not run.file(SHARDS).exists()

    # a merge cut off after copying: the shard is still there and adds nothing twice
    again = shard_folder(run, "y-0000")
    again.append_line(rf.DIALOGUES, _line("b"))
    _checkpoint_rows(again.file(rf.CHECKPOINTS), "b", 3)
    assert merge_shards(run) == 0
    assert _ids(run, rf.DIALOGUES) == ["a", "b"]
    assert _count(run.file(rf.CHECKPOINTS), "checkpoints", "b") == 3


def test_a_new_shard_starts_from_the_checkpoints_the_run_has(tmp_path):
    run = RunFolder(tmp_path)
    _checkpoint_rows(run.file(rf.CHECKPOINTS), "cut-off", 4)
    _checkpoint_rows(run.file(rf.CHECKPOINTS), "other", 2)
    shard = shard_folder(run, "z-0000")
    seed_threads(run, shard, ["cut-off", "new"])
    assert _count(shard.file(rf.CHECKPOINTS), "checkpoints", "cut-off") == 4
    assert _count(shard.file(rf.CHECKPOINTS), "writes", "cut-off") == 4
    assert _count(shard.file(rf.CHECKPOINTS), "checkpoints", "other") == 0
