"""`--workers auto`, the default: the rule, what `generate --help` says, and the line a run prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphs.run import main
from runner.workers import DIALOGUES_PER_WORKER, auto_workers
from state.config import Settings

CLINIC = Path(__file__).resolve().parent.parent / "examples" / "clinic.sqlite"
LLM = Settings(backend="openai", base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize(("concurrency", "cores", "expected"), [
    (1, 16, 1), (8, 16, 1), (DIALOGUES_PER_WORKER, 16, 1), (DIALOGUES_PER_WORKER + 1, 16, 2), (32, 16, 2),
    (128, 16, 8), (128, 2, 2), (512, 64, 32), (32, 1, 1)])
def test_a_model_server_gets_a_process_per_16_dialogues_in_flight_up_to_the_cores(concurrency, cores, expected):
    choice = auto_workers(LLM, concurrency, cores=cores)
    assert choice.workers == expected
    assert f"concurrency {concurrency}" in choice.reason and f"{cores} core" in choice.reason


@pytest.mark.parametrize("settings", [Settings(backend="offline"), Settings(backend="scripted"),
                                      LLM.model_copy(update={"executor": "ray"})])
def test_offline_registered_backends_and_ray_keep_one_process(settings):
    assert auto_workers(settings, 128, cores=64).workers == 1


def test_generate_help_shows_auto_as_the_default(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["generate", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--workers auto|N" in text and "auto (the default)" in text
    assert f"ceil(concurrency / {DIALOGUES_PER_WORKER})" in text


def test_a_run_prints_and_records_what_auto_chose(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                 "--concurrency", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "workers: 1 (auto: the offline backend runs in this process" in " ".join(printed.split())
    assert json.loads((out / "config.json").read_text())["workers"] == 1


def test_a_given_count_is_printed_as_given(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--tasks-per-dialogue", "1",
                 "--workers", "1", "--out", str(out)]) == 0
    assert "workers: 1 (as given)" in capsys.readouterr().out


@pytest.mark.parametrize("given", ["0", "two", "-3"])
def test_a_bad_count_is_one_line_and_nothing_written(tmp_path, capsys, given):
    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--workers", given, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--workers must be auto or a whole number" in err
    assert not out.exists()
