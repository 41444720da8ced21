"""Naming and typing helpers shared by introspection and tool synthesis."""

from __future__ import annotations

import re

from state.schema import JsonType

_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def quote_ident(name: str) -> str:
    """An SQLite identifier, double-quoted so spaces, case and keywords survive."""
    return '"' + name.replace('"', '""') + '"'


def snake(name: str, prefix: str = "x") -> str:
    """A snake_case identifier usable as a function or placeholder name."""
    text = _CAMEL.sub("_", name)
    text = _NON_WORD.sub("_", text).strip("_").lower()
    text = re.sub(r"_+", "_", text)
    if not text:
        text = prefix
    if text[0].isdigit():
        text = f"{prefix}_{text}"
    return text


def singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for ending in ("sses", "xes", "ches", "shes"):
        if word.endswith(ending):
            return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def json_type_for(declared: str) -> tuple[JsonType, bool, bool]:
    """Map a declared SQL type to (JSON type, is_blob, is_date) following SQLite's affinity rules."""
    t = declared.upper()
    if any(k in t for k in ("DATE", "TIME")):
        return "string", False, True
    if "BOOL" in t:
        return "boolean", False, False
    if "INT" in t:
        return "integer", False, False
    if any(k in t for k in ("CHAR", "CLOB", "TEXT")):
        return "string", False, False
    if "BLOB" in t:
        return "string", True, False
    if any(k in t for k in ("REAL", "FLOA", "DOUB")):
        return "number", False, False
    if t == "":
        return "string", False, False
    return "number", False, False
