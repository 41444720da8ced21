"""The MCP servers file: the shared `mcpServers` format with our sandbox declaration, checked in one line per
problem, secrets read from the environment and never written back out."""

from __future__ import annotations

import json

import pytest

from environment.errors import InputError
from environment.sources.mcp import load_mcp_config, parse_mcp_config
from environment.sources.mcp.config import expand
from tests.conftest import ROOT


def refusal(tmp_path, servers: object, raw: str | None = None) -> str:
    path = tmp_path / "servers.json"
    path.write_text(raw if raw is not None else json.dumps(servers))
    with pytest.raises(InputError) as caught:
        load_mcp_config(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, "one line that names the file"
    return message


@pytest.mark.parametrize("servers, raw, expected", [
    (None, '{"mcpServers": {"x": {"command": "python",}}}', "is not valid JSON"),
    ({"servers": {}}, None, 'an "mcpServers" object'),
    ({"mcpServers": {}}, None, "no MCP server is declared"),
    ({"mcpServers": {"x": {"args": ["serve"]}}}, None, "mcpServers.x: needs a command"),
    ({"mcpServers": {"x": {"command": "forge-no-such-server-binary"}}}, None,
     "command 'forge-no-such-server-binary' not found"),
    ({"mcpServers": {"x": {"command": "python", "args": "serve"}}}, None, "mcpServers.x.args: Input should be a valid list"),
    ({"mcpServers": {"x": {"comand": "python"}}}, None, "mcpServers.x.comand: Extra inputs are not permitted"),
    ({"mcpServers": {"x": {"command": "python", "url": "http://h/mcp"}}}, None, "both a command and a url"),
    ({"mcpServers": {"x": {"command": "python", "shared": True, "sandbox": {"copy": ["db.json"]}}}}, None,
     "a shared server is opened once per run"),
    ({"mcpServers": {"x": {"url": "http://h/mcp", "sandbox": {"copy": ["a"]}}}}, None, "a remote server has no sandbox"),
    ({"mcpServers": {"x": {"command": "python", "sandbox": {"copy": ["missing.json"]}}}}, None,
     "sandbox path 'missing.json' does not exist"),
    ({"mcpServers": {"x": {"command": "python", "env": {"KEY": "${FORGE_TEST_UNSET_VARIABLE}"}}}}, None,
     "environment variable FORGE_TEST_UNSET_VARIABLE is not set"),
])
def test_a_bad_servers_file_is_refused_in_one_line(tmp_path, servers, raw, expected):
    assert expected in refusal(tmp_path, servers, raw)


def test_a_missing_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match="cannot read MCP servers file"):
        load_mcp_config(tmp_path / "nowhere.json")


def test_the_bundled_servers_file_parses_with_paths_from_its_own_folder():
    config = load_mcp_config(ROOT / "examples" / "mcp" / "servers.json")
    library = config.servers["library"]
    assert library.transport == "stdio" and library.sandbox.paths == ["library.json"]
    assert config.path("library.json").is_file()
    assert config.cwd_of(library, None) == str(ROOT / "examples" / "mcp")


def test_secrets_come_from_the_environment_and_are_never_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_TEST_TOKEN", "tok-1234567890")
    (tmp_path / "notes.db").write_text("")
    config = parse_mcp_config({"mcpServers": {
        "notes": {"command": "python", "args": ["serve.py", "--db", "{sandbox}/notes.db"],
                  "env": {"API_KEY": "sk-literal-secret", "TOKEN": "${FORGE_TEST_TOKEN}", "DB": "{sandbox}/notes.db",
                          "LEVEL": "${FORGE_TEST_LEVEL:-info}"},
                  "sandbox": {"copy": ["notes.db"]}},
        "search": {"url": "https://search.example/mcp", "shared": True,
                   "headers": {"Authorization": "Bearer ${FORGE_TEST_TOKEN}", "X-Api-Key": "literal-key"}}}}, tmp_path)
    recorded = json.dumps(config.recordable())
    assert "sk-literal-secret" not in recorded and "literal-key" not in recorded and "tok-1234567890" not in recorded
    notes = config.recordable()["mcpServers"]["notes"]
    assert notes["env"] == {"API_KEY": "***", "TOKEN": "${FORGE_TEST_TOKEN}", "DB": "{sandbox}/notes.db",
                            "LEVEL": "${FORGE_TEST_LEVEL:-info}"}
    assert notes["sandbox"] == {"copy": ["notes.db"]} and notes["args"][-1] == "{sandbox}/notes.db"
    assert config.recordable()["mcpServers"]["search"]["headers"]["Authorization"] == "Bearer ${FORGE_TEST_TOKEN}"
    assert parse_mcp_config(config.recordable(), tmp_path).servers["notes"].sandbox.paths == ["notes.db"], \
        "a recorded config reads back"
    assert expand("Bearer ${FORGE_TEST_TOKEN}") == "Bearer tok-1234567890"
    assert expand("${FORGE_TEST_LEVEL:-info}/{sandbox}/x", "/tmp/box") == "info//tmp/box/x"


def test_a_disabled_server_is_left_out(tmp_path):
    config = parse_mcp_config({"mcpServers": {"on": {"command": "python"},
                                              "off": {"command": "forge-no-such-binary", "disabled": True}}}, tmp_path)
    assert list(config.servers) == ["on"]


def test_a_record_becomes_the_result_the_assistant_reads():
    from environment.sources.mcp import McpCallRecord, to_tool_result

    def record(**fields):
        return McpCallRecord(name="lib__x", server="lib", tool="x", mode="read", arguments={}, **fields)

    listed = to_tool_result(record(structured_content={"books": [{"id": 1}, {"id": 2}]},
                                   content=[{"type": "text", "text": "..."}]))
    assert listed.ok and listed.value == {"books": [{"id": 1}, {"id": 2}]} and listed.row_count == 2
    assert to_tool_result(record(structured_content={"loans": []})).rows == []
    one = to_tool_result(record(structured_content={"id": 7, "title": "Kindred"}))
    assert one.rows == [{"id": 7, "title": "Kindred"}]
    text = to_tool_result(record(content=[{"type": "text", "text": "two"}, {"type": "text", "text": "lines"}]))
    assert text.value == "two\nlines" and text.to_content() == "two\nlines"
    image = [{"type": "image", "data": "AAAA", "mimeType": "image/png"}]
    assert to_tool_result(record(content=image)).value == image
    failed = to_tool_result(record(content=[{"type": "text", "text": "closed today"}], is_error=True))
    assert not failed.ok and failed.error.type == "tool_error" and failed.to_content() == {
        "error": {"type": "tool_error", "message": "closed today"}}


def test_the_timeouts_and_the_cap_are_settings_with_environment_fallbacks(monkeypatch, tmp_path):
    from environment.sources.mcp import McpSource
    from state.config import Settings

    monkeypatch.setenv("FORGE_MCP_CALL_TIMEOUT", "2.5")
    monkeypatch.setenv("FORGE_MCP_START_TIMEOUT", "4")
    monkeypatch.setenv("FORGE_MCP_MAX_SERVERS", "1")
    config = parse_mcp_config({"mcpServers": {"a": {"command": "python"}}}, tmp_path)
    source = McpSource.from_settings(config, Settings())
    assert (source.call_timeout, source.start_timeout, source._slots.free) == (2.5, 4.0, 1)
    two = parse_mcp_config({"mcpServers": {"a": {"command": "python"}, "b": {"command": "python"}}}, tmp_path)
    with pytest.raises(InputError, match="each dialogue starts 2 MCP servers but at most 1"):
        McpSource.from_settings(two, Settings())
