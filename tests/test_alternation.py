"""Every dataset line alternates user and assistant turns and ends on the assistant's words, with both
backends, both pipelines, continued conversations and several tasks per dialogue; checked with a
strict chat template like those of models that refuse anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphs.run import main
from tests.chat_template import TemplateError, render_strict
from tests.conftest import CLINIC
from tests.stub_server import StubServer

GARCIA_CALL = {"id": "c1", "type": "function", "function": {
    "name": "search_owners_by_last_name", "arguments": "{\"last_name\": \"Garcia\"}"}}
PRELUDES = {
    "ends on the user": [{"role": "user", "content": "Hi, I run the front desk today."}],
    "ends on a tool result": [
        {"role": "system", "content": "You help the front desk of a veterinary clinic."},
        {"role": "user", "content": "Can you find the owner named Garcia?"},
        {"role": "assistant", "content": None, "tool_calls": [GARCIA_CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"rows\": [{\"owner_id\": 3, \"last_name\": \"Garcia\"}], "
                                                          "\"row_count\": 1}"}],
}


def _lines(run: Path) -> list[dict]:
    lines = []
    for name in ("dialogues.jsonl", "rejected.jsonl"):
        if (run / name).exists():
            lines += [json.loads(line) for line in (run / name).read_text().splitlines()]
    return lines


def test_the_check_refuses_what_datasets_used_to_hold():
    line = [{"role": "system", "content": "s"}, {"role": "user", "content": "Find Garcia."},
            {"role": "assistant", "content": None, "tool_calls": [GARCIA_CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "{}"},
            {"role": "assistant", "content": "Garcia lives in Springfield."}]
    render_strict(line)
    with pytest.raises(TemplateError, match="end with an assistant"):
        render_strict([*line, {"role": "user", "content": "That's everything I needed, thanks!"}])
    with pytest.raises(TemplateError, match="user after user"):
        render_strict([*line, {"role": "user", "content": "Thanks!"}, {"role": "user", "content": "Next task."},
                       {"role": "assistant", "content": "Sure."}])
    with pytest.raises(TemplateError, match="tool message"):
        render_strict([*line[:2], line[3], line[4]])
    with pytest.raises(TemplateError, match="neither text nor tool calls"):
        render_strict([*line[:2], {"role": "assistant", "content": ""}])


def test_offline_lines_alternate_and_close_on_the_assistant(offline_run):
    lines = _lines(offline_run)
    assert len(lines) == 20
    for record in lines:
        render_strict(record["messages"])
        messages = record["messages"]
        for start in record["metadata"]["task_message_starts"][1:]:
            # the task before closed with the user's thanks and the assistant's acknowledgement
            assert [m["role"] for m in messages[start - 1: start + 2]] == ["user", "assistant", "user"]
    stats = json.loads((offline_run / "stats.json").read_text())
    assert stats["turns_mean"] == pytest.approx(
        sum(len(r["messages"]) - 1 for r in lines if not r.get("reason")) /
        sum(1 for r in lines if not r.get("reason")), abs=0.01)


def test_offline_task_pipeline_alternates(tmp_path):
    out = tmp_path / "task-run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "3", "--tasks-per-dialogue", "2",
                 "--pipeline", "task", "--out", str(out)]) == 0
    for record in _lines(out):
        render_strict(record["messages"])


@pytest.mark.parametrize("shape", sorted(PRELUDES))
def test_continued_conversations_alternate(tmp_path, shape):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(PRELUDES[shape]))
    out = tmp_path / "continued"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "2",
                 "--from-conversation", str(path), "--out", str(out)]) == 0
    lines = _lines(out)
    assert len(lines) == 2
    for record in lines:
        assert record["messages"][: len(PRELUDES[shape])] == PRELUDES[shape]
        render_strict(record["messages"])
        # the assistant answers where the given conversation stopped, before the user speaks again
        assert record["messages"][len(PRELUDES[shape])]["role"] == "assistant"


@pytest.mark.parametrize("prelude", [None, "ends on the user"])
def test_openai_backend_lines_alternate(tmp_path, prelude):
    args = []
    if prelude:
        path = tmp_path / "chat.json"
        path.write_text(json.dumps(PRELUDES[prelude]))
        args = ["--from-conversation", str(path)]
    out = tmp_path / "llm-run"
    with StubServer() as server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "2",
                     "--base-url", server.base_url, "--model", "stub-model", "--concurrency", "2",
                     "--out", str(out), *args])
        requests = list(server.requests)
    assert code == 0
    lines = _lines(out)
    assert len(lines) == 2
    for record in lines:
        render_strict(record["messages"])
        assert record["messages"][-1]["content"] == "You're welcome, glad I could help."
    # the closing acknowledgement came from the model: a request whose last message is the user's thanks
    closings = [r for r in requests if r.get("tools") and r["messages"][-1]["role"] == "user"
                and "that's all" in r["messages"][-1]["content"].lower()]
    assert len(closings) == 4  # one per task
    # llama.cpp's server refuses a null content: a message that only calls tools goes out with ""
    sent = [m for r in requests for m in r["messages"] if m["role"] == "assistant"]
    assert any(m.get("tool_calls") for m in sent) and all(isinstance(m["content"], str) for m in sent)


def test_a_conversation_out_of_turn_is_refused(tmp_path, capsys):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([{"role": "user", "content": "Hi"}, {"role": "user", "content": "Anyone?"}]))
    out = tmp_path / "never"
    assert main(["generate", "--db", str(CLINIC), "--from-conversation", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "must follow an assistant reply" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_reasoning_items_alternate_and_close_on_the_assistant():
    from tests.reasoning_support import items, reasoning_run

    out, code, _ = reasoning_run()
    assert code == 0
    records = items(out)
    assert len(records) == 12
    for record in records:
        render_strict(record["messages"])
