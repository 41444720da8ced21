"""Read a PostgreSQL database into the schema model, never writing to it (a read-only transaction): tables
and views, columns with their types, keys, foreign keys, enums, CHECK constraints, defaults, sequences and
identity columns, row counts and a small data view, as the SQLite introspection gives them."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from typing import Any

import psycopg
from psycopg import sql as pgsql

from environment.errors import InputError
from environment.sources.base import preview
from environment.sources.postgres.connection import connect
from state.postgres_uri import without_password
from state.schema import Column, DatabaseSchema, ForeignKey, JsonType, SkippedTable, Table

DATA_VIEW_ROWS = 5
_INTEGER = {"int2", "int4", "int8", "oid"}
_NUMBER = {"float4", "float8", "numeric", "money"}
_DATES = {"date", "timestamp", "timestamptz", "time", "timetz"}

_RELATIONS = """
SELECT c.oid, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
ORDER BY c.relname
"""
_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS declared, t.typname, t.typtype, t.typcategory,
       a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity, a.attgenerated,
       pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS owned_sequence,
       CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e
                                           WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END AS labels
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_CONSTRAINTS = """
SELECT con.contype, con.confdeltype, pg_get_constraintdef(con.oid) AS definition,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.pos) AS columns,
       ref.relname AS ref_table,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.pos) AS ref_columns
FROM pg_constraint con LEFT JOIN pg_class ref ON ref.oid = con.confrelid
WHERE con.conrelid = %(oid)s
ORDER BY con.contype, con.conname
"""
_UNIQUE_INDEXES = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = %(oid)s AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
"""
_ON_DELETE = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT", "r": "RESTRICT", "a": ""}


def json_value(value: Any) -> Any:
    """A Postgres value as it appears in JSON: dates as ISO text, decimals as numbers, bytes described."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<BLOB {len(bytes(value))} bytes>"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value



def _json_type(typname: str, typcategory: str) -> tuple[JsonType, bool, bool]:
    """(JSON type, is_blob, is_date) of a column's type."""
    if typname in _INTEGER:
        return "integer", False, False
    if typname in _NUMBER:
        return "number", False, False
    if typname == "bool":
        return "boolean", False, False
    if typname == "bytea":
        return "string", True, False
    return "string", False, typname in _DATES


def _sequence_of(default: str | None, owned: str | None) -> str:
    if owned:
        return owned
    if default and default.startswith("nextval('"):
        return default[len("nextval('"):].split("'", 1)[0]
    return ""


def _table(conn: psycopg.Connection, schema: str, oid: int, name: str, kind: str) -> Table:
    constraints = conn.execute(_CONSTRAINTS, {"oid": oid}).fetchall()
    pk: list[str] = next((list(c[3]) for c in constraints if c[0] == "p"), [])
    unique = {c[3][0] for c in constraints if c[0] == "u" and len(c[3]) == 1}
    unique |= {r[0] for r in conn.execute(_UNIQUE_INDEXES, {"oid": oid})}
    columns: list[Column] = []
    for (column, declared, typname, _typtype, category, not_null, default, identity, generated, owned,
         labels) in conn.execute(_COLUMNS, {"oid": oid}):
        json_type, is_blob, is_date = _json_type(typname, category)
        columns.append(Column(
            name=column, declared_type=declared, json_type=json_type, is_blob=is_blob, not_null=bool(not_null),
            has_default=default is not None or identity != "" or generated != "", default=default,
            enum_values=list(labels or []), identity={"a": "always", "d": "by default"}.get(identity, ""),
            sequence=_sequence_of(default, owned), is_date=is_date,
            pk_position=pk.index(column) + 1 if column in pk else 0,
            unique=column in unique or (pk == [column])))
    foreign_keys = [ForeignKey(column=c[3][0], ref_table=c[4], ref_column=c[5][0], on_delete=_ON_DELETE.get(c[1], ""))
                    for c in constraints if c[0] == "f" and len(c[3]) == 1]  # compound keys: as in SQLite, left out
    checks = [c[2] for c in constraints if c[0] == "c"]
    ident = pgsql.Identifier(schema, name)
    order = pgsql.SQL(", ").join(pgsql.Identifier(c) for c in pk) if pk else pgsql.SQL("1")
    cur = conn.execute(pgsql.SQL("SELECT * FROM {} ORDER BY {} LIMIT {}").format(ident, order, DATA_VIEW_ROWS))
    names = [d.name for d in cur.description or []]
    rows = [{k: preview(json_value(v)) for k, v in zip(names, r)} for r in cur.fetchall()]
    count = conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
    auto_pk = len(pk) == 1 and any(c.name == pk[0] and (c.identity or c.sequence) for c in columns)
    return Table(name=name, columns=columns, foreign_keys=foreign_keys, row_count=count, sample_rows=rows,
                 key_assigned_on_insert=auto_pk, checks=checks, read_only=kind in ("v", "m"))


def inspect_postgres(uri: str, schema: str = "public") -> DatabaseSchema:
    """Tables, views, columns, keys, constraints, enums, sequences, row counts and a data view of one
    schema of a Postgres database. Tables no tool can work on are listed in `skipped`, never raised."""
    with connect(uri) as conn:
        conn.read_only = True
        try:
            relations = conn.execute(_RELATIONS, {"schema": schema}).fetchall()
            tables: list[Table] = []
            skipped: list[SkippedTable] = []
            for oid, name, kind in relations:
                try:
                    table = _table(conn, schema, oid, name, kind)
                except psycopg.errors.InsufficientPrivilege as exc:
                    conn.rollback()
                    skipped.append(SkippedTable(name=name, reason=f"could not be read: {str(exc).splitlines()[0]}"))
                    continue
                if not table.columns or all(c.is_blob for c in table.columns):
                    skipped.append(SkippedTable(name=name, reason="only bytea columns: nothing a tool can search "
                                                                  "or show" if table.columns else "no columns"))
                    continue
                tables.append(table)
            enums: dict[str, list[str]] = {}
            for typname, labels in conn.execute(
                    "SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_type t "
                    "JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid "
                    "WHERE n.nspname = %s GROUP BY t.typname ORDER BY t.typname", (schema,)):
                enums[typname] = list(labels)
            sequences = [r[0] for r in conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = %s ORDER BY 1", (schema,))]
        except psycopg.Error as exc:
            raise InputError(f"cannot read database {without_password(uri)}: {str(exc).splitlines()[0]}") from None
    if not tables:
        detail = f" ({len(skipped)} skipped: {skipped[0].reason})" if skipped else ""
        raise InputError(f"database has no usable tables: {without_password(uri)}{detail}")
    return DatabaseSchema(path=without_password(uri), tables=tables, skipped=skipped, dialect="postgres",
                          enums=enums, sequences=sequences)


def database_checksum(uri: str, schema: str = "public") -> str:
    """A hash of every table's rows (in a stable order) and every sequence's position: equal databases,
    equal checksums. For checking that a source was never written and that a replay rebuilt a clone."""
    digest = hashlib.sha256()
    with connect(uri) as conn:
        conn.read_only = True
        names = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1", (schema,))]
        for name in names:
            ident = pgsql.Identifier(schema, name)
            rows = conn.execute(pgsql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(ident)).fetchall()
            digest.update(f"{name}\n".encode())
            for (text,) in rows:
                digest.update(text.encode() + b"\n")
        for name, value in conn.execute("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = %s "
                                        "ORDER BY 1", (schema,)):
            digest.update(f"sequence {name} {value}\n".encode())
    return digest.hexdigest()
