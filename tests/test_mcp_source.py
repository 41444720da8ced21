"""The MCP tool source over the bundled library server (examples/mcp/, written with the SDK): one server
process per dialogue on fresh copies, every call real and recorded, isolation, replay, a remote server.

The server logs its start, calls and stop with its pid, so the tests count processes and calls from its
own words.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from environment.sources.mcp import McpSource, load_mcp_config, parse_mcp_config
from tests.conftest import sha256
from tests.mcp_helpers import EXAMPLE, by_pid, events, run


@pytest.fixture
def library(monkeypatch, tmp_path):
    """The bundled example's servers file as shipped, its log sent to a test folder through ${LIBRARY_LOG}."""
    log = tmp_path / "library.log"
    monkeypatch.setenv("LIBRARY_LOG", str(log))
    return load_mcp_config(EXAMPLE / "servers.json"), log


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
