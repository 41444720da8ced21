"""Big SQLite sources get file sandboxes in the run's scratch folder: same behaviour as in-memory copies,
removed when they close, when the run ends, and by `resume` after a kill."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from environment.sources.run_hooks import sources_for_run
from environment.sources.runs import run_scope
from environment.sources.sqlite.files import scratch_folder
from environment.sources.sqlite.source import SqliteSource
from tests.conftest import CLINIC


def _delete_some_table(conn: sqlite3.Connection, tables: list[str]) -> str:
    """Empty the first table whose rows nothing else refers to; its name."""
    for table in tables:
        try:
            conn.execute(f'DELETE FROM "{table}"')
            return table
        except sqlite3.IntegrityError:
            continue
    raise AssertionError("every table is referred to")


def test_a_source_above_the_threshold_gets_a_file_sandbox_that_behaves_as_a_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_SANDBOX_DIR", str(tmp_path))
    monkeypatch.setenv("FORGE_SANDBOX_FILE_ABOVE_MB", "0")
    source = SqliteSource(str(CLINIC))
    with run_scope("file-run"):
        box = source.open(1)
        assert box.file is not None and box.file.parent == scratch_folder("file-run")
        before, mark = box.snapshot(), box.mark()
        point = box.savepoint()
        table = _delete_some_table(box.conn, [t.name for t in box.changes.tables])
        assert not box.changes_since(mark).is_empty()
        box.rollback_to(point)
        assert box.snapshot() == before and box.changes_since(mark).is_empty()
        box.conn.execute(f'DELETE FROM "{table}"')
        assert box.changes_since(mark).model_dump() == box.diff(before, box.snapshot()).model_dump()
        file = box.file
        box.close()
    assert not file.exists(), "a sandbox's file goes when it closes"
    untouched = sqlite3.connect(CLINIC)
    assert untouched.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] > 0
    untouched.close()


def test_a_source_below_the_threshold_stays_in_memory(monkeypatch):
    monkeypatch.setenv("FORGE_SANDBOX_FILE_ABOVE_MB", "1000")
    box = SqliteSource(str(CLINIC)).open(1)
    try:
        assert box.file is None
    finally:
        box.close()


def test_resume_removes_the_file_sandboxes_a_killed_run_left_and_the_end_removes_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_SANDBOX_DIR", str(tmp_path))
    monkeypatch.setenv("FORGE_SANDBOX_FILE_ABOVE_MB", "0")
    folder = scratch_folder("killed-run")
    folder.mkdir(parents=True)
    leftover = folder / "0123.sqlite"
    leftover.write_bytes(Path(CLINIC).read_bytes())  # what a kill -9 leaves: the copy of a dialogue in flight
    with sources_for_run([str(CLINIC)], "killed-run", resuming=True):
        assert not leftover.exists(), "resume removed the killed attempt's file before dialogues ran"
        box = SqliteSource(str(CLINIC)).open(2)
        assert box.file is not None and box.file.exists()
    assert not folder.exists(), "the run's end removed its scratch folder"


def test_kill_then_resume_and_verify_hold_with_file_sandboxes(tmp_path, monkeypatch):
    """kill -9 mid-run leaves the copies of the dialogues in flight; `resume` removes them, finishes every
    dialogue once, leaves no copy behind, `verify` re-checks the run, and a fork after a write rebuilds its
    file sandbox to the state of its checkpoint."""
    import json

    from graphs.run import main
    from tests.checkpoint_support import dataset_lines, first_write_then_read, replays
    from tests.conftest import generate_killed_mid_run

    scratch = tmp_path / "scratch"
    env = {"FORGE_SANDBOX_DIR": str(scratch), "FORGE_SANDBOX_FILE_ABOVE_MB": "0"}
    out = tmp_path / "run"
    generate_killed_mid_run(out, 16, "--seed", "4", after=2, env=env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["resume", str(out)]) == 0
    ids = [json.loads(line)["id"] for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
           for line in (out / name).read_text().splitlines() if line.strip()]
    assert len(ids) == 16 and len(set(ids)) == 16
    assert not list(scratch.rglob("*.sqlite")), "no file sandbox is left once the resumed run ends"
    assert main(["verify", str(out)]) == 0
    records = dataset_lines(out)
    found = first_write_then_read(out, records)
    assert found, "no dialogue wrote and then read"
    dialogue, _, checkpoint = found
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "9"]) == 0
    fork = next(r for r in dataset_lines(out).values() if r["metadata"].get("forked_from"))
    replays(out, fork)
    assert not list(scratch.rglob("*.sqlite")), "the fork's file sandbox went with it"
