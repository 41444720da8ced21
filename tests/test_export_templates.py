"""Exports that train correctly: rendered by a real (Hermes/Qwen-form) chat template, tokenized by TRL, checked.

The tokenizer is built here, offline (tests/tiny_model.py); the run is the shared 20-dialogue offline run, whose
tools take arguments of many shapes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from graphs.run import main
from runner import run_folder as rf
from results.exporters.openai_format import chat_message
from runner.run_folder import RunFolder
from tests.chat_template import (HERMES_TEMPLATE, HERMES_TEMPLATE_NO_REASONING, hermes_calls, hermes_tools,
                                 render_hermes, render_strict)
from tests.planting import REASONING, read_jsonl


def _export(tmp_path: Path, run: Path, fmt: str, *extra: str, name: str | None = None, code: int = 0) -> Path:
    out = tmp_path / (name or fmt)
    assert main(["export", str(run), "--format", fmt, "--out", str(out), *extra]) == code
    return out


def _source(run: Path) -> dict[str, dict]:
    return {r["id"]: r for name in (rf.DIALOGUES, rf.REJECTED) for r in RunFolder(run).read_lines(name)}


def _source_calls(messages: list[dict]) -> list[dict]:
    return [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
            for m in messages for c in m.get("tool_calls") or []]


@pytest.fixture(scope="module")
def tokenizer_dir(offline_run, tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer carrying the Hermes template, trained on a few rendered dialogues of the run."""
    from tests.tiny_model import tiny_tokenizer

    lines = list(RunFolder(offline_run).read_lines(rf.DIALOGUES))[:3]
    texts = [render_hermes([chat_message(m, objects=True) for m in line["messages"]], line["tools"]) for line in lines]
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer(texts, folder)
    return folder


def test_hf_and_trl_lines_render_with_the_source_arguments_and_tools(planted_run, tmp_path):
    from datasets import load_dataset, load_from_disk

    source = _source(planted_run)
    shapes = {tuple(sorted(c["arguments"])) for line in source.values() for c in _source_calls(line["messages"])}
    assert len(shapes) >= 5  # tools whose arguments differ in shape: Arrow would merge them into one struct
    trl = _export(tmp_path, planted_run, "trl", "--only", "all", "--test-fraction", "0.3")
    hf = _export(tmp_path, planted_run, "hf", "--only", "all", "--test-fraction", "0.3")
    read_back = {
        "trl jsonl": [json.loads(line) for s in ("train", "test") for line in (trl / f"{s}.jsonl").open()],
        "trl via datasets (as TRL loads it)": [row for s in ("train", "test") for row in
                                               load_dataset("json", data_files=str(trl / f"{s}.jsonl"))["train"]],
        "hf load_from_disk": [row for split in load_from_disk(str(hf / "dataset")).values() for row in split],
        "hf parquet": [row for s in ("train", "test") for row in
                       load_dataset("parquet", data_files=str(hf / f"data/{s}-00000-of-00001.parquet"))["train"]],
    }
    for how, rows in read_back.items():
        assert sorted(r["id"] for r in rows) == sorted(source), how
        for row in rows:
            original = source[row["id"]]
            assert row["messages"] == [chat_message(m, objects=True) for m in original["messages"]], how
            assert row["tools"] == original["tools"], how
            rendered = render_hermes(row["messages"], row["tools"])
            assert hermes_calls(rendered) == _source_calls(original["messages"]), how
            assert hermes_tools(rendered) == original["tools"], how
            assert "null" not in json.dumps([c["arguments"] for c in hermes_calls(rendered)]), how
    reasoning = [m for m in read_back["trl jsonl"] for m in m["messages"] if m.get("reasoning_content")]
    assert [m["reasoning_content"] for m in reasoning] == [REASONING]


def test_the_openai_export_renders_double_encoded_through_the_same_template(planted_run, tmp_path):
    """Why openai is not for open models: its string arguments come out as a string inside JSON."""
    line = read_jsonl(_export(tmp_path, planted_run, "openai") / "train.jsonl")[0]
    calls = hermes_calls(render_hermes(line["messages"], line["tools"]))
    assert calls and all(isinstance(c["arguments"], str) for c in calls)


def test_trl_sft_trainer_tokenizes_every_row_as_the_template_renders_it_and_trains(offline_run, tokenizer_dir,
                                                                                     tmp_path):
    pytest.importorskip("trl", reason="TRL comes with the dev extra")
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tests.tiny_model import tiny_model

    out = _export(tmp_path, offline_run, "trl")
    lines = read_jsonl(out / "train.jsonl")
    dataset = load_dataset("json", data_files=str(out / "train.jsonl"))["train"]
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    assert tokenizer.chat_template == HERMES_TEMPLATE
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=1, max_length=None,
                     report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, bf16=False, fp16=False,
                     dataloader_num_workers=0, seed=0)
    trainer = SFTTrainer(model=tiny_model(tokenizer), processing_class=tokenizer, train_dataset=dataset, args=args)
    tokenized = trainer.train_dataset
    assert tokenized.num_rows == len(lines) == dataset.num_rows
    for row, line in zip(tokenized, lines):
        assert tokenizer.decode(row["input_ids"]) == render_hermes(line["messages"], line["tools"])
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)


def test_check_template_fails_the_openai_export_and_passes_trl_with_token_figures(offline_run, tokenizer_dir,
                                                                                  tmp_path, capsys):
    from transformers import AutoTokenizer

    openai = _export(tmp_path, offline_run, "openai", "--check-template", str(tokenizer_dir), code=1)
    printed = capsys.readouterr().out
    check = json.loads((openai / "export.json").read_text())["template_check"]
    lines = read_jsonl(openai / "train.jsonl")
    calls = {line["id"]: sum(len(m.get("tool_calls") or []) for m in line["messages"]) for line in lines}
    assert check["double_encoded"] == calls and "double-encoded arguments" in printed
    assert check["refused"] == {} and check["dropped_tool_results"] == {}

    trl = _export(tmp_path, offline_run, "trl", "--check-template", str(tokenizer_dir))
    printed = capsys.readouterr().out
    check = json.loads((trl / "export.json").read_text())["template_check"]
    assert check["double_encoded"] == {} and check["refused"] == {} and check["lines"] == len(lines)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    counts = sorted(len(tokenizer.apply_chat_template(line["messages"], tools=line["tools"], tokenize=True,
                                                      return_dict=True)["input_ids"])
                    for line in read_jsonl(trl / "train.jsonl"))
    assert check["tokens"]["min"] == counts[0] and check["tokens"]["max"] == counts[-1]
    assert check["tokens"]["p95"] == counts[math.ceil(0.95 * len(counts)) - 1]
    t = check["tokens"]
    assert f"{t['min']} / {t['median']} / {t['p95']} / {t['max']}" in printed


def test_check_template_reports_refusals_dropped_results_and_reasoning(planted_run, tmp_path, capsys):
    templates = {
        "hermes.jinja": HERMES_TEMPLATE,
        "qwen25.jinja": HERMES_TEMPLATE_NO_REASONING,
        "no-results.jinja": HERMES_TEMPLATE.replace("{{- message.content }}{{- '\\n</tool_response>' }}",
                                                    "{{- '\\n</tool_response>' }}"),
        "refusing.jinja": HERMES_TEMPLATE.replace("{%- elif message.role == \"tool\" %}",
                                                  "{%- elif message.role == \"tool\" %}{{ raise_exception('no tools here') }}"),
    }
    for name, text in templates.items():
        (tmp_path / name).write_text(text)
    checks = {}
    for name, code in (("hermes.jinja", 0), ("qwen25.jinja", 0), ("no-results.jinja", 1), ("refusing.jinja", 1)):
        out = _export(tmp_path, planted_run, "trl", "--check-template", str(tmp_path / name), name=name + "-out",
                      code=code)
        checks[name] = json.loads((out / "export.json").read_text())["template_check"]
    lines = read_jsonl(tmp_path / "hermes.jinja-out" / "train.jsonl")
    with_reasoning = [line["id"] for line in lines if any(m.get("reasoning_content") for m in line["messages"])]
    assert checks["hermes.jinja"]["reasoning_rendered"] is True and checks["hermes.jinja"]["tokens"] is None
    assert checks["qwen25.jinja"]["reasoning_rendered"] is False
    assert checks["qwen25.jinja"]["dropped_reasoning"] == {with_reasoning[0]: 1}
    results = {line["id"]: sum(m["role"] == "tool" for m in line["messages"]) for line in lines}
    assert checks["no-results.jinja"]["dropped_tool_results"] == results
    refused = checks["refusing.jinja"]["refused"]
    assert set(refused) == {line["id"] for line in lines} and all("no tools here" in e for e in refused.values())
    assert "refused by the template" in capsys.readouterr().out


def _alternates(messages: list[dict]) -> bool:
    render_strict(messages)  # raises unless system?, then user/assistant alternate, ending with assistant text
    return True


def test_max_tokens_and_split_tasks_count_what_they_write(offline_run, tokenizer_dir, tmp_path):
    whole = _export(tmp_path, offline_run, "trl", "--check-template", str(tokenizer_dir), name="whole")
    tokens = json.loads((whole / "export.json").read_text())["template_check"]["tokens"]
    limit = tokens["median"]
    out = _export(tmp_path, offline_run, "trl", "--check-template", str(tokenizer_dir), "--split", "tasks",
                  "--max-tokens", str(limit), "--test-fraction", "0.3", name="tasks")
    manifest = json.loads((out / "export.json").read_text())
    written = {s: read_jsonl(out / f"{s}.jsonl") for s in ("train", "test")}
    assert manifest["splits"] == {s: len(rows) for s, rows in written.items()}
    assert manifest["samples"] == sum(manifest["splits"].values()) + len(manifest["over_max_tokens"])
    assert manifest["over_max_tokens"] and all(rows for rows in written.values())
    source = _source(offline_run)
    tasks = {i: len(line["metadata"]["tasks"]) for i, line in source.items() if line.get("reason") is None}
    assert manifest["samples"] == sum(tasks.values())  # one sample per task
    kept = [line for rows in written.values() for line in rows]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    for line in kept:
        dialogue_id, task = line["id"].rsplit("#task", 1)
        original = [chat_message(m, objects=True) for m in source[dialogue_id]["messages"]]
        assert line["messages"] == original[:len(line["messages"])]  # a prefix of its dialogue
        assert line["messages"][-1]["role"] == "assistant" and _alternates(line["messages"])
        if int(task) == tasks[dialogue_id]:
            assert line["messages"] == original
        assert len(tokenizer.apply_chat_template(line["messages"], tools=line["tools"], tokenize=True,
                                                 return_dict=True)["input_ids"]) <= limit
    splits = {line["id"].rsplit("#task", 1)[0]: s for s, rows in written.items() for line in rows}
    assert all(line["id"].rsplit("#task", 1)[0] not in splits or splits[line["id"].rsplit("#task", 1)[0]] == s
               for s, rows in written.items() for line in rows)


@pytest.mark.parametrize("argv, message", [
    (["--format", "trl", "--max-tokens", "100"], "--max-tokens counts tokens"),
    (["--format", "sharegpt", "--check-template", "TOKENIZER"], "LLaMA-Factory renders ShareGPT"),
    (["--format", "trl", "--check-template", "nowhere.txt"], "takes a tokenizer folder or a .jinja"),
    (["--format", "trl", "--check-template", "TOKENIZER", "--max-tokens", "0"], "--max-tokens must be"),
])
def test_bad_template_options_are_one_line_and_write_nothing(offline_run, tokenizer_dir, tmp_path, capsys,
                                                             argv, message):
    out = tmp_path / "out"
    argv = [str(tokenizer_dir) if a == "TOKENIZER" else a for a in argv]
    assert main(["export", str(offline_run), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_the_dataset_card_shows_how_to_load_and_the_token_figures(offline_run, tokenizer_dir, tmp_path):
    out = _export(tmp_path, offline_run, "hf", "--check-template", str(tokenizer_dir), "--max-tokens", "100000")
    card = (out / "README.md").read_text()
    t = json.loads((out / "export.json").read_text())["template_check"]["tokens"]
    assert f"min {t['min']}, median {t['median']}, p95 {t['p95']}, max {t['max']}" in card
    assert "load_dataset(\"parquet\"" in card and "SFTTrainer" in card and "dataset_info.json" in card
    assert "Lines over 100000 tokens were left out: 0." in card


def test_the_report_shows_how_to_load_and_the_token_figures(offline_run, tokenizer_dir, tmp_path):
    import html

    from results.exporters.openai_format import trl_line
    from results.exporters.source import load_runs
    from results.exporters.template_check import ChatTemplate, check_lines

    out = tmp_path / "report.html"
    assert main(["report", str(offline_run), "--out", str(out), "--check-template", str(tokenizer_dir)]) == 0
    page = html.unescape(out.read_text())
    expected = check_lines(ChatTemplate(tokenizer_dir), [trl_line(d) for d in load_runs([offline_run])[0].accepted])[0]
    t = expected.tokens
    assert f"min {t.min}, median {t.median}, p95 {t.p95}, max {t.max}" in page
    assert "SFTTrainer" in page and "dataset_info.json" in page and 'load_dataset("parquet"' in page
