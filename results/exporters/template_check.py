"""Render exported chat lines through a real chat template: what the model that trains on them will see.

The template comes from a local tokenizer folder (its `chat_template`, and the tokenizer to count tokens) or from
a `.jinja` file (no tokenizer: no token figures). A line renders wrong when the template refuses it, when a tool
call's arguments come out as a JSON string inside JSON (a string where the template expected an object), or when
a tool result is missing from the rendering. Reasoning the template leaves out is reported, not failed: templates
such as Qwen3's keep only the latest turn's reasoning by design.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field

from environment.errors import InputError


class TokenFigures(BaseModel):
    min: int
    median: int
    p95: int
    max: int


class LineRendering(BaseModel):
    id: str
    error: str | None = Field(None, description="Why the template refused the line.")
    double_encoded: int = Field(0, description="Tool calls whose arguments rendered as a JSON string inside JSON.")
    dropped_tool_results: int = 0
    reasoning: int = Field(0, description="Assistant messages carrying reasoning_content.")
    dropped_reasoning: int = 0
    tokens: int | None = None


class TemplateReport(BaseModel):
    """What rendering every line through the template found (saved in export.json as `template_check`)."""

    template: str
    lines: int
    refused: dict[str, str] = Field(default_factory=dict, description="Line id → the template's error.")
    double_encoded: dict[str, int] = Field(default_factory=dict, description="Line id → calls double-encoded.")
    dropped_tool_results: dict[str, int] = Field(default_factory=dict, description="Line id → results missing.")
    dropped_reasoning: dict[str, int] = Field(default_factory=dict, description="Line id → reasoning missing.")
    reasoning_messages: int = 0
    reasoning_rendered: bool | None = Field(None, description="Whether every reasoning trace rendered (None: none).")
    tokens: TokenFigures | None = Field(None, description="Tokens per line rendered (with a tokenizer).")

    @property
    def ok(self) -> bool:
        return not (self.refused or self.double_encoded or self.dropped_tool_results)


class ChatTemplate:
    """A chat template and, from a tokenizer folder, the tokenizer that counts its tokens."""

    def __init__(self, source: Path):
        self.source = Path(source)
        self.tokenizer = None
        if self.source.is_dir():
            from transformers import AutoTokenizer

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(self.source), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise InputError(f"--check-template: no tokenizer in {self.source} "
                                 f"({str(exc).splitlines()[0][:200]})") from None
            if not self.tokenizer.chat_template or not isinstance(self.tokenizer.chat_template, str):
                raise InputError(f"--check-template: the tokenizer in {self.source} has no chat template")
            self.text = self.tokenizer.chat_template
        elif self.source.is_file() and self.source.suffix == ".jinja":
            self.text = self.source.read_text(encoding="utf-8")
        else:
            raise InputError(f"--check-template takes a tokenizer folder or a .jinja file, not {self.source}")

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        if self.tokenizer is not None:  # as TRL renders it: the tokenizer's own special tokens filled in
            return self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False)
        from transformers.utils.chat_template_utils import render_jinja_template

        return render_jinja_template([messages], tools=tools or None, chat_template=self.text)[0][0]

    def count(self, text: str) -> int | None:
        if self.tokenizer is None:
            return None
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _shown(text: str, rendered: str) -> bool:
    """The text appears in the rendering, as it is or JSON-escaped (some templates `tojson` a tool result)."""
    return text in rendered or json.dumps(text, ensure_ascii=False)[1:-1] in rendered


def _double_encoded(arguments: Any, rendered: str) -> bool:
    """String arguments that the template quoted again: `"arguments": "{\\"a\\": 1}"`."""
    if not isinstance(arguments, str):
        return False
    return any(json.dumps(arguments, ensure_ascii=ascii) in rendered for ascii in (False, True))


def render_line(template: ChatTemplate, line: dict[str, Any]) -> LineRendering:
    messages, result = line["messages"], LineRendering(id=line["id"])
    try:
        rendered = template.render(messages, line.get("tools") or [])
    except Exception as exc:  # a template refuses with whatever its raise_exception or jinja raises
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        return result
    for m in messages:
        for call in m.get("tool_calls") or []:
            result.double_encoded += _double_encoded(call["function"].get("arguments"), rendered)
        if m.get("role") == "tool" and str(m.get("content") or "") and not _shown(str(m["content"]), rendered):
            result.dropped_tool_results += 1
        if m.get("role") == "assistant" and m.get("reasoning_content"):
            result.reasoning += 1
            result.dropped_reasoning += not _shown(str(m["reasoning_content"]), rendered)
    result.tokens = template.count(rendered)
    return result


def token_figures(counts: list[int]) -> TokenFigures | None:
    if not counts:
        return None
    ordered = sorted(counts)
    return TokenFigures(min=ordered[0], median=round(statistics.median(ordered)),
                        p95=ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], max=ordered[-1])


def check_lines(template: ChatTemplate, lines: list[dict[str, Any]],
                advance: Callable[[], None] = lambda: None) -> tuple[TemplateReport, dict[str, int]]:
    """The report over every line, and each rendered line's token count (empty without a tokenizer)."""
    report = TemplateReport(template=str(template.source), lines=len(lines))
    tokens: dict[str, int] = {}
    for line in lines:
        found = render_line(template, line)
        advance()
        if found.error is not None:
            report.refused[found.id] = found.error
            continue
        for name in ("double_encoded", "dropped_tool_results", "dropped_reasoning"):
            if getattr(found, name):
                getattr(report, name)[found.id] = getattr(found, name)
        report.reasoning_messages += found.reasoning
        if found.tokens is not None:
            tokens[found.id] = found.tokens
    if report.reasoning_messages:
        report.reasoning_rendered = not report.dropped_reasoning
    report.tokens = token_figures(list(tokens.values()))
    return report, tokens
