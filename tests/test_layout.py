"""The run folder's layout read by both halves: which kind a folder is, one answer for every command;
reading never writes; the settings a run goes on with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphs.run import main
from runner.layout import DIALOGUES, RunFiles, run_kind
from state.config import Settings


def _folder(tmp_path: Path, config: object) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    (run / DIALOGUES).write_text('{"id": "a", "messages": [], "metadata": {}}\n')
    return run


@pytest.mark.parametrize("command", ["toolprep", "reasoning", "ablate", "optimize"])
def test_every_command_refuses_a_folder_of_another_kind_in_the_same_words(tmp_path, capsys, command):
    run = _folder(tmp_path, {"command": command, "run_id": "x"})
    assert run_kind(run) == command
    errors = []
    for argv in (["export", str(run), "--format", "openai", "--out", str(tmp_path / "out")],
                 ["report", str(run), "--out", str(tmp_path / "report.html")],
                 ["history", str(run), "--dialogue", "a"]):
        assert main(argv) == 2
        errors.append(capsys.readouterr().err.strip())
    assert all(f"is a {command} run folder" in e and e.count("\n") == 0 for e in errors), errors
    assert not (tmp_path / "out").exists() and not (tmp_path / "report.html").exists()


def test_a_dialogue_run_and_no_run_at_all(tmp_path):
    assert run_kind(_folder(tmp_path, {"run_id": "x", "pipeline": "user"})) == "dialogues"
    assert run_kind(tmp_path / "nowhere") is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{bad")
    assert run_kind(tmp_path / "broken") is None


def test_reading_passes_over_a_torn_last_line_and_leaves_the_file_as_it_is(tmp_path):
    path = tmp_path / DIALOGUES
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "mes')
    before = path.read_bytes()
    assert [r["id"] for r in RunFiles(tmp_path).iter_lines(DIALOGUES)] == ["a", "b"]
    assert RunFiles(tmp_path).finished_ids() == {"a", "b"}
    assert path.read_bytes() == before


def test_a_run_goes_on_with_its_recorded_settings_or_the_given_ones_keeping_its_checkpoints():
    recorded = Settings(backend="offline", checkpoints="final", max_tools=12).public()
    assert Settings.of_run(recorded) == Settings(backend="offline", checkpoints="final", max_tools=12)
    given = Settings(backend="openai", base_url="http://127.0.0.1:9/v1")
    merged = Settings.of_run(recorded, given)
    assert merged.backend == "openai" and merged.checkpoints == "final" and merged.max_tools == given.max_tools
    assert Settings.of_run({"backend": "offline", "model": None}).model == Settings().model  # None: the default


def test_a_new_run_is_named_by_what_it_is_its_seed_and_when_it_started():
    import time

    from runner.run_folder import default_run_dir, run_name

    started = time.strptime("2026-01-02 03:04:05", "%Y-%m-%d %H:%M:%S")
    assert run_name("clinic", "dialogue", seed=3, started=started) == "clinic-dialogue-s3-20260102-030405"
    assert run_name("eval", "clinic-six", "gpt-4o", seed=0, started=started) == "eval-clinic-six-gpt-4o-s0-20260102-030405"
    assert default_run_dir("toolprep", "bookstore", seed=1).parent == Path("runs")
