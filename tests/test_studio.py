"""LangGraph Studio: `langgraph dev` serves the dialogue graph offline, and the SDK runs, reads and forks it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client

from tests.clinic_model import ClinicModel
from tests.conftest import CLINIC, ROOT
from tests.stub_server import StubServer

LANGGRAPH = Path(sys.executable).with_name("langgraph")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def model_server():
    with StubServer(ClinicModel(CLINIC)) as stub:
        yield stub


@pytest.fixture()
def server(tmp_path, model_server):
    port = _free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false",
           "LANGGRAPH_NO_VERSION_CHECK": "true", "OPENAI_BASE_URL": model_server.base_url,
           "OPENAI_API_KEY": "local", "FORGE_BACKEND": "offline"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.time() < deadline, "langgraph dev did not start"
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert "BlockingError" not in text, text[text.find("BlockingError") - 3000: text.find("BlockingError") + 500]


def test_studio_runs_reads_and_forks_a_dialogue(server):
    async def scenario() -> None:
        client = get_client(url=server)
        assistant = (await client.assistants.search(graph_id="dialogue"))[0]
        schema = (await client.assistants.get_schemas(assistant["assistant_id"]))["input_schema"]["properties"]
        assert {"source_db", "seed", "backend", "tasks_per_dialogue"} <= set(schema)

        thread = await client.threads.create()
        first = {"source_db": str(CLINIC), "seed": 3, "tasks_per_dialogue": 1, "backend": "offline",
                 "dialogue_id": "studio"}
        output = await client.runs.wait(thread["thread_id"], assistant["assistant_id"], input=first)
        assert output["verdicts"][0]["judgment"] == "valid"
        assert any(m["type"] == "tool" for m in output["messages"])

        history = list(reversed(await client.threads.get_history(thread["thread_id"], limit=500)))
        assert history[-1]["next"] == [] and len(history) > 10
        i, mid = next((i, h) for i, h in enumerate(history) if i > 5 and h["next"] == ["user_simulator"])
        writer = history[i - 1]["next"][0]
        forked = await client.threads.update_state(thread["thread_id"], {"seed": 99}, as_node=writer,
                                                   checkpoint_id=mid["checkpoint"]["checkpoint_id"])
        await client.runs.wait(thread["thread_id"], assistant["assistant_id"], input=None,
                               checkpoint_id=forked["checkpoint"]["checkpoint_id"])
        state = (await client.threads.get_state(thread["thread_id"]))["values"]
        assert state["seed"] == 99
        # the server's store keeps the toolset and schema once; the checkpoints hold their hashes
        assert state["toolset"] == [] and state["toolset_key"] and state["schema_key"] and not state.get("database")
        kept = len(mid["values"]["messages"])
        assert state["messages"][:kept] == mid["values"]["messages"]
        assert state["verdicts"][-1]["judgment"] == "valid"

    asyncio.run(scenario())


def test_studio_runs_the_llm_path_unchanged(server, model_server):
    """The same graph with the openai backend: real client code on the server's event loop, no blocking calls."""
    async def scenario() -> dict:
        client = get_client(url=server)
        assistant = (await client.assistants.search(graph_id="dialogue"))[0]
        thread = await client.threads.create()
        return await client.runs.wait(thread["thread_id"], assistant["assistant_id"], input={
            "source_db": str(CLINIC), "seed": 1, "tasks_per_dialogue": 1, "backend": "openai",
            "dialogue_id": "studio-llm"})

    output = asyncio.run(scenario())
    assert model_server.request_count > 5
    assert output["verdicts"][0]["judgment"] == "valid"
    assert any(m["type"] == "tool" and "rows" in m["content"] for m in output["messages"])
