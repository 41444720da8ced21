"""Crash safety: kill -9 in the middle of a run, then `resume`; every dialogue ends up exactly once."""

from __future__ import annotations

import json
from pathlib import Path

from graphs.run import main
from runner.run_folder import RunFolder
from tests.conftest import CLINIC, generate_killed_mid_run, sha256


def _ids(out: Path) -> list[str]:
    ids = []
    for name in ("dialogues.jsonl", "rejected.jsonl"):
        path = out / name
        if path.exists():
            ids += [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
    return ids


def test_kill_then_resume_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    n = 40
    generate_killed_mid_run(out, n, "--seed", "3")
    before = _ids(out)
    assert 3 <= len(before) < n, "the kill should land mid-run"

    assert main(["resume", str(out)]) == 0
    after = _ids(out)
    assert sorted(after) == sorted(set(after)), "a dialogue was written twice"
    assert len(after) == n
    assert set(before) <= set(after)
    # dialogues cut off mid-step go on from their checkpoints rather than being rejected half-done
    rejected = out / "rejected.jsonl"
    assert not rejected.exists() or not rejected.read_text().strip(), rejected.read_text()[:500]


def test_torn_last_line_is_cut_off(tmp_path):
    folder = RunFolder(tmp_path)
    folder.append_line("dialogues.jsonl", {"id": "a"})
    with open(tmp_path / "dialogues.jsonl", "ab") as fh:
        fh.write(b'{"id": "b", "messa')
    assert folder.finished_ids() == {"a"}
    assert (tmp_path / "dialogues.jsonl").read_bytes().endswith(b"}\n")


def test_resume_of_a_finished_run_changes_nothing(offline_run, tmp_path):
    before = sha256(offline_run / "dialogues.jsonl")
    assert main(["resume", str(offline_run)]) == 0
    assert sha256(offline_run / "dialogues.jsonl") == before


def test_worker_processes_write_each_dialogue_once_and_the_same_dialogues(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "8", "--seed", "5", "--out", str(one)]) == 0
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "8", "--seed", "5", "--workers", "2",
                 "--out", str(two)]) == 0

    def by_index(out: Path) -> dict[str, list]:
        lines = [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]
        assert len(lines) == len({r["id"] for r in lines}) == 8
        return {r["id"].rsplit("-", 1)[-1]: r["messages"] for r in lines}

    assert by_index(one) == by_index(two)


def test_a_failing_worker_is_reported_in_one_line_with_its_log(tmp_path, capsys):
    import asyncio

    from rich.console import Console

    from environment.errors import RunError
    from graphs.dialogue import build_dialogue_graph
    from runner.batch import Batch
    from runner.layout import load_toolset
    from state.config import RunConfig, Settings

    source = tmp_path / "source"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--out", str(source)]) == 0
    folder = RunFolder(tmp_path / "broken")
    folder.path.mkdir()
    (folder.path / "checkpoints.sqlite").mkdir()  # a worker cannot open it
    config = RunConfig(run_id="broken", source_db=str(CLINIC), dialogues=4, tasks_per_dialogue=1, seed=0,
                       concurrency=2, workers=2)
    batch = Batch(build_dialogue_graph, folder, config, Settings(backend="offline"),
                  {"toolset.json": load_toolset(source / "toolset.json")}, Console(quiet=True))
    try:
        asyncio.run(batch.run())
        raise AssertionError("the run should have failed")
    except RunError as exc:
        assert "worker-0.log" in str(exc) and "resume" in str(exc)
    assert "Traceback" in (folder.path / "worker-0.log").read_text()
