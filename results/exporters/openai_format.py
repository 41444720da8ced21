"""OpenAI chat lines (`messages`, `tools`, `id`): what TRL's SFT trainer reads."""

from __future__ import annotations

import json
from typing import Any

from results.exporters.source import SourceDialogue

MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name")


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value or {}, ensure_ascii=False)


def chat_message(message: dict[str, Any]) -> dict[str, Any]:
    """One message with only chat-format keys; tool-call arguments always a JSON string."""
    out = {k: message[k] for k in MESSAGE_KEYS if k in message}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {"id": c.get("id", ""), "type": c.get("type", "function"),
             "function": {"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}}
            for c in message["tool_calls"]
        ]
    return out


def openai_line(dialogue: SourceDialogue) -> dict[str, Any]:
    return {"id": dialogue.id, "messages": [chat_message(m) for m in dialogue.messages], "tools": dialogue.tools}
