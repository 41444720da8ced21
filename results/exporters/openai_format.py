"""Chat lines (`id`, `messages`, `tools`) in two conventions.

`openai`: what OpenAI's fine-tuning API takes: tool-call `arguments` are JSON strings.
`trl` (and the `hf` dataset): the Hugging Face convention: `arguments` are JSON objects, since the chat templates
of open models (Qwen, Llama 3.1, Hermes, Mistral) render them with `tojson`; a string there trains the model to
emit a quoted string.
"""

from __future__ import annotations

import json
from typing import Any

from results.exporters.source import SourceDialogue

MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name")


def _string_arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value or {}, ensure_ascii=False)


def _object_arguments(value: Any) -> Any:
    if not isinstance(value, str):
        return value or {}
    try:
        return json.loads(value) if value.strip() else {}
    except json.JSONDecodeError:
        return value  # not JSON: left as it was, so --check-template can point at it


def chat_message(message: dict[str, Any], objects: bool = False) -> dict[str, Any]:
    """One message with only chat-format keys; tool-call arguments a JSON string, or an object with `objects`."""
    arguments = _object_arguments if objects else _string_arguments
    out = {k: message[k] for k in MESSAGE_KEYS if k in message}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {"id": c.get("id", ""), "type": c.get("type", "function"),
             "function": {"name": c["function"]["name"], "arguments": arguments(c["function"].get("arguments"))}}
            for c in message["tool_calls"]
        ]
    return out


def openai_line(dialogue: SourceDialogue) -> dict[str, Any]:
    return {"id": dialogue.id, "messages": [chat_message(m) for m in dialogue.messages], "tools": dialogue.tools}


def trl_line(dialogue: SourceDialogue) -> dict[str, Any]:
    """What TRL's SFTTrainer reads from `load_dataset("json")`: each message and tool keeps exactly its own keys."""
    return {"id": dialogue.id, "messages": [chat_message(m, objects=True) for m in dialogue.messages],
            "tools": dialogue.tools}
