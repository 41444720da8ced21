"""MCP tools through the LLM path (the local stub server): offered to the model, its calls executed on the
dialogue's own server; a server whose writes replay differently is reported on resume and a fork past it refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rich.console import Console

from environment.sources.mcp import loop
from graphs.dialogue import build_dialogue_graph
from graphs.run import main
from runner.checkpoints import DialogueCheckpoints
from tests.conftest import CLINIC
from tests.mcp_helpers import EXAMPLE, FAULTS, by_pid
from tests.stub_server import StubServer, stub_agent

SERVERS = EXAMPLE / "servers.json"


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
            for line in (out / name).read_text().splitlines()]


def _llm(server: StubServer) -> list[str]:
    return ["--base-url", server.base_url, "--model", "stub-model", "--tasks-per-dialogue", "1"]


def test_the_model_is_offered_the_servers_tools_and_its_calls_run_on_the_server(tmp_path, monkeypatch):
    log = tmp_path / "library.log"
    monkeypatch.setenv("LIBRARY_LOG", str(log))
    out = tmp_path / "run"
    with StubServer(stub_agent) as server:
        # the stub's assistant answers the first thing it can and stops: the state check may well reject it
        assert main(["generate", "--mcp", str(SERVERS), "--dialogues", "2", *_llm(server), "--out", str(out)]) in (0, 1)
        requests = list(server.requests)
    loop.settle()
    offered = {t["function"]["name"] for r in requests for t in r.get("tools") or []}
    assert {"library__search_books", "library__lend_book", "library__get_book"} <= offered
    records = _lines(out)
    assert len(records) == 2
    for record in records:  # judged by what the server's state shows, not by the judge's word
        assert "reason" not in record or "state mismatch" in record["reason"] or "facts not told" in record["reason"]
    ran = [(e["tool"], e["arguments"].get("author")) for events in by_pid(log).values() for e in events
           if e["event"] == "call"]
    for record in records:
        results = [json.loads(m["content"]) for m in record["messages"] if m["role"] == "tool"]
        assert results and all(isinstance(r["books"], list) for r in results), "the server's answer, not made up"
        asked = [(c["function"]["name"].split("__")[1], json.loads(c["function"]["arguments"]).get("author"))
                 for m in record["messages"] for c in m.get("tool_calls") or []]
        assert asked and all(call in ran for call in asked), "every call the model made ran on the server"


def _ticket_agent(request: dict) -> dict | str:
    """The stub agent, but the assistant takes a ticket (a write whose number is not reproducible)."""
    messages = request.get("messages", [])
    first = str(messages[0].get("content")) if messages else ""
    if first.startswith("You write goals for a simulated user") and "faults__echo" in first:
        # the only task these tools carry whose plan runs the same twice: an echo (a ticket's number differs)
        return json.dumps({"goal": "A visitor wants a word echoed back.", "difficulty": "easy", "subtasks": [
            {"description": "The user wants 'desk' echoed.", "ask": "Could you echo desk for me?",
             "steps": [[{"tool": "faults__echo", "arguments": {"text": "desk"}}]]}],
            "rubric": {"success_criteria": ["The echo is reported."]}})
    names = {t["function"]["name"] for t in request.get("tools") or []}
    if "faults__ticket" in names and messages and messages[-1].get("role") == "user" \
            and "that's all" not in str(messages[-1].get("content")).lower():
        return {"tool_calls": [{"name": "faults__ticket", "arguments": {"queue": "desk"}}]}
    return stub_agent(request)


async def _after_ticket(out: Path, dialogue: str) -> tuple[str, str]:
    """A checkpoint past the ticket call, and one before any call."""
    async with DialogueCheckpoints(out, build_dialogue_graph, None, Console(quiet=True)) as store:
        rows = await store.history(dialogue)
        states = [(row, await store.state(dialogue, row.checkpoint_id)) for row in rows]
    past = next(row.checkpoint_id for row, s in states if row.node == "tool_executor" and s.calls)
    before = next(row.checkpoint_id for row, s in states if row.node == "user_simulator" and not s.calls)
    return past, before


def test_a_divergent_server_is_reported_on_resume_and_a_fork_past_it_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FORGE_MCP_CALL_TIMEOUT", "1")  # its `hang` is probed with the read-only tools
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"faults": {
        "command": "python", "args": [str(FAULTS), "--counter", str(tmp_path / "counter")]}}}))
    out = tmp_path / "run"
    with StubServer(_ticket_agent) as server:
        assert main(["generate", "--mcp", str(servers), "--dialogues", "1", *_llm(server), "--out", str(out)]) in (0, 1)
        dialogue = _lines(out)[0]["id"]
        past, before = asyncio.run(_after_ticket(out, dialogue))
        capsys.readouterr()
        assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", past, *_llm(server)[:4]]) == 2
        assert "cannot fork" in capsys.readouterr().err
        assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", before, *_llm(server)[:4]]) == 0
        assert main(["resume", str(out), "--dialogue", dialogue, "--checkpoint", past, *_llm(server)[:4]]) == 0
    lines = [json.loads(line) for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
             for line in (out / name).read_text().splitlines()]
    resumed = next(r for r in lines if r["id"] == dialogue)
    assert resumed["metadata"]["replay_diverged"], "the replayed ticket gave another number"
    assert main(["stats", str(out)]) == 0
    # the resumed dialogue and the fork (which takes a ticket of its own): the validator replays each ticket
    assert json.loads((out / "stats.json").read_text())["replay_diverged"] == 2
    assert main(["show", str(out), "--dialogue", dialogue]) == 0
    assert "replay diverged" in capsys.readouterr().out


def _both_agent(request: dict) -> dict | str:
    """The stub agent, but the assistant calls one MCP tool and one SQL tool at once."""
    messages = request.get("messages", [])
    names = {t["function"]["name"] for t in request.get("tools") or []}
    if {"library__get_book", "get_pet"} <= names and messages and messages[-1].get("role") == "user" \
            and "that's all" not in str(messages[-1].get("content")).lower():
        return {"tool_calls": [{"name": "library__get_book", "arguments": {"book_id": 3}},
                               {"name": "get_pet", "arguments": {"pet_id": 1}}]}
    return stub_agent(request)


def test_with_a_database_each_dialogue_calls_sql_and_mcp_tools_each_on_its_own_sandbox(tmp_path):
    out = tmp_path / "run"
    with StubServer(_both_agent) as server:
        assert main(["generate", "--db", str(CLINIC), "--mcp", str(SERVERS), "--dialogues", "2", *_llm(server),
                     "--out", str(out)]) in (0, 1)  # the stub's assistant may fail the state check
    config = json.loads((out / "config.json").read_text())
    refs = config["databases"][0]["sources"]
    assert [(r["kind"], r["name"]) for r in refs] == [("sqlite", str(CLINIC)), ("mcp", f"mcp://{SERVERS}")]
    assert refs[0]["config"] == {} and "mcpServers" in refs[1]["config"]
    sources = {t["source"] for t in json.loads((out / "toolset.json").read_text())}
    assert sources == {"sqlite", "mcp"}
    records = _lines(out)
    assert len(records) == 2
    for record in records:
        results = {m["name"]: json.loads(m["content"]) for m in record["messages"] if m["role"] == "tool"}
        assert results["library__get_book"]["title"] == "Kindred"  # from the server
        assert results["get_pet"]["rows"][0]["pet_id"] == 1  # from the database's sandbox
