"""Build a run folder with known contents from a real one: rejected lines, a second database, reasoning, copies."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from dialogue_forge.run import write_stats
from runner import run_folder as rf
from runner.run_folder import RunFolder

REJECTED_REASONS = ["task 1: the assistant never read the pet record back", "only 1 of 2 tasks were completed",
                    "task 2: the assistant stated a value no tool returned"]
OTHER_DATABASE = "/data/spider/concert_singer/concert_singer.sqlite"
COPY_SUFFIX = "-copy"
REASONING = "The user wants the record first; search by species, then read the match."


def _rename(record: dict, old: str, new: str) -> dict:
    record = copy.deepcopy(record)
    record["id"] = record["id"].replace(old, new, 1)
    record["metadata"]["run_id"] = new
    return record


def _near_copy(record: dict) -> dict:
    """The same dialogue with its first user message lightly reworded: a near-duplicate, not an exact one."""
    twin = copy.deepcopy(record)
    twin["id"] += COPY_SUFFIX
    first = next(m for m in twin["messages"] if m["role"] == "user")
    first["content"] = first["content"].replace("Could you", "Can you").rstrip("?.!") + ", please?"
    return twin


def plant_run(source: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    for name in (rf.CONFIG, rf.TOOLSET, rf.TOOLSET_REPORT):
        shutil.copy(source / name, out / name)
    folder = RunFolder(out)
    config = folder.read_json(rf.CONFIG)
    old, new = config["run_id"], out.name
    config["run_id"] = new
    folder.write_json(rf.CONFIG, config)
    lines = sorted((_rename(r, old, new) for r in RunFolder(source).read_lines(rf.DIALOGUES)), key=lambda r: r["id"])
    rejected = lines[-3:]
    accepted = lines[:-3]
    for record, reason in zip(rejected, REJECTED_REASONS):
        record["reason"] = reason
    for record in accepted[10:14]:  # four dialogues from a second database, with a toolset of their own
        record["metadata"]["source_database"] = OTHER_DATABASE
        record["metadata"]["toolset"] = "toolsets/concert_singer.json"
    first_call = next(m for m in accepted[0]["messages"] if m["role"] == "assistant" and m.get("tool_calls"))
    first_call["reasoning_content"] = REASONING
    accepted += [_near_copy(r) for r in accepted[1:4]]
    folder.rewrite_lines(rf.DIALOGUES, accepted)
    folder.rewrite_lines(rf.REJECTED, rejected)
    folder.sort_dataset()
    write_stats(folder)
    return out


def planted_copies(run: Path) -> list[str]:
    return sorted(r["id"] for r in RunFolder(run).read_lines(rf.DIALOGUES) if r["id"].endswith(COPY_SUFFIX))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
