"""Reading a run's dataset lines and checkpoints, for the tests of resume, fork and small checkpoints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rich.console import Console

from environment.sources.sqlite.sandbox import Sandbox
from graphs.dialogue import build_dialogue_graph
from runner.checkpoints import DialogueCheckpoints
from runner.layout import load_toolset
from tests.conftest import CLINIC


def dataset_lines(out: Path) -> dict[str, dict]:
    records = {}
    for name in ("dialogues.jsonl", "rejected.jsonl"):
        if (out / name).exists():
            for line in (out / name).read_text().splitlines():
                record = json.loads(line)
                assert record["id"] not in records, f"{record['id']} written twice"
                records[record["id"]] = record
    return records


def checkpoint_store(out: Path):
    return DialogueCheckpoints(out, build_dialogue_graph, None, Console(quiet=True))


async def history(out: Path, dialogue: str):
    async with checkpoint_store(out) as store:
        rows = await store.history(dialogue)
        states = {r.checkpoint_id: await store.state(dialogue, r.checkpoint_id) for r in rows}
        return rows, states


def replays(out: Path, record: dict) -> None:
    """Every tool call of the dialogue, re-run in order on a fresh copy, gives the recorded result."""
    tools = {t.name: t for t in load_toolset(out / "toolset.json")}
    results = {m["tool_call_id"]: m["content"] for m in record["messages"] if m["role"] == "tool"}
    box = Sandbox(str(CLINIC))
    try:
        for m in record["messages"]:
            for call in m.get("tool_calls") or []:
                replayed = box.run(tools[call["function"]["name"]], json.loads(call["function"]["arguments"]))
                assert json.dumps(replayed.to_content(), ensure_ascii=False, default=str) == results[call["id"]]
    finally:
        box.close()


def write_then_read(rows, states) -> str:
    """A checkpoint right after a database write, with a read still to come."""
    for row in rows:
        state = states[row.checkpoint_id]
        if row.node == "tool_executor" and state.calls and state.calls[-1].mode == "write":
            final = states[rows[-1].checkpoint_id]
            if any(c.mode == "read" for c in final.calls[len(state.calls):]):
                return row.checkpoint_id
    raise AssertionError("no write followed by a read")


def first_write_then_read(out: Path, dialogues):
    """(dialogue, states, checkpoint) of the first dialogue with a checkpoint right after a write that
    a later read depends on; None when none has one."""
    for dialogue in dialogues:
        rows, states = asyncio.run(history(out, dialogue))
        try:
            return dialogue, states, write_then_read(rows, states)
        except AssertionError:
            continue
    return None
