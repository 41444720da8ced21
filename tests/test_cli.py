"""The command line: bad input gets one clear line, exit code 2, and no run folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


from graphs.run import main
from tests.conftest import CLINIC, ROOT


def _fails_cleanly(capsys, argv: list[str], out: Path, expect: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert expect in err
    assert not out.exists() or not any(out.iterdir())


def test_missing_database(tmp_path, capsys):
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(tmp_path / "nope.sqlite"), "--out", str(out)], out, "not found")


def test_a_folder_without_databases(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a database")
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(tmp_path), "--out", str(out)], out, "no SQLite database under")


def test_file_that_is_not_sqlite(tmp_path, capsys):
    bogus = tmp_path / "data.sqlite"
    bogus.write_text("id,name\n1,x\n")
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(bogus), "--out", str(out)], out, "not a SQLite database")


def test_database_without_tables(tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE VIEW v AS SELECT 1").connection.close()
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(empty), "--out", str(out)], out, "no usable tables")


def test_database_whose_tables_are_all_empty(tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    conn = sqlite3.connect(empty)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit(), conn.close()
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(empty), "--out", str(out)], out, "is empty")


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails_cleanly(capsys, ["generate", "--db", str(CLINIC), "--out", str(blocker / "run")], blocker / "run",
                   "not writable")
    _fails_cleanly(capsys, ["generate", "--db", str(CLINIC), "--out", "/proc/forge-run"], Path("/proc/forge-run"),
                   "not writable")


def test_existing_output_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["generate", "--db", str(CLINIC), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_unknown_backend(tmp_path, capsys):
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(CLINIC), "--backend", "nope", "--out", str(out)], out,
                   "unknown backend")


def test_unreachable_base_url(tmp_path, capsys):
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(CLINIC), "--base-url", "http://127.0.0.1:9/v1", "--out", str(out)],
                   out, "cannot reach the model server")


def test_bad_numbers(tmp_path, capsys):
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(CLINIC), "--dialogues", "0", "--out", str(out)], out, "--dialogues")


def test_real_process_prints_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = subprocess.run([sys.executable, "-m", "graphs.run", "generate", "--db", str(tmp_path / "x.db")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: database not found")


def test_stats_of_several_runs(offline_run, capsys):
    assert main(["stats", str(offline_run), str(offline_run)]) == 0
    out = capsys.readouterr().out
    assert "Steps" in out and "Turns" in out and "Valid rate" in out


def test_reuse_a_toolset_from_an_earlier_run(offline_run, tmp_path):
    out = tmp_path / "reused"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--toolset",
                 str(offline_run / "toolset.json"), "--out", str(out)]) == 0
    import json

    before = json.loads((offline_run / "toolset.json").read_text())
    after = json.loads((out / "toolset.json").read_text())
    assert after == before
    assert len((out / "dialogues.jsonl").read_text().splitlines()) == 2


def test_a_toolset_file_that_is_not_one(tmp_path, capsys):
    bogus = tmp_path / "toolset.json"
    bogus.write_text('{"not": "a list"}')
    out = tmp_path / "out"
    _fails_cleanly(capsys, ["generate", "--db", str(CLINIC), "--toolset", str(bogus), "--out", str(out)], out,
                   "not a toolset.json")
