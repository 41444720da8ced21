"""Verified runs end to end: offline on the bundled database and on simulated tools, `verify RUN` on them and on
hand-edited copies, and the LLM path through the stub server (plan check, state check, statistics)."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from graphs.run import main
from tests.conftest import CLINIC
from tests.golden.make import SEEDS
from tests.stub_server import ScriptedResponder, StubServer


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _quiet(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verified") / "run"
    code, _ = _quiet(["generate", "--db", str(CLINIC), "--dialogues", "4", "--seed", "5", "--out", str(out)])
    assert code == 0
    return out


def test_offline_valid_dialogues_match_their_state_and_tell_every_fact(offline_run):
    lines = _lines(offline_run / "dialogues.jsonl")
    assert lines
    writes = 0
    for line in lines:
        entries = line["metadata"]["verification"]
        assert len(entries) == len(line["metadata"]["tasks"])
        for entry in entries:
            assert entry["verification"]["state"] == "match" and entry["verification"]["valid"]
            assert entry["facts"] and all(f["told"] for f in entry["facts"])
            assert entry["real_diff"] in entry["goal_diff"] or entry["verification"]["alternative"] is not None
            writes += bool(entry["real_diff"]["tables"])
    assert writes, "some tasks changed the database, and their diffs matched"
    stats = json.loads((offline_run / "stats.json").read_text())
    every = lines + _lines(offline_run / "rejected.jsonl")
    assert stats["plan_refusals"] == sum(len(t["expected"]["refused"]) for r in every for t in r["metadata"]["tasks"])
    assert stats["state_matches"] == stats["tasks_verified"] > 0
    assert stats["facts_told"] == stats["facts_required"] > 0
    assert stats["judge_vs_state"]["judge pass / state pass"] == stats["tasks_verified"]


def test_verify_holds_on_an_offline_run(offline_run):
    code, printed = _quiet(["verify", str(offline_run)])
    assert code == 0, printed
    assert "4 of 4 dialogues hold" in printed


def test_verify_fails_on_a_hand_edited_tool_result_naming_the_dialogue_and_the_call(offline_run, tmp_path):
    copy = tmp_path / "edited"
    shutil.copytree(offline_run, copy)
    lines = _lines(copy / "dialogues.jsonl")
    target = lines[2]
    message = next(m for m in target["messages"] if m["role"] == "tool" and json.loads(m["content"]).get("rows"))
    content = json.loads(message["content"])
    first = content["rows"][0]
    column = next(k for k, v in first.items() if isinstance(v, str))
    first[column] += " (edited)"
    message["content"] = json.dumps(content)
    (copy / "dialogues.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, printed = _quiet(["verify", str(copy)])
    assert code == 1
    flat = " ".join(printed.split())
    assert f"{target['id']}: call {message['tool_call_id']}" in flat
    assert "3 of 4 dialogues hold" in flat


def test_simulated_tools_are_checked_on_the_simulators_world(tmp_path):
    (tmp_path / "seeds.json").write_text(json.dumps(SEEDS))
    assert _quiet(["toolprep", "--tools", str(tmp_path / "seeds.json"), "--domain", "online bookstore", "--seed", "12",
                   "--out", str(tmp_path / "tools")])[0] == 0
    out = tmp_path / "run"
    assert _quiet(["generate", "--toolset", str(tmp_path / "tools" / "toolset.json"), "--dialogues", "3",
                   "--seed", "12", "--out", str(out)])[0] == 0
    lines = _lines(out / "dialogues.jsonl")
    written = [(line, e) for line in lines for e in line["metadata"]["verification"] if e["real_diff"]["tables"]]
    assert written, "simulated writes show in the world's diff"
    assert all(e["verification"]["state"] == "match" for line in lines for e in line["metadata"]["verification"])
    assert _quiet(["verify", str(out)])[0] == 0
    # the write's arguments edited by hand: the recomputed world diff no longer matches the goal
    line, entry = written[0]
    (table,) = entry["real_diff"]["tables"]
    change = entry["real_diff"]["tables"][table]["updated"][0]["changes"]
    column = next(iter(change))
    for message in line["messages"]:
        for call in message.get("tool_calls") or []:
            args = json.loads(call["function"]["arguments"])
            if args.get(column) == change[column]["new"]:
                call["function"]["arguments"] = json.dumps({**args, column: "tampered"})
    (out / "dialogues.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, printed = _quiet(["verify", str(out)])
    assert code == 1 and f"{line['id']}: task {entry['task'] + 1}: state mismatch" in " ".join(printed.split())


def test_the_llm_path_through_the_stub_server(tmp_path):
    """JSON only under response_format: a first task whose plan calls no real tool is refused and fed back, the
    stub's next one passes; every task's state is checked; the statistics rows show both."""
    bad = {"goal": "A customer wants to check a record.", "difficulty": "easy",
           "subtasks": [{"description": "Look it up.", "ask": "Could you look it up?",
                         "steps": [[{"tool": "no_such_tool", "arguments": {}}]]}]}
    responder = ScriptedResponder([])
    sent: list[dict] = []

    def answer(request: dict):
        sent.append(request)
        first = request["messages"][0]["content"] if request.get("messages") else ""
        if isinstance(first, str) and first.startswith("You write goals") and not any(
                r["messages"][0]["content"].startswith("You write goals") for r in sent[:-1]):
            return json.dumps(bad)
        return responder(request)

    out = tmp_path / "llm"
    with StubServer(answer) as server:
        code, printed = _quiet(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                                "--base-url", server.base_url, "--model", "stub-model", "--structured", "json_schema",
                                "--concurrency", "1", "--out", str(out)])
    assert code == 0, printed
    json_roles = [r for r in sent if str(r["messages"][0]["content"]).startswith(
        ("You write goals", "You play a person", "You review one finished conversation"))]
    assert json_roles and all(r.get("response_format", {}).get("type") == "json_schema" for r in json_roles)
    task_requests = [r for r in sent if str(r["messages"][0]["content"]).startswith("You write goals")]
    assert "Your previous task was refused" in task_requests[1]["messages"][0]["content"]
    assert "no_such_tool" in task_requests[1]["messages"][0]["content"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["plan_refusals"] == 1
    assert stats["tasks_verified"] == 2 and stats["state_matches"] == 2
    assert stats["facts_required"] > 0
    flat = " ".join(printed.split())
    assert "Tasks refused at the plan check │ 1" in flat and "State match rate │ 2/2 (100%)" in flat


def test_verify_runs_on_a_dataset_whose_database_lives_elsewhere(offline_run, tmp_path):
    """A dataset given to someone else: the lines' database path is not on their machine; --db names their copy."""
    copy = tmp_path / "given"
    shutil.copytree(offline_run, copy)
    lines = _lines(copy / "dialogues.jsonl")
    for line in lines:
        line["metadata"]["source_database"] = "/nowhere/clinic.sqlite"
    (copy / "dialogues.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert _quiet(["verify", str(copy)])[0] == 2
    local = tmp_path / "mine.sqlite"
    shutil.copy(CLINIC, local)
    code, printed = _quiet(["verify", str(copy), "--db", str(local)])
    assert code == 0, printed
