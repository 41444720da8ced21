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
