"""Unseen schemas: odd databases built on the fly must yield valid tools and dialogues, or a clear one-line
reason why a table (or the whole database) was skipped — never a traceback.

Each case is a small SQLite file written into tmp_path with a dozen rows or so, so tasks can be grounded.
Everything runs offline (the deterministic backend) and in-process, except one CLI run in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from environment.sources.sqlite.derive import derive_tools
from environment.errors import InputError
from environment.sources.sqlite.introspect import inspect_database
from environment.sources.sqlite.sandbox import Sandbox
from environment.sources.sqlite.tool_checks import TOOL_NAME, check_tool, static_problems
from graphs.dialogue import build_dialogue_graph
from runner.export import acceptance
from state.config import Settings
from state.dialogue import DialogueState

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = 12


# ---------------------------------------------------------------------------------------------------------
# Building the databases
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Case:
    """An odd database: DDL, rows, and what introspection must skip."""

    ddl: list[str]
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    extra_sql: list[str] = field(default_factory=list)

    def build(self, path: Path) -> Path:
        conn = sqlite3.connect(path)
        try:
            for statement in self.ddl:
                conn.execute(statement)
            for table, rows in self.rows.items():
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)
            for statement in self.extra_sql:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
        return path


CITIES = ["Lyon", "Porto", "Graz", "Turku", "Ghent", "Split"]
STATUSES = ["open", "closed", "pending"]
FIRST = ["Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaito", "Lena"]
LAST = ["Moreau", "Silva", "Huber", "Virtanen", "Peeters", "Horvat"]


def person(i: int) -> str:
    return f"{FIRST[i % len(FIRST)]} {LAST[i % len(LAST)]}"


def day(i: int) -> str:
    return f"2024-{1 + i % 12:02d}-{10 + i % 18:02d}"


CASES: dict[str, Case] = {
    "quoted_names_with_spaces": Case(
        ddl=[
            'CREATE TABLE "Pet Owners" ("Owner ID" INTEGER PRIMARY KEY, "Full Name" TEXT NOT NULL, '
            '"Home City" TEXT, "Loyalty Points" INTEGER)',
            'CREATE TABLE "Vet Visits" ("Visit ID" INTEGER PRIMARY KEY, '
            '"Owner ID" INTEGER NOT NULL REFERENCES "Pet Owners"("Owner ID"), "Visit Date" DATE, '
            '"Reason For Visit" TEXT, "Visit Cost" REAL)',
        ],
        rows={
            "Pet Owners": [(i, person(i), CITIES[i % 6], 10 * i) for i in range(1, N_ROWS + 1)],
            "Vet Visits": [(i, 1 + i % N_ROWS, day(i), ["check-up", "vaccine", "limp"][i % 3], 20.5 + i)
                           for i in range(1, N_ROWS + 1)],
        },
    ),
    "mixed_case": Case(
        ddl=[
            "CREATE TABLE CustomerAccounts (AccountID INTEGER PRIMARY KEY, CustomerName TEXT, "
            "accountStatus TEXT, CreditLimit REAL)",
            # The foreign key spells both the table and the column in another case than their declarations.
            "CREATE TABLE orderLines (LineID INTEGER PRIMARY KEY, "
            "accountId INTEGER REFERENCES customeraccounts(accountid), ProductName TEXT, Quantity INTEGER)",
        ],
        rows={
            "CustomerAccounts": [(i, person(i), STATUSES[i % 3], 100.0 * i) for i in range(1, N_ROWS + 1)],
            "orderLines": [(i, 1 + i % N_ROWS, ["Lamp", "Desk", "Chair", "Shelf"][i % 4], 1 + i % 5)
                           for i in range(1, N_ROWS + 1)],
        },
    ),
    "composite_primary_keys": Case(
        ddl=[
            "CREATE TABLE students (student_no TEXT PRIMARY KEY, name TEXT NOT NULL, city TEXT)",
            "CREATE TABLE courses (code TEXT, term TEXT, title TEXT, capacity INTEGER, PRIMARY KEY (code, term))",
            "CREATE TABLE enrollments (student_no TEXT REFERENCES students(student_no), code TEXT, term TEXT, "
            "grade TEXT, credits INTEGER, PRIMARY KEY (student_no, code, term), "
            "FOREIGN KEY (code, term) REFERENCES courses(code, term))",
        ],
        rows={
            "students": [(f"S{i:03d}", person(i), CITIES[i % 6]) for i in range(1, N_ROWS + 1)],
            "courses": [(f"C{i % 4}", f"T{i // 4}", f"Course {['Algebra', 'Botany', 'Chemistry', 'Drama'][i % 4]}",
                         20 + i) for i in range(N_ROWS)],
            "enrollments": [(f"S{1 + i % N_ROWS:03d}", f"C{i % 4}", f"T{i // 4}", "ABC"[i % 3], 3 + i % 2)
                            for i in range(N_ROWS)],
        },
    ),
    "no_foreign_keys": Case(
        ddl=[
            "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT, country TEXT)",
            "CREATE TABLE books (isbn TEXT PRIMARY KEY, title TEXT, author_id INTEGER, pages INTEGER, "
            "published DATE)",
        ],
        rows={
            "authors": [(i, person(i), CITIES[i % 6]) for i in range(1, N_ROWS + 1)],
            "books": [(f"978-{i:04d}", f"Tales of {CITIES[i % 6]} {i}", 1 + i % N_ROWS, 100 + 7 * i, day(i))
                      for i in range(1, N_ROWS + 1)],
        },
    ),
    "empty_tables": Case(
        ddl=[
            "CREATE TABLE shops (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, rating REAL)",
            "CREATE TABLE complaints (id INTEGER PRIMARY KEY, shop_id INTEGER NOT NULL REFERENCES shops(id), "
            "summary TEXT, status TEXT, filed_on DATE)",
            "CREATE TABLE archive (code TEXT PRIMARY KEY, label TEXT)",
        ],
        rows={"shops": [(i, f"{CITIES[i % 6]} Corner {i}", CITIES[i % 6], 3.5 + (i % 3) / 2)
                        for i in range(1, N_ROWS + 1)]},
    ),
    "blob_and_null_heavy": Case(
        ddl=[
            "CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body BLOB, notes TEXT, "
            "category TEXT, score REAL, reviewed_on DATE)",
            "CREATE TABLE thumbnails (image BLOB, digest BLOB)",  # nothing but bytes: skipped
            "CREATE TABLE attachments (id INTEGER PRIMARY KEY, document_id INTEGER REFERENCES documents(id), "
            "filename TEXT, payload BLOB NOT NULL)",
            "CREATE VIRTUAL TABLE documents_fts USING fts5(title, notes)",  # skipped, with its shadow tables
            "CREATE TABLE documents_fts_log (id INTEGER PRIMARY KEY, query TEXT)",  # shares the prefix only
            # Half the statuses are NULL: a breakdown by status must not lead to a search for NULL.
            "CREATE TABLE tickets (id INTEGER PRIMARY KEY, name TEXT, status TEXT, hours REAL)",
        ],
        rows={
            "documents": [(i, f"Report {CITIES[i % 6]} {i}", bytes([i]) * 8,
                           "needs review" if i % 4 == 0 else None, STATUSES[i % 3] if i % 3 else None,
                           None if i % 2 else 1.5 * i, None if i % 5 else day(i)) for i in range(1, N_ROWS + 1)],
            "thumbnails": [(bytes([i]) * 4, bytes([255 - i]) * 2) for i in range(N_ROWS)],
            "attachments": [(i, 1 + i % N_ROWS, f"scan_{i}.pdf", b"%PDF" + bytes([i])) for i in range(1, N_ROWS + 1)],
            "documents_fts_log": [(i, f"query {CITIES[i % 6]}") for i in range(1, N_ROWS + 1)],
            "tickets": [(i, person(i), None if i % 2 else ["open", "closed"][i % 4 // 2], 1.5 * i)
                        for i in range(1, N_ROWS + 1)],
        },
        skipped={"thumbnails", "documents_fts"},
        extra_sql=["INSERT INTO documents_fts SELECT title, notes FROM documents"],
    ),
    "sql_keywords_as_names": Case(
        ddl=[
            'CREATE TABLE "order" ("select" INTEGER PRIMARY KEY, "from" TEXT NOT NULL, "where" TEXT, '
            '"group" TEXT, "limit" INTEGER, "values" REAL)',
            'CREATE TABLE "table" ("index" INTEGER PRIMARY KEY, "order" INTEGER REFERENCES "order"("select"), '
            '"join" TEXT, "having" TEXT, "between" INTEGER)',
        ],
        rows={
            "order": [(i, person(i), CITIES[i % 6], STATUSES[i % 3], i % 7, 2.5 * i) for i in range(1, N_ROWS + 1)],
            "table": [(i, 1 + i % N_ROWS, ["inner", "outer", "cross"][i % 3], f"note {i}", i * 3)
                      for i in range(1, N_ROWS + 1)],
        },
    ),
    "combined": Case(
        ddl=[
            'CREATE TABLE "Store Branch" ("Branch Code" TEXT, "Region" TEXT, "Branch Name" TEXT NOT NULL, '
            '"Opened On" DATE, "Logo" BLOB, PRIMARY KEY ("Branch Code", "Region")) WITHOUT ROWID',
            'CREATE TABLE "Order Items" ("Order" INTEGER, "Line" INTEGER, "Branch Code" TEXT, "Region" TEXT, '
            '"Item Name" TEXT, "Unit Price" REAL, "Gift Note" TEXT, "Receipt" BLOB, '
            'PRIMARY KEY ("Order", "Line"), '
            'FOREIGN KEY ("Branch Code", "Region") REFERENCES "Store Branch"("Branch Code", "Region"))',
            'CREATE TABLE "Returns" ("Return ID" INTEGER PRIMARY KEY, "Order" INTEGER, "Reason" TEXT)',
            "CREATE TABLE raw_blobs (a BLOB, b BLOB)",
            "CREATE VIRTUAL TABLE item_search USING fts5(name)",
        ],
        rows={
            "Store Branch": [(f"B{i:02d}", ["North", "South"][i % 2], f"{CITIES[i % 6]} Branch {i}", day(i),
                              b"\x89PNG" + bytes([i])) for i in range(N_ROWS)],
            "Order Items": [(1 + i // 3, 1 + i % 3, f"B{i:02d}", ["North", "South"][i % 2],
                             ["Kettle", "Toaster", "Blender", "Mixer"][i % 4], 9.5 + i,
                             "Happy birthday" if i % 5 == 0 else None, bytes([i]) * 3) for i in range(N_ROWS)],
            "raw_blobs": [(bytes([i]), bytes([i, i])) for i in range(N_ROWS)],
        },
        skipped={"raw_blobs", "item_search"},
    ),
}


@pytest.fixture(params=sorted(CASES))
def odd_db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, Case]:
    case = CASES[request.param]
    return request.param, case.build(tmp_path / f"{request.param}.sqlite"), case


def run_dialogues(db: Path, n: int = 2, tasks: int = 2) -> list[DialogueState]:
    """The dialogue graph end to end, offline, as the README's library example runs it."""

    async def go() -> list[DialogueState]:
        graph = build_dialogue_graph().compile(checkpointer=InMemorySaver())
        states = []
        for i in range(n):
            cfg = {"configurable": {"thread_id": f"d{i}"}, "recursion_limit": 500}
            await graph.ainvoke({"dialogue_id": f"d{i}", "source_db": str(db), "seed": 7 + i,
                                 "tasks_per_dialogue": tasks}, cfg, context=Settings(backend="offline"))
            states.append(DialogueState.model_validate((await graph.aget_state(cfg)).values))
        return states

    return asyncio.run(go())


# ---------------------------------------------------------------------------------------------------------
# Introspection and tools
# ---------------------------------------------------------------------------------------------------------

def test_introspection_reads_every_table_or_says_why_not(odd_db: tuple[str, Path, Case]) -> None:
    name, path, case = odd_db
    schema = inspect_database(path)
    kept = {t.name for t in schema.tables}
    skipped = {s.name: s.reason for s in schema.skipped}
    assert schema.tables, name
    for table in case.skipped:
        assert table in skipped, f"{table} should be skipped in {name}"
        assert skipped[table].strip() and "\n" not in skipped[table]
    assert not kept & set(skipped)
    for reason in skipped.values():
        assert reason.strip() and "\n" not in reason
    # Every user table is accounted for, and nothing else is reported as skipped but internal storage.
    conn = sqlite3.connect(path)
    user_tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                   if not r[0].startswith("sqlite_")}
    conn.close()
    assert kept | set(skipped) == user_tables
    for extra in set(skipped) - case.skipped:
        assert "virtual table" in skipped[extra], (extra, skipped[extra])
    for table in schema.tables:
        actual = {c.name for c in table.columns}
        for fk in table.foreign_keys:  # spelled like the declarations, whatever the DDL wrote
            assert fk.column in actual
            if fk.ref_table in kept:
                assert fk.ref_column in {c.name for c in schema.table(fk.ref_table).columns}


def test_every_derived_tool_passes_its_checks(odd_db: tuple[str, Path, Case]) -> None:
    name, path, _ = odd_db
    schema = inspect_database(path)
    tools = derive_tools(schema)
    assert tools, name
    assert len({t.name for t in tools}) == len(tools)
    sandbox = Sandbox(schema.path)
    try:
        refused = {t.name: problem for t in tools if (problem := check_tool(t, schema, sandbox)) is not None}
    finally:
        sandbox.close()
    # A delete refused by a foreign key is accepted by check_tool (the data protecting itself), so nothing
    # derived from these schemas may be refused at all.
    assert not refused, f"{name}: {refused}"
    kinds = {t.kind for t in tools}
    assert {"lookup", "search"} <= kinds or name == "combined", (name, kinds)
    assert any(t.mode == "write" for t in tools)
    for tool in tools:
        assert TOOL_NAME.match(tool.name)
        assert tool.table in {t.name for t in schema.tables}


def test_long_names_and_keyword_placeholders_are_made_safe(tmp_path: Path) -> None:
    long = "quarterly_regional_distribution_center_inventory_adjustment_records"
    path = Case(
        ddl=[f'CREATE TABLE "{long}" (id INTEGER PRIMARY KEY, "adjustment_reason_description_text" TEXT, '
             '"from" TEXT, "select" INTEGER, "between" REAL)'],
        rows={long: [(i, f"reason {i}", CITIES[i % 6], i, i / 2) for i in range(1, N_ROWS + 1)]},
    ).build(tmp_path / "long.sqlite")
    schema = inspect_database(path)
    tools = derive_tools(schema)
    assert len({t.name for t in tools}) == len(tools)
    sandbox = Sandbox(schema.path)
    try:
        for tool in tools:
            assert static_problems(tool) is None, (tool.name, tool.sql)
            assert check_tool(tool, schema, sandbox) is None, tool.name
    finally:
        sandbox.close()


# ---------------------------------------------------------------------------------------------------------
# Dialogues
# ---------------------------------------------------------------------------------------------------------

def test_dialogues_run_end_to_end(odd_db: tuple[str, Path, Case]) -> None:
    name, path, _ = odd_db
    states = run_dialogues(path)
    for state in states:
        assert len(state.tasks) == 2 and len(state.verdicts) == 2, name
        ok, reason = acceptance(state)
        assert ok, f"{name} / {state.dialogue_id}: {reason}"
        assert all(v.judgment == "valid" for v in state.verdicts)
        assert any(c.result.ok for c in state.calls), name
        tools = {t.name for t in state.toolset}
        assert all(c.tool in tools for c in state.calls)
        # The plan-following assistant only makes calls the data supports: no SQL errors, no bad arguments.
        errors = [(c.tool, c.arguments, c.result.error) for c in state.calls if c.result.error is not None]
        assert not [e for e in errors if e[2].type in ("sql_error", "invalid_arguments", "unknown_tool")], errors


def test_breakdown_of_a_null_heavy_column_leads_to_a_real_group(tmp_path: Path) -> None:
    path = CASES["blob_and_null_heavy"].build(tmp_path / "nulls.sqlite")
    states = run_dialogues(path, n=8)
    follow_ups = [c for s in states for c in s.calls if c.tool == "search_tickets_by_status"]
    assert any(c.tool.startswith("summarize_tickets") for s in states for c in s.calls)
    assert follow_ups and all(c.result.ok and c.arguments["status"] is not None for c in follow_ups)


def test_writes_on_odd_names_really_execute(tmp_path: Path) -> None:
    """Across a few seeds the offline tasks write (update / insert) through quoted and keyword names."""
    for case in ("quoted_names_with_spaces", "sql_keywords_as_names"):
        path = CASES[case].build(tmp_path / f"{case}.sqlite")
        states = run_dialogues(path, n=3)
        writes = [c for s in states for c in s.calls if c.mode == "write"]
        assert writes and all(c.result.ok for c in writes), case


def test_database_with_nothing_usable_is_one_clear_line(tmp_path: Path) -> None:
    path = Case(
        ddl=["CREATE TABLE blobs (a BLOB, b BLOB)", "CREATE VIRTUAL TABLE notes USING fts5(body)"],
        rows={"blobs": [(bytes([i]), bytes([i, 1])) for i in range(N_ROWS)]},
    ).build(tmp_path / "nothing.sqlite")
    with pytest.raises(InputError) as info:
        inspect_database(path)
    message = str(info.value)
    assert "\n" not in message and "no usable tables" in message and "skipped" in message


def test_database_without_rows_fails_with_a_reason_not_a_crash(tmp_path: Path) -> None:
    path = Case(ddl=["CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT, city TEXT)"]).build(
        tmp_path / "empty.sqlite")
    schema = inspect_database(path)
    tools = derive_tools(schema)
    sandbox = Sandbox(schema.path)
    try:
        assert all(check_tool(t, schema, sandbox) is None for t in tools)
    finally:
        sandbox.close()
    with pytest.raises(Exception) as info:  # raised from inside a node; the CLI records it per dialogue
        run_dialogues(path, n=1)
    assert "rows" in str(info.value) and "\n" not in str(info.value).strip()


# ---------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("OPENAI_BASE_URL", None)
    env.pop("FORGE_BASE_URL", None)
    return subprocess.run([sys.executable, "-m", "graphs.run", "generate", *args, "--backend", "offline"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_cli_generates_on_an_odd_database(tmp_path: Path) -> None:
    db = CASES["combined"].build(tmp_path / "combined.sqlite")
    out = tmp_path / "run"
    proc = _cli("--db", str(db), "--dialogues", "2", "--out", str(out), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert (out / "dialogues.jsonl").read_text().strip(), "no valid dialogue was written"
    assert "raw_blobs" in proc.stdout and "only BLOB columns" in proc.stdout.replace("\n", " ")


def test_cli_reports_an_unusable_database_in_one_line(tmp_path: Path) -> None:
    db = Case(ddl=["CREATE TABLE blobs (a BLOB)"], rows={"blobs": [(b"x",)]}).build(tmp_path / "blobs.sqlite")
    out = tmp_path / "run"
    proc = _cli("--db", str(db), "--dialogues", "2", "--out", str(out), cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")
    assert not out.exists()
