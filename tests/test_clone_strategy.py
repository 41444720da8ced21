"""How a Postgres run's clones are made: WAL_LOG for a small template, FILE_COPY above
`postgres_file_copy_above_mb` (FORGE_POSTGRES_FILE_COPY_ABOVE_MB), nothing named before Postgres 15."""

from __future__ import annotations

import pytest

from environment.sources.postgres.clones import CloneManager, clone_strategy
from environment.sources.postgres.connection import connect, maintenance_connection
from state.config import Settings
from tests.postgres_fixture import create_fixture_database

MB = 2**20


def test_the_strategy_is_picked_by_the_template_size():
    assert clone_strategy(8 * MB, 150004, 64) == "WAL_LOG"
    assert clone_strategy(64 * MB, 150004, 64) == "WAL_LOG"  # at the threshold: still the default
    assert clone_strategy(65 * MB, 160001, 64) == "FILE_COPY"
    assert clone_strategy(10 * MB, 170000, 0) == "FILE_COPY"  # 0: always copy files


def test_before_postgres_15_no_strategy_is_named():
    assert clone_strategy(10_000 * MB, 140010, 64) is None  # CREATE DATABASE had no STRATEGY; it copied files


def test_the_threshold_reads_its_environment_variable(monkeypatch):
    monkeypatch.setenv("FORGE_POSTGRES_FILE_COPY_ABOVE_MB", "512")
    assert Settings().postgres_file_copy_above_mb == 512
    monkeypatch.delenv("FORGE_POSTGRES_FILE_COPY_ABOVE_MB")
    assert Settings().postgres_file_copy_above_mb == 64


@pytest.mark.parametrize("above_mb, expected", [("64", "WAL_LOG"), ("0", "FILE_COPY")])
def test_clones_are_made_with_the_picked_strategy(postgres_server, monkeypatch, above_mb, expected):
    monkeypatch.setenv("FORGE_POSTGRES_FILE_COPY_ABOVE_MB", above_mb)
    source = create_fixture_database(postgres_server, f"forge_strategy_{expected.lower()}")
    runs = CloneManager(source, f"strategy-{expected}")
    runs.prepare()
    statements: list[str] = []
    try:
        with maintenance_connection(source) as admin:
            assert runs.strategy(admin) == expected
        original = CloneManager._create

        def recording(self, admin, name, template, what, strategy=None):
            statements.append(strategy or "")
            return original(self, admin, name, template, what, strategy)

        monkeypatch.setattr(CloneManager, "_create", recording)
        uri = runs.clone("d1")
        with connect(uri) as conn:
            assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 2  # the data came along
    finally:
        runs.close()
    assert statements == [expected]
