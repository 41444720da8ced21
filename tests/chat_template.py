"""A strict chat template (jinja2), as strict as those of models that require alternating roles.

It renders a dataset line's messages and raises unless: an optional system message comes first; then
user and assistant alternate, starting with the user; tool messages come only right after the
assistant message that called them (or after another tool message), and the assistant speaks after
them; the conversation ends with an assistant message that has text.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

STRICT_TEMPLATE = """
{%- set ns = namespace(last='') -%}
{%- for m in messages -%}
  {%- if m.role == 'system' -%}
    {%- if not loop.first -%}{{ raise_exception('message ' ~ loop.index0 ~ ': system message after the start') }}{%- endif -%}
    <|system|>{{ m.content }}
  {%- elif m.role == 'user' -%}
    {%- if ns.last not in ['', 'system', 'assistant'] -%}
      {{ raise_exception('message ' ~ loop.index0 ~ ': user after ' ~ ns.last ~ '; roles must alternate') }}
    {%- endif -%}
    <|user|>{{ m.content }}
  {%- elif m.role == 'assistant' -%}
    {%- if ns.last not in ['user', 'tool'] -%}
      {{ raise_exception('message ' ~ loop.index0 ~ ': assistant after ' ~ ns.last ~ '; roles must alternate') }}
    {%- endif -%}
    {%- if m.tool_calls -%}
      <|assistant|>{{ m.content or '' }}{% for c in m.tool_calls %}<|call|>{{ c.function.name }}({{ c.function.arguments }}){% endfor %}
    {%- elif not (m.content or '').strip() -%}
      {{ raise_exception('message ' ~ loop.index0 ~ ': assistant message with neither text nor tool calls') }}
    {%- else -%}
      <|assistant|>{{ m.content }}
    {%- endif -%}
  {%- elif m.role == 'tool' -%}
    {%- if ns.last not in ['assistant_calls', 'tool'] -%}
      {{ raise_exception('message ' ~ loop.index0 ~ ': tool message not right after a tool call') }}
    {%- endif -%}
    <|tool|>{{ m.content }}
  {%- else -%}
    {{ raise_exception('message ' ~ loop.index0 ~ ': unknown role ' ~ m.role) }}
  {%- endif -%}
  {%- set ns.last = 'assistant_calls' if (m.role == 'assistant' and m.tool_calls) else m.role -%}
{%- endfor -%}
{%- if ns.last != 'assistant' -%}
  {{ raise_exception('the conversation must end with an assistant message that has text, not ' ~ (ns.last or 'nothing')) }}
{%- endif -%}
"""


class TemplateError(Exception):
    pass


def _raise(message: str) -> None:
    raise TemplateError(message)


_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.globals["raise_exception"] = _raise
_template = _env.from_string(STRICT_TEMPLATE)


def render_strict(messages: list[dict[str, Any]]) -> str:
    """The rendered prompt; raises TemplateError on any message out of turn."""
    return _template.render(messages=[{"content": None, "tool_calls": None, **m} for m in messages])


# The tools-aware template of Hermes 2 Pro and Qwen2.5 (ChatML, tools as JSON lines inside <tools>, calls as
# <tool_call> blocks whose arguments go through `tojson`, results as <tool_response> in a user turn), with the
# `<think>` block Qwen3 gives an assistant message's reasoning_content. `tojson` is where a JSON-string argument
# turns into a string inside JSON.
HERMES_REASONING = "{%- if message.reasoning_content %}{{- '\\n<think>\\n' + message.reasoning_content + '\\n</think>\\n' }}{%- endif %}"
HERMES_TEMPLATE = """
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>assistant' }}
        REASONING
        {%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
        {%- for tool_call in message.tool_calls or [] %}
            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.index0 == 0 or messages[loop.index0 - 1].role != "tool" %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != "tool" %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- elif message.role != "system" %}
        {{- raise_exception('unknown role: ' + message.role) }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
""".replace("REASONING", HERMES_REASONING)
# Qwen2.5's own form: the same without reasoning (it never renders reasoning_content).
HERMES_TEMPLATE_NO_REASONING = HERMES_TEMPLATE.replace(HERMES_REASONING, "")
HERMES_SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def render_hermes(messages: list[dict[str, Any]], tools: list[dict[str, Any]], template: str = HERMES_TEMPLATE) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    return render_jinja_template([messages], tools=tools or None, chat_template=template)[0][0]


def hermes_calls(rendered: str) -> list[dict[str, Any]]:
    """The tool calls a Hermes rendering holds, parsed back: [{"name", "arguments"}, ...] in order."""
    import json
    import re

    return [json.loads(block) for block in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", rendered, re.DOTALL)
            if not block.startswith('{"name": <function-name>')]


def hermes_tools(rendered: str) -> list[dict[str, Any]]:
    import json

    block = rendered.split("\n<tools>", 1)[1].split("\n</tools>", 1)[0]
    return [json.loads(line) for line in block.strip("\n").split("\n")]
