"""LLaMA-Factory's ShareGPT format, and a reader that follows its rules to read it back.

A conversation alternates: `human` or `observation` on even positions, `gpt` or `function_call` on odd ones,
ending with `gpt`. A `function_call` value is one call `{"name", "arguments"}` or a list of parallel calls;
the `observation` after several calls is a JSON list of their results, in order. Reasoning rides in front
of an assistant turn as `<think>…</think>`, as LLaMA-Factory expects it. ShareGPT has no tool-call ids
and no place for text an assistant wrote beside its tool calls; such text is dropped and counted. Two user
messages in a row (a user who thanks, then asks the next task) become one `human` turn, joined by a blank
line, since the turns must alternate; a closing user message that nothing answers is dropped (a
ShareGPT conversation ends with the assistant). Every such change is counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from environment.errors import InputError
from results.exporters.openai_format import chat_message
from results.exporters.source import SourceDialogue

EVEN, ODD = ("human", "observation"), ("gpt", "function_call")
THINK = re.compile(r"^<think>(.*?)</think>\n\n", re.DOTALL)
TEXT_BESIDE_CALLS = "assistant text beside tool calls dropped"
JOINED_USER = "user messages joined to the one before"
CLOSING_USER = "closing user messages dropped (nothing answers them)"
COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools"}


class NotShareGPT(ValueError):
    """A dialogue whose shape ShareGPT cannot carry (for example a system message mid-conversation)."""


class ShareGPTConversion(BaseModel):
    sample: dict[str, Any]
    changes: dict[str, int] = Field(default_factory=dict, description="What had to change to fit, and how often.")


def _think(message: dict[str, Any]) -> str:
    reasoning = message.get("reasoning_content")
    return f"<think>{reasoning}</think>\n\n" if reasoning else ""


def to_sharegpt(dialogue: SourceDialogue) -> ShareGPTConversion:
    messages = [chat_message(m) for m in dialogue.messages]
    lead = 0
    while lead < len(messages) and messages[lead]["role"] == "system":
        lead += 1
    system = "\n\n".join(str(m.get("content") or "") for m in messages[:lead])
    turns: list[dict[str, str]] = []
    results: list[str] = []
    changes: Counter[str] = Counter()

    def flush() -> None:
        if results:
            turns.append({"from": "observation", "value": results[0] if len(results) == 1 else json.dumps(results)})
            results.clear()

    for m in messages[lead:]:
        role = m["role"]
        if role == "tool":
            results.append(str(m.get("content") or ""))
            continue
        flush()
        if role == "user" and turns and turns[-1]["from"] == "human":
            turns[-1]["value"] += "\n\n" + str(m.get("content") or "")
            changes[JOINED_USER] += 1
        elif role == "user":
            turns.append({"from": "human", "value": str(m.get("content") or "")})
        elif role == "assistant" and m.get("tool_calls"):
            if (m.get("content") or "").strip():
                changes[TEXT_BESIDE_CALLS] += 1
            calls = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")}
                     for c in m["tool_calls"]]
            value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            turns.append({"from": "function_call", "value": _think(m) + value})
        elif role == "assistant":
            turns.append({"from": "gpt", "value": _think(m) + str(m.get("content") or "")})
        else:
            raise NotShareGPT(f"a {role} message inside the conversation")
    flush()
    if turns and turns[-1]["from"] == "human":
        turns.pop()
        changes[CLOSING_USER] += 1
    _check_alternation(turns)
    sample = {"id": dialogue.id, "conversations": turns, "system": system,
              "tools": json.dumps(dialogue.tools, ensure_ascii=False)}
    return ShareGPTConversion(sample=sample, changes=dict(changes))


def _check_alternation(turns: list[dict[str, str]]) -> None:
    for i, turn in enumerate(turns):
        if turn["from"] not in (EVEN if i % 2 == 0 else ODD):
            raise NotShareGPT(f"turn {i + 1} is {turn['from']!r} where ShareGPT expects one of "
                              f"{', '.join(EVEN if i % 2 == 0 else ODD)}")
    if not turns or len(turns) % 2:
        raise NotShareGPT("the conversation does not end with an assistant turn")


def dataset_info(names_to_files: dict[str, str]) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json entries, one per file."""
    return {name: {"file_name": file, "formatting": "sharegpt", "columns": dict(COLUMNS)}
            for name, file in names_to_files.items()}


def _split_think(value: str) -> tuple[str | None, str]:
    found = THINK.match(value)
    return (found.group(1), value[found.end():]) if found else (None, value)


def from_sharegpt(sample: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """One sample back to OpenAI chat messages and tools; tool-call ids are numbered afresh."""
    turns = sample[columns.get("messages", "conversations")]
    _check_alternation(turns)
    messages: list[dict[str, Any]] = []
    if sample.get(columns.get("system", "system")):
        messages.append({"role": "system", "content": sample[columns.get("system", "system")]})
    pending: list[dict[str, Any]] = []
    for turn in turns:
        kind, value = turn["from"], turn["value"]
        if kind == "human":
            messages.append({"role": "user", "content": value})
        elif kind == "gpt":
            reasoning, text = _split_think(value)
            messages.append({"role": "assistant", "content": text, **({"reasoning_content": reasoning} if reasoning else {})})
        elif kind == "function_call":
            reasoning, text = _split_think(value)
            parsed = json.loads(text)
            calls = parsed if isinstance(parsed, list) else [parsed]
            pending = [{"id": f"call_{len(messages)}_{k}", "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                       for k, c in enumerate(calls)]
            messages.append({"role": "assistant", "content": None, "tool_calls": pending,
                             **({"reasoning_content": reasoning} if reasoning else {})})
        else:  # observation: the results of the calls just made, in order
            results = json.loads(value) if len(pending) > 1 else [value]
            if len(results) != len(pending):
                raise NotShareGPT(f"{len(pending)} calls but {len(results)} results")
            messages.extend({"role": "tool", "tool_call_id": c["id"], "name": c["function"]["name"], "content": r}
                            for c, r in zip(pending, results))
    tools = sample.get(columns.get("tools", "tools")) or "[]"
    return {"messages": messages, "tools": json.loads(tools) if isinstance(tools, str) else tools}


def read_sharegpt(folder: Path, name: str) -> list[dict[str, Any]]:
    """Read a dataset the way LLaMA-Factory finds it: its dataset_info.json entry, its file, its columns."""
    info_path = Path(folder) / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if name not in info:
        raise InputError(f"{info_path} names no dataset {name!r} (it has: {', '.join(info)})")
    entry = info[name]
    if entry.get("formatting") != "sharegpt":
        raise InputError(f"dataset {name!r} is not in sharegpt formatting")
    samples = json.loads((Path(folder) / entry["file_name"]).read_text(encoding="utf-8"))
    return [{"id": s.get("id"), **from_sharegpt(s, entry.get("columns", COLUMNS))} for s in samples]
