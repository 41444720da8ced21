"""One clock per dialogue: columns whose default reads the wall clock are bound from the dialogue's time.

A table may say `created DATETIME DEFAULT CURRENT_TIMESTAMP` (or CURRENT_DATE, CURRENT_TIME,
`datetime('now')`, `strftime('%s', 'now')`, ...). An INSERT that leaves such a column out would store the
moment it ran, so the dataset would hold the day it was made and a replay would differ. Instead the
INSERT is given the column, bound to the default expression evaluated at the dialogue's own time.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp

from environment.sources.sqlite.names import quote_ident

CLOCK_PREFIX = "forge_clock_"  # placeholder names no tool parameter may use (see tool_checks)
_KEYWORDS = {exp.CurrentTimestamp: "datetime", exp.CurrentDate: "date", exp.CurrentTime: "time"}
_WALL_MODIFIERS = {"localtime", "utc"}  # they would make the value depend on the machine's time zone


def _reads_clock(node: exp.Expression) -> bool:
    if isinstance(node, tuple(_KEYWORDS)):
        return True
    return isinstance(node, exp.Literal) and node.is_string and node.this.lower() == "now" \
        and isinstance(node.parent, exp.Func)  # datetime('now'), not a plain 'now' text default


def _at(expression: exp.Expression) -> exp.Expression:
    """The default expression with 'now' replaced by the :now parameter."""
    def swap(node: exp.Expression) -> exp.Expression:
        for kind, function in _KEYWORDS.items():
            if isinstance(node, kind):
                return exp.Anonymous(this=function, expressions=[exp.Placeholder(this="now")])
        if isinstance(node, exp.Literal) and node.is_string:
            if node.this.lower() == "now":
                return exp.Placeholder(this="now")
            if node.this.lower() in _WALL_MODIFIERS:
                return exp.Literal.string("+0 seconds")
        return node
    return expression.transform(swap)


def clock_defaults(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    """Columns of a table whose default reads the clock: column -> the default as SQL evaluated at :now."""
    found: dict[str, str] = {}
    try:
        rows = conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
    except sqlite3.Error:
        return found
    for _, name, _, _, default, _ in rows:
        if default is None:
            continue
        try:
            expression = sqlglot.parse_one(str(default), read="sqlite")
        except sqlglot.errors.SqlglotError:
            continue
        if any(_reads_clock(node) for node in expression.walk()):
            found[name] = _at(expression).sql(dialect="sqlite")
    return found


@lru_cache(maxsize=4096)
def _parse(sql: str) -> exp.Expression | None:
    try:
        return sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return None


class ClockBinding:
    """How one INSERT is completed: the statement with the clock columns added, and their defaults."""

    def __init__(self, sql: str, defaults: dict[str, str]) -> None:
        self.sql = sql
        self.defaults = defaults  # placeholder name -> default expression at :now

    def values(self, conn: sqlite3.Connection, now: str) -> dict[str, Any]:
        """The clock columns' values at the dialogue's time, computed by SQLite itself."""
        return {name: conn.execute(f"SELECT {expression}", {"now": now}).fetchone()[0]
                for name, expression in self.defaults.items()}


def clock_binding(sql: str, conn: sqlite3.Connection) -> ClockBinding | None:
    """For an INSERT into a table with clock defaults it leaves out: the completed statement; else None."""
    statement = _parse(sql)
    if not isinstance(statement, exp.Insert) or not isinstance(statement.this, exp.Schema):
        return None  # not an insert, or one without a column list (every column is then given)
    table = statement.this.this
    if not isinstance(table, exp.Table):
        return None
    listed = {c.name.lower() for c in statement.this.expressions}
    missing = {c: d for c, d in clock_defaults(conn, table.name).items() if c.lower() not in listed}
    source = statement.expression
    if not missing or not isinstance(source, (exp.Values, exp.Select)):
        return None
    completed = statement.copy()
    defaults: dict[str, str] = {}
    for i, (column, default) in enumerate(sorted(missing.items())):
        name = f"{CLOCK_PREFIX}{i}"
        defaults[name] = default
        completed.this.append("expressions", exp.to_identifier(column, quoted=True))
        if isinstance(source, exp.Values):
            for row in completed.expression.expressions:
                row.append("expressions", exp.Placeholder(this=name))
        else:
            completed.expression.append("expressions", exp.Placeholder(this=name))
    return ClockBinding(completed.sql(dialect="sqlite"), defaults)
