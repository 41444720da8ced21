"""What a database looks like: tables, columns, keys, row counts and a small data view."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

JsonType = Literal["integer", "number", "string", "boolean"]


class Column(BaseModel):
    name: str
    declared_type: str = Field("", description="The type as declared in CREATE TABLE (may be empty).")
    json_type: JsonType = Field(description="The JSON Schema type the column maps to.")
    is_blob: bool = False
    not_null: bool = False
    has_default: bool = False
    unique: bool = Field(False, description="A single-column PRIMARY KEY or UNIQUE index.")
    pk_position: int = Field(0, description="1-based position in the primary key; 0 if not part of it.")
    is_date: bool = Field(False, description="Declared as DATE/DATETIME/TIMESTAMP or holds ISO dates.")
    # What a server database declares beyond SQLite's few facts (PostgreSQL); empty where a source has none.
    default: str | None = Field(None, description="The default expression as the database prints it.")
    enum_values: list[str] = Field(default_factory=list, description="The labels of an enum-typed column, in order.")
    identity: Literal["", "always", "by default"] = Field("", description="GENERATED … AS IDENTITY, and which.")
    sequence: str = Field("", description="The sequence that numbers the column (identity, serial or nextval).")


class ForeignKey(BaseModel):
    column: str
    ref_table: str
    ref_column: str
    on_delete: str = Field("", description="CASCADE, SET NULL, … where the database says (empty: no action).")


class Table(BaseModel):
    name: str
    columns: list[Column]
    foreign_keys: list[ForeignKey] = []
    row_count: int = 0
    sample_rows: list[dict[str, object]] = Field(
        default_factory=list, description="A small data view: the first rows, values as JSON."
    )
    key_assigned_on_insert: bool = Field(
        False, description="True when the source assigns the primary key itself on insert (SQLite's INTEGER PRIMARY "
                           "KEY, a serial or identity column): an insert leaves it out.")
    checks: list[str] = Field(default_factory=list, description="CHECK constraints, as the database prints them.")
    read_only: bool = Field(False, description="A view: tools may read it, never write it.")

    @property
    def primary_key(self) -> list[Column]:
        return sorted((c for c in self.columns if c.pk_position), key=lambda c: c.pk_position)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


class SkippedTable(BaseModel):
    name: str
    reason: str


class DatabaseSchema(BaseModel):
    path: str
    dialect: str = Field("", description="The SQL dialect of the source's statements (sqlglot's name: 'sqlite', "
                                         "'postgres'), which tool checks and task builders parse them in.")
    tables: list[Table]
    skipped: list[SkippedTable] = []
    dialect: Literal["sqlite", "postgres"] = Field("sqlite", description="The SQL dialect its tools are written in.")
    enums: dict[str, list[str]] = Field(default_factory=dict, description="Enum types by name, with their labels.")
    sequences: list[str] = Field(default_factory=list, description="Every sequence of the schema.")

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)
