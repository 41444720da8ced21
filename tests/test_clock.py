"""One clock per dialogue: columns defaulting to the current time take the dialogue's seeded time."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from environment.sources.dialogue_time import dialogue_clock
from environment.sources.sqlite.clock import clock_binding
from environment.sources.sqlite.derive import derive_tools
from environment.sources.sqlite.introspect import inspect_database
from environment.sources.sqlite.sandbox import Sandbox
from graphs.run import main
from runner.layout import load_toolset
from state.dialogue import ExecutedCall
from state.tools import ToolResult
from tests.conftest import sha256
from tests.replay import lines, replay


def build_timestamped_db(path: Path) -> Path:
    """Owners and their notes; both tables have columns that default to the current date or time."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE owners (owner_id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT,
                             joined DATE NOT NULL DEFAULT CURRENT_DATE);
        CREATE TABLE notes (note_id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL REFERENCES owners(owner_id),
                            status TEXT NOT NULL, body TEXT, amount REAL,
                            created DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
                            stamped TEXT DEFAULT (datetime('now')));
    """)
    for i in range(1, 9):
        conn.execute("INSERT INTO owners VALUES (?, ?, ?, ?)", (i, f"Owner {i}", ["Lyon", "Oslo"][i % 2], f"2024-0{i}-01"))
        conn.execute("INSERT INTO notes (owner_id, status, body, amount, created, stamped) VALUES (?, ?, ?, ?, ?, ?)",
                     (i, ["open", "closed"][i % 2], f"note {i}", 10.0 * i, f"2024-01-0{i} 10:00:00",
                      f"2024-01-0{i} 10:00:00"))
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def timestamped_db(tmp_path_factory) -> Path:
    return build_timestamped_db(tmp_path_factory.mktemp("clock") / "notes.sqlite")


def test_every_kind_of_time_default_is_computed_at_the_dialogue_time():
    conn = sqlite3.connect(":memory:")
    conn.execute("""CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, a DATETIME DEFAULT CURRENT_TIMESTAMP,
        b DATE DEFAULT CURRENT_DATE, c TEXT DEFAULT CURRENT_TIME, d TEXT DEFAULT (datetime('now', 'localtime')),
        e INTEGER DEFAULT (strftime('%s', 'NOW')), f TEXT DEFAULT 'now', g TEXT DEFAULT 'CURRENT_TIMESTAMP')""")
    binding = clock_binding("INSERT INTO t (name) VALUES (:name)", conn)
    now = "2025-03-14 09:30:00"
    conn.execute(binding.sql, {"name": "x", **binding.values(conn, now)})
    row = conn.execute("SELECT a, b, c, d, e, f, g FROM t").fetchone()
    epoch = int(dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.timezone.utc).timestamp())
    assert row == (now, "2025-03-14", "09:30:00", now, epoch, "now", "CURRENT_TIMESTAMP")
    assert clock_binding("INSERT INTO t (name, a, b, c, d, e) VALUES (:n, 1, 2, 3, 4, 5)", conn) is None
    assert clock_binding("SELECT * FROM t", conn) is None


def test_an_insert_stores_the_clock_and_its_replay_stores_the_same(timestamped_db):
    tools = {t.name: t for t in derive_tools(inspect_database(str(timestamped_db)))}
    add_note = tools["add_note"]
    assert "created" not in add_note.properties, "the time default is not the caller's to give"
    clock = dialogue_clock("2025-06-01T08:15", 3)
    assert clock == "2025-06-01 08:18:00"
    args = {"owner_id": 2, "status": "open"}
    rows = []
    for _ in range(2):
        box = Sandbox(str(timestamped_db))
        try:
            box.replay(ExecutedCall(tool_call_id="c", tool="add_note", arguments=args, clock=clock, mode="write",
                                    result=ToolResult(ok=True)), add_note)
            rows.append(box.conn.execute("SELECT created, stamped FROM notes WHERE note_id = 9").fetchone())
        finally:
            box.close()
    assert rows == [(clock, clock), (clock, clock)]


def test_same_seed_same_bytes_and_every_result_replays(timestamped_db, tmp_path):
    before = sha256(timestamped_db)
    runs = [tmp_path / "first" / "notes-run", tmp_path / "second" / "notes-run"]  # one run id: same dialogue ids
    for out in runs:
        assert main(["generate", "--db", str(timestamped_db), "--dialogues", "6", "--seed", "3",
                     "--concurrency", "3", "--out", str(out)]) == 0
    assert sha256(timestamped_db) == before
    first, second = (out / "dialogues.jsonl" for out in runs)
    assert first.read_bytes() == second.read_bytes()

    tools = {t.name: t for t in load_toolset(runs[0] / "toolset.json")}
    records = lines(first) + lines(runs[0] / "rejected.jsonl")
    assert sum(replay(record, tools, timestamped_db) for record in records) > 20
    stamped = []
    for record in records:
        clocks = {c["id"]: c["clock"] for c in record["metadata"]["tool_calls"] if c.get("clock")}
        for m in record["messages"]:
            for call in m.get("tool_calls") or []:
                if call["function"]["name"] == "add_note":
                    stamped.append(clocks[call["id"]])
    assert stamped, "no dialogue added a note: the time defaults were not exercised"
    contents = "".join(m["content"] for r in records for m in r["messages"] if m["role"] == "tool")
    for clock in stamped:
        assert f'"created": "{clock}"' in contents, "the stored time is not the dialogue's"
