"""Hugging Face `datasets`: a DatasetDict saved to disk, parquet files per split, and a dataset card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from results.exporters.openai_format import trl_line
from results.exporters.source import SourceDialogue

DATASET_DIR = "dataset"
PARQUET_DIR = "data"


def features():
    """Each message and each tool as one `Json` value: Arrow would merge objects of different shapes into one struct
    and pad the keys a message or a tool call lacks with nulls, which chat templates then render (an `arguments`
    with every other tool's parameters set to null; `'tool_calls' in message` true on a user message). Metadata
    stays JSON text: nothing renders it, and text is exact."""
    from datasets import Features, Json, List, Value

    return Features({
        "id": Value("string"), "run": Value("string"), "source_database": Value("string"),
        "valid": Value("bool"), "reason": Value("string"), "difficulty": List(Value("string")),
        "variant": List(Value("string")), "messages": List(Json()), "tools": List(Json()), "metadata": Value("string"),
    })


def _json(value: Any) -> str:
    # Encoded here (Python's json, exact): given an object, `datasets` would encode it with a ujson that keeps
    # 10 significant digits of a float.
    return json.dumps(value, ensure_ascii=False)


def hf_row(dialogue: SourceDialogue) -> dict[str, Any]:
    line = trl_line(dialogue)
    return {"id": dialogue.id, "run": dialogue.run, "source_database": dialogue.database, "valid": dialogue.valid,
            "reason": dialogue.reason, "difficulty": [str(t.get("difficulty", "")) for t in
                                                       dialogue.metadata.get("tasks", [])],
            "variant": [str(t.get("variant", "standard")) for t in dialogue.metadata.get("tasks", [])],
            "messages": [_json(m) for m in line["messages"]], "tools": [_json(t) for t in line["tools"]],
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
    """A message without its null or empty fields (how ShareGPT and the typed exports of old compare)."""
    return {k: v for k, v in message.items() if v is not None and not (k == "tool_calls" and not v)}
