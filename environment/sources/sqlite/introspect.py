"""Read a SQLite database's schema and a small data view, never writing to it."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from environment.errors import InputError
from environment.sources.base import preview
from environment.sources.sqlite.names import json_type_for, quote_ident
from state.schema import Column, DatabaseSchema, ForeignKey, SkippedTable, Table

SQLITE_MAGIC = b"SQLite format 3\x00"
DIALECT = "sqlite"  # how sqlglot reads this kind's statements
DATA_VIEW_ROWS = 5


def check_database_path(path: str | Path) -> Path:
    """The path of an existing SQLite file, or an InputError saying what is wrong."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"database not found: {p} (pass --db with the path of a SQLite file)")
    if p.is_dir():
        raise InputError(f"database path is a directory: {p} (pass --db with the path of a SQLite file)")
    try:
        with p.open("rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise InputError(f"cannot read database {p}: {exc.strerror}") from None
    if header != SQLITE_MAGIC:
        raise InputError(f"not a SQLite database: {p} (its header is not 'SQLite format 3')")
    return p.resolve()


def open_read_only(path: str | Path) -> sqlite3.Connection:
    """Open the source database read-only: nothing done through this connection can change it."""
    p = Path(path).resolve()
    uri = f"file:{quote(str(p))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    return conn


def json_value(value: object) -> object:
    """A database value as it appears in JSON (BLOBs are described, not dumped)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<BLOB {len(bytes(value))} bytes>"
    return value



def _observed_type(conn: sqlite3.Connection, table: str, column: str) -> str | None:
    """The storage class most non-null values of a column actually have (first 1000 rows)."""
    sql = (
        f"SELECT typeof(v), COUNT(*) FROM (SELECT {quote_ident(column)} AS v FROM {quote_ident(table)} "
        f"LIMIT 1000) WHERE v IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
    )
    row = conn.execute(sql).fetchone()
    return row[0] if row else None


def _table(db: sqlite_utils.Database, conn: sqlite3.Connection, name: str) -> Table:
    t = db.table(name)
    unique_single = {
        idx.columns[0] for idx in t.indexes if idx.unique and len(idx.columns) == 1
    }
    columns: list[Column] = []
    for c in t.columns:
        json_type, is_blob, is_date = json_type_for(c.type or "")
        observed = _observed_type(conn, name, c.name)
        if observed == "blob":
            is_blob = True
        elif observed == "text" and json_type in ("integer", "number", "boolean"):
            json_type = "string"  # declared numeric, but the data says otherwise
        elif observed == "integer" and not c.type:
            json_type = "integer"
        elif observed == "real" and (not c.type or json_type == "integer"):
            json_type = "number"  # undeclared, or declared INT but holding fractions
        columns.append(
            Column(
                name=c.name,
                declared_type=c.type or "",
                json_type=json_type,
                is_blob=is_blob,
                not_null=bool(c.notnull),
                has_default=c.default_value is not None,
                pk_position=int(c.is_pk),
                is_date=is_date,
                unique=c.name in unique_single or (c.is_pk == 1 and sum(1 for x in t.columns if x.is_pk) == 1),
            )
        )
    pk = [c for c in columns if c.pk_position]
    without_rowid = bool(
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=? AND sql LIKE '%WITHOUT ROWID%'", (name,)
        ).fetchone()
    )
    rowid_alias = len(pk) == 1 and pk[0].declared_type.upper() == "INTEGER" and not without_rowid
    # One column per foreign key: a compound (multi-column) key cannot be expressed as ForeignKey, so it is
    # left out rather than half-described. Names are spelled as the columns declare them.
    actual = {c.name.lower(): c.name for c in columns}
    fks = [ForeignKey(column=actual.get(f.column.lower(), f.column), ref_table=f.other_table,
                      ref_column=f.other_column or "")
           for f in t.foreign_keys if f.column is not None]
    order = ", ".join(quote_ident(c.name) for c in sorted(pk, key=lambda c: c.pk_position)) or "rowid"
    if without_rowid and not pk:
        order = "1"
    cur = conn.execute(f"SELECT * FROM {quote_ident(name)} ORDER BY {order} LIMIT {DATA_VIEW_ROWS}")
    names = [d[0] for d in cur.description]
    rows = [{k: preview(json_value(v)) for k, v in zip(names, r)} for r in cur.fetchall()]
    count = conn.execute(f"SELECT COUNT(*) FROM {quote_ident(name)}").fetchone()[0]
    return Table(
        name=name, columns=columns, foreign_keys=fks, row_count=count, sample_rows=rows,
        key_assigned_on_insert=rowid_alias,
    )


def _resolve_foreign_keys(tables: list[Table]) -> None:
    """Spell each foreign key's target as the parent declares it.

    SQLite matches table and column names case-insensitively, so `REFERENCES people(id)` may point at
    `People.ID`; a bare `REFERENCES people` points at the parent's primary key. Rows come back keyed
    by the declared names, which is what every consumer of the schema looks up.
    """
    by_lower = {t.name.lower(): t for t in tables}
    for table in tables:
        resolved = []
        for fk in table.foreign_keys:
            parent = by_lower.get(fk.ref_table.lower())
            if parent is not None:
                ref = fk.ref_column
                if not ref and len(parent.primary_key) == 1:
                    ref = parent.primary_key[0].name
                ref = next((c.name for c in parent.columns if c.name.lower() == ref.lower()), ref)
                fk = fk.model_copy(update={"ref_table": parent.name, "ref_column": ref})
            resolved.append(fk)
        table.foreign_keys = resolved


def _shadow_tables(conn: sqlite3.Connection, virtual: set[str]) -> dict[str, str]:
    """Shadow tables (the storage of FTS, R*Tree and other virtual tables) -> their virtual table.

    SQLite 3.37+ marks them in `PRAGMA table_list`; older versions fall back to the naming
    convention `<virtual>_<suffix>`. An ordinary table that merely shares the prefix is kept.
    """
    def owner(name: str) -> str:
        return next((v for v in sorted(virtual, key=len, reverse=True) if name.startswith(v + "_")), "")

    try:
        rows = conn.execute("PRAGMA table_list").fetchall()
    except sqlite3.DatabaseError:
        rows = []
    if rows:
        return {r[1]: owner(r[1]) or "?" for r in rows if r[0] == "main" and r[2] == "shadow"}
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {n: owner(n) for n in names if n not in virtual and owner(n)}


def inspect_database(path: str | Path) -> DatabaseSchema:
    """Tables, columns, declared types, keys, row counts and a data view of a SQLite database.

    Tables that tools cannot work on are listed in `skipped` with the reason, never raised.
    The result is cached for as long as the file is unchanged (every dialogue of a run reads it).
    """
    source = check_database_path(path)
    stat = source.stat()
    return _inspect(source, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _inspect(source: Path, _mtime_ns: int, _size: int) -> DatabaseSchema:
    try:
        conn = open_read_only(source)
        try:
            db = sqlite_utils.Database(conn)
            virtual = {
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND sql LIKE 'CREATE VIRTUAL%'")
            }
            names = [n for n in db.table_names() if not n.startswith("sqlite_")]
            shadow = _shadow_tables(conn, virtual)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not a readable SQLite database: {source} ({exc})") from None
        tables: list[Table] = []
        skipped: list[SkippedTable] = []
        for name in names:
            if name in virtual:
                skipped.append(SkippedTable(name=name, reason="virtual table (full-text or other module): "
                                                              "its columns cannot be introspected like a table's"))
                continue
            if name in shadow:
                skipped.append(SkippedTable(name=name, reason=f"internal storage of virtual table {shadow[name]!r}"))
                continue
            try:
                table = _table(db, conn, name)
            except sqlite3.DatabaseError as exc:
                skipped.append(SkippedTable(name=name, reason=f"could not be read: {exc}"))
                continue
            if all(c.is_blob for c in table.columns):
                skipped.append(SkippedTable(name=name, reason="only BLOB columns: nothing a tool can search or show"))
                continue
            tables.append(table)
    finally:
        if "conn" in locals():
            conn.close()
    _resolve_foreign_keys(tables)
    if not tables:
        detail = f" ({len(skipped)} skipped: {skipped[0].reason})" if skipped else ""
        raise InputError(f"database has no usable tables: {source}{detail}")
    return DatabaseSchema(path=str(source), dialect=DIALECT, tables=tables, skipped=skipped)
