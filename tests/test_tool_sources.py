"""A source of the tests' own (tests/kv_source.py, a key-value store) plugs into the protocol and a run over it
works end to end offline: generate, kill and resume, fork from a mid checkpoint, stats."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from environment.sources.pool import SandboxPool
from environment.sources.registry import open_source, register_source_kind, tools_without_source, unregister_source_kind
from graphs.dialogue import build_dialogue_graph
from graphs.run import main
from runner.checkpoints import DialogueCheckpoints
from state.dialogue import ExecutedCall
from state.tools import ToolResult
from tests.conftest import CLINIC, ROOT, generate_killed_mid_run, sha256
from tests.kv_source import KvKind

ITEMS = {"mug-1": "popular blue mug", "lamp-2": "recent large lamp", "chair-3": "classic new chair",
         "desk-4": "large classic desk", "rug-5": "blue recent rug", "vase-6": "new popular vase"}
PLUGIN = {"FORGE_SOURCE_KINDS": json.dumps(["tests.kv_source"])}


@pytest.fixture(autouse=True, scope="module")
def kv_kind():
    """The kind is known in this process while these tests run, and forgotten after them."""
    register_source_kind(KvKind())
    yield
    unregister_source_kind("kv")


@pytest.fixture()
def store(tmp_path) -> str:
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(ITEMS))
    return f"kv://{path}"


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
            for line in (out / name).read_text().splitlines()]


def _tool_results(record: dict) -> dict[str, dict]:
    return {m["tool_call_id"]: json.loads(m["content"]) for m in record["messages"] if m["role"] == "tool"}


def test_the_registry_names_the_kind_and_its_tools_need_it(store):
    source = open_source(store)
    assert source.kind == "kv" and source.label == "shop"
    tools = source.catalog().tools
    assert {t.source for t in tools} == {"kv"}
    assert tools_without_source(tools, source) == [] and tools_without_source(tools, None) == tools
    assert main(["generate", "--toolset", str(_toolset_file(tools, Path(store[5:]).parent)),
                 "--dialogues", "1", "--out", str(Path(store[5:]).parent / "x")]) == 2


def _toolset_file(tools, folder: Path) -> Path:
    path = folder / "kv-tools.json"
    path.write_text(json.dumps([t.toolset_entry() for t in tools]))
    return path


def test_generate_over_a_key_value_store_writes_its_calls_and_never_touches_it(store, tmp_path):
    before = sha256(Path(store[5:]))
    out = tmp_path / "run"
    assert main(["generate", "--db", store, "--dialogues", "4", "--tasks-per-dialogue", "2", "--seed", "5",
                 "--out", str(out)]) == 0
    assert sha256(Path(store[5:])) == before, "the source must never change"
    records = json.loads((out / "stats.json").read_text())
    valid = [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]
    assert records["samples"] == len(valid) >= 3
    names = {t["function"]["name"] for t in valid[0]["tools"]}
    assert names == {"search_items", "get_item", "list_items", "add_item", "update_item", "delete_item"}
    assert all(r["metadata"]["source_database"] == store and r["metadata"]["tool_results"] == "executed"
               for r in valid)
    # a write shows in the next read of the same dialogue: the store is the dialogue's own copy
    updated = 0
    for record in valid:
        calls = [c for m in record["messages"] for c in m.get("tool_calls") or []]
        results = _tool_results(record)
        for i, call in enumerate(calls):
            args = json.loads(call["function"]["arguments"])
            if call["function"]["name"] == "update_item" and "error" not in results[call["id"]]:
                later = next(c for c in calls[i + 1:] if c["function"]["name"] == "get_item")
                assert results[later["id"]]["value"] == args["value"]
                updated += 1
    assert updated, "no dialogue changed an item: the write path was not exercised"


def test_the_tasks_of_a_key_value_run_get_a_state_verdict_and_verify_holds(store, tmp_path):
    """The state diff goes through the protocol: the store's own diff (its dict) is each task's real diff,
    compared with the goal diff its plan left on a scratch copy; `verify` replays it all from the files."""
    out = tmp_path / "verified"
    assert main(["generate", "--db", store, "--dialogues", "3", "--tasks-per-dialogue", "2", "--seed", "5",
                 "--out", str(out)]) == 0
    entries = [e for line in (out / "dialogues.jsonl").read_text().splitlines()
               for e in json.loads(line)["metadata"]["verification"]]
    assert len(entries) == 6 and all(e["verification"]["state"] == "match" for e in entries)
    changed = [e for e in entries if e["real_diff"]["tables"]]
    assert changed, "no task changed the store: the diff was not exercised"
    for entry in changed:
        for row in entry["real_diff"]["tables"]["item"]["updated"]:
            old, new = row["changes"]["value"]["old"], row["changes"]["value"]["new"]
            assert old != new and (entry["task"] > 0 or old == ITEMS[row["key"]["item_id"]])
    assert main(["verify", str(out)]) == 0


def test_a_run_killed_mid_way_resumes_with_every_dialogue_once(store, tmp_path):
    out = tmp_path / "killed"
    generate_killed_mid_run(out, 12, "--tasks-per-dialogue", "1", "--seed", "3", "--concurrency", "2",
                            db=store, env=PLUGIN)
    assert json.loads((out / "config.json").read_text())["settings"]["source_kinds"] == ["tests.kv_source"]
    assert len(_lines(out)) < 12, "the run finished before it was killed"
    # a fresh process without FORGE_SOURCE_KINDS: the run folder's recorded settings name the kind's module
    env = {k: v for k, v in os.environ.items() if k != "FORGE_SOURCE_KINDS"}
    done = subprocess.run([sys.executable, "-m", "graphs.run", "resume", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [r["id"] for r in _lines(out)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 12
    assert main(["stats", str(out)]) == 0
    assert json.loads((out / "stats.json").read_text())["samples"] >= 10


async def _write_then_read(out: Path, dialogue: str) -> tuple[str, str, str] | None:
    """A checkpoint right after a successful update_item, with a get_item of that item still to come."""
    async with DialogueCheckpoints(out, build_dialogue_graph, None, Console(quiet=True)) as store:
        rows = await store.history(dialogue)
        for row in rows:
            state = await store.state(dialogue, row.checkpoint_id)
            last = state.calls[-1] if state.calls else None
            if row.node == "tool_executor" and last and last.tool == "update_item" and last.result.ok:
                return row.checkpoint_id, last.arguments["item_id"], last.arguments["value"]
    return None


def test_a_fork_from_a_mid_checkpoint_replays_the_earlier_writes(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "--db", store, "--dialogues", "4", "--tasks-per-dialogue", "1", "--seed", "5",
                 "--out", str(out)]) == 0
    found = next(((r["id"], hit) for r in _lines(out) if (hit := asyncio.run(_write_then_read(out, r["id"])))), None)
    assert found is not None, "no dialogue updated an item"
    dialogue, (checkpoint, item, value) = found
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "99"]) == 0
    fork = next(r for r in _lines(out) if r["metadata"].get("forked_from", {}).get("dialogue") == dialogue)
    assert fork["metadata"]["forked_from"]["checkpoint"] == checkpoint
    results = _tool_results(fork)
    calls = [c for m in fork["messages"] for c in m.get("tool_calls") or []]
    write_at = next(i for i, c in enumerate(calls) if c["function"]["name"] == "update_item")
    reads = [c for c in calls[write_at + 1:] if c["function"]["name"] == "get_item"
             and json.loads(c["function"]["arguments"]).get("item_id") == item]
    # the fork's fresh sandbox had the write replayed onto it: a later read sees the new value
    assert reads and all(results[c["id"]]["value"] == value for c in reads)
    assert main(["show", str(out), "--dialogue", fork["id"]]) == 0
    assert "update_item" in capsys.readouterr().out


def test_the_sandboxes_of_a_dialogue_rebuilt_from_its_calls_hold_its_writes(store):
    """What the state diff compares: a fresh sandbox with the recorded calls replayed, snapshot by kind."""
    tools = {t.name: t for t in open_source(store).catalog().tools}
    calls = [ExecutedCall(tool_call_id="a", tool="update_item", arguments={"item_id": "mug-1", "value": "red mug"},
                          mode="write", result=ToolResult(ok=True, value={"item_id": "mug-1", "value": "red mug"},
                                                          rows=[{"item_id": "mug-1", "value": "red mug"}],
                                                          row_count=1)),
             ExecutedCall(tool_call_id="b", tool="delete_item", arguments={"item_id": "rug-5"}, mode="write",
                          result=ToolResult(ok=True, value={"item_id": "rug-5", "value": ITEMS["rug-5"]},
                                            rows_affected=1))]
    entry = SandboxPool().checkout("d", store, 0, calls, tools)
    state = entry.snapshot()["kv"]
    assert state["mug-1"] == "red mug" and "rug-5" not in state and state["vase-6"] == ITEMS["vase-6"]
    assert entry.diverged == []
    assert json.loads(Path(store[5:]).read_text()) == ITEMS, "the source is never changed"
    entry.close()


def test_one_run_over_sources_of_two_kinds(store, tmp_path):
    out = tmp_path / "mixed"
    assert main(["generate", "--db", str(CLINIC), store, "--dialogues", "4", "--tasks-per-dialogue", "1",
                 "--out", str(out)]) == 0
    per_source = {row["database"]: row for row in json.loads((out / "stats.json").read_text())["per_database"]}
    assert set(per_source) == {str(CLINIC), store} and all(row["samples"] == 2 for row in per_source.values())
    assert sorted(p.name for p in (out / "toolsets").glob("*.json")) == \
        ["clinic.json", "clinic.report.json", "shop.json", "shop.report.json"]
