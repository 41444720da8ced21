"""The LLM path end to end, with no network: the real ChatOpenAI client against a local
OpenAI-compatible stub server, through the CLI, the graph, the tool sandbox and the run folder."""

from __future__ import annotations

import json

from graphs.run import main
from tests.clinic_model import ClinicModel
from tests.roles import role_of_request
from tests.conftest import CLINIC
from tests.stub_server import StubServer


def test_generate_through_a_local_openai_compatible_server(tmp_path):
    model = ClinicModel(CLINIC)
    out = tmp_path / "llm-run"
    with StubServer(model) as server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub-model", "--concurrency", "2", "--out", str(out)])
        requests = list(server.requests)
    assert code == 0
    report = json.loads((out / "toolset_report.json").read_text())
    assert report["repaired"] == 1, "the broken proposal is repaired once with the error fed back"
    assert [d["name"] for d in report["dropped"]] == ["no sql at all"]
    assert all(t["origin"] == "model" for t in report["tools"])

    records = [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["metadata"]["backend"] == "openai" and record["metadata"]["model"] == "stub-model"
        assert record["metadata"]["usage"]["completion_tokens"] > 0
        tool_messages = [json.loads(m["content"]) for m in record["messages"] if m["role"] == "tool"]
        assert tool_messages and all(t["rows"][0]["last_name"] == "Garcia" for t in tool_messages)
        assert sum(m["role"] == "user" for m in record["messages"]) == 3
    # the assistant was offered our tools in OpenAI wire format
    with_tools = [r for r in requests if r.get("tools")]
    assert with_tools and with_tools[0]["tools"][0]["type"] == "function"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["tokens_per_second"] and stats["tokens_per_second"] > 0


def test_a_model_that_never_returns_valid_json_is_a_clean_rejection(tmp_path, capsys):
    class Broken(ClinicModel):
        def __call__(self, request):
            if role_of_request(request) == "user_simulator":
                return "I would rather not answer in JSON."
            return super().__call__(request)

    out = tmp_path / "broken-run"
    with StubServer(Broken(CLINIC)) as server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub-model", "--out", str(out)])
    assert code == 1  # dialogues were rejected cleanly, but a run with no valid dialogue failed
    assert "no dialogue was valid" in capsys.readouterr().err
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 2
    assert all("BackendOutputError" in r["reason"] for r in rejected)


def test_a_weak_model_still_yields_a_usable_toolset(tmp_path, caplog):
    class Weak(ClinicModel):
        def __init__(self, database):
            super().__init__(database)
            self.proposals = [p for p in self.proposals if p.get("name") == "search_owners_by_last_name"]

    out = tmp_path / "weak-run"
    with StubServer(Weak(CLINIC)) as server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub-model", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "toolset_report.json").read_text())
    assert report["completed_from_schema"] and "completing the toolset" in report["notes"][0]
    origins = {t["origin"] for t in report["tools"]}
    assert origins == {"model", "schema"}
    assert any(t["mode"] == "write" for t in report["tools"])
