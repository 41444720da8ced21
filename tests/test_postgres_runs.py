"""`--db postgresql://…`: runs over a Postgres database work as they do over a SQLite file (offline backend):
the bundled example loaded into Postgres, a schema with what SQLite lacks, kill and resume, a mixed run,
every executed call replayed on a fresh clone, the source never written, no database left behind."""

from __future__ import annotations

import asyncio
import json
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
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'forge\\_%%\\_%%' "
                                           "AND datname NOT IN ('forge_shop_runs', 'forge_fixture') ORDER BY 1")]


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
    first, second = tmp_path / "one" / "run", tmp_path / "two" / "run"  # the run id (its folder's name) is in every line
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
        assert [c["customer_id"] for c in state["customers"]] == [2, 3]
        assert state["customers"][1]["joined_at"] == "2031-05-06 07:08:00+00:00", "now() read the dialogue's clock"
        assert [v["customer_id"] for v in state["visits"]] == [2]
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
    assert sorted(line["metadata"]["source_database"] for line in _lines(out)) == sorted([str(CLINIC)] * 2 + [named] * 2)
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
