"""`export`: each format read back as written, TRL-ready chat lines, stable splits, near-duplicate removal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphs.run import main
from runner import run_folder as rf
from results.exporters.hf import compact
from results.exporters.openai_format import chat_message
from results.exporters.sharegpt import read_sharegpt
from results.exporters.splits import split_of
from runner.run_folder import RunFolder
from tests.planting import REASONING, planted_copies, read_jsonl

# A tools-aware chat template in the style of the common open models (ChatML with <tool_call> blocks). It refuses
# what trainers choke on: an unknown role, tool-call arguments that are not a JSON string, a tool result
# that answers no call.
TOOLS_TEMPLATE = """
{%- if tools %}<|im_start|>system
{{ messages[0].content if messages[0].role == 'system' else 'You are a helpful assistant.' }}

# Tools
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools><|im_end|>
{% endif %}
{%- set ns = namespace(open_calls=0) %}
{%- for message in messages %}
  {%- if message.role == 'system' %}
    {%- if not tools %}<|im_start|>system
{{ message.content }}<|im_end|>
{% endif %}
  {%- elif message.role == 'user' %}<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.reasoning_content %}<think>{{ message.reasoning_content }}</think>
{% endif %}{{ message.content or '' }}
    {%- for call in message.tool_calls or [] %}
      {%- if call.function.arguments is not string %}{{ raise_exception('tool-call arguments must be a JSON string') }}{% endif %}
<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments }}}</tool_call>
    {%- endfor %}
    {%- set ns.open_calls = (message.tool_calls or []) | length %}<|im_end|>
{% elif message.role == 'tool' %}
    {%- if ns.open_calls == 0 %}{{ raise_exception('a tool result that answers no call') }}{% endif %}
    {%- set ns.open_calls = ns.open_calls - 1 %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}{{ raise_exception('unknown role: ' + message.role) }}
  {%- endif %}
{%- endfor %}
"""


def _export(tmp_path: Path, runs: list[Path], fmt: str, *extra: str, name: str | None = None) -> Path:
    out = tmp_path / (name or fmt)
    assert main(["export", *map(str, runs), "--format", fmt, "--out", str(out), *extra]) == 0
    return out


def _valid_lines(*runs: Path) -> dict[str, dict]:
    return {r["id"]: r for run in runs for r in RunFolder(run).read_lines(rf.DIALOGUES)}


def _sharegpt_view(messages: list[dict]) -> list[dict]:
    """The messages as ShareGPT carries them: user messages in a row joined, no closing user message, no call ids."""
    out: list[dict] = []
    for m in (compact(chat_message(m)) for m in messages):
        if m["role"] == "user" and out and out[-1]["role"] == "user":
            out[-1] = {**out[-1], "content": out[-1]["content"] + "\n\n" + m["content"]}
            continue
        if m.get("tool_calls"):
            m["tool_calls"] = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                               for c in m["tool_calls"]]
        m.pop("tool_call_id", None)
        out.append(m)
    while out and out[-1]["role"] == "user":
        out.pop()
    return out


def test_openai_lines_are_the_runs_dialogues_and_render_through_a_tools_chat_template(planted_run, tmp_path):
    from datasets import load_dataset
    from transformers.utils.chat_template_utils import render_jinja_template

    out = _export(tmp_path, [planted_run], "openai")
    lines = read_jsonl(out / "train.jsonl")
    source = _valid_lines(planted_run)
    assert [line["id"] for line in lines] == sorted(source)
    for line in lines:
        assert set(line) == {"id", "messages", "tools"}
        assert line["messages"] == [chat_message(m) for m in source[line["id"]]["messages"]]
        assert line["tools"] == source[line["id"]]["tools"]
        calls = [c for m in line["messages"] for c in m.get("tool_calls") or []]
        assert calls and all(isinstance(c["function"]["arguments"], str) for c in calls)
        rendered = render_jinja_template([line["messages"]], tools=line["tools"], chat_template=TOOLS_TEMPLATE)[0][0]
        assert rendered.count("<tool_call>") == len(calls)
        assert rendered.count("<tool_response>") == sum(m["role"] == "tool" for m in line["messages"])
    reasoning = [m for line in lines for m in line["messages"] if m.get("reasoning_content")]
    assert [m["reasoning_content"] for m in reasoning] == [REASONING]
    assert f"<think>{REASONING}</think>" in render_jinja_template(
        [lines[0]["messages"]], tools=lines[0]["tools"], chat_template=TOOLS_TEMPLATE)[0][0]
    loaded = load_dataset("json", data_files={"train": str(out / "train.jsonl")})["train"]  # how TRL reads it
    assert loaded.num_rows == len(lines) and {"messages", "tools"} <= set(loaded.column_names)


def test_a_template_refuses_what_a_trainer_would(planted_run, tmp_path):
    """The template check above has teeth: dict arguments and a stray tool result are refused."""
    from jinja2.exceptions import TemplateError
    from transformers.utils.chat_template_utils import render_jinja_template

    line = read_jsonl(_export(tmp_path, [planted_run], "openai") / "train.jsonl")[0]
    broken = json.loads(json.dumps(line["messages"]))
    call = next(m for m in broken if m.get("tool_calls"))["tool_calls"][0]
    call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    with pytest.raises(TemplateError, match="JSON string"):
        render_jinja_template([broken], tools=line["tools"], chat_template=TOOLS_TEMPLATE)
    stray = [m for m in line["messages"] if m["role"] != "assistant"]
    with pytest.raises(TemplateError, match="answers no call"):
        render_jinja_template([stray], tools=line["tools"], chat_template=TOOLS_TEMPLATE)


def test_sharegpt_reads_back_through_dataset_info_as_the_same_dialogues(planted_run, tmp_path):
    out = _export(tmp_path, [planted_run], "sharegpt", name="clinic-sharegpt")
    info = json.loads((out / "dataset_info.json").read_text())
    assert info == {"clinic_sharegpt_train": {"file_name": "train.json", "formatting": "sharegpt",
                                              "columns": {"messages": "conversations", "system": "system",
                                                          "tools": "tools"}}}
    samples = json.loads((out / "train.json").read_text())
    assert all(isinstance(s["tools"], str) for s in samples)
    kinds = {t["from"] for s in samples for t in s["conversations"]}
    assert kinds == {"human", "gpt", "function_call", "observation"}
    back = read_sharegpt(out, "clinic_sharegpt_train")
    source = _valid_lines(planted_run)
    assert [d["id"] for d in back] == sorted(source)
    for dialogue in back:
        original = source[dialogue["id"]]
        assert dialogue["tools"] == original["tools"]
        assert _sharegpt_view(dialogue["messages"]) == _sharegpt_view(original["messages"])
        # every result still follows the call it answers
        for i, m in enumerate(dialogue["messages"]):
            if m["role"] == "tool":
                caller = next(p for p in reversed(dialogue["messages"][:i]) if p["role"] == "assistant")
                assert m["tool_call_id"] in {c["id"] for c in caller["tool_calls"]}
    reasoning = [m for d in back for m in d["messages"] if m.get("reasoning_content")]
    assert [m["reasoning_content"] for m in reasoning] == [REASONING]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["skipped"] == {}


def test_hf_dataset_and_parquet_load_back_as_the_same_dialogues(planted_run, tmp_path):
    from datasets import load_dataset, load_from_disk

    out = _export(tmp_path, [planted_run], "hf", "--only", "all", "--test-fraction", "0.3")
    source = {r["id"]: r for name in (rf.DIALOGUES, rf.REJECTED) for r in RunFolder(planted_run).read_lines(name)}
    from_disk = load_from_disk(str(out / "dataset"))
    parquet = load_dataset("parquet", data_files={s: str(out / f"data/{s}-00000-of-00001.parquet")
                                                  for s in ("train", "test")})
    for dataset in (from_disk, parquet):
        assert set(dataset) == {"train", "test"}
        rows = [row for split in ("train", "test") for row in dataset[split]]
        assert sorted(r["id"] for r in rows) == sorted(source)
        for split in ("train", "test"):
            assert all(split_of(r["id"], 0.3) == split for r in dataset[split])
        for row in rows:
            original = source[row["id"]]
            # each message exactly as the trl line has it: arguments as objects, no key of another message added
            assert row["messages"] == [chat_message(m, objects=True) for m in original["messages"]]
            assert row["tools"] == original["tools"]
            assert json.loads(row["metadata"]) == original["metadata"]
            assert row["valid"] == (original.get("reason") is None)
            assert row["reason"] == original.get("reason")
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "\nlicense:" in card and "Steps (mean / max)" in card
    assert "concert_singer.sqlite" in card and "clinic.sqlite" in card


def test_splits_stay_put_across_reexports_and_added_runs(offline_run, second_run, tmp_path):
    def membership(out: Path) -> dict[str, str]:
        return {line["id"]: split for split in ("train", "test") for line in read_jsonl(out / f"{split}.jsonl")}

    first = membership(_export(tmp_path, [offline_run], "openai", "--test-fraction", "0.25", name="a"))
    again = membership(_export(tmp_path, [offline_run], "openai", "--test-fraction", "0.25", name="b"))
    merged = membership(_export(tmp_path, [offline_run, second_run], "openai", "--test-fraction", "0.25", name="c"))
    assert first == again
    assert {i: merged[i] for i in first} == first
    assert set(merged) - set(first) == set(_valid_lines(second_run))
    assert set(first.values()) == {"train", "test"}


def test_dedup_drops_the_planted_near_copies_and_keeps_the_originals(planted_run, tmp_path, capsys):
    out = _export(tmp_path, [planted_run], "openai", "--dedup", "0.97")
    copies = planted_copies(planted_run)
    kept = {line["id"] for line in read_jsonl(out / "train.jsonl")}
    assert kept == set(_valid_lines(planted_run)) - set(copies)
    manifest = json.loads((out / "export.json").read_text())
    assert sorted(d["id"] for d in manifest["dropped_copies"]) == copies
    assert all(d["copy_of"] + "-copy" == d["id"] and d["similarity"] >= 0.97 for d in manifest["dropped_copies"])
    printed = capsys.readouterr().out
    assert all(f"dropped {c}" in printed for c in copies)


@pytest.mark.parametrize("argv, message", [
    (["--format", "openai", "--test-fraction", "1.5"], "--test-fraction must be"),
    (["--format", "openai", "--dedup", "0"], "--dedup must be"),
    (["--format", "openai", "--only", "rejected"], "no rejected dialogues"),
])
def test_bad_export_input_is_one_line_and_writes_nothing(offline_run, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["export", str(offline_run), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_refuses_an_existing_output_and_a_folder_that_is_no_run(offline_run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["export", str(offline_run), "--format", "hf", "--out", str(taken)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert main(["export", str(tmp_path), "--format", "openai", "--out", str(tmp_path / "x")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["export", str(offline_run), str(offline_run), "--format", "openai", "--out", str(tmp_path / "y")]) == 2
    assert "give each run once" in capsys.readouterr().err


def test_a_failed_export_leaves_nothing_behind(offline_run, tmp_path, monkeypatch):
    from rich.console import Console

    import results.exporters.training_set as training_set

    def fail(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(training_set, "openai_line", fail)
    with pytest.raises(OSError):
        training_set.export_training_set(training_set.ExportRequest(run_dirs=[offline_run], format="openai",
                                                                    out=tmp_path / "out"), Console())
    assert list(tmp_path.iterdir()) == []
