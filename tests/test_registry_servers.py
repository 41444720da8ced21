"""Real MCP servers from the registries, started by the tests themselves (offline backend, a few dialogues each):
npm's @modelcontextprotocol/server-filesystem and server-memory (installed by .ci/run into .mcp-servers/ of
the checkout), PyPI's mcp-server-sqlite and mcp-server-time. Their state is read from the sandbox's files;
path arguments name files relative to the sandbox; the sources never change. Skipped where a server is
absent, except under CI, where they must run."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from environment.sources.base import CallContext
from environment.sources.registry import open_source
from graphs.run import main
from verification.state_check import check_state, real_diff
from tests.checkpoint_support import checkpoint_store, dataset_lines
from tests.conftest import ROOT, generate_killed_mid_run

NPM_BIN = ROOT / ".mcp-servers" / "node_modules" / ".bin"


def _server(command: str) -> str:
    found = NPM_BIN / command if (NPM_BIN / command).exists() else shutil.which(command)
    if found is None:
        reason = f"{command} is not installed (.ci/run installs the registry servers)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the registry server tests must run: {reason}")
        pytest.skip(reason)
    return str(found)


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "run" not in path.relative_to(folder).parts:
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _servers(folder: Path, name: str, server: dict) -> Path:
    (folder / "servers.json").write_text(json.dumps({"mcpServers": {name: server}}))
    return folder / "servers.json"


@pytest.fixture
def files_source(tmp_path) -> Path:
    command = _server("mcp-server-filesystem")
    folder = tmp_path / "files source"
    (folder / "files" / "notes").mkdir(parents=True)
    (folder / "files" / "notes" / "todo.txt").write_text("buy milk\ncall Ada\n")
    (folder / "files" / "README.md").write_text("# Household\nNotes and lists.\n")
    return _servers(folder, "files", {"command": command, "args": ["{sandbox}/files"],
                                      "sandbox": {"copy": ["files"]}})


def _generate(servers: Path, out: Path, dialogues: int = 4) -> list[dict]:
    assert main(["generate", "--mcp", str(servers), "--dialogues", str(dialogues), "--tasks-per-dialogue", "1",
                 "--seed", "4", "--out", str(out)]) == 0
    return [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]


def _no_sandbox_path(out: Path) -> None:
    for name in ("dialogues.jsonl", "rejected.jsonl"):
        if (out / name).exists():
            assert "forge-mcp-" not in (out / name).read_text(), f"a sandbox's absolute path is in {name}"


def _write_goal(line: dict) -> dict:
    return next((v["goal_diff"][0] for v in line["metadata"]["verification"]
                 if v.get("goal_diff") and v["goal_diff"][0].get("tables")), {})


def test_the_filesystem_server_writes_are_verified_by_the_files_and_faults_are_caught(files_source, tmp_path):
    before = _tree_hash(files_source.parent)
    out = tmp_path / "run"
    lines = _generate(files_source, out)
    assert lines, "no dialogue kept"
    system = lines[0]["messages"][0]
    assert system["role"] == "system" and "files/notes/todo.txt" in system["content"], "the assistant is told its paths"
    written = [line for line in lines if _write_goal(line)]
    assert written, "no kept dialogue wrote"
    goal = _write_goal(written[0])
    assert {"files:files", "files:lines"} <= set(goal["tables"]), goal
    assert all(v["verification"]["state"] == "match" for line in written for v in line["metadata"]["verification"]
               if v.get("goal_diff") and v["goal_diff"][0].get("tables"))
    _no_sandbox_path(out)
    assert _tree_hash(files_source.parent) == before, "the source files never change"
    # planted faults on the same task: the write missing, or made to another file, fails the state check
    dialogue = written[0]["id"]

    async def state_of():
        async with checkpoint_store(out) as store:
            state = await store.state(dialogue)
            return state, {t.name: t for t in await store.tools_of(state)}
    state, tools = asyncio.run(state_of())
    task = state.tasks[0]
    calls = [c for c in state.calls if c.task_index == 0]
    assert check_state(task, real_diff(state.sources, state.seed, [], calls, tools)[0]).status == "match"
    write = next(i for i, c in enumerate(calls) if c.mode == "write" and c.result.ok)
    missing = calls[:write] + calls[write + 1:]
    wrong = [c.model_copy(update={"arguments": {**c.arguments, "path": "files/elsewhere.txt"}}) if i == write else c
             for i, c in enumerate(calls)]
    assert check_state(task, real_diff(state.sources, state.seed, [], missing, tools)[0]).status != "match"
    assert check_state(task, real_diff(state.sources, state.seed, [], wrong, tools)[0]).status == "mismatch"
    # fork from the dialogue's last checkpoint replays its write onto a fresh sandbox; resume has nothing to do
    async def last_checkpoint():
        async with checkpoint_store(out) as store:
            return next(r.checkpoint_id for r in await store.history(dialogue) if r.node == "tool_executor")
    checkpoint = asyncio.run(last_checkpoint())
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "8"]) == 0
    forks = [r for r in dataset_lines(out).values() if r["metadata"].get("forked_from")]
    assert len(forks) == 1 and not forks[0]["metadata"].get("replay_diverged")
    assert main(["resume", str(out)]) == 0
    _no_sandbox_path(out)
    assert _tree_hash(files_source.parent) == before


def test_a_path_outside_the_sandbox_is_refused_and_answers_name_paths_relative_to_it(files_source):
    source = open_source(f"mcp://{files_source}")
    tools = {t.name: t for t in source.catalog().tools}
    read = tools["files__read_text_file"]
    assert "files/notes/todo.txt" in read.properties["path"]["examples"], "the assistant sees the paths it may use"
    box = source.open(1)
    try:
        context = CallContext(reference_time="2024-05-17T09:00:00", clock="2024-05-17T09:00:00", rng_key="paths")
        refused = asyncio.run(box.call(read, {"path": "/etc/hostname"}, context)).result
        assert not refused.ok and refused.error.type == "invalid_arguments" and "outside" in refused.error.message
        escaped = asyncio.run(box.call(read, {"path": "files/../../x"}, context)).result
        assert not escaped.ok and "outside" in escaped.error.message
        listing = asyncio.run(box.call(tools["files__list_allowed_directories"], {}, context))
        assert "forge-mcp-" not in json.dumps(listing.result.model_dump(mode="json"))
        found = asyncio.run(box.call(read, {"path": "files/notes/todo.txt"}, context)).result
        assert found.ok and "buy milk" in json.dumps(found.model_dump(mode="json"))
    finally:
        box.close()


def test_the_memory_server_keeps_its_graph_in_a_json_file(tmp_path):
    command = _server("mcp-server-memory")
    folder = tmp_path / "memory source"
    folder.mkdir()
    graph = [{"type": "entity", "name": "Ada", "entityType": "person", "observations": ["likes tea"]},
             {"type": "entity", "name": "Lyon", "entityType": "city", "observations": ["in France"]},
             {"type": "relation", "from": "Ada", "to": "Lyon", "relationType": "lives_in"}]
    (folder / "memory.jsonl").write_text("".join(json.dumps(x) + "\n" for x in graph))
    servers = _servers(folder, "memory", {"command": command, "env": {"MEMORY_FILE_PATH": "{sandbox}/memory.jsonl"},
                                          "sandbox": {"copy": ["memory.jsonl"]}})
    before = _tree_hash(folder)
    out = tmp_path / "run"
    assert _generate(servers, out)
    _no_sandbox_path(out)
    assert _tree_hash(folder) == before


def test_the_sqlite_server_over_a_copy_of_its_database(tmp_path):
    command = _server("mcp-server-sqlite")
    folder = tmp_path / "sqlite source"
    folder.mkdir()
    conn = sqlite3.connect(folder / "shop.db")
    conn.executescript("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL);"
                       "INSERT INTO items (name, price) VALUES ('pen', 1.5), ('lamp', 20), ('desk', 120);")
    conn.commit()
    conn.close()
    servers = _servers(folder, "shop", {"command": command, "args": ["--db-path", "{sandbox}/shop.db"],
                                        "sandbox": {"copy": ["shop.db"]}})
    before = _tree_hash(folder)
    out = tmp_path / "run"
    lines = _generate(servers, out)
    assert any("shop__describe_table" in json.dumps(line["messages"]) for line in lines), "the probed tables"
    assert _tree_hash(folder) == before


def test_the_time_server_without_state_gives_read_only_tasks(tmp_path):
    command = _server("mcp-server-time")
    folder = tmp_path / "time source"
    folder.mkdir()
    servers = _servers(folder, "clock", {"command": command, "args": ["--local-timezone", "UTC"]})
    lines = _generate(servers, tmp_path / "run")
    calls = [c["function"]["name"] for line in lines for m in line["messages"] for c in m.get("tool_calls") or []]
    assert "clock__convert_time" in calls


def test_a_run_on_the_filesystem_server_killed_with_sigkill_resumes(files_source, tmp_path):
    before = _tree_hash(files_source.parent)
    out = tmp_path / "killed"
    generate_killed_mid_run(out, 6, "--tasks-per-dialogue", "1", "--concurrency", "2", after=2,
                            db=f"mcp://{files_source}")
    assert len(dataset_lines(out)) < 6, "the run finished before it was killed"
    assert main(["resume", str(out)]) == 0
    ids = list(dataset_lines(out))
    assert len(ids) == 6 and (out / "dialogues.jsonl").read_text().strip()
    _no_sandbox_path(out)
    assert _tree_hash(files_source.parent) == before
