"""A tool's statement as psycopg runs it: `:name` placeholders become `%(name)s` parameters, a literal `%`
is doubled, and the SQL keywords that read the wall clock (CURRENT_TIMESTAMP, CURRENT_DATE, …) read the
dialogue's clock instead.

The statement is scanned, not parsed: what is inside string literals, quoted identifiers, dollar quotes
and comments is left as written, and `::` casts are not placeholders.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import BaseModel

CLOCK_SCHEMA = "forge_clock"  # created in every clone: its now() reads the dialogue's clock
# Keyword -> what it becomes; a precision such as CURRENT_TIMESTAMP(0) is carried over.
_CLOCK_KEYWORDS = {
    "current_timestamp": "timestamptz",
    "localtimestamp": "timestamp",
    "current_date": "date",
    "current_time": "timetz",
    "localtime": "time",
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_PRECISION = re.compile(r"\s*\(\s*(\d+)\s*\)")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class PsycopgStatement(BaseModel):
    sql: str
    names: tuple[str, ...]  # the placeholders, in order of first appearance


def _clock_read(keyword: str, precision: str | None) -> str:
    cast = _CLOCK_KEYWORDS[keyword]
    if precision is not None and cast != "date":
        cast = f"{cast}({precision})"
    return f"({CLOCK_SCHEMA}.now())::{cast}"


def _skip_quoted(sql: str, i: int, quote: str, backslash: bool) -> int:
    """The index just past a quoted run that starts at i (a doubled quote stays inside)."""
    j = i + 1
    while j < len(sql):
        if backslash and sql[j] == "\\":
            j += 2
            continue
        if sql[j] == quote:
            if j + 1 < len(sql) and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return j


def _skip_block_comment(sql: str, i: int) -> int:
    depth, j = 0, i
    while j < len(sql):
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return j


def _inside_word(sql: str, i: int, joiners: str = "_") -> bool:
    """Whether position i continues a word (or, with '.', a qualified name) rather than starting one."""
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in joiners)


@lru_cache(maxsize=4096)
def to_psycopg(sql: str) -> PsycopgStatement:
    """The statement with psycopg's named parameters, and the names in order."""
    out: list[str] = []
    names: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            backslash = i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            j = _skip_quoted(sql, i, "'", backslash)
            out.append(sql[i:j].replace("%", "%%"))
        elif ch == '"':
            j = _skip_quoted(sql, i, '"', False)
            out.append(sql[i:j].replace("%", "%%"))
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
        elif sql.startswith("/*", i):
            j = _skip_block_comment(sql, i)
            out.append(sql[i:j].replace("%", "%%"))
        elif ch == "$" and (tag := _DOLLAR_TAG.match(sql, i)) and not _inside_word(sql, i):
            end = sql.find(tag.group(0), tag.end())
            j = n if end < 0 else end + len(tag.group(0))
            out.append(sql[i:j].replace("%", "%%"))
        elif sql.startswith("::", i):
            j = i + 2
            out.append("::")
        elif ch == ":" and (word := _WORD.match(sql, i + 1)):
            name = word.group(0)
            if name not in names:
                names.append(name)
            j = word.end()
            out.append(f"%({name})s")
        elif ch == "%":
            j = i + 1
            out.append("%%")
        elif (word := _WORD.match(sql, i)) and not _inside_word(sql, i, "_.$"):
            j = word.end()
            keyword = word.group(0).lower()
            if keyword in _CLOCK_KEYWORDS:
                precision = _PRECISION.match(sql, j) if keyword != "current_date" else None
                if precision:
                    j = precision.end()
                out.append(_clock_read(keyword, precision.group(1) if precision else None))
            else:
                out.append(word.group(0))
        else:
            j = i + 1
            out.append(ch)
        i = j
    return PsycopgStatement(sql="".join(out), names=tuple(names))


def clock_default(expression: str) -> str | None:
    """A column default that reads the wall clock, rewritten to read the dialogue's clock; None when the
    default does not read the clock. Postgres prints now() as now() and the keywords as themselves."""
    rewritten = to_psycopg(expression).sql.replace("%%", "%")
    rewritten = re.sub(r"(?<![\w.$])(?:pg_catalog\.)?(now|transaction_timestamp|statement_timestamp|clock_timestamp)"
                       r"\s*\(\s*\)", f"{CLOCK_SCHEMA}.now()", rewritten, flags=re.IGNORECASE)
    return rewritten if rewritten != expression else None
