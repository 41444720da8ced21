"""MkDocs hook: the table of run settings in docs/generating.md, generated from `state.config.Settings`.

The marker line `<!-- settings-reference -->` is replaced by one row per field (its environment variables, its
default, its description), so the page lists exactly the settings the code reads.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from pydantic import AliasChoices

MARKER = "<!-- settings-reference -->"
PAGE = "generating.md"


def _cell(text: str) -> str:
    text = " ".join(str(text).split())
    for ch, esc in (("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(ch, esc)
    return text


def reference() -> str:
    """A Markdown table of every field of `Settings`."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    settings = importlib.import_module("state.config").Settings
    prefix = settings.model_config.get("env_prefix", "")
    rows = ["| setting | environment | default | what it does |", "| --- | --- | --- | --- |"]
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names = [a for a in alias.choices if isinstance(a, str) and a.isupper()]
        else:
            names = [alias] if isinstance(alias, str) else []
        env = ", ".join(f"`{n}`" for n in (names or [f"{prefix}{name}".upper()]))
        default = "" if field.is_required() else field.get_default(call_default_factory=True)
        default = f"`{default!r}`" if default not in ("", None) else ""
        rows.append(f"| `{name}` | {env} | {default} | {_cell(field.description or '')} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"settings_reference hook: {PAGE} lacks the marker {MARKER}")
    return markdown.replace(MARKER, reference())
