"""`--checkpointer postgresql://…`: a run's checkpoints and store in Postgres, not in the run folder; history,
fork and resume read them there; the password never reaches the run folder; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphs.run import main
from tests.conftest import CLINIC, ROOT, generate_killed_mid_run
from tests.postgres_server import PostgresServer, require_postgres

ROLE, PASSWORD = "forge_runner", "s3cret-pw"


@pytest.fixture(scope="module")
def checkpoint_db(postgres_server) -> str:
    """A database owned by a role that needs a password; the URI carries it."""
    server = postgres_server
    server.execute("DROP DATABASE IF EXISTS forge_ck WITH (FORCE)", f"DROP ROLE IF EXISTS {ROLE}",
                   f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'", f"CREATE DATABASE forge_ck OWNER {ROLE}")
    return server.uri("forge_ck", user=ROLE, password=PASSWORD)


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
            for line in (out / name).read_text().splitlines()]


def _written(out: Path) -> int:
    """Whole lines written so far (a run killed or running may have a line cut short)."""
    return sum(1 for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
               for line in (out / name).read_text().splitlines() if line.endswith("}"))


def _no_secret_in(out: Path) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), f"the password was written to {path}"


def test_a_run_history_fork_and_resume_with_checkpoints_in_postgres(checkpoint_db, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    code = main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1", "--seed", "3",
                 "--checkpointer", checkpoint_db, "--out", str(out)])
    assert code == 0
    assert not (out / "checkpoints.sqlite").exists()
    recorded = json.loads((out / "config.json").read_text())["settings"]["checkpointer"]
    assert recorded.startswith(f"postgresql://{ROLE}@/forge_ck") and PASSWORD not in recorded
    _no_secret_in(out)
    # Later commands read the recorded URI; libpq finds the password where it always does.
    dialogue = _lines(out)[0]["id"]
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    capsys.readouterr()
    assert main(["history", str(out), "--dialogue", dialogue]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "PGPASSWORD" in err
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert main(["history", str(out), "--dialogue", dialogue]) == 0
    listed = capsys.readouterr().out
    rows = [line for line in listed.splitlines() if line.startswith("│")]
    assert len(rows) > 5 and "validator" in listed
    checkpoint = rows[3].split("│")[1].strip()  # a checkpoint in the middle of the dialogue

    assert main(["show", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint]) == 0
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "5"]) == 0
    ids = [line["id"] for line in _lines(out)]
    assert f"{dialogue}-fork1" in ids and len(ids) == 3
    assert main(["resume", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint]) == 0
    ids = [line["id"] for line in _lines(out)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 3  # replaced, not added
    assert not (out / "checkpoints.sqlite").exists()
    _no_secret_in(out)


def test_a_killed_run_resumes_from_postgres(checkpoint_db, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    generate_killed_mid_run(out, 8, "--tasks-per-dialogue", "1", "--checkpointer", checkpoint_db, after=2)
    assert out.exists() and _written(out) < 8
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert main(["resume", str(out)]) == 0
    ids = [line["id"] for line in _lines(out)]
    assert len(ids) == 8 == len(set(ids))
    assert not (out / "checkpoints.sqlite").exists()


def test_a_second_run_with_the_same_name_is_refused(checkpoint_db, tmp_path, capsys):
    first, second = tmp_path / "a" / "same", tmp_path / "b" / "same"
    base = ["generate", "--db", str(CLINIC), "--dialogues", "1", "--tasks-per-dialogue", "1",
            "--checkpointer", checkpoint_db]
    assert main([*base, "--out", str(first)]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(second)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds dialogues of a run named 'same'" in err
    assert not second.exists()


def _bad(uri: str, tmp_path: Path, capsys) -> str:
    out = tmp_path / "bad"
    code = main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--checkpointer", uri, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot use the checkpointer")
    assert not out.exists(), "nothing may be written for bad input"
    return err


def test_an_unreachable_server_is_one_line(postgres_server, tmp_path, capsys):
    uri = f"postgresql://{ROLE}@/forge_ck?host={tmp_path / 'no-server-here'}&port=5999"
    err = _bad(uri, tmp_path, capsys)
    assert "is the server running" in err


def test_bad_credentials_are_one_line_without_the_password(checkpoint_db, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    err = _bad(checkpoint_db.replace(PASSWORD, "wrong-password"), tmp_path, capsys)
    assert "password authentication failed" in err and "wrong-password" not in err


def test_a_missing_database_is_one_line(postgres_server, checkpoint_db, tmp_path, capsys):
    err = _bad(postgres_server.uri("no_such_database"), tmp_path, capsys)
    assert 'database "no_such_database" does not exist' in err


def test_not_a_postgres_uri_is_one_line(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["generate", "--db", str(CLINIC), "--checkpointer", "mysql://x/y", "--out", str(out)]) == 2
    assert "is not a postgresql:// URI" in capsys.readouterr().err and not out.exists()


def test_a_run_recorded_without_a_checkpointer_keeps_its_folder(checkpoint_db, tmp_path, monkeypatch):
    """FORGE_CHECKPOINTER chooses for new runs only: a run that kept its checkpoints in its folder (or was
    recorded before the choice existed) is continued from there."""
    out = tmp_path / "local"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--tasks-per-dialogue", "1",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    del config["settings"]["checkpointer"]
    (out / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("FORGE_CHECKPOINTER", checkpoint_db)
    assert main(["history", str(out), "--dialogue", _lines(out)[0]["id"]]) == 0
    assert main(["resume", str(out)]) == 0


def test_a_uri_is_recorded_without_its_password():
    from state.postgres_uri import database_name, with_database, without_password

    assert without_password("postgresql://u:p%40ss@db.example:5433/forge?sslmode=require&password=x") == \
        "postgresql://u@db.example:5433/forge?sslmode=require"
    assert without_password("postgres://db/forge") == "postgres://db/forge"
    assert without_password("postgresql://:only-a-password@db/forge") == "postgresql://db/forge"
    uri = "postgresql://u:p@/forge?host=/tmp/sock&port=5432"
    assert database_name(uri) == "forge" and database_name("postgresql://h/?dbname=x") == "x"
    assert with_database(uri, "other") == "postgresql://u:p@/other?host=/tmp/sock&port=5432"


def test_a_checkpointer_that_goes_away_stops_the_run_and_resume_finishes_it(tmp_path):
    """The server dies mid-run: the run stops in one line (no dialogue is rejected for it), and once the server
    is back `resume` ends with every dialogue once."""
    require_postgres()
    server = PostgresServer().start()  # a server of its own: this test stops it
    try:
        uri = server.create_database("forge_lost")
        out = tmp_path / "run"
        driver = subprocess.Popen([sys.executable, "-m", "graphs.run", "generate", "--db", str(CLINIC),
                                   "--dialogues", "40", "--tasks-per-dialogue", "1", "--concurrency", "2",
                                   "--checkpointer", uri, "--out", str(out)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # a crash says where
        deadline = time.time() + 300
        while time.time() < deadline and _written(out) < 2 and driver.poll() is None:
            time.sleep(0.05)
        server.halt()
        _, err = driver.communicate(timeout=300)
        assert driver.returncode == 1, err[-2000:]
        errors = [line for line in err.splitlines() if line.strip()]
        assert len(errors) == 1 and "went away" in errors[0] and f"resume {out}" in errors[0], err[-2000:]
        assert 2 <= _written(out) < 40
        # no dialogue was rejected for it (rejected.jsonl is read whole: the run stopped between lines)
        rejected = out / "rejected.jsonl"
        assert not rejected.exists() or "OperationalError" not in rejected.read_text()
        server.start()
        assert main(["resume", str(out)]) == 0
        ids = [line["id"] for line in _lines(out)]
        assert len(ids) == 40 == len(set(ids))
        assert not (out / "rejected.jsonl").exists() or not (out / "rejected.jsonl").read_text().strip()
    finally:
        server.stop()


def test_final_checkpoints_need_the_sqlite_file(checkpoint_db, tmp_path, capsys):
    out = tmp_path / "final"
    assert main(["generate", "--db", str(CLINIC), "--checkpoints", "final", "--checkpointer", checkpoint_db,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--checkpoints final works with the run folder's checkpoints.sqlite" in err
    assert not out.exists()
