"""The LLM path against servers that behave like real ones: JSON only under response_format, a server
that refuses json_schema (llama.cpp), reasoning fields, faults, several endpoints and per-role models.
Every run goes through the CLI, the real ChatOpenAI client and a local HTTP stub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from graphs.run import main
from tests.clinic_model import ClinicModel
from tests.conftest import CLINIC
from tests.real_servers import ServerLike
from tests.reasoning_support import CORPUS, SCENARIO, play_every_role
from tests.roles import role_of_request
from tests.stub_server import StubServer, content_text

JSON_ROLES = ("task_generator", "user_simulator", "validator", "tool_synthesizer")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def generate(server: StubServer, out: Path, *extra: str, dialogues: int = 4) -> int:
    return main(["generate", "--db", str(CLINIC), "--dialogues", str(dialogues), "--tasks-per-dialogue", "1",
                 "--base-url", server.base_url, "--model", "stub-model", "--concurrency", "4", "--out", str(out),
                 *extra])


def first_text(request: dict) -> str:
    return content_text(request["messages"][0].get("content"))


# ---------------------------------------------------------------- JSON only under response_format

@pytest.mark.parametrize("fault_rate", [0.0, 0.1])
def test_generate_against_a_server_that_gives_json_only_when_asked(tmp_path, fault_rate):
    server_like = ServerLike(ClinicModel(CLINIC), fault_rate=fault_rate, seed=3)
    out = tmp_path / "run"
    with StubServer(server_like) as server:
        assert generate(server, out, dialogues=6) == 0
        requests = list(server.requests)
    accepted, rejected = lines(out / "dialogues.jsonl"), lines(out / "rejected.jsonl")
    assert len(accepted) + len(rejected) == 6 and len(accepted) == 6  # every dialogue accounted for, all valid
    json_requests = [r for r in requests if role_of_request(r) in JSON_ROLES]
    assert json_requests and all(r["response_format"]["type"] == "json_schema" for r in json_requests)
    schema = next(r for r in json_requests if role_of_request(r) == "user_simulator")["response_format"]
    assert schema["json_schema"]["schema"]["required"] == ["user_message"]  # the UserTurn model's schema
    assert all("response_format" not in r for r in requests if r.get("tools"))  # the assistant talks freely
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["structured_outputs"].values()) == {"json_schema"}
    if fault_rate:
        assert sum(server_like.faults.values()) > 0
        # a cut-off reply is fed back once and then parses: counted, never fatal
        assert stats["parse_failures"] <= server_like.faults["cut"] and stats["failed"] == 0
    else:
        assert stats["parse_failures"] == 0


def test_without_structured_outputs_the_same_server_gives_prose_and_nothing_parses(tmp_path, capsys):
    """What the structured modes fix: with `--structured prompt` that server's replies never parse."""
    out = tmp_path / "run"
    with StubServer(ServerLike(ClinicModel(CLINIC))) as server:
        assert generate(server, out, "--structured", "prompt", dialogues=2) == 1
        assert not any("response_format" in r for r in server.requests)
    assert "the reply contains no JSON object" in capsys.readouterr().err
    assert not (out / "dialogues.jsonl").exists()


@pytest.mark.parametrize("status", [400, 500])  # 500: how llama-cpp-python's server refuses json_schema
def test_a_server_that_refuses_json_schema_settles_on_json_object_after_one_probe(tmp_path, capsys, status):
    server_like = ServerLike(ClinicModel(CLINIC), accept=("json_object",), refuse_status=status)
    out = tmp_path / "run"
    with StubServer(server_like) as server:
        assert generate(server, out) == 0
        requests = list(server.requests)
    printed = " ".join(capsys.readouterr().out.split())  # as one line, however the console wrapped it
    assert "structured outputs: json_object" in printed and f"json_schema refused with HTTP {status}" in printed
    assert server_like.formats.count("json_schema") == 1 and server_like.refused == 1  # the one probe
    json_requests = [r for r in requests if role_of_request(r) in JSON_ROLES]
    assert json_requests and all(r["response_format"]["type"] == "json_object" and
                                 r["response_format"]["schema"]["type"] == "object" for r in json_requests)
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["structured_outputs"].values()) == ["json_object"] and stats["parse_failures"] == 0
    assert len(lines(out / "dialogues.jsonl")) == 4


def test_toolprep_against_a_server_that_gives_json_only_when_asked(tmp_path):
    from tests.toolprep_model import SEEDS, prep_model_of_request

    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps(SEEDS[:1]))
    out = tmp_path / "prep"
    with StubServer(ServerLike(prep_model_of_request, accept=("json_object",))) as server:
        assert main(["toolprep", "--tools", str(seeds), "--domain", "bank", "--base-url", server.base_url,
                     "--model", "stub", "--out", str(out)]) == 0
    report = json.loads((out / "toolprep_report.json").read_text())
    assert list(report["structured_outputs"].values()) == ["json_object"]
    assert json.loads((out / "toolset.json").read_text())  # a toolset was written


def test_reasoning_against_a_server_that_gives_json_only_when_asked(tmp_path):
    def responder(request: dict) -> str:
        return play_every_role([HumanMessage(content=content_text(m.get("content"))) for m in request["messages"]])

    out = tmp_path / "reasoning"
    server_like = ServerLike(responder, fault_rate=0.1, seed=5)
    with StubServer(server_like) as server:
        code = main(["reasoning", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--users", "2",
                     "--dialogues", "2", "--base-url", server.base_url, "--model", "stub", "--max-rounds", "0",
                     "--out", str(out)])
    assert code == 0
    items = lines(out / "items.jsonl")
    assert len(items) == 2 and all(item["question"] for item in items)
    assert "json_schema" in server_like.formats and "none" in server_like.formats  # JSON roles / the assistant


# ---------------------------------------------------------------- reasoning traces

@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "think"])
def test_reasoning_is_kept_on_the_assistant_messages_and_never_sent_again(tmp_path, field):
    server_like = ServerLike(ClinicModel(CLINIC), reasoning=field)
    out = tmp_path / "run"
    with StubServer(server_like) as server:
        assert generate(server, out, dialogues=2) == 0
        requests = list(server.requests)
    kept = [m["reasoning_content"] for record in lines(out / "dialogues.jsonl") for m in record["messages"]
            if m["role"] == "assistant" and m.get("reasoning_content")]
    assistant_messages = [m for record in lines(out / "dialogues.jsonl") for m in record["messages"]
                          if m["role"] == "assistant"]
    assert kept and len(kept) == len(assistant_messages)  # every assistant message has its own
    assert all(k.startswith("thinking-") for k in kept)
    assert not any("<think>" in (m["content"] or "") for m in assistant_messages)
    wire = [json.dumps(r) for r in requests]
    for trace in server_like.traces:  # no later request, of any role, carries any trace
        assert not any(trace in body for body in wire)
    only_user_and_assistant = [m for r in lines(out / "dialogues.jsonl") for m in r["messages"]
                               if m["role"] != "assistant" and "reasoning_content" in m]
    assert not only_user_and_assistant


def test_reasoning_drop_leaves_no_trace_in_the_dataset(tmp_path):
    with StubServer(ServerLike(ClinicModel(CLINIC), reasoning="reasoning_content")) as server:
        assert generate(server, tmp_path / "run", "--reasoning", "drop", dialogues=1) == 0
    assert "reasoning_content" not in (tmp_path / "run" / "dialogues.jsonl").read_text()


# ---------------------------------------------------------------- several endpoints, per-role models

def test_requests_spread_over_endpoints_and_the_user_runs_on_its_own(tmp_path):
    out = tmp_path / "run"
    with StubServer(ClinicModel(CLINIC)) as a, StubServer(ClinicModel(CLINIC)) as b, \
            StubServer(ClinicModel(CLINIC)) as user_server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "6", "--tasks-per-dialogue", "1",
                     "--base-url", a.base_url, "--base-url", b.base_url, "--model", "big",
                     "--model-for", f"user=small@{user_server.base_url}", "--concurrency", "4", "--out", str(out)])
        counts = {"a": a.request_count, "b": b.request_count}
        user_requests = [role_of_request(r) for r in user_server.requests]
        default_requests = [role_of_request(r) for r in [*a.requests, *b.requests]]
        user_models = {r["model"] for r in user_server.requests}
    assert code == 0
    total = counts["a"] + counts["b"]
    assert min(counts.values()) >= 0.3 * total, counts  # a fair share each
    simulator_turns = [u for u in user_requests if u == "user_simulator"]
    assert simulator_turns and len(simulator_turns) == len(user_requests) - 1  # and the one structured probe
    assert "user_simulator" not in default_requests
    assert user_models == {"small"}
    record = lines(out / "dialogues.jsonl")[0]
    assert record["metadata"]["models"] == {"assistant": "big", "user": "small", "judge": "big", "generator": "big"}


def test_an_endpoint_that_always_fails_is_rested_and_the_run_completes_on_the_other(tmp_path):
    broken = ServerLike(ClinicModel(CLINIC), always_fail=True)
    out = tmp_path / "run"
    with StubServer(broken) as bad, StubServer(ClinicModel(CLINIC)) as good:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "4", "--tasks-per-dialogue", "1",
                     "--base-url", bad.base_url, "--base-url", good.base_url, "--concurrency", "2",
                     "--out", str(out)])
        bad_count, good_count = bad.request_count, good.request_count
    assert code == 0
    assert len(lines(out / "dialogues.jsonl")) == 4 and not lines(out / "rejected.jsonl")
    assert good_count > 10 * bad_count  # rested after a few failures; the other carried the run


def test_a_bad_model_for_is_one_line_and_exit_2(capsys):
    code = main(["generate", "--db", str(CLINIC), "--model-for", "narrator=big"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_for" in err


def test_a_run_closes_its_http_connections(tmp_path, monkeypatch):
    """A command leaves no HTTP session open behind it: a process that runs several (a notebook, the
    benchmarks) would otherwise keep their sockets, and aiohttp complains when it finds them."""
    import aiohttp

    opened: list[aiohttp.ClientSession] = []
    original = aiohttp.ClientSession.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", recording)
    with StubServer(ServerLike(ClinicModel(CLINIC))) as server:
        assert generate(server, tmp_path / "run", dialogues=2) == 0
    assert lines(tmp_path / "run" / "dialogues.jsonl")
    assert opened and all(session.closed for session in opened)
