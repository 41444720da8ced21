"""`--db postgresql://…`: runs over a Postgres database work as they do over a SQLite file (offline backend):
the bundled example loaded into Postgres, a schema with what SQLite lacks, kill and resume, a mixed run,
every executed call replayed on a fresh clone, the source never written, no database left behind."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from environment.sources.pool import SandboxPool
from environment.sources.postgres.introspect import database_checksum
from environment.sources.postgres.sandbox import PostgresSandbox
from environment.sources.registry import open_source
from environment.sources.runs import run_scope
from graphs.dialogue import build_dialogue_graph
from graphs.run import main
from runner.checkpoints import DialogueCheckpoints
from tests.conftest import CLINIC, generate_killed_mid_run
from tests.postgres_fixture import create_fixture_database
from tests.test_postgres_load import _load

SECRET = "s3cret-in-the-uri"  # the superuser connects by trust: the password is never needed, only never written


@pytest.fixture(scope="module")
def clinic(postgres_server) -> str:
    """The bundled example loaded into Postgres by examples/load_postgres.py; its URI with a password."""
    uri = postgres_server.create_database("clinic_runs")
    done = _load(uri)
    assert done.returncode == 0, done.stderr
    return postgres_server.uri("clinic_runs", password=SECRET)


@pytest.fixture(scope="module")
def shop(postgres_server) -> str:
    return create_fixture_database(postgres_server, "forge_shop_runs")


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
            for line in (out / name).read_text().splitlines()]


def _forge_databases(server) -> list[str]:
    """The databases runs made (forge_<run tag>_…) still on the server."""
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1")]
    return [n for n in names if re.fullmatch(r"forge_[0-9a-f]{10}_.+", n)]


def _valid(out: Path) -> int:
    return len((out / "dialogues.jsonl").read_text().splitlines()) if (out / "dialogues.jsonl").exists() else 0


async def _calls_of(out: Path) -> dict[str, tuple[int, list, dict]]:
    """Each dialogue's seed, executed calls and tools, read back from its last checkpoint."""
    found = {}
    async with DialogueCheckpoints(out, build_dialogue_graph, None, Console(quiet=True)) as store:
        for line in _lines(out):
            state = await store.state(line["id"])
            tools = {t.name: t for t in await store.tools_of(state)}
            found[line["id"]] = (state.seed, state.calls, tools)
    return found


def _replays_exactly(out: Path, source: str) -> int:
    """Every executed call of the run, run again in order on a fresh clone at its recorded time, gives the
    result it gave first (reads too); the writes also rebuild through the protocol's pool. Calls checked."""
    checked = 0
    pool = SandboxPool(2)
    with run_scope(f"replay-{out.name}") as scope:
        for dialogue, (seed, calls, tools) in asyncio.run(_calls_of(out)).items():
            entry = pool.checkout(dialogue, source, seed, calls, tools)
            assert entry.diverged == [], f"{dialogue}: a replayed write gave another result"
            box = open_source(source).open(seed)
            assert isinstance(box, PostgresSandbox)
            try:
                for call in calls:
                    again = box.run(tools[call.tool], call.arguments, clock=call.clock)
                    assert again.to_content() == call.result.to_content(), (dialogue, call.tool, call.arguments)
                    checked += 1
            finally:
                box.close()
            pool.release(dialogue)
        open_source(source).finish_run(scope)  # the template of these replays
    return checked


def test_the_example_on_postgres_is_valid_as_on_sqlite_and_replays_exactly(clinic, postgres_server, tmp_path,
                                                                           capsys):
    before = database_checksum(clinic)
    pg, lite = tmp_path / "pg", tmp_path / "lite"
    assert main(["generate", "--db", clinic, "--dialogues", "10", "--seed", "3", "--out", str(pg)]) == 0
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "10", "--seed", "3", "--out", str(lite)]) == 0
    print(f"valid: postgres {_valid(pg)}/10, sqlite {_valid(lite)}/10")
    assert _valid(pg) >= _valid(lite) - 1 and _valid(pg) >= 8
    assert json.loads((pg / "toolset_report.json").read_text())["dropped"] == [], "every tool is valid Postgres"
    named = clinic.replace(f":{SECRET}", "")
    assert {line["metadata"]["source_database"] for line in _lines(pg)} == {named}
    for path in pg.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the password was written to {path}"
    assert _forge_databases(postgres_server) == [], "the run's template and clones are dropped when it ends"
    assert _replays_exactly(pg, named) >= 50
    assert database_checksum(clinic) == before, "the source must never change"
    assert _forge_databases(postgres_server) == []


def test_identity_sequence_enum_now_and_cascade_tools_replay_and_runs_repeat(shop, postgres_server, tmp_path):
    first, second = tmp_path / "one" / "run", tmp_path / "two" / "run"  # the run id (folder name) is in every line
    for out in (first, second):
        assert main(["generate", "--db", shop, "--dialogues", "4", "--tasks-per-dialogue", "2", "--seed", "7",
                     "--out", str(out)]) == 0
    assert (first / "dialogues.jsonl").read_bytes() == (second / "dialogues.jsonl").read_bytes()
    assert json.loads((first / "toolset_report.json").read_text())["dropped"] == []
    tools = {t["function"]["name"] for t in _lines(first)[0]["tools"]}
    assert {"add_customer", "add_visit", "delete_customer", "get_visit"} <= tools, tools
    writes = [c for line in _lines(first) for m in line["messages"] if m["role"] == "assistant"
              for c in m.get("tool_calls") or [] if c["function"]["name"].startswith(("add_", "update_", "delete_"))]
    assert writes, "no dialogue wrote: the write path was not exercised"
    assert _replays_exactly(first, shop) > len(writes)
    assert _forge_databases(postgres_server) == []


def test_the_pool_rebuilds_a_dialogue_on_a_fresh_clone_and_snapshots_by_key(shop, postgres_server):
    from state.dialogue import ExecutedCall

    with run_scope("pool-test") as scope:
        source = open_source(shop)
        tools = {t.name: t for t in source.derive_tools(source.catalog().database, 60)}
        box = source.open(0)
        clock = "2031-05-06T07:08:00"
        args = {"email": "cy@example.com", "name": "Cy"}
        added = box.run(tools["add_customer"], args, clock=clock)
        assert added.ok and added.rows_affected == 1
        gone = box.run(tools["delete_customer"], {"customer_id": 1}, clock=clock)  # its visit goes by CASCADE
        calls = [ExecutedCall(tool_call_id="a", tool="add_customer", arguments=args, result=added, mode="write",
                              clock=clock),
                 ExecutedCall(tool_call_id="b", tool="delete_customer", arguments={"customer_id": 1}, result=gone,
                              mode="write", clock=clock)]
        state = box.snapshot()
        box.close()
        entry = SandboxPool().checkout("d", shop, 0, calls, tools)
        assert entry.diverged == [] and entry.snapshot()["postgres"] == state
        customers, visits = state.tables["customers"], state.tables["visits"]
        rows = [dict(zip(customers.columns, r)) for _, r in sorted(customers.rows.items())]
        assert [c["customer_id"] for c in rows] == [2, 3]
        assert rows[1]["joined_at"] == "2031-05-06 07:08:00+00:00", "now() read the dialogue's clock"
        assert customers.clock_columns == ["joined_at"] and customers.assigned_keys  # an identity key
        assert [dict(zip(visits.columns, r))["customer_id"] for r in visits.rows.values()] == [2]
        entry.close()
        source.finish_run(scope)
    assert _forge_databases(postgres_server) == []


def test_a_run_killed_mid_way_resumes_with_every_dialogue_once_and_no_clone_left(clinic, postgres_server, tmp_path):
    out = tmp_path / "killed"
    generate_killed_mid_run(out, 12, "--tasks-per-dialogue", "1", "--seed", "3", "--concurrency", "3", db=clinic)
    assert len(_lines(out)) < 12, "the run finished before it was killed"
    assert _forge_databases(postgres_server), "a killed run leaves its template and clones behind"
    assert main(["resume", str(out)]) == 0
    ids = [r["id"] for r in _lines(out)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 12
    assert _forge_databases(postgres_server) == []


def test_one_run_over_a_sqlite_file_and_a_postgres_database(clinic, postgres_server, tmp_path):
    out = tmp_path / "mixed"
    named = clinic.replace(f":{SECRET}", "")
    assert main(["generate", "--db", str(CLINIC), clinic, "--dialogues-per-db", "2", "--tasks-per-dialogue", "1",
                 "--out", str(out)]) == 0
    named_by = sorted(line["metadata"]["source_database"] for line in _lines(out))
    assert named_by == sorted([str(CLINIC)] * 2 + [named] * 2)
    per_source = {row["database"]: row for row in json.loads((out / "stats.json").read_text())["per_database"]}
    assert set(per_source) == {str(CLINIC), named} and all(row["samples"] == 2 for row in per_source.values())
    assert SECRET not in (out / "config.json").read_text()
    assert _forge_databases(postgres_server) == []


def test_kept_sandboxes_stay_for_inspection(shop, postgres_server, tmp_path):
    out = tmp_path / "kept"
    assert main(["generate", "--db", shop, "--dialogues", "2", "--tasks-per-dialogue", "1", "--keep-sandboxes",
                 "--out", str(out)]) == 0
    kept = _forge_databases(postgres_server)
    assert len(kept) >= 3 and any(name.endswith("_template") for name in kept)  # the template and a clone each
    postgres_server.execute(*(f'DROP DATABASE "{name}" WITH (FORCE)' for name in kept))



def test_plan_checks_and_validations_open_no_clone_beyond_the_dialogues_own(shop, postgres_server, tmp_path):
    """The plan check runs each reference plan in a savepoint of the dialogue's own clone and the validator reads
    the task's diff from its change log: one clone per dialogue (kept here, so every one opened is counted)."""
    out = tmp_path / "own"
    assert main(["generate", "--db", shop, "--dialogues", "2", "--tasks-per-dialogue", "2", "--keep-sandboxes",
                 "--seed", "4", "--out", str(out)]) == 0
    kept = _forge_databases(postgres_server)
    try:
        written = _lines(out)
        assert len(written) == 2 and _valid(out) >= 1
        changed = [v for r in written for v in r["metadata"]["verification"] if v["real_diff"]["tables"]]
        assert changed, "some task wrote, so its plan check and validation had diffs to compute"
        clones = [name for name in kept if not name.endswith("_template")]
        assert len(clones) == 2 + 1, kept  # a clone per dialogue, and the one the run checks its tools on
    finally:
        postgres_server.execute(*(f'DROP DATABASE "{name}" WITH (FORCE)' for name in kept))

ROLE, PASSWORD = "forge_source_role", "right-pw"


@pytest.fixture(scope="module")
def role_databases(postgres_server) -> dict[str, str]:
    """A role that needs a password and may not create databases, and a database without tables."""
    server = postgres_server
    server.execute("DROP DATABASE IF EXISTS forge_src_owned WITH (FORCE)", "DROP DATABASE IF EXISTS forge_no_tables",
                   f"DROP ROLE IF EXISTS {ROLE}", f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOCREATEDB",
                   f"CREATE DATABASE forge_src_owned OWNER {ROLE}", "CREATE DATABASE forge_no_tables")
    server.execute("CREATE TABLE t (x int PRIMARY KEY)", "INSERT INTO t VALUES (1)", database="forge_src_owned")
    return {"owned": server.uri("forge_src_owned", user=ROLE, password=PASSWORD),
            "empty": server.uri("forge_no_tables")}


def _refused(db: str, tmp_path: Path, capsys) -> str:
    out = tmp_path / "bad"
    assert main(["generate", "--db", db, "--dialogues", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert not out.exists(), "nothing may be written for bad input"
    assert PASSWORD not in err and "wrong-pw" not in err
    return err


def test_bad_sources_are_one_line_and_write_nothing(postgres_server, role_databases, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert "is the server running" in _refused(f"postgresql://forge@/x?host={tmp_path / 'nowhere'}&port=5999",
                                               tmp_path, capsys)
    assert "password authentication failed" in _refused(role_databases["owned"].replace(PASSWORD, "wrong-pw"),
                                                        tmp_path, capsys)
    assert 'database "no_such_db" does not exist' in _refused(postgres_server.uri("no_such_db"), tmp_path, capsys)
    assert "no usable tables" in _refused(role_databases["empty"], tmp_path, capsys)
    assert "lacks the CREATEDB privilege" in _refused(role_databases["owned"], tmp_path, capsys)
    # the password may come from PGPASSWORD instead of the URI (libpq's fallback): the same privilege line
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert "lacks the CREATEDB privilege" in _refused(role_databases["owned"].replace(f":{PASSWORD}", ""),
                                                      tmp_path, capsys)
    assert _forge_databases(postgres_server) == []


def test_a_source_server_that_goes_away_stops_its_dialogues_and_resume_finishes_them(tmp_path):
    """The source's server dies mid-run: the dialogues it stops get no line, the run ends in one line naming
    the reason, and once the server is back `resume` ends with every dialogue once and no clone left."""
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    from tests.postgres_server import PostgresServer, require_postgres

    require_postgres()
    server = PostgresServer().start()  # a server of its own: this test stops it
    try:
        uri = server.create_database("clinic_lost")
        assert _load(uri).returncode == 0
        out = tmp_path / "run"
        driver = subprocess.Popen([sys.executable, "-m", "graphs.run", "generate", "--db", uri, "--dialogues", "30",
                                   "--tasks-per-dialogue", "1", "--concurrency", "2", "--out", str(out)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and len(_lines(out)) < 2 and driver.poll() is None:
            time.sleep(0.05)
        server.halt()
        _, err = driver.communicate(timeout=300)
        errors = [line for line in err.splitlines() if line.strip() and not line.startswith(("WARNING", "INFO"))]
        assert driver.returncode == 1, err[-2000:]
        assert len(errors) == 1 and "went away" in errors[0], err[-2000:]
        assert f"resume {out}" in errors[0]
        written = _lines(out)
        assert 2 <= len(written) < 30 and not any("OperationalError" in json.dumps(r) for r in written)
        server.start()
        assert main(["resume", str(out)]) == 0
        ids = [line["id"] for line in _lines(out)]
        assert len(ids) == 30 == len(set(ids))
        assert _forge_databases(server) == []
    finally:
        server.stop()


async def _after_a_write(out: Path) -> tuple[str, str] | None:
    """A dialogue and its checkpoint right after a successful write, with more of the dialogue to come."""
    async with DialogueCheckpoints(out, build_dialogue_graph, None, Console(quiet=True)) as store:
        for line in _lines(out):
            for row in await store.history(line["id"]):
                state = await store.state(line["id"], row.checkpoint_id)
                last = state.calls[-1] if state.calls else None
                if row.node == "tool_executor" and last and last.mode == "write" and last.result.ok and row.next:
                    return line["id"], row.checkpoint_id
    return None


def test_fork_history_show_export_and_report_over_postgres(shop, postgres_server, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "--db", shop, "--dialogues", "3", "--tasks-per-dialogue", "2", "--seed", "4",
                 "--out", str(out)]) == 0
    found = asyncio.run(_after_a_write(out))
    assert found is not None, "no dialogue wrote"
    dialogue, checkpoint = found
    assert main(["history", str(out), "--dialogue", dialogue]) == 0
    # the fork's fresh clone gets the dialogue's writes so far replayed onto it, then goes on
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "9"]) == 0
    fork = next(r for r in _lines(out) if r["metadata"].get("forked_from", {}).get("dialogue") == dialogue)
    assert fork["metadata"]["source_database"] == shop
    assert not str(fork["metadata"].get("reason", "")).startswith("error")
    assert main(["show", str(out), "--dialogue", fork["id"]]) == 0
    assert main(["resume", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint]) == 0
    assert main(["export", str(out), "--format", "openai", "--out", str(tmp_path / "export")]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "report.html")]) == 0
    assert main(["stats", str(out)]) == 0
    task = tmp_path / "task"  # the task-oriented pipeline runs on the same sandboxes
    assert main(["generate", "--db", shop, "--pipeline", "task", "--dialogues", "2", "--tasks-per-dialogue", "1",
                 "--out", str(task)]) == 0
    assert len(_lines(task)) == 2
    assert _forge_databases(postgres_server) == []


def test_a_password_in_the_uri_reaches_worker_processes_and_no_file(postgres_server, tmp_path, monkeypatch):
    """A role that needs a password: worker processes get it from the process that was given it (through
    their environment), the run folder never holds it."""
    role, password = "forge_pw_creator", "pw-for-workers"
    postgres_server.execute("DROP DATABASE IF EXISTS forge_pw_src WITH (FORCE)", f"DROP ROLE IF EXISTS {role}",
                            f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CREATEDB",
                            f"CREATE DATABASE forge_pw_src OWNER {role}")
    uri = postgres_server.uri("forge_pw_src", user=role, password=password)
    with psycopg.connect(uri, autocommit=True) as conn:  # the role owns its tables, as the clock needs
        conn.execute("CREATE TABLE pets (pet_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                     "name text NOT NULL, species text, weight_kg numeric(5,1))")
        conn.execute("INSERT INTO pets (name, species, weight_kg) VALUES ('Rex', 'dog', 30.5), ('Tom', 'cat', 4.2), "
                     "('Kiwi', 'bird', 0.1)")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    out = tmp_path / "workers"
    assert main(["generate", "--db", uri, "--dialogues", "4", "--tasks-per-dialogue", "1", "--workers", "2",
                 "--out", str(out)]) == 0
    assert len(_lines(out)) == 4 and all(not r["metadata"].get("reason", "").startswith("error") for r in _lines(out))
    for path in out.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), f"the password was written to {path}"
    assert _forge_databases(postgres_server) == []


def test_the_llm_backend_over_postgres_writes_postgres_tools(clinic, tmp_path):
    """The model backend (a local stub server): it is asked for PostgreSQL, its tools are checked on a clone,
    and the dialogues' calls run on their clones."""
    from tests.clinic_model import ClinicModel
    from tests.roles import request_text, role_of_request
    from tests.stub_server import StubServer

    out = tmp_path / "llm"
    with StubServer(ClinicModel(CLINIC)) as server:
        assert main(["generate", "--db", clinic, "--dialogues", "2", "--tasks-per-dialogue", "1", "--base-url",
                     server.base_url, "--model", "stub-model", "--concurrency", "2", "--out", str(out)]) == 0
        asked = [request_text(r) for r in server.requests if role_of_request(r) == "tool_synthesizer"]
    assert asked and "on top of a PostgreSQL database" in asked[0] and "ILIKE" in asked[0]
    records = [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["metadata"]["backend"] == "openai" for r in records)
    results = [json.loads(m["content"]) for r in records for m in r["messages"] if m["role"] == "tool"]
    assert results and all(t["rows"][0]["last_name"] == "Garcia" for t in results)
