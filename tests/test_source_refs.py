"""A dialogue's sources are typed references, never one string to split: paths with spaces, ` + ` and any
letters work in a run (generate, resume, fork, verify), and runs recorded in the old joined form still read."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from graphs.run import main
from state.benchmark import BenchmarkTask
from state.config import RunConfig
from state.dialogue import DialogueInput, DialogueState
from state.sources import SourceRef, joined_name, read_joined
from tests.checkpoint_support import checkpoint_store, dataset_lines
from tests.conftest import CLINIC, sha256
from tests.mcp_helpers import EXAMPLE

ODD = "dossier é + copie ü"


def test_old_joined_forms_read_as_references(tmp_path):
    assert read_joined("/a/shop.db + mcp:///b/servers.json") == [SourceRef(name="/a/shop.db"),
                                                                    SourceRef(name="mcp:///b/servers.json")]
    whole = tmp_path / "clinic + copy.sqlite"
    whole.write_bytes(b"")
    assert read_joined(str(whole)) == [SourceRef(name=str(whole))], "a file under the whole string is one source"
    assert read_joined("") == []
    # a run config of before: its one source in source_db, or several in databases[].path
    one = RunConfig.model_validate({"run_id": "r", "source_db": "/a/shop.db + mcp:///b/s.json", "dialogues": 1,
                                    "tasks_per_dialogue": 1, "seed": 0, "concurrency": 1, "source_configs": {}})
    assert [r.name for r in one.sources()[0].sources] == ["/a/shop.db", "mcp:///b/s.json"]
    assert one.sources()[0].toolset == "toolset.json" and "source_db" not in one.model_dump()
    several = RunConfig.model_validate({"run_id": "r", "source_db": "", "dialogues": 1, "tasks_per_dialogue": 1,
                                        "seed": 0, "concurrency": 1,
                                        "databases": [{"path": "/a.db", "toolset": "toolsets/a.json"},
                                                      {"path": "/b.db", "toolset": "toolsets/b.json"}]})
    assert [(s.label, s.toolset) for s in several.sources()] == [("/a.db", "toolsets/a.json"),
                                                                  ("/b.db", "toolsets/b.json")]
    assert several.toolset_file_of([SourceRef(name="/b.db")]) == "toolsets/b.json"
    simulated = RunConfig(run_id="r", dialogues=1, tasks_per_dialogue=1, seed=0, concurrency=1)
    assert simulated.sources()[0].sources == []
    # a checkpoint of before holds the joined string in source_db; a benchmark task saved before, too
    state = DialogueState.model_validate({"dialogue_id": "d", "source_db": "/a/shop.db + mcp:///b/s.json"})
    assert [r.name for r in state.sources] == ["/a/shop.db", "mcp:///b/s.json"]
    assert state.source_label == "/a/shop.db + mcp:///b/s.json"
    assert DialogueInput(sources=[SourceRef(kind="sqlite", name=str(whole))]).source_label == str(whole)
    task = BenchmarkTask.model_validate({"task_id": "t", "dialogue_id": "d", "index": 0, "source_db": "/a.db",
                                         "task": {"goal": "g", "subtasks": []}})
    assert task.sources == [SourceRef(name="/a.db")]
    assert joined_name(task.sources) == "/a.db"


def _checkpoint_after_a_call(out: Path, dialogue: str) -> str:
    async def find() -> str:
        async with checkpoint_store(out) as store:
            for row in await store.history(dialogue):
                state = await store.state(dialogue, row.checkpoint_id)
                if row.node == "tool_executor" and state.calls:
                    return row.checkpoint_id
        raise AssertionError(f"{dialogue} made no call")
    return asyncio.run(find())


def test_a_database_and_servers_file_whose_paths_hold_spaces_plus_and_accents(tmp_path):
    folder = tmp_path / ODD
    folder.mkdir()
    database = folder / "clinic + copy é.sqlite"
    shutil.copy(CLINIC, database)
    servers_dir = folder / "serveurs ø + x"
    shutil.copytree(EXAMPLE, servers_dir, ignore=shutil.ignore_patterns("__pycache__"))
    servers = servers_dir / "servers.json"
    before = {p: sha256(p) for p in (database, servers_dir / "library.json")}
    out = tmp_path / "run"
    assert main(["generate", "--db", str(database), "--mcp", str(servers), "--dialogues", "3",
                 "--tasks-per-dialogue", "1", "--seed", "2", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert [r["name"] for r in config["databases"][0]["sources"]] == [str(database.resolve()),
                                                                      f"mcp://{servers.resolve()}"]
    records = dataset_lines(out)
    valid = [r for r in records.values() if r.get("valid", True) and "verdicts" in r["metadata"]]
    assert valid and (out / "dialogues.jsonl").read_text().strip()
    assert {r["metadata"]["source_database"] for r in records.values()} == {
        f"{database.resolve()} + mcp://{servers.resolve()}"}, "lines name their sources as before"
    assert main(["resume", str(out)]) == 0
    dialogue = next(iter(records))
    checkpoint = _checkpoint_after_a_call(out, dialogue)
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "31"]) == 0
    forks = [r for r in dataset_lines(out).values() if r["metadata"].get("forked_from")]
    assert len(forks) == 1 and not forks[0]["metadata"].get("replay_diverged")
    assert main(["verify", str(out)]) == 0
    assert {p: sha256(p) for p in before} == before, "the sources never change"


def test_an_old_run_recorded_as_a_joined_string_resumes(tmp_path):
    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    old = {**{k: v for k, v in config.items() if k != "databases"}, "source_db": str(CLINIC), "databases": []}
    (out / "config.json").write_text(json.dumps(old))
    (out / "dialogues.jsonl").write_text((out / "dialogues.jsonl").read_text().splitlines()[0] + "\n")
    assert main(["resume", str(out)]) == 0
    assert len(dataset_lines(out)) == 2
    assert main(["verify", str(out)]) == 0
