"""examples/load_postgres.py: the bundled example loaded into Postgres introspects to the same tables,
keys, foreign keys and row counts as the SQLite file."""

from __future__ import annotations

import subprocess
import sys

from environment.sources.sqlite.introspect import inspect_database
from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.execute import PostgresClone
from environment.sources.postgres.introspect import database_checksum, inspect_postgres
from tests.conftest import CLINIC, ROOT


def _load(uri: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "examples/load_postgres.py", "--uri", uri, *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_example_loads_with_its_tables_keys_and_rows(postgres_server):
    uri = postgres_server.create_database("clinic_loaded")
    done = _load(uri)
    assert done.returncode == 0, done.stderr
    lite, pg = inspect_database(CLINIC), inspect_postgres(uri)
    assert [t.name for t in pg.tables] == sorted(t.name for t in lite.tables)
    for table in lite.tables:
        loaded = pg.table(table.name)
        assert loaded.row_count == table.row_count > 0
        assert [c.name for c in loaded.columns] == [c.name for c in table.columns]
        assert [c.name for c in loaded.primary_key] == [c.name for c in table.primary_key]
        assert loaded.key_assigned_on_insert == table.key_assigned_on_insert
        assert sorted((f.column, f.ref_table, f.ref_column) for f in loaded.foreign_keys) == \
            sorted((f.column, f.ref_table, f.ref_column) for f in table.foreign_keys)
        assert [c.json_type for c in loaded.columns] == [c.json_type for c in table.columns]
        # (a primary key is NOT NULL in Postgres; SQLite's INTEGER PRIMARY KEY does not say so)
        assert [c.not_null for c in loaded.columns if not c.pk_position] == \
            [c.not_null for c in table.columns if not c.pk_position]
    owners = pg.table("owners")
    assert owners.column("joined_on").declared_type == "date" and owners.column("email").unique
    assert pg.table("treatments").column("cost").declared_type == "numeric(8,2)"
    assert pg.table("vets").column("is_active").default == "1"

    # A clone of it takes writes; its identity keys go on after the loaded rows; the source stays as it was.
    before = database_checksum(uri)
    runs = CloneManager(uri, "load-test")
    runs.prepare()
    try:
        with PostgresClone(runs.clone("d0")) as clone:
            added = clone.execute("INSERT INTO vets (full_name, hired_on) VALUES (:name, :hired) RETURNING vet_id",
                                  {"name": "Dr. New", "hired": "2031-01-02"}, "write", clock="2031-01-02 09:00:00")
        assert added.ok and added.last_row_id == lite.table("vets").row_count + 1
    finally:
        runs.close()
    assert database_checksum(uri) == before

    again = _load(uri)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "already has table(s)" in again.stderr and "--replace" in again.stderr
    assert _load(uri, "--replace").returncode == 0
