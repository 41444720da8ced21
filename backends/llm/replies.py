"""Reading model replies: the JSON object in a reply, reasoning beside the answer, and what a small
model's assistant reply can get wrong (nothing said, a tool that does not exist, arguments that are
not JSON)."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import ValidationError

from state.dialogue import Usage

REASONING = "reasoning_content"


class ReplyError(ValueError):
    """A reply that is not the JSON we asked for (a role's own checks raise it too)."""


class BackendOutputError(RuntimeError):
    """A role's reply could not be used, even after feeding the error back."""

    def __init__(self, role: str, last_error: str, *, attempts: int = 0, usage: Usage | None = None,
                 last_reply: str = "") -> None:
        self.role = role
        self.last_error = last_error
        self.attempts = attempts
        self.usage = usage or Usage()
        self.last_reply = last_reply
        super().__init__(f"{role}: no usable reply after {attempts} attempt(s); last error: {last_error}")


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
# Reasoning models served through OpenAI-compatible servers often put their thinking first, in a
# <think> block that may itself contain braces (or only its closing tag, when the chat template
# opened it).
_THINK = re.compile(r"<think>.*?</think>", re.S)
_LEADING_THINK = re.compile(r"^\s*(?:<think>)?(.*?)</think>\s*", re.S)


def extract_json_object(text: str) -> tuple[dict[str, Any], str]:
    """The first JSON object in a reply: inside ```json fences if there are any, else after any prose.

    Returns the object and a note about an earlier `{` that did not parse ("" if none), so a schema
    error on an inner object can also point at the broken outer one.
    """
    text = _THINK.sub("", text)
    # Not strict: a raw newline or tab inside a string is what a grammar-constrained small model writes
    # (llama.cpp's JSON grammar allows it); the meaning is plain, so it is taken as it stands.
    decoder = json.JSONDecoder(strict=False)
    skipped = ""
    for candidate in [*(m.group(1) for m in _FENCE.finditer(text)), text]:
        start = candidate.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError as exc:
                skipped = skipped or f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            else:
                if isinstance(obj, dict):
                    return obj, skipped
            start = candidate.find("{", start + 1)
    if skipped:
        raise ReplyError(f"the reply is not valid JSON: {skipped}")
    raise ReplyError("the reply contains no JSON object")


def describe_validation_error(exc: ValidationError, limit: int = 8) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def feedback_message(error: str) -> HumanMessage:
    return HumanMessage(content=f"Your reply could not be used: {error}.\n"
                                "Reply again with the corrected JSON object only: no prose, no code fences.")


def usage_of(message: BaseMessage) -> Usage:
    meta = getattr(message, "usage_metadata", None) or {}
    return Usage(llm_calls=1, prompt_tokens=int(meta.get("input_tokens") or 0),
                 completion_tokens=int(meta.get("output_tokens") or 0))


# ---------------------------------------------------------------- reasoning traces

def with_reasoning_apart(message: AIMessage, keep: bool) -> AIMessage:
    """The reply with its reasoning in `additional_kwargs["reasoning_content"]` (or dropped), never in
    the text: a leading <think> block moves there too, so no other role ever reads it."""
    reasoning = str(message.additional_kwargs.get(REASONING) or "")
    content = message.content
    if isinstance(content, str) and "</think>" in content:
        match = _LEADING_THINK.match(content)
        if match:
            reasoning = "\n".join(part for part in (reasoning, match.group(1).strip()) if part)
            content = content[match.end():]
    kwargs = {k: v for k, v in message.additional_kwargs.items() if k != REASONING}
    if keep and reasoning.strip():
        kwargs[REASONING] = reasoning.strip()
    if content is message.content and kwargs == message.additional_kwargs:
        return message
    return message.model_copy(update={"content": content, "additional_kwargs": kwargs})


def without_reasoning(messages: Iterable[BaseMessage]) -> list[BaseMessage]:
    """The conversation as sent to a model: earlier reasoning is the speaker's own and stays out."""
    return [m.model_copy(update={"additional_kwargs": {k: v for k, v in m.additional_kwargs.items()
                                                       if k != REASONING}})
            if REASONING in m.additional_kwargs else m for m in messages]


# ---------------------------------------------------------------- assistant replies a small model gets wrong

def assistant_fault(message: AIMessage, tool_names: set[str], tools_allowed: bool) -> tuple[str, str] | None:
    """(kind, feedback) for an assistant reply that cannot go into a dialogue as it is, else None.

    kind is the Usage counter it adds to: empty_replies, unknown_tools or bad_arguments.
    """
    calls = message.tool_calls if tools_allowed else []
    if message.invalid_tool_calls and tools_allowed:
        names = ", ".join(str(c.get("name") or "?") for c in message.invalid_tool_calls)
        return "bad_arguments", (f"the arguments of your call to {names} were not a JSON object. Call the tool again "
                                 "with its arguments as one JSON object, or answer in text")
    unknown = sorted({c["name"] for c in calls if c["name"] not in tool_names})
    if unknown:
        listed = ", ".join(sorted(tool_names)) or "(none)"
        return "unknown_tools", (f"there is no tool named {', '.join(unknown)}. The tools are: {listed}. "
                                 "Call one of them, or answer in text")
    if not message.tool_calls and not message.invalid_tool_calls and not message.text.strip():
        return "empty_replies", "your reply was empty. Answer the user in text, or call one of the tools"
    return None


def assistant_feedback(error: str) -> HumanMessage:
    return HumanMessage(content=f"(Your last reply could not be used: {error}.)")
