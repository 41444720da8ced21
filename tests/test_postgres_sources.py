"""Several Postgres databases in one run (offline backend): each source gets a template of its own, so each
one's tools are checked and its dialogues run on a clone of its own data, whether the databases share a
server or not; nothing is left behind and no source changes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.introspect import database_checksum
from graphs.run import main
from tests.conftest import CLINIC, ROOT, sha256
from tests.postgres_fixture import create_fixture_database
from tests.postgres_server import PostgresServer, require_postgres

PETS_SQL = """
CREATE TABLE households (household_id integer PRIMARY KEY, name text NOT NULL, city text NOT NULL);
CREATE TABLE companions (companion_id integer PRIMARY KEY,
                         household_id integer NOT NULL REFERENCES households(household_id),
                         name text NOT NULL, species text NOT NULL, age integer NOT NULL);
INSERT INTO households VALUES (1, 'Mara', 'Lyon'), (2, 'Tom', 'Oslo'), (3, 'Ines', 'Porto'), (4, 'Ravi', 'Lyon');
INSERT INTO companions VALUES (1, 1, 'Rex', 'dog', 3), (2, 1, 'Tibbles', 'cat', 5), (3, 2, 'Nemo', 'fish', 1),
                        (4, 3, 'Kiwi', 'bird', 2), (5, 4, 'Bo', 'dog', 7), (6, 2, 'Luna', 'cat', 4);
"""
VOTES_SQL = """
CREATE TABLE area_codes (area_code integer PRIMARY KEY, state text NOT NULL);
CREATE TABLE contestants (contestant_number integer PRIMARY KEY, contestant_name text NOT NULL);
CREATE TABLE votes (vote_id integer PRIMARY KEY, phone_number text NOT NULL, state text NOT NULL,
                    contestant_number integer NOT NULL REFERENCES contestants(contestant_number), created text);
INSERT INTO area_codes VALUES (201, 'NJ'), (212, 'NY'), (415, 'CA'), (617, 'MA');
INSERT INTO contestants VALUES (1, 'Edwina'), (2, 'Tabatha'), (3, 'Kelly'), (4, 'Jessie');
INSERT INTO votes VALUES (1, '7182341234', 'NY', 2, '2018-03-09'), (2, '7148407040', 'CA', 3, '2018-03-09'),
                         (3, '6209222222', 'NJ', 2, '2018-03-09'), (4, '5112223333', 'MA', 1, '2018-03-10');
"""


def _database(server: PostgresServer, name: str, schema: str) -> str:
    server.create_database(name)
    server.execute(schema, database=name)
    return server.uri(name)


def _forge_databases(*servers: PostgresServer) -> list[str]:
    names = []
    for server in servers:
        with psycopg.connect(server.uri(), autocommit=True) as conn:
            names += [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1")]
    return [n for n in names if re.fullmatch(r"forge_[0-9a-f]{10}_.+", n)]


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]


def test_each_source_of_a_run_has_a_template_of_its_own_named_from_run_and_source(postgres_server):
    one, two = postgres_server.uri("voter_1"), postgres_server.uri("pets_1")
    first, second = CloneManager(one, "run-a"), CloneManager(two, "run-a")
    assert first.template != second.template and first.prefix != second.prefix
    assert first.run_prefix == second.run_prefix, "one run: every database it makes starts alike"
    assert CloneManager(one, "run-b").template != first.template
    with_password = postgres_server.uri("voter_1", password="secret")
    assert CloneManager(with_password, "run-a").template == first.template, "a password does not name the source"
    assert first.clone_name("d1") != second.clone_name("d1")


def test_three_postgres_databases_and_a_sqlite_file_in_one_run(postgres_server, tmp_path):
    sources = [create_fixture_database(postgres_server, "forge_multi_shop"),
               _database(postgres_server, "pets_1", PETS_SQL), _database(postgres_server, "voter_1", VOTES_SQL)]
    before = [database_checksum(uri) for uri in sources] + [sha256(CLINIC)]
    runs = [tmp_path / "one" / "run", tmp_path / "two" / "run"]  # the run id (the folder's name) is in each line
    for out in runs:
        assert main(["generate", "--db", *sources, str(CLINIC), "--dialogues-per-db", "2", "--tasks-per-dialogue",
                     "1", "--seed", "5", "--out", str(out)]) == 0
        assert _forge_databases(postgres_server) == [], "every template and clone of the run is dropped"
    per_source = {row["database"]: row for row in json.loads((runs[0] / "stats.json").read_text())["per_database"]}
    assert set(per_source) == {*sources, str(CLINIC)}, "no source skipped"
    assert all(row["samples"] >= 1 for row in per_source.values()), per_source
    for line in _lines(runs[0]):  # each dialogue called its own database's tools, on its own data
        tools = {t["function"]["name"] for t in line["tools"]}
        source = line["metadata"]["source_database"]
        expected = {"pets_1": "companion", "voter_1": "vote", "forge_multi_shop": "visit", "clinic": "vet"}
        word = next(w for name, w in expected.items() if name in source)
        assert any(word in tool for tool in tools), (source, tools)
    assert (runs[0] / "dialogues.jsonl").read_bytes() == (runs[1] / "dialogues.jsonl").read_bytes()
    assert [database_checksum(uri) for uri in sources] + [sha256(CLINIC)] == before, "sources never change"
    # in a process of its own, as a user runs it: what it opens outside a run goes when that process ends
    verified = subprocess.run([sys.executable, "-m", "graphs.run", "verify", str(runs[0])], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    assert _forge_databases(postgres_server) == []


def test_two_servers_in_one_run_and_resume_drops_a_killed_attempts_databases(postgres_server, tmp_path):
    require_postgres()
    other = PostgresServer().start()
    try:
        sources = [_database(postgres_server, "pets_2", PETS_SQL), _database(other, "voter_2", VOTES_SQL)]
        before = [database_checksum(uri) for uri in sources]
        out = tmp_path / "run"
        assert main(["generate", "--db", *sources, "--dialogues-per-db", "2", "--tasks-per-dialogue", "1",
                     "--out", str(out)]) == 0
        per_source = {row["database"]: row["samples"] for row in json.loads((out / "stats.json").read_text())
                      ["per_database"]}
        assert set(per_source) == set(sources) and all(per_source.values()), per_source
        assert _forge_databases(postgres_server, other) == []
        # a killed attempt's template and clone on each server: resume drops them all, then ends with none left
        for uri in sources:
            manager = CloneManager(uri, out.name)
            manager.prepare()
            manager.clone("left-behind")
        assert len(_forge_databases(postgres_server, other)) == 4
        assert main(["resume", str(out)]) == 0
        assert _forge_databases(postgres_server, other) == []
        assert [database_checksum(uri) for uri in sources] == before
    finally:
        other.stop()


@pytest.mark.parametrize("leftover", ["template", "0123456789abcdef"])
def test_databases_a_run_made_before_sources_had_tags_are_dropped_with_its_own(postgres_server, leftover):
    uri = _database(postgres_server, "pets_3", PETS_SQL)
    manager = CloneManager(uri, "an-old-run")
    old = f"{manager.run_prefix}{leftover}"
    postgres_server.execute(f'CREATE DATABASE "{old}"')
    assert old in manager.databases()
    manager.close()
    assert _forge_databases(postgres_server) == []
