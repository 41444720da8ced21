"""The core pipeline, offline, on the example database: the figures a dataset run must reach."""

from __future__ import annotations

import json
from pathlib import Path

from environment.sources.sqlite.sandbox import Sandbox
from runner.layout import load_toolset
from tests.conftest import CLINIC


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tool_calls(record: dict) -> list[tuple[str, dict, str]]:
    """(tool name, arguments, recorded content) for every call of a dialogue, in order."""
    results = {m["tool_call_id"]: m["content"] for m in record["messages"] if m["role"] == "tool"}
    calls = []
    for m in record["messages"]:
        for call in m.get("tool_calls") or []:
            calls.append((call["function"]["name"], json.loads(call["function"]["arguments"]), results[call["id"]]))
    return calls


def test_run_folder_holds_every_output(offline_run: Path) -> None:
    for name in ("config.json", "toolset.json", "toolset_report.json", "dialogues.jsonl", "stats.json",
                 "checkpoints.sqlite"):
        assert (offline_run / name).exists(), name
    toolset = json.loads((offline_run / "toolset.json").read_text())
    assert {"name", "description", "parameters", "sql", "mode"} <= set(toolset[0])
    assert {t["mode"] for t in toolset} == {"read", "write"}


def test_dataset_figures(offline_run: Path) -> None:
    accepted = _lines(offline_run / "dialogues.jsonl")
    rejected = _lines(offline_run / "rejected.jsonl") if (offline_run / "rejected.jsonl").exists() else []
    assert len(accepted) + len(rejected) == 20
    assert len(accepted) / 20 >= 0.9
    stats = json.loads((offline_run / "stats.json").read_text())
    assert stats["turns_mean"] >= 15
    assert stats["steps_mean"] >= 2
    assert stats["tasks_mean"] == 2
    for record in accepted:
        starts = record["metadata"]["task_message_starts"] + [len(record["messages"]) - 1]
        users = [m["role"] == "user" for m in record["messages"][1:]]
        for a, b in zip(starts, starts[1:]):
            assert sum(users[a:b]) >= 2, f"{record['id']}: a task with fewer than 2 user turns"
        assert record["metadata"]["backend"] == "offline"
        assert all(v["judgment"] == "valid" for v in record["metadata"]["verdicts"])


def test_openai_format_and_arguments_are_json_strings(offline_run: Path) -> None:
    record = _lines(offline_run / "dialogues.jsonl")[0]
    assert record["messages"][0]["role"] == "system"
    assert {m["role"] for m in record["messages"]} == {"system", "user", "assistant", "tool"}
    for m in record["messages"]:
        for call in m.get("tool_calls") or []:
            assert call["type"] == "function"
            assert isinstance(call["function"]["arguments"], str)
            json.loads(call["function"]["arguments"])
        if m["role"] == "tool":
            json.loads(m["content"])
    assert all(t["type"] == "function" for t in record["tools"])


def test_replay_reproduces_every_recorded_result(offline_run: Path) -> None:
    """Each dialogue re-executed in order on a fresh copy gives exactly the recorded results.

    This also shows isolation: had a dialogue seen another's writes, its reads would not replay."""
    tools = {t.name: t for t in load_toolset(offline_run / "toolset.json")}
    checked = 0
    for record in _lines(offline_run / "dialogues.jsonl") + _lines(offline_run / "rejected.jsonl") \
            if (offline_run / "rejected.jsonl").exists() else _lines(offline_run / "dialogues.jsonl"):
        box = Sandbox(str(CLINIC))
        try:
            for name, args, content in _tool_calls(record):
                replayed = box.run(tools[name], args)
                assert json.dumps(replayed.to_content(), ensure_ascii=False, default=str) == content
                checked += 1
        finally:
            box.close()
    assert checked > 100


def test_a_write_is_seen_by_a_later_read(offline_run: Path) -> None:
    tools = {t.name: t for t in load_toolset(offline_run / "toolset.json")}
    seen = 0
    for record in _lines(offline_run / "dialogues.jsonl"):
        calls = _tool_calls(record)
        for i, (name, args, content) in enumerate(calls):
            if tools[name].mode != "write" or tools[name].kind != "update":
                continue
            assert json.loads(content)["rows_affected"] == 1
            new = next(v for k, v in args.items() if k.startswith("new_"))
            later_reads = [c for n, _, c in calls[i + 1:] if tools[n].mode == "read"]
            if any(json.dumps(new)[1:-1] in c or str(new) in c for c in later_reads):
                seen += 1
    assert seen >= 1


def test_dialogues_are_deterministic_under_the_seed(offline_run: Path, tmp_path: Path) -> None:
    from graphs.run import main

    out = tmp_path / "again"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "3", "--seed", "7", "--concurrency", "2",
                 "--out", str(out)]) == 0
    first = {r["id"].rsplit("-", 1)[-1]: r["messages"] for r in _lines(offline_run / "dialogues.jsonl")}
    for record in _lines(out / "dialogues.jsonl"):
        assert record["messages"] == first[record["id"].rsplit("-", 1)[-1]]
