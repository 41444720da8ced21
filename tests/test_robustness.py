"""Damaged folders, moved databases, mismatched inputs: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graphs.run import main
from tests.conftest import CLINIC


def _one_line(capsys, code: int, expected: str, status: int = 2) -> None:
    err = capsys.readouterr().err.strip()
    assert code == status, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err, err


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("robust") / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--out", str(out)]) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


@pytest.mark.parametrize("url", ["http://localhost:abc/v1", "http://[::1/v1", "notaurl"])
def test_malformed_base_urls(tmp_path, capsys, url):
    out = tmp_path / "out"
    _one_line(capsys, main(["generate", "--db", str(CLINIC), "--base-url", url, "--out", str(out)]), "base-url")
    assert not out.exists()


def test_resume_when_the_database_has_moved(small_run, tmp_path, capsys):
    db = tmp_path / "moved.sqlite"
    shutil.copy(CLINIC, db)
    out = tmp_path / "run"
    assert main(["generate", "--db", str(db), "--dialogues", "2", "--out", str(out)]) == 0
    (out / "dialogues.jsonl").unlink()  # as if nothing was finished yet
    db.rename(tmp_path / "elsewhere.sqlite")
    _one_line(capsys, main(["resume", str(out)]), "database not found")
    assert not (out / "rejected.jsonl").exists(), "no dialogue may be rejected for a missing database"


def test_damaged_run_folders(small_run, tmp_path, capsys):
    run = _copy(small_run, tmp_path)
    (run / "checkpoints.sqlite").write_text("garbage")
    _one_line(capsys, main(["history", str(run), "--dialogue", "x"]), "not a SQLite checkpoint file")

    run2 = tmp_path / "two"
    shutil.copytree(small_run, run2)
    lines = (run2 / "dialogues.jsonl").read_text().splitlines()
    (run2 / "dialogues.jsonl").write_text(lines[0][:40] + "\n" + "\n".join(lines[1:]) + "\n")
    _one_line(capsys, main(["resume", str(run2)]), "line 1 is not JSON")

    run3 = tmp_path / "three"
    shutil.copytree(small_run, run3)
    (run3 / "config.json").write_text("{bad")
    _one_line(capsys, main(["resume", str(run3)]), "is not valid JSON")


def test_a_toolset_made_for_another_database(small_run, tmp_path, capsys):
    import sqlite3

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO things (name) VALUES (?)", [("a",), ("b",)])
    conn.commit(), conn.close()
    out = tmp_path / "out"
    _one_line(capsys, main(["generate", "--db", str(other), "--toolset", str(small_run / "toolset.json"),
                            "--out", str(out)]), "does not fit")
    assert not out.exists()


@pytest.mark.parametrize("conversation, expected", [
    ([{"role": "user"}], "needs text content"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c9", "content": "{}"}],
     "no assistant message made"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}], "never answered"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "{}"}], "JSON string"),
])
def test_conversations_an_endpoint_would_refuse(tmp_path, capsys, conversation, expected):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(conversation))
    out = tmp_path / "out"
    _one_line(capsys, main(["generate", "--db", str(CLINIC), "--from-conversation", str(path), "--out", str(out)]),
              expected)


def test_empty_fork_message_and_wrong_folder_kinds(small_run, tmp_path, capsys):
    run = _copy(small_run, tmp_path)
    dialogue = json.loads((run / "dialogues.jsonl").read_text().splitlines()[0])["id"]
    _one_line(capsys, main(["fork", str(run), "--dialogue", dialogue, "--checkpoint", "x", "--user-message", "  "]),
              "--user-message is empty")
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps([{"name": "get_user", "parameters": {"type": "object", "properties": {
        "user_id": {"type": "banana"}}}}]))
    _one_line(capsys, main(["toolprep", "--tools", str(seeds), "--domain", "shop", "--out", str(tmp_path / "p")]),
              "seed tool 0 (get_user)")
    _one_line(capsys, main(["toolprep", "--tools", str(seeds), "--domain", "  ", "--out", str(tmp_path / "q")]),
              "--domain")
    prep = tmp_path / "prep"
    prep.mkdir()
    (prep / "config.json").write_text(json.dumps({"command": "toolprep"}))
    _one_line(capsys, main(["history", str(prep), "--dialogue", "x"]), "is a toolprep run folder")
