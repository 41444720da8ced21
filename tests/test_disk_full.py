"""A full disk: the run stops with one line saying so, nothing is torn, and `resume` finishes it once there is room."""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import runner.batch
from graphs.run import main
from runner import run_folder as rf
from runner.layout import load_toolset
from tests.conftest import CLINIC
from tests.replay import lines, replay

DIALOGUES = 5


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _complete(run: Path) -> None:
    records = lines(run / rf.DIALOGUES) + lines(run / rf.REJECTED)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == DIALOGUES
    tools = {t.name: t for t in load_toolset(run / rf.TOOLSET)}
    assert all(replay(r, tools, CLINIC) >= 0 for r in records)
    stats = json.loads((run / rf.STATS).read_text())
    assert stats["samples"] + stats["rejected"] == DIALOGUES


def _fill_after(monkeypatch, lines_allowed: int) -> None:
    """The disk fills up in the middle of the dialogue line after `lines_allowed` of them: half of it is
    written, then the write fails with ENOSPC."""
    real = rf.write_fully
    seen = {"lines": 0}

    def filling(fd: int, data: bytes) -> None:
        if b'"messages"' in data and not data.startswith(b"[") and data.count(b"\n") == 1:
            seen["lines"] += 1
            if seen["lines"] > lines_allowed:
                real(fd, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(rf, "write_fully", filling)


def test_a_full_disk_mid_line_stops_in_one_line_and_resume_completes(tmp_path, monkeypatch, capsys):
    run = tmp_path / "small-disk" / "run"
    _fill_after(monkeypatch, lines_allowed=2)
    code = main(["generate", "--db", str(CLINIC), "--dialogues", str(DIALOGUES), "--concurrency", "1",
                 "--out", str(run)])
    err = _one_line(capsys)
    assert code != 0 and "disk is full" in err and f"resume {run}" in err, err
    raw = (run / rf.DIALOGUES).read_bytes()
    assert raw.endswith(b"\n") and len(lines(run / rf.DIALOGUES)) == 2, "the half-written line must be taken back"

    monkeypatch.undo()
    roomy = tmp_path / "roomy" / "run"
    shutil.copytree(run, roomy)
    assert main(["resume", str(roomy)]) == 0
    _complete(roomy)


def test_sqlite_saying_the_disk_is_full_stops_the_run_without_rejecting_the_dialogue(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real = runner.batch.run_thread
    calls = {"n": 0}

    async def full_checkpoint(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise sqlite3.OperationalError("database or disk is full")
        return await real(*args, **kwargs)

    monkeypatch.setattr(runner.batch, "run_thread", full_checkpoint)
    code = main(["generate", "--db", str(CLINIC), "--dialogues", str(DIALOGUES), "--concurrency", "1",
                 "--out", str(run)])
    err = _one_line(capsys)
    assert code != 0 and "disk is full" in err, err
    assert not lines(run / rf.REJECTED), "a full disk is not the dialogue's fault"
    monkeypatch.undo()
    assert main(["resume", str(run)]) == 0
    _complete(run)
    assert not lines(run / rf.REJECTED)


@pytest.mark.parametrize("name", [rf.STATS, rf.DIALOGUES])
def test_a_whole_file_rewrite_that_hits_a_full_disk_leaves_the_old_file(tmp_path, monkeypatch, name):
    folder = rf.RunFolder(tmp_path)
    folder.write_json(name, {"old": True})
    before = (tmp_path / name).read_bytes()

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rf, "write_fully", full)
    with pytest.raises(rf.DiskFullError, match="disk is full"):
        folder.write_json(name, {"new": True})
    assert (tmp_path / name).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name], "no temporary file is left behind"
