"""SQLite identifiers and types: how a name is quoted, and which JSON type a declared column type maps to."""

from __future__ import annotations

from state.schema import JsonType


def quote_ident(name: str) -> str:
    """An SQLite identifier, double-quoted so spaces, case and keywords survive."""
    return '"' + name.replace('"', '""') + '"'


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
