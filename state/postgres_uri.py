"""libpq connection URIs: which strings are one, and how one is written down without its password.

A password never reaches a run folder: the URI is recorded without it, and libpq finds it again in
PGPASSWORD or ~/.pgpass (PGPASSFILE) when the run is continued.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_uri(text: object) -> bool:
    return isinstance(text, str) and text.lower().startswith(SCHEMES)


def without_password(uri: str) -> str:
    """The URI with any password taken out, from its user part and from a `password=` query parameter."""
    if not is_postgres_uri(uri):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hosts}" if user else hosts
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/"), parts.fragment))


def database_name(uri: str) -> str:
    """The database a URI names ('' when it names none: libpq then takes the user's name)."""
    parts = urlsplit(uri)
    named = unquote(parts.path.lstrip("/"))
    return named or dict(parse_qsl(parts.query)).get("dbname", "")


def with_database(uri: str, database: str) -> str:
    """The same server, user and options, another database."""
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "dbname"]
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(database, safe=""), urlencode(query, safe="/"),
                       parts.fragment))
