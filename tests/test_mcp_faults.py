"""The MCP tool source against tests/mcp_fault_server.py, which fails on purpose: an isError result, a crash,
a hang, no start, results that change between runs, an unusable schema; and the process bookkeeping
(shared servers, the cap, SIGKILL, cancellation). Each fault is a result or one McpServerFailure, never
a stray exception or a process left running.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from environment.sources.mcp import McpServerFailure, McpSource, parse_mcp_config
from tests.conftest import ROOT
from tests.mcp_helpers import FAULTS, events, fault_config, run


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
