"""Start from any state: inspect, resume and fork dialogues by checkpoint id; continue a conversation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from graphs.run import main
from tests.clinic_model import ClinicModel
from tests.checkpoint_support import dataset_lines, first_write_then_read, history, replays, write_then_read
from tests.conftest import CLINIC
from tests.stub_server import StubServer


@pytest.fixture()
def run(tmp_path) -> Path:
    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "3", "--seed", "11", "--out", str(out)]) == 0
    return out


def test_history_lists_every_checkpoint_and_show_cuts_at_one(run, capsys):
    dialogue = next(iter(dataset_lines(run)))
    rows, states = asyncio.run(history(run, dialogue))
    assert [r.step for r in rows] == list(range(-1, len(rows) - 1))
    assert rows[0].node == "input" and rows[-1].next == "END"
    assert {"prepare", "task_generator", "user_simulator", "assistant", "tool_executor", "validator"} <= \
        {r.node for r in rows}
    assert main(["history", str(run), "--dialogue", dialogue]) == 0
    printed = capsys.readouterr().out
    assert all(r.checkpoint_id in printed for r in rows)

    final = states[rows[-1].checkpoint_id].messages
    mid = rows[len(rows) // 2]
    at_mid = states[mid.checkpoint_id].messages
    assert 0 < len(at_mid) < len(final) and at_mid == final[: len(at_mid)]
    assert main(["show", str(run), "--dialogue", dialogue, "--checkpoint", mid.checkpoint_id]) == 0
    shown = capsys.readouterr().out
    assert at_mid[-1].text[:30] in shown or at_mid[-1].type == "ai"
    last_user_after = next((m for m in final[len(at_mid):] if m.type == "human"), None)
    if last_user_after is not None:
        assert last_user_after.text[:40] not in shown
    assert "writes applied so far" in shown


def test_fork_after_a_write_rebuilds_the_sandbox(run):
    records = dataset_lines(run)
    found = first_write_then_read(run, records)
    assert found, "no dialogue wrote and then read"
    dialogue, _, checkpoint = found
    assert main(["fork", str(run), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "123"]) == 0
    after = dataset_lines(run)
    forks = [r for r in after.values() if r["metadata"].get("forked_from")]
    assert len(forks) == 1 and len(after) == len(records) + 1
    fork = forks[0]
    assert fork["metadata"]["forked_from"] == {"dialogue": dialogue, "checkpoint": checkpoint}
    assert fork["metadata"]["seed"] == 123
    replays(run, fork)


def test_resume_from_a_checkpoint_replaces_the_line(run):
    records = dataset_lines(run)
    dialogue = next(iter(records))
    rows, states = asyncio.run(history(run, dialogue))
    checkpoint = write_then_read(rows, states) if any(
        r.node == "tool_executor" and states[r.checkpoint_id].calls[-1:] and
        states[r.checkpoint_id].calls[-1].mode == "write" for r in rows) else rows[len(rows) // 2].checkpoint_id
    assert main(["resume", str(run), "--dialogue", dialogue, "--checkpoint", checkpoint]) == 0
    after = dataset_lines(run)
    assert set(after) == set(records)
    assert after[dialogue]["messages"] == records[dialogue]["messages"]  # same seed: the same continuation
    replays(run, after[dialogue])


def test_fork_with_a_user_message_changes_course_and_keeps_the_past(run):
    records = dataset_lines(run)
    dialogue = next(iter(records))
    rows, states = asyncio.run(history(run, dialogue))
    row = next(r for r in rows[5:] if r.next == "user_simulator" and r.node == "assistant")
    kept = len(states[row.checkpoint_id].messages)
    text = "Actually, forget that. Which invoices are still unpaid?"
    assert main(["fork", str(run), "--dialogue", dialogue, "--checkpoint", row.checkpoint_id,
                 "--user-message", text]) == 0
    fork = next(r for r in dataset_lines(run).values() if r["metadata"].get("forked_from"))
    original = records[dialogue]["messages"]
    assert fork["messages"][: kept + 1] == original[: kept + 1]  # +1: the system message
    assert fork["messages"][kept + 1] == {"role": "user", "content": text}
    assert fork["messages"][kept + 1] != original[kept + 1]


def test_user_message_needs_a_user_turn_next(run, capsys):
    dialogue = next(iter(dataset_lines(run)))
    rows, _ = asyncio.run(history(run, dialogue))
    row = next(r for r in rows if r.next == "tool_executor")
    assert main(["fork", str(run), "--dialogue", dialogue, "--checkpoint", row.checkpoint_id,
                 "--user-message", "hi"]) == 2
    assert "needs a checkpoint whose next step is the user simulator" in capsys.readouterr().err


def test_unknown_dialogue_or_checkpoint(run, capsys):
    assert main(["history", str(run), "--dialogue", "nope"]) == 2
    dialogue = next(iter(dataset_lines(run)))
    assert main(["resume", str(run), "--dialogue", dialogue, "--checkpoint", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no dialogue 'nope'" in err and "has no checkpoint 'nope'" in err


def test_cached_replay_makes_no_model_calls(tmp_path):
    out = tmp_path / "cached"
    with StubServer(ClinicModel(CLINIC)) as server:
        assert main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--tasks-per-dialogue", "1", "--cache",
                     "--base-url", server.base_url, "--model", "stub-model", "--out", str(out)]) == 0
        calls = server.request_count
        record = next(iter(dataset_lines(out).values()))
        rows, _ = asyncio.run(history(out, record["id"]))
        checkpoint = next(r for r in rows if r.node == "task_generator").checkpoint_id
        assert main(["resume", str(out), "--dialogue", record["id"], "--checkpoint", checkpoint, "--cache"]) == 0
        assert server.request_count == calls, "the replay asked the model again"
    assert (out / "llm_cache.sqlite").exists()
    assert dataset_lines(out)[record["id"]]["messages"] == record["messages"]


def test_continue_a_given_conversation(tmp_path):
    conversation = [
        {"role": "system", "content": "You help the front desk of a veterinary clinic."},
        {"role": "user", "content": "Is Marcus Bell still working here?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "search_vets_by_full_name", "arguments": "{\"full_name\": \"Marcus Bell\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"rows\": [{\"vet_id\": 4, \"full_name\": \"Marcus Bell\", "
         "\"specialty\": \"Dentistry\", \"hired_on\": \"2016-04-25\", \"is_active\": 1}], \"row_count\": 1}"},
        {"role": "assistant", "content": "Yes, Marcus Bell (Dentistry) is active."},
    ]
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps(conversation))
    out = tmp_path / "continued"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                 "--from-conversation", str(path), "--out", str(out)]) == 0
    for record in dataset_lines(out).values():
        assert record["messages"][: len(conversation)] == conversation
        rest = record["messages"][len(conversation):]
        assert any(m["role"] == "user" for m in rest)
        assert any(m["role"] == "tool" and "rows" in json.loads(m["content"]) for m in rest)


def test_a_bad_conversation_file_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"content": "no role"}]))
    out = tmp_path / "never"
    assert main(["generate", "--db", str(CLINIC), "--from-conversation", str(path), "--out", str(out)]) == 2
    assert "valid role" in capsys.readouterr().err and not out.exists()
