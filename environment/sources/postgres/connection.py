"""Connecting to a Postgres database: every way it can fail is one line naming the URI without its
password, with what to do."""

from __future__ import annotations

import psycopg

from environment.errors import InputError
from state.postgres_uri import database_name, is_postgres_uri, with_database, without_password

CONNECT_TIMEOUT_S = 10
SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601"  # values print the same anywhere


def failure(uri: str, exc: BaseException, what: str = "database") -> InputError:
    """The one line for a database that cannot be used."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    hint = ""
    if "password" in reason:
        hint = " (give the password in PGPASSWORD or ~/.pgpass; it is never written to a run folder)"
    elif "does not exist" in reason:
        hint = " (check the database name in the URI)"
    elif "connect" in reason.lower() or "timeout" in reason.lower():
        hint = " (is the server running, and are host and port right?)"
    return InputError(f"cannot use the {what} {without_password(uri)}: {reason[:300]}{hint}")


def connect(uri: str, *, autocommit: bool = False, options: str = SESSION_OPTIONS) -> psycopg.Connection:
    """A connection to the database a URI names (UTC, ISO dates), or an InputError in one line."""
    if not is_postgres_uri(uri):
        raise InputError(f"not a PostgreSQL URI: {without_password(uri)} (expected postgresql://…)")
    try:
        return psycopg.connect(uri, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, options=options)
    except psycopg.Error as exc:
        raise failure(uri, exc) from None


def maintenance_connection(uri: str) -> psycopg.Connection:
    """A connection to the same server for CREATE and DROP DATABASE: never to the source itself, which may
    not have other sessions while it is copied. The `postgres` database first, then template1."""
    last: InputError | None = None
    for database in ("postgres", "template1"):
        if database == database_name(uri):
            continue
        try:
            return connect(with_database(uri, database), autocommit=True)
        except InputError as exc:
            last = exc
    raise last or InputError(f"cannot reach a maintenance database on the server of {without_password(uri)}")
