"""Runs over MCP servers as a kind of tool source (`generate --mcp`): each dialogue on its own server process and
fresh copies, every call executed and recorded, faults ending one dialogue, resume and fork replaying writes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from environment.sources.base import CallContext
from environment.sources.mcp import loop
from environment.sources.pool import DialogueSandboxes
from environment.sources.registry import open_source
from graphs.dialogue import build_dialogue_graph
from graphs.run import main
from runner.checkpoints import DialogueCheckpoints
from state.dialogue import ExecutedCall
from tests.conftest import ROOT, generate_killed_mid_run, sha256
from tests.mcp_helpers import EXAMPLE, FAULTS, by_pid

SERVERS = EXAMPLE / "servers.json"
FLAKY = ROOT / "tests" / "mcp_flaky_library.py"
CONTEXT = CallContext(reference_time="2026-01-01T09:00", clock="2026-01-01T09:00", rng_key="k")


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists()
            for line in (out / name).read_text().splitlines()]


def _called(record: dict) -> Counter:
    return Counter(c["function"]["name"].split("__", 1)[1] for m in record["messages"] for c in m.get("tool_calls") or [])


def _call(box, source, name: str, **arguments):
    tool = next(t for t in source.catalog().tools if t.name == name)
    return asyncio.run(box.call(tool, arguments, CONTEXT))


def test_a_run_over_the_example_starts_one_server_per_dialogue_and_executes_every_call(tmp_path, monkeypatch, capsys):
    log = tmp_path / "library.log"
    monkeypatch.setenv("LIBRARY_LOG", str(log))
    before = sha256(EXAMPLE / "library.json")
    out = tmp_path / "run"
    assert main(["generate", "--mcp", str(SERVERS), "--dialogues", "4", "--tasks-per-dialogue", "1", "--seed", "3",
                 "--concurrency", "2", "--out", str(out)]) == 0
    loop.settle()
    assert sha256(EXAMPLE / "library.json") == before, "the servers' source state must never change"
    lines = _lines(out)
    assert len(lines) == 4 and sum(1 for _ in (out / "dialogues.jsonl").open()) >= 3
    processes = by_pid(log)
    for events in processes.values():  # each process started once and stopped once
        assert [e["event"] for e in events if e["event"] != "call"] == ["start", "stop"]
    # every call of every dialogue really ran, on that dialogue's own server process
    per_process = sorted((Counter(e["tool"] for e in ev if e["event"] == "call") for ev in processes.values()), key=str)
    for record in lines:
        assert _called(record) in per_process, f"{record['id']}: its calls are not one server process's calls"
    assert len(processes) >= len(lines)
    recorded = [ref["config"] for share in json.loads((out / "config.json").read_text())["databases"]
                for ref in share["sources"]]
    assert recorded == [{"mcpServers": {"library": {
        "command": "python", "args": ["library_server.py", "--state", "{sandbox}/library.json"],
        "env": {"LIBRARY_LOG": "${LIBRARY_LOG:-}"}, "sandbox": {"copy": ["library.json"]}}}}]
    assert main(["show", str(out), "--dialogue", lines[0]["id"]]) == 0
    assert "library__" in capsys.readouterr().out
    assert main(["stats", str(out)]) == 0


def test_two_dialogues_writing_the_same_record_each_see_only_their_own_writes():
    source = open_source(f"mcp://{SERVERS}")
    first, second = source.open(1), source.open(2)
    try:
        assert _call(first, source, "library__lend_book", book_id=1, borrower="Ann").result.ok
        assert _call(second, source, "library__lend_book", book_id=1, borrower="Bo").result.ok
        for box, who in ((first, "Ann"), (second, "Bo")):
            loans = _call(box, source, "library__list_loans").result.value["loans"]
            assert [loan["borrower"] for loan in loans if loan["book_id"] == 1] == [who]
        outcome = _call(first, source, "library__lend_book", book_id=1, borrower="Cy")
        assert not outcome.result.ok and outcome.result.error.type == "tool_error"  # isError: read by the assistant
        assert outcome.record["is_error"] and outcome.record["server"] == "library"
    finally:
        first.close()
        second.close()


def test_a_server_whose_writes_give_other_results_is_reported_as_diverged(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_MCP_CALL_TIMEOUT", "1")  # its `hang` is probed with the read-only tools
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"faults": {
        "command": "python", "args": [str(FAULTS), "--counter", str(tmp_path / "counter")]}}}))
    name = f"mcp://{servers}"
    source = open_source(name)
    tools = {t.name: t for t in source.catalog().tools}
    box = source.open(0)
    try:
        outcome = _call(box, source, "faults__ticket", queue="a")
        failed = _call(box, source, "faults__fail")
        assert not failed.result.ok and failed.result.error.type == "tool_error"
    finally:
        box.close()
    call = ExecutedCall(tool_call_id="c1", tool="faults__ticket", arguments={"queue": "a"}, result=outcome.result,
                        mode="write", record=outcome.record)
    rebuilt = DialogueSandboxes(name, 0)
    try:
        rebuilt.replay([call], tools)
    finally:
        rebuilt.close()
    assert rebuilt.diverged == ["c1"]


@pytest.mark.parametrize("fault, said", [("no-start", "did not start"), ("crash", "crashed"), ("hang", "timed out")])
def test_a_server_that_fails_ends_its_dialogue_as_rejected_and_the_run_goes_on(fault, said, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_MCP_CALL_TIMEOUT", "2")
    shutil.copy(EXAMPLE / "library.json", tmp_path / "library.json")
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"library": {
        "command": "python", "args": [str(FLAKY), "--counter", str(tmp_path / "starts"), "--on", "3", "--fault", fault,
                                      "--state", "{sandbox}/library.json"],
        "sandbox": {"copy": ["library.json"]}}}}))
    out = tmp_path / "run"
    # one at a time: start 1 lists the tools, starts 2-4 are the three dialogues', start 3 misbehaves
    assert main(["generate", "--mcp", str(servers), "--dialogues", "3", "--tasks-per-dialogue", "1",
                 "--concurrency", "1", "--out", str(out)]) == 0
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    failed = [r for r in rejected if "MCP server 'library'" in r["metadata"].get("error", "")]
    assert len(failed) == 1 and said in failed[0]["metadata"]["error"]
    assert len(_lines(out)) == 3 and (out / "dialogues.jsonl").exists()
    assert main(["resume", str(out)]) == 0
    assert len(_lines(out)) == 3


def test_a_bad_servers_file_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"mcpServers": {"x": {"command": "no-such-command-anywhere"}}}))
    for servers in (bad, missing):
        out = tmp_path / f"run-{servers.stem}"
        assert main(["generate", "--mcp", str(servers), "--out", str(out)]) == 2
        assert not out.exists()
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1


def test_a_run_killed_mid_way_resumes_with_every_dialogue_once_and_replays_matching(tmp_path):
    out = tmp_path / "killed"
    generate_killed_mid_run(out, 8, "--tasks-per-dialogue", "1", "--seed", "4", after=2, db=f"mcp://{SERVERS}")
    assert len(_lines(out)) < 8, "the run finished before it was killed"
    done = subprocess.run([sys.executable, "-m", "graphs.run", "resume", str(out)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = _lines(out)
    assert sorted(r["id"] for r in lines) == sorted({r["id"] for r in lines}) and len(lines) == 8
    assert not any(r["metadata"].get("replay_diverged") for r in lines)
    assert json.loads((out / "stats.json").read_text())["replay_diverged"] == 0


async def _after_a_lend(out: Path, dialogue: str) -> tuple[str, int] | None:
    """A checkpoint right after a successful lend_book, with the book's record still to be read."""
    async with DialogueCheckpoints(out, build_dialogue_graph, None, Console(quiet=True)) as store:
        for row in await store.history(dialogue):
            state = await store.state(dialogue, row.checkpoint_id)
            last = state.calls[-1] if state.calls else None
            if row.node == "tool_executor" and last and last.tool == "library__lend_book" and last.result.ok:
                return row.checkpoint_id, last.arguments["book_id"]
    return None


def test_a_fork_continues_on_a_fresh_server_with_the_earlier_writes_replayed_and_exports_name_the_tools(
        tmp_path, monkeypatch, capsys):
    log = tmp_path / "library.log"
    monkeypatch.setenv("LIBRARY_LOG", str(log))
    out = tmp_path / "run"
    assert main(["generate", "--mcp", str(SERVERS), "--dialogues", "3", "--tasks-per-dialogue", "1", "--seed", "5",
                 "--out", str(out)]) == 0
    found = next(((r["id"], hit) for r in _lines(out) if (hit := asyncio.run(_after_a_lend(out, r["id"])))), None)
    assert found is not None, "no dialogue lent a book"
    dialogue, (checkpoint, book) = found
    loop.settle()
    processes_before = set(by_pid(log))
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "99"]) == 0
    loop.settle()
    fork = next(r for r in _lines(out) if r["metadata"].get("forked_from", {}).get("dialogue") == dialogue)
    calls = [c for m in fork["messages"] for c in m.get("tool_calls") or []]
    results = {m["tool_call_id"]: json.loads(m["content"]) for m in fork["messages"] if m["role"] == "tool"}
    lent_at = next(i for i, c in enumerate(calls) if c["function"]["name"] == "library__lend_book")
    reads = [c for c in calls[lent_at + 1:] if c["function"]["name"] == "library__get_book"
             and json.loads(c["function"]["arguments"]) == {"book_id": book}]
    # the fork's own server had the lend replayed onto its fresh copy: the book reads as lent
    assert reads and all(results[c["id"]]["available"] is False for c in reads)
    fresh = [events for pid, events in by_pid(log).items() if pid not in processes_before]
    assert any([e["tool"] for e in ev if e["event"] == "call"][:1] == ["lend_book"] for ev in fresh), \
        "a fresh server process replayed the write first"
    assert not fork["metadata"].get("replay_diverged")
    for fmt in ("openai", "trl", "sharegpt", "hf"):
        folder = tmp_path / f"export-{fmt}"
        assert main(["export", str(out), "--format", fmt, "--out", str(folder)]) == 0
        assert any(b"library__lend_book" in f.read_bytes() for f in folder.rglob("*") if f.is_file()), fmt
    assert main(["report", str(out), "--out", str(tmp_path / "report.html")]) == 0
    assert "library__lend_book" in (tmp_path / "report.html").read_text()
