"""A small Postgres schema with what SQLite lacks: an identity column, a sequence, an enum, now() and
CURRENT_TIMESTAMP defaults, a CHECK constraint, a foreign key with ON DELETE CASCADE and a view."""

from __future__ import annotations

SCHEMA_SQL = """
CREATE TYPE visit_status AS ENUM ('booked', 'done', 'cancelled');
CREATE SEQUENCE ticket_numbers START 1000 INCREMENT 10;
CREATE TABLE customers (
    customer_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    credit      numeric(8,2) NOT NULL DEFAULT 0 CHECK (credit >= 0)
);
CREATE TABLE visits (
    visit_id    bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers(customer_id) ON DELETE CASCADE,
    ticket      integer NOT NULL DEFAULT nextval('ticket_numbers'),
    status      visit_status NOT NULL DEFAULT 'booked',
    booked_at   timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    day         date NOT NULL DEFAULT CURRENT_DATE,
    note        text
);
CREATE VIEW open_visits AS
    SELECT v.visit_id, c.name, v.status FROM visits v JOIN customers c USING (customer_id) WHERE v.status = 'booked';
INSERT INTO customers (email, name, joined_at, credit) VALUES
    ('ada@example.com', 'Ada', '2024-01-02 09:00+00', 10.50),
    ('bo@example.com', 'Bo', '2024-02-03 10:00+00', 0);
INSERT INTO visits (customer_id, status, booked_at, day, note) VALUES
    (1, 'done', '2024-03-01 10:00', '2024-03-01', 'first'),
    (2, 'booked', '2024-03-02 11:00', '2024-03-02', NULL);
"""


def create_fixture_database(server, name: str, owner: str | None = None) -> str:
    """The fixture schema in a new database (owned by `owner` when given); its URI for the superuser."""
    server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                   f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
    server.execute(SCHEMA_SQL, database=name)
    return server.uri(name)
