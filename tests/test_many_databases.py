"""One run over many databases: a folder, several paths or a glob; one toolset each; the unusable ones named
and skipped; each dialogue replays on a fresh copy of its own database; history, show, fork and resume."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from environment.sources.sqlite.sandbox import Sandbox
from graphs.run import main
from runner.layout import load_toolset
from tests.conftest import CLINIC, sha256
from tests.checkpoint_support import dataset_lines, first_write_then_read, history


def _shop(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                             item TEXT NOT NULL, quantity INTEGER, placed_on TEXT);""")
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                     [(i, f"Customer {i}", ["Lyon", "Oslo", "Porto"][i % 3]) for i in range(1, 13)])
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                     [(i, i % 12 + 1, ["pen", "lamp", "chair", "desk"][i % 4], i % 5 + 1, f"2024-0{i % 9 + 1}-1{i % 9}")
                      for i in range(1, 31)])
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def databases(tmp_path_factory) -> Path:
    """Spider's layout: database/<name>/<name>.sqlite; one file is no database, one has no usable table."""
    root = tmp_path_factory.mktemp("databases")
    (root / "clinic").mkdir()
    shutil.copy(CLINIC, root / "clinic" / "clinic.sqlite")
    _shop(root / "shop" / "shop.sqlite")
    (root / "broken").mkdir()
    (root / "broken" / "broken.sqlite").write_text("id,name\n1,x\n")
    (root / "hollow").mkdir()
    conn = sqlite3.connect(root / "hollow" / "hollow.sqlite")
    conn.execute("CREATE VIEW v AS SELECT 1")
    conn.close()
    (root / "shop" / "schema.sql").write_text("-- not a database file: not picked up\n")
    return root


@pytest.fixture(scope="module")
def folder_run(databases, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "many"
    before = {p: sha256(p) for p in databases.rglob("*.sqlite")}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["generate", "--db", str(databases), "--dialogues", "6", "--tasks-per-dialogue", "1",
                     "--seed", "3", "--out", str(out)])
    assert code == 0
    assert {p: sha256(p) for p in databases.rglob("*.sqlite")} == before, "no source database may change"
    return out, printed.getvalue()


def _replays_on_its_own_database(out: Path, record: dict) -> int:
    """Every tool call, re-run in order on a fresh copy of the dialogue's own database, gives its result."""
    tools = {t.name: t for t in load_toolset(out / record["metadata"]["toolset"])}
    results = {m["tool_call_id"]: m["content"] for m in record["messages"] if m["role"] == "tool"}
    box = Sandbox(record["metadata"]["source_database"])
    checked = 0
    try:
        for m in record["messages"]:
            for call in m.get("tool_calls") or []:
                replayed = box.run(tools[call["function"]["name"]], json.loads(call["function"]["arguments"]))
                assert json.dumps(replayed.to_content(), ensure_ascii=False, default=str) == results[call["id"]]
                checked += 1
    finally:
        box.close()
    return checked


def test_a_folder_run_uses_each_usable_database_and_names_the_skipped(folder_run, databases):
    out, printed = folder_run
    skipped = [line for line in printed.splitlines() if line.startswith("skipped database")]
    assert len(skipped) == 2
    assert any(str(databases / "broken" / "broken.sqlite") in line and "not a SQLite database" in line
               for line in skipped)
    assert any(str(databases / "hollow" / "hollow.sqlite") in line and "no usable tables" in line for line in skipped)

    records = list(dataset_lines(out).values())
    assert len(records) == 6
    used = {r["metadata"]["source_database"] for r in records}
    assert used == {str((databases / "clinic" / "clinic.sqlite").resolve()),
                    str((databases / "shop" / "shop.sqlite").resolve())}
    assert sorted(r["metadata"]["toolset"] for r in records) == ["toolsets/clinic.json"] * 3 + ["toolsets/shop.json"] * 3
    assert not (out / "toolset.json").exists()
    checked = 0
    for record in records:
        toolset = load_toolset(out / record["metadata"]["toolset"])
        assert [t["function"]["name"] for t in record["tools"]] == [t.name for t in toolset]
        checked += _replays_on_its_own_database(out, record)
    assert checked > 10


def test_statistics_have_a_table_per_database(folder_run):
    out, printed = folder_run
    stats = json.loads((out / "stats.json").read_text())
    rows = {Path(r["database"]).stem: r for r in stats["per_database"]}
    assert set(rows) == {"clinic", "shop"}
    assert sum(r["samples"] + r["rejected"] for r in rows.values()) == 6
    assert rows["shop"]["tools"] == len(load_toolset(out / "toolsets" / "shop.json"))
    assert "Per database" in printed


def test_history_show_fork_and_resume_work_on_such_a_run(folder_run, databases, capsys):
    out, _ = folder_run
    records = dataset_lines(out)
    shop = [d for d, r in records.items() if r["metadata"]["source_database"].endswith("shop.sqlite")]
    found = first_write_then_read(out, shop)
    if found:
        dialogue, _, checkpoint = found
    else:  # no write here: any mid checkpoint of the first dialogue
        dialogue = shop[0]
        rows, _ = asyncio.run(history(out, dialogue))
        checkpoint = rows[len(rows) // 2].checkpoint_id
    assert main(["history", str(out), "--dialogue", dialogue]) == 0
    assert main(["show", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint]) == 0
    assert "writes applied so far" in capsys.readouterr().out
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "5"]) == 0
    fork = next(r for r in dataset_lines(out).values() if r["metadata"].get("forked_from"))
    assert fork["metadata"]["source_database"] == records[dialogue]["metadata"]["source_database"]
    assert fork["metadata"]["toolset"] == "toolsets/shop.json"
    _replays_on_its_own_database(out, fork)
    before = (out / "dialogues.jsonl").read_bytes()
    assert main(["resume", str(out)]) == 0
    assert (out / "dialogues.jsonl").read_bytes() == before


def test_dialogues_per_database_over_paths_and_a_glob(databases, tmp_path):
    out = tmp_path / "per-db"
    assert main(["generate", "--db", str(databases / "shop" / "shop.sqlite"), str(databases / "c*" / "*.sqlite"),
                 "--dialogues-per-db", "2", "--tasks-per-dialogue", "1", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["dialogues"] == 4
    per_database: dict[str, int] = {}
    for record in dataset_lines(out).values():
        name = Path(record["metadata"]["source_database"]).stem
        per_database[name] = per_database.get(name, 0) + 1
    assert per_database == {"shop": 2, "clinic": 2}


def test_no_usable_database_among_several_is_one_line(databases, tmp_path, capsys):
    out = tmp_path / "none"
    code = main(["generate", "--db", str(databases / "broken" / "broken.sqlite"),
                 str(databases / "hollow" / "hollow.sqlite"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "none of the 2 databases is usable" in err
    assert not out.exists() or not any(out.iterdir())
