"""The MCP tool source: per-dialogue servers on fresh copies, every call real and recorded, writes replayed,
faults reported as results or as one clear failure.

Against the bundled library server (examples/mcp/, written with the SDK) and tests/mcp_fault_server.py
(hand-written JSON-RPC that fails on purpose). Each server logs its start, calls and stop with its pid,
so the tests count processes and calls from the servers' own words.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Coroutine, TypeVar

import pytest

from environment.sources.mcp import McpServerFailure, McpSource, load_mcp_config, parse_mcp_config
from tests.conftest import ROOT, sha256

T = TypeVar("T")
EXAMPLE = ROOT / "examples" / "mcp"
FAULTS = ROOT / "tests" / "mcp_fault_server.py"


def run(main: Coroutine[Any, Any, T]) -> T:
    """On uvloop where installed, as every command runs (the SDK's subprocesses must work on it)."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def by_pid(log: Path) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for event in events(log):
        out.setdefault(event["pid"], []).append(event)
    return out


@pytest.fixture
def library(monkeypatch, tmp_path):
    """The bundled example's servers file as shipped, its log sent to a test folder through ${LIBRARY_LOG}."""
    log = tmp_path / "library.log"
    monkeypatch.setenv("LIBRARY_LOG", str(log))
    return load_mcp_config(EXAMPLE / "servers.json"), log


def fault_config(tmp_path: Path, *flags: str, shared: bool = False):
    log = tmp_path / "faults.log"
    server = {"command": "python", "args": [str(FAULTS), "--log", str(log), *flags], "shared": shared}
    return parse_mcp_config({"mcpServers": {"faults": server}}, tmp_path), log


# -- the bundled server: isolation, real calls, records, replay ------------------------------------------------

def test_each_dialogue_starts_its_own_server_once_and_every_call_runs_on_it(library, tmp_path):
    config, log = library
    source_file = EXAMPLE / "library.json"
    before = sha256(source_file)

    async def dialogue(source: McpSource, i: int) -> tuple[list[str], Path]:
        async with source.dialogue(f"d{i}") as d:
            names = []
            for book in (1, 2, 3):
                outcome = await d.call("library__get_book", {"book_id": book})
                assert outcome.result.ok and outcome.record.structured_content["book_id"] == book
                names.append("get_book")
            lent = await d.call("library__lend_book", {"book_id": 1, "borrower": f"reader {i}"})
            assert lent.result.ok and lent.record.mode == "write"
            names.append("lend_book")
            return names, d.root

    async def main() -> list[tuple[list[str], Path]]:
        async with McpSource(config, work_dir=tmp_path / "work") as source:
            return await asyncio.gather(*(dialogue(source, i) for i in range(3)))

    results = run(main())
    processes = by_pid(log)
    assert len(processes) == 3, "one server process per dialogue, none per call"
    for history in processes.values():
        kinds = [e["event"] for e in history]
        assert kinds[0] == "start" and kinds[-1] == "stop" and kinds.count("start") == kinds.count("stop") == 1
        assert [e["tool"] for e in history if e["event"] == "call"] == results[0][0]
    sandboxes = {e["state"] for e in events(log) if e["event"] == "start"}
    assert len(sandboxes) == 3 and str(source_file) not in sandboxes
    assert sha256(source_file) == before, "the source state file is never written"
    assert not any(root.exists() for _, root in results), "a dialogue's copies are deleted when it ends"


def test_two_dialogues_writing_the_same_record_each_see_only_their_own_write(library, tmp_path):
    config, _ = library

    async def main() -> None:
        async with McpSource(config, work_dir=tmp_path / "work") as source:
            async with source.dialogue("ann") as ann, source.dialogue("bob") as bob:
                first = await ann.call("library__lend_book", {"book_id": 2, "borrower": "Ann"})
                second = await bob.call("library__lend_book", {"book_id": 2, "borrower": "Bob"})
                assert first.result.ok and second.result.ok, "each dialogue found the book available"
                assert first.record.structured_content["loan_id"] == second.record.structured_content["loan_id"]
                ann_loans = (await ann.call("library__list_loans", {"borrower": "Bob"})).record.structured_content
                bob_loans = (await bob.call("library__list_loans", {"borrower": "Ann"})).record.structured_content
                assert ann_loans == {"loans": []} and bob_loans == {"loans": []}
                again = await ann.call("library__lend_book", {"book_id": 2, "borrower": "Ann"})
                assert again.result.error.type == "tool_error" and "already lent" in again.result.error.message
            async with source.dialogue("carol") as carol:
                book = await carol.call("library__get_book", {"book_id": 2})
                assert book.record.structured_content["available"] is True, "a new dialogue starts from the source"

    run(main())


def test_replaying_the_recorded_writes_on_a_fresh_server_gives_the_recorded_results(library, tmp_path):
    config, log = library

    async def main() -> None:
        async with McpSource(config, work_dir=tmp_path / "work") as source:
            async with source.dialogue("first") as d:
                records = [(await d.call(name, args)).record for name, args in [
                    ("library__search_books", {"author": "Le Guin", "available_only": True}),
                    ("library__lend_book", {"book_id": 1, "borrower": "Ann"}),
                    ("library__lend_book", {"book_id": 1, "borrower": "Bob"}),  # isError: already lent
                    ("library__return_book", {"loan_id": 2}),
                    ("library__lend_book", {"book_id": 5, "borrower": "Bob"}),
                    ("library__lend_book", {"book_id": "five"}),                 # refused before the server
                    ("library__get_book", {"book_id": 5}),
                ]]
                assert records[2].is_error and records[5].refused and not records[5].reached_server
                after_first = (await d.call("library__list_loans", {"include_returned": True})).record
            resumed, report = await source.resume("first", records)
            try:
                assert report.replayed == 4 and not report.diverged
                state = (await resumed.call("library__list_loans", {"include_returned": True})).record
                assert state.structured_content == after_first.structured_content
            finally:
                await resumed.close()

    run(main())
    first, second = list(by_pid(log).values())
    assert [e["tool"] for e in second if e["event"] == "call"] == \
        ["lend_book", "lend_book", "return_book", "lend_book", "list_loans"], "only the writes are replayed"
    assert len([e for e in first if e["event"] == "call"]) == 7, "the refused call never reached the server"


def test_tools_are_listed_namespaced_with_their_schemas_and_read_or_write_by_annotation(library, tmp_path):
    config, _ = library

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source:
            return await source.list_tools()

    found = run(main())
    modes = {t.name: t.tool.mode for t in found.tools}
    assert modes == {"library__search_books": "read", "library__get_book": "read", "library__list_loans": "read",
                     "library__lend_book": "write", "library__return_book": "write"}
    lend = found.get("library__lend_book")
    assert lend.remote_name == "lend_book" and lend.server == "library"
    assert lend.tool.parameters["required"] == ["book_id", "borrower"]
    assert lend.tool.output_schema["properties"]["loan_id"]["type"] == "integer"
    assert found.get("library__get_book").annotations["readOnlyHint"] is True
    assert [t["function"]["name"] for t in [x.openai_tool() for x in found.toolset().tools]][0] == "library__search_books"


def test_unknown_tools_and_bad_arguments_are_tool_errors_that_never_reach_the_server(library, tmp_path):
    config, log = library

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source, source.dialogue("d") as d:
            return (await d.call("library__burn_books", {}), await d.call("library__get_book", {"book_id": 1.5}),
                    await d.call("library__get_book", {"book_id": 1, "extra": True}))

    unknown, bad_type, extra = run(main())
    assert unknown.result.error.type == "unknown_tool" and "library__get_book" in unknown.result.error.message
    assert bad_type.result.error.type == "invalid_arguments" and bad_type.result.error.field == "book_id"
    assert extra.result.error.field == "extra"
    assert not [e for e in events(log) if e["event"] == "call"]


# -- faults ---------------------------------------------------------------------------------------------------

def test_a_tool_error_is_a_result_and_the_dialogue_goes_on(tmp_path):
    config, log = fault_config(tmp_path)

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source, source.dialogue("d") as d:
            return await d.call("faults__fail", {}), await d.call("faults__echo", {"text": "still here"})

    failed, echoed = run(main())
    assert not failed.result.ok and failed.result.error.type == "tool_error"
    assert failed.result.error.message == "the archive is closed today" and failed.record.is_error
    assert echoed.result.ok and echoed.result.value == {"text": "still here"}


def test_a_server_that_crashes_mid_dialogue_is_one_clear_failure(tmp_path):
    config, log = fault_config(tmp_path, "--crash-on", "2")

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source, source.dialogue("d") as d:
            first = await d.call("faults__echo", {"text": "one"})
            with pytest.raises(McpServerFailure) as caught:
                await d.call("faults__echo", {"text": "two"})
            with pytest.raises(McpServerFailure):  # the dead server is not asked again
                await d.call("faults__echo", {"text": "three"})
            return first, caught.value

    first, failure = run(main())
    assert first.result.ok
    assert failure.kind == "crash" and failure.server == "faults" and "segmentation fault on call 2" in failure.reason
    assert "\n" not in failure.reason
    assert failure.record.failure == failure.reason and failure.record.arguments == {"text": "two"}
    assert [e["event"] for e in events(log)] == ["start", "call", "call"]


def test_a_server_that_hangs_times_out_and_is_stopped(tmp_path):
    config, log = fault_config(tmp_path)

    async def main():
        async with McpSource(config, call_timeout=0.5, work_dir=tmp_path / "work") as source:
            async with source.dialogue("d") as d:
                with pytest.raises(McpServerFailure) as caught:
                    await d.call("faults__hang", {})
            return caught.value

    failure = run(main())
    assert failure.kind == "timeout" and "0.5 s" in failure.reason
    pid = events(log)[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_that_does_not_start_fails_the_dialogue_with_its_reason_and_frees_its_slot(tmp_path):
    config, _ = fault_config(tmp_path, "--no-start")

    async def main():
        source = McpSource(config, max_servers=1, work_dir=tmp_path / "work")
        failures = []
        for i in range(2):  # a slot leaked by the first failure would leave the second waiting forever
            with pytest.raises(McpServerFailure) as caught:
                await asyncio.wait_for(source.open_dialogue(f"d{i}"), 30)
            failures.append(caught.value)
        await source.close()
        return failures

    failures = run(main())
    assert all(f.kind == "start" and "cannot open its database" in f.reason for f in failures)
    assert not list((tmp_path / "work").iterdir()), "nothing of a dialogue that never started is left"


def test_a_server_that_never_answers_initialize_fails_to_start_within_its_timeout(tmp_path):
    pid_file = tmp_path / "mute.pid"
    config = parse_mcp_config({"mcpServers": {"mute": {"command": "python", "args": [
        "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"]}}}, tmp_path)

    async def main():
        async with McpSource(config, start_timeout=0.5, work_dir=tmp_path / "work") as source:
            with pytest.raises(McpServerFailure) as caught:
                await source.open_dialogue("d")
            return caught.value

    failure = run(main())
    assert failure.kind == "start" and "initialize within 0.5 s" in failure.reason
    with pytest.raises(ProcessLookupError):  # and it was not left running
        os.kill(int(pid_file.read_text()), 0)


def test_a_divergent_server_is_reported_on_replay(tmp_path):
    config, _ = fault_config(tmp_path, "--counter", str(tmp_path / "counter"))

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source:
            async with source.dialogue("d") as d:
                records = [(await d.call("faults__echo", {"text": "hi"})).record,
                           (await d.call("faults__ticket", {"queue": "desk"})).record]
            resumed, report = await source.resume("d", records)
            await resumed.close()
            return records, report

    records, report = run(main())
    assert records[1].structured_content == {"ticket": 1}
    assert report.diverged and report.first_divergent_index == 1
    divergence = report.divergences[0]
    assert divergence.recorded["structured_content"] == {"ticket": 1}
    assert divergence.replayed["structured_content"] == {"ticket": 2}
    assert "call 1 (faults__ticket)" in divergence.describe()


def test_an_unusable_tool_schema_is_reported_and_left_out(tmp_path):
    config, _ = fault_config(tmp_path, "--broken-tool")

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source:
            return await source.list_tools()

    found = run(main())
    assert "faults__broken" not in {t.name for t in found.tools} and found.get("faults__echo")
    assert [(d.name, d.reason) for d in found.dropped] == [
        ("faults/broken", "parameters must be a JSON Schema of type object")]


def test_a_shared_server_is_opened_once_for_every_dialogue(tmp_path):
    config, log = fault_config(tmp_path, shared=True)

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source:
            for i in range(3):
                async with source.dialogue(f"d{i}") as d:
                    assert (await d.call("faults__echo", {"text": str(i)})).result.ok

    run(main())
    assert [e["event"] for e in events(log)] == ["start", "call", "call", "call", "stop"]


def test_the_cap_on_servers_makes_dialogues_wait_their_turn(tmp_path):
    config, log = fault_config(tmp_path)

    async def dialogue(source: McpSource, i: int) -> None:
        async with source.dialogue(f"d{i}") as d:
            await d.call("faults__echo", {"text": str(i)})

    async def main():
        async with McpSource(config, max_servers=1, work_dir=tmp_path / "work") as source:
            await asyncio.gather(*(dialogue(source, i) for i in range(3)))

    run(main())
    assert [e["event"] for e in events(log)] == ["start", "call", "stop"] * 3, "never two servers at once"


def test_a_probe_reads_every_argument_free_read_tool_and_shows_what_writes_changed(library, tmp_path):
    config, log = library

    async def main():
        async with McpSource(config, work_dir=tmp_path / "work") as source, source.dialogue("d") as d:
            before = await d.probe()
            await d.call("library__lend_book", {"book_id": 4, "borrower": "Ann"})
            return before, await d.probe()

    before, after = run(main())
    assert sorted(before) == ["library__list_loans", "library__search_books"]
    assert len(before["library__search_books"].structured_content["books"]) == 12
    new_loans = [x for x in after["library__list_loans"].structured_content["loans"]
                 if x not in before["library__list_loans"].structured_content["loans"]]
    assert new_loans == [{"loan_id": 6, "book_id": 4, "borrower": "Ann", "returned": False}]


_HOLDER = """
import asyncio, json, sys
from environment.sources.mcp import McpSource, parse_mcp_config
async def main():
    source = McpSource(parse_mcp_config(json.loads(sys.argv[1]), sys.argv[2]))
    dialogue = await source.open_dialogue("d")
    await dialogue.call("faults__echo", {"text": "x"})
    print("ready", flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def test_a_server_does_not_outlive_a_run_killed_with_sigkill(tmp_path):
    import signal
    import subprocess
    import time

    log = tmp_path / "faults.log"
    servers = {"mcpServers": {"faults": {"command": "python", "args": [str(FAULTS), "--log", str(log)]}}}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, json.dumps(servers), str(tmp_path)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.time() + 30
    while time.time() < deadline and "stop" not in [e["event"] for e in events(log)]:
        time.sleep(0.05)
    assert [e["event"] for e in events(log)] == ["start", "call", "stop"], "the server left when its stdin closed"


def test_a_dialogue_cancelled_while_its_server_starts_leaves_no_process(tmp_path):
    pid_file = tmp_path / "slow.pid"
    config = parse_mcp_config({"mcpServers": {"slow": {"command": "python", "args": [
        "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"]}}}, tmp_path)

    async def main():
        source = McpSource(config, start_timeout=30, work_dir=tmp_path / "work")
        opening = asyncio.create_task(source.open_dialogue("d"))
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.02)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        with pytest.raises(ProcessLookupError):  # gone already, not only once the event loop ends
            os.kill(int(pid_file.read_text()), 0)
        await source.close()

    run(main())
    assert not list((tmp_path / "work").iterdir())


def test_closing_the_source_stops_a_dialogue_left_open(tmp_path):
    config, log = fault_config(tmp_path)

    async def main():
        source = McpSource(config, work_dir=tmp_path / "work")
        await source.open_dialogue("forgotten")
        await source.close()

    run(main())
    assert [e["event"] for e in events(log)] == ["start", "stop"]


def test_a_remote_server_over_streamable_http_is_opened_once_for_the_run(tmp_path, monkeypatch):
    import shutil
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shutil.copy(EXAMPLE / "library.json", tmp_path / "library.json")
    log = tmp_path / "http.log"
    server = subprocess.Popen([sys.executable, str(EXAMPLE / "library_server.py"), "--state",
                               str(tmp_path / "library.json"), "--log", str(log), "--http", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        monkeypatch.setenv("FORGE_TEST_PORT", str(port))
        config = parse_mcp_config({"mcpServers": {"remote": {
            "url": "http://127.0.0.1:${FORGE_TEST_PORT}/mcp", "shared": True}}}, tmp_path)

        async def main():
            async with McpSource(config, work_dir=tmp_path / "work") as source:
                found = await source.list_tools()
                for i in range(2):
                    async with source.dialogue(f"d{i}") as d:
                        loan = await d.call("remote__lend_book", {"book_id": 3 + i, "borrower": f"r{i}"})
                        assert loan.result.ok and loan.record.structured_content["book_id"] == 3 + i
                return found

        found = run(main())
        assert found.get("remote__lend_book").tool.mode == "write"
        calls = [e for e in events(log) if e["event"] == "call"]
        assert [c["tool"] for c in calls] == ["lend_book", "lend_book"] and len({c["pid"] for c in calls}) == 1
        assert json.loads((tmp_path / "library.json").read_text())["next_loan_id"] == 8, "a remote server's state is its own"
    finally:
        server.terminate()
        server.wait()
