"""MkDocs hook: the CLI reference in docs/cli.md, generated from the argparse parser itself.

The marker line `<!-- cli-reference -->` in cli.md is replaced by one section per command (its help, its
usage, a table of its arguments), walking the subparsers, so the page cannot drift from the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"
WIDTH = 80  # usage wrapped at a fixed width, whatever the terminal that runs the build: the code box's

# Where the parser builder may live, first found wins: the CLI is being restructured, and a missing
# builder must fail the build loudly rather than leave an empty reference.
_BUILDERS = (("graphs.run", "parser"), ("graphs.run", "build_parser"), ("graphs.run", "_parser"))


def parser() -> argparse.ArgumentParser:
    """The CLI's root parser, from the first builder of `_BUILDERS` that exists."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)  # the checkout's own modules, not another installed copy
    for module_name, attr in _BUILDERS:
        builder = getattr(importlib.import_module(module_name), attr, None)
        if callable(builder):
            return builder()
    tried = ", ".join(f"{m}.{a}()" for m, a in _BUILDERS)
    raise RuntimeError(f"cli_reference hook: no CLI parser builder found (tried {tried})")


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def _cell(text: str) -> str:
    # a table cell: one line, and nothing Markdown or HTML would read as markup
    text = " ".join(text.split())
    for ch, esc in (("\\", "\\\\"), ("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(ch, esc)
    return text


def _code(text: str) -> str:
    # Python-Markdown's tables leave a | inside a code span alone (GitHub's would need it escaped)
    return f"`{text}`" if "`" not in text else _cell(text)


def _usage(p: argparse.ArgumentParser) -> str:
    # argparse aligns continuation lines under the first option, far right of a long command: rewrapped here at
    # WIDTH with a 4-space indent, breaking only between top-level groups ([--x X], {a,b}, positionals)
    text = " ".join(p.format_usage().removeprefix("usage: ").split())
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        if ch == " " and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) > WIDTH and lines[-1].strip():
            lines.append("    " + part)
        else:
            lines[-1] += " " + part
    return "\n".join(lines)


def _argument_rows(p: argparse.ArgumentParser) -> list[str]:
    formatter = p._get_formatter()
    rows = []
    for action in p._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            flags = ", ".join(action.option_strings)
            if action.nargs != 0:
                flags += " " + formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
        else:
            flags = formatter._format_args(action, formatter._get_default_metavar_for_positional(action))
        help_text = "" if action.help in (None, argparse.SUPPRESS) else formatter._expand_help(action)
        if action.choices and action.metavar and not isinstance(action.choices, dict):  # else the flags show them
            choices = ", ".join(str(c) for c in action.choices)
            help_text = f"{help_text} (one of: {choices})" if choices not in help_text else help_text
        if action.required and action.option_strings:
            help_text = f"required. {help_text}"
        rows.append(f"| {_code(flags)} | {_cell(help_text)} |")
    return rows


def _command_sections(p: argparse.ArgumentParser, path: list[str], summary: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{' '.join(path)}`", ""]
    if summary:
        lines += [_cell(summary), ""]
    if p.description and p.description != summary:
        lines += [p.description, ""]
    lines += ["```text", _usage(p), "```", ""]
    rows = _argument_rows(p)
    if rows:
        lines += ["| argument | what it does |", "| --- | --- |", *rows, ""]
    sub = _subparsers(p)
    if sub is not None:
        helps = {a.dest: a.help or "" for a in sub._choices_actions}
        for name, child in sub.choices.items():
            lines += _command_sections(child, [*path, name], helps.get(name, ""), min(level + 1, 6))
    return lines


def reference() -> str:
    """Markdown for every command of the CLI: usage and arguments, nested commands included."""
    root = parser()
    sub = _subparsers(root)
    lines = ["```text", f"{root.prog} [-h] COMMAND ...", "```", ""]  # the commands, one section each below
    if sub is None:
        return "\n".join(lines)
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    for name, child in sub.choices.items():
        lines += _command_sections(child, [name], helps.get(name, ""), 3)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"cli_reference hook: {PAGE} lacks the marker {MARKER}")
    return markdown.replace(MARKER, reference())
