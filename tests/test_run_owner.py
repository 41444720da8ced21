"""A run folder has one owner: a second process is refused in one line naming the first, and writes
nothing; a lock left by a killed process blocks nobody."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from environment.errors import InputError
from graphs.run import main
from runner import run_folder as rf
from tests import forked
from tests.conftest import CLINIC
from tests.replay import lines


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _finished(out: Path) -> int:
    """Dialogue lines written so far (counted while another process may be writing one)."""
    path = out / rf.DIALOGUES
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_one_owner_per_folder_within_a_process_too(tmp_path):
    first = rf.RunFolder(tmp_path).own("generate")
    with pytest.raises(InputError, match=rf"in use by process {os.getpid()} .*\(generate, since"):
        rf.RunFolder(tmp_path).own("resume")
    first.release()
    with rf.RunFolder(tmp_path).own("resume"):
        pass


def test_a_second_resume_is_refused_while_generate_runs_and_runs_after_a_kill(tmp_path, capsys):
    out = tmp_path / "run"
    n = 24
    proc = forked.start(["generate", "--db", str(CLINIC), "--dialogues", str(n), "--concurrency", "2",
                         "--seed", "4", "--out", str(out)])
    try:
        _wait_for(lambda: _finished(out) >= 1, "the first dialogue")
        code = main(["resume", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"in use by process {proc.pid}" in err and "generate" in err, err
    finally:
        forked.kill(proc)
    assert _finished(out) < n, "the kill should land mid-run"
    assert main(["resume", str(out)]) == 0
    ids = [r["id"] for r in lines(out / rf.DIALOGUES) + lines(out / rf.REJECTED)]
    assert len(ids) == len(set(ids)) == n


def test_a_refused_process_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--out", str(out)]) == 0
    with (out / rf.DIALOGUES).open("ab") as fh:
        fh.write(b'{"id": "torn", "mess')  # what a resume would repair, if it went ahead
    holder = rf.RunFolder(out).own("generate")
    try:
        before = _contents(out)
        for argv in (["resume", str(out)], ["fork", str(out), "--dialogue", "x", "--checkpoint", "y"]):
            code = main(argv)
            err = capsys.readouterr().err.strip()
            assert code == 2 and len(err.splitlines()) == 1 and "in use by process" in err, err
            assert _contents(out) == before
    finally:
        holder.release()
    assert main(["resume", str(out)]) == 0
    assert [r["id"] for r in lines(out / rf.DIALOGUES)] == [f"run-d000{i}" for i in range(2)]


def test_a_folder_left_with_only_its_lock_can_be_generated_into(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / rf.OWNER_LOCK).write_text('{"pid": 1}')  # killed right after taking the folder
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--out", str(out)]) == 0
    shutil.rmtree(out)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_worker_processes_end_with_their_killed_parent(tmp_path):
    """Orphaned workers would go on writing lines into a folder the next resume owns: duplicates."""
    out = tmp_path / "run"
    proc = forked.start(["generate", "--db", str(CLINIC), "--dialogues", "12", "--workers", "2",
                         "--concurrency", "2", "--out", str(out)])
    try:
        _wait_for(lambda: _finished(out) >= 1, "the first dialogue")
        workers = _children(proc.pid)
        assert workers, "the run should have started worker processes"
    finally:
        forked.kill(proc)
    _wait_for(lambda: not any(_running(w) for w in workers), "the workers to end", seconds=10)
    written = _finished(out)
    assert written < 12, "the kill should land mid-run"
    time.sleep(0.5)
    assert _finished(out) == written, "a line was written after the run's owner was killed"
