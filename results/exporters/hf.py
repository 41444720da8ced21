"""Hugging Face `datasets`: a DatasetDict saved to disk, parquet files per split, and a dataset card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from results.exporters.openai_format import MESSAGE_KEYS, chat_message
from results.exporters.source import SourceDialogue

DATASET_DIR = "dataset"
PARQUET_DIR = "data"


def features():
    """Messages as typed columns (readable by any parquet reader); tools and metadata as JSON text, since every
    tool's parameters have a shape of their own. (Text, not `datasets.Json`: its decoder rounds some floats.)"""
    from datasets import Features, List, Value

    call = {"id": Value("string"), "type": Value("string"),
            "function": {"name": Value("string"), "arguments": Value("string")}}
    message = {k: Value("string") for k in MESSAGE_KEYS if k != "tool_calls"} | {"tool_calls": List(call)}
    return Features({
        "id": Value("string"), "run": Value("string"), "source_database": Value("string"),
        "valid": Value("bool"), "reason": Value("string"), "difficulty": List(Value("string")),
        "messages": List(message), "tools": Value("string"), "metadata": Value("string"),
    })


def hf_row(dialogue: SourceDialogue) -> dict[str, Any]:
    messages = []
    for m in dialogue.messages:
        out = chat_message(m)
        messages.append({k: out.get(k) for k in MESSAGE_KEYS})  # every column present, null where absent
    return {"id": dialogue.id, "run": dialogue.run, "source_database": dialogue.database, "valid": dialogue.valid,
            "reason": dialogue.reason, "difficulty": [str(t.get("difficulty", "")) for t in
                                                       dialogue.metadata.get("tasks", [])],
            "messages": messages, "tools": json.dumps(dialogue.tools, ensure_ascii=False),
            "metadata": json.dumps(dialogue.metadata, ensure_ascii=False)}


def parquet_name(split: str) -> str:
    return f"{PARQUET_DIR}/{split}-00000-of-00001.parquet"


def _rows(dialogues: list[SourceDialogue], advance: Callable[[], None]) -> list[dict[str, Any]]:
    rows = []
    for d in dialogues:
        rows.append(hf_row(d))
        advance()
    return rows


def write_hf(splits: dict[str, list[SourceDialogue]], folder: Path, advance: Callable[[], None]) -> None:
    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()  # our own progress is shown; theirs would interleave with it
    dataset = DatasetDict({name: Dataset.from_list(_rows(rows, advance), features=features())
                           for name, rows in splits.items()})
    dataset.save_to_disk(str(folder / DATASET_DIR))
    (folder / PARQUET_DIR).mkdir()
    for name, part in dataset.items():
        part.to_parquet(str(folder / parquet_name(name)))


def compact(message: dict[str, Any]) -> dict[str, Any]:
    """A message read back from the typed columns, without the columns it did not have."""
    return {k: v for k, v in message.items() if v is not None and not (k == "tool_calls" and not v)}
