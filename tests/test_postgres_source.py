"""The Postgres source's pieces on their own: introspection, the run's template and a clone per dialogue,
writes through parameterized statements, the dialogue's clock, replay onto a fresh clone, and a source that
is never written (runs over it end to end: test_postgres_runs.py)."""

from __future__ import annotations

import pytest

from environment.errors import InputError
from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.connection import connect
from environment.sources.postgres.execute import PostgresClone
from environment.sources.postgres.introspect import database_checksum, inspect_postgres
from environment.sources.postgres.sqltext import to_psycopg
from state.tools import Tool
from tests import postgres_server as server_module
from tests.postgres_fixture import create_fixture_database

CLOCK = "2031-05-06 07:08:00"


@pytest.fixture(scope="module")
def source(postgres_server) -> str:
    return create_fixture_database(postgres_server, "forge_fixture")


@pytest.fixture()
def manager(source, request):
    runs = CloneManager(source, f"test-{request.node.name}")
    runs.prepare()
    yield runs
    runs.keep = False
    runs.close()


def test_without_postgres_the_tests_skip_but_fail_under_ci(monkeypatch):
    monkeypatch.setattr(server_module, "_binary", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        server_module.require_postgres()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        server_module.require_postgres()


def test_a_database_without_tables_is_one_line(postgres_server):
    with pytest.raises(InputError, match="database has no usable tables: postgresql://forge@/forge_empty"):
        inspect_postgres(postgres_server.create_database("forge_empty"))


def test_placeholders_become_psycopg_parameters_and_literals_stay():
    statement = to_psycopg("SELECT x::text, '%:a' AS p, \"odd:col\" FROM t WHERE a = :a AND b LIKE :b || '%' "
                           "AND c = :a -- :c\n AND d > CURRENT_TIMESTAMP(0)")
    assert statement.names == ("a", "b")
    assert statement.sql == ("SELECT x::text, '%%:a' AS p, \"odd:col\" FROM t WHERE a = %(a)s AND b LIKE %(b)s "
                             "|| '%%' AND c = %(a)s -- :c\n AND d > (forge_clock.now())::timestamptz(0)")


def test_introspection_reads_what_postgres_declares(source):
    schema = inspect_postgres(source)
    assert schema.dialect == "postgres" and "password" not in schema.path
    assert [t.name for t in schema.tables] == ["customers", "open_visits", "visits"]
    customers, view, visits = (schema.table(n) for n in ("customers", "open_visits", "visits"))
    ident = customers.column("customer_id")
    assert ident.identity == "always" and ident.pk_position == 1 and ident.sequence and customers.key_assigned_on_insert
    assert customers.column("email").unique and customers.column("joined_at").default == "now()"
    assert customers.column("credit").json_type == "number" and customers.checks == ["CHECK ((credit >= (0)::numeric))"]
    assert customers.row_count == 2 and customers.sample_rows[0]["credit"] == 10.5
    assert customers.sample_rows[0]["joined_at"] == "2024-01-02 09:00:00+00:00"
    assert visits.column("status").enum_values == ["booked", "done", "cancelled"]
    assert visits.column("visit_id").sequence == "public.visits_visit_id_seq" and visits.key_assigned_on_insert
    assert visits.column("ticket").sequence == "ticket_numbers"
    assert visits.column("booked_at").is_date and visits.column("day").default == "CURRENT_DATE"
    fk = visits.foreign_keys[0]
    assert (fk.column, fk.ref_table, fk.ref_column, fk.on_delete) == ("customer_id", "customers", "customer_id",
                                                                       "CASCADE")
    assert view.read_only and not customers.read_only and view.row_count == 1
    assert schema.enums == {"visit_status": ["booked", "done", "cancelled"]}
    assert schema.sequences == ["customers_customer_id_seq", "ticket_numbers", "visits_visit_id_seq"]


def _writes(clone: PostgresClone) -> list[tuple[str, dict, dict, str]]:
    """Writes through parameterized statements, each checked; the successful ones as a dialogue records them
    (statement, arguments, declared types, clock)."""
    done: list[tuple[str, dict, dict, str]] = []

    def write(sql: str, params: dict, minute: int, **declared) -> object:
        clock = f"2031-05-06 07:{minute:02d}:00"
        types = {k: {"type": v} for k, v in declared.items()}
        result = clone.execute(sql, params, "write", clock=clock, declared=types)
        if result.ok:
            done.append((sql, params, types, clock))
        return result

    added = write("INSERT INTO customers (email, name) VALUES (:email, :name) RETURNING customer_id, joined_at",
                  {"email": "cy@example.com", "name": "Cy"}, 1)
    assert added.ok and added.last_row_id == 3 and added.rows[0]["joined_at"] == "2031-05-06 07:01:00+00:00"
    refused = write("INSERT INTO customers (email, name) VALUES (:email, :name)", {"email": "x@example.com",
                                                                                   "name": None}, 2)
    assert not refused.ok and refused.error.type == "constraint_violation"
    visit = write("INSERT INTO visits (customer_id, note) VALUES (:customer_id, :note) "
                  "RETURNING visit_id, ticket, status, booked_at, day", {"customer_id": 3.0, "note": "new"}, 3,
                  customer_id="integer")
    assert visit.ok and visit.rows == [{"visit_id": 3, "ticket": 1020, "status": "booked",
                                        "booked_at": "2031-05-06 07:03:00", "day": "2031-05-06"}]
    upsert = write("INSERT INTO customers (email, name) VALUES (:email, :name) ON CONFLICT (email) "
                   "DO UPDATE SET name = EXCLUDED.name RETURNING customer_id, name",
                   {"email": "ada@example.com", "name": "Ada L."}, 4)
    assert upsert.ok and upsert.rows == [{"customer_id": 1, "name": "Ada L."}]
    # The failed insert gave its identity value back (4); the upsert took it (Postgres draws the default before
    # it finds the conflict), so the next customer is 5, not 6, and the same on a replay without the failed call.
    fifth = write("INSERT INTO customers (email, name, credit) VALUES (:email, :name, :credit) RETURNING customer_id",
                  {"email": "di@example.com", "name": "Di", "credit": 2}, 5, credit="number")
    assert fifth.ok and fifth.last_row_id == 5
    status = write("UPDATE visits SET status = :status WHERE visit_id = :visit_id", {"status": "cancelled",
                                                                                      "visit_id": 2}, 6)
    assert status.ok and status.rows_affected == 1
    bad_enum = write("UPDATE visits SET status = :status WHERE visit_id = :visit_id", {"status": "lost",
                                                                                        "visit_id": 2}, 7)
    assert not bad_enum.ok and bad_enum.error.type == "sql_error" and "visit_status" in bad_enum.error.message
    gone = write("DELETE FROM customers WHERE customer_id = :customer_id", {"customer_id": 2}, 8)
    assert gone.ok and gone.rows_affected == 1
    left = clone.execute("SELECT count(*) AS n FROM visits WHERE customer_id = :customer_id", {"customer_id": 2},
                         "read", clock=CLOCK)
    assert left.ok and left.rows == [{"n": 0}]  # ON DELETE CASCADE took the visit with it
    return done


def test_writes_on_a_clone_replay_exactly_and_the_source_is_never_written(source, manager):
    before = database_checksum(source)
    first = manager.clone("dialogue-1")
    with PostgresClone(first) as clone:
        writes = _writes(clone)
    assert len(writes) == 6
    written = database_checksum(first)
    assert written != before
    again = manager.clone("dialogue-2")
    with PostgresClone(again) as fresh:
        assert all(fresh.execute(sql, params, "write", declared=types, clock=clock).ok
                   for sql, params, types, clock in writes)
    assert database_checksum(again) == written, "a replay on a fresh clone must rebuild the same rows"
    assert database_checksum(source) == before, "the source must never change"
    manager.release("dialogue-1")
    manager.release("dialogue-2")
    assert manager.databases() == [manager.template]


def test_the_same_clock_gives_the_same_row_bytes(manager):
    rows = []
    for n, clock in enumerate((CLOCK, CLOCK, "2031-05-06 09:00:00")):
        with PostgresClone(manager.clone(f"d{n}")) as clone:
            assert clone.execute("INSERT INTO visits (customer_id) VALUES (:c)", {"c": 1}, "write", clock=clock).ok
            read = clone.execute("SELECT v::text AS row, now() AS now, CURRENT_DATE AS today FROM visits v "
                                 "ORDER BY visit_id DESC LIMIT 1", {}, "read", clock=clock)
            rows.append(read.rows[0])
    assert rows[0] == rows[1]
    assert rows[0]["now"] == "2031-05-06 07:08:00+00:00" and rows[0]["today"] == "2031-05-06"
    assert "2031-05-06 07:08:00" in rows[0]["row"] and rows[2]["row"] != rows[0]["row"]


def test_a_read_cannot_write_and_errors_are_results(manager):
    with PostgresClone(manager.clone("reader")) as clone:
        refused = clone.execute("DELETE FROM visits", {}, "read", clock=CLOCK)
        assert not refused.ok and refused.error.type == "sql_error" and "read-only" in refused.error.message
        broken = clone.execute("SELEC nothing", {}, "read")
        assert not broken.ok and broken.error.type == "sql_error"
        many = clone.execute("SELECT g FROM generate_series(1, 30) g", {}, "read", max_rows=5)
        assert many.row_count == 30 and len(many.rows) == 5 and many.truncated
        assert clone.execute("SELECT count(*) AS n FROM visits", {}, "read").rows == [{"n": 2}]


def test_clones_left_by_a_killed_run_are_found_and_dropped(source):
    killed = CloneManager(source, "run-killed")
    killed.prepare()
    killed.clone("a")
    killed.clone("b")
    resumed = CloneManager(source, "run-killed")  # the same run id: the same names
    resumed.prepare()  # the template is reused as it was
    dropped = resumed.drop_leftovers(keep_dialogues={"b"})
    assert dropped == [killed.clone_name("a")]
    other = CloneManager(source, "another-run")
    assert other.databases() == []  # another run's databases are not its business
    resumed.close()
    assert resumed.databases() == []


def test_kept_clones_stay(source):
    kept = CloneManager(source, "run-kept", keep=True)
    kept.prepare()
    kept.clone("a")
    kept.release("a")
    kept.close()
    assert kept.databases() == [kept.clone_name("a"), kept.template]
    kept.keep = False
    kept.close()


def test_a_role_without_createdb_is_told_which_privilege(postgres_server, source):
    postgres_server.execute("DROP ROLE IF EXISTS forge_plain", "CREATE ROLE forge_plain LOGIN PASSWORD 'pw'",
                            "DROP ROLE IF EXISTS forge_maker", "CREATE ROLE forge_maker LOGIN CREATEDB PASSWORD 'pw'")
    plain = postgres_server.uri("forge_fixture", user="forge_plain", password="pw")
    with pytest.raises(InputError, match="lacks the CREATEDB privilege"):
        CloneManager(plain, "run-plain").prepare()
    maker = postgres_server.uri("forge_fixture", user="forge_maker", password="pw")
    with pytest.raises(InputError, match="does not own database 'forge_fixture'"):
        CloneManager(maker, "run-maker").prepare()


def test_connection_failures_are_one_line(postgres_server, tmp_path):
    cases = {
        f"postgresql://forge@/x?host={tmp_path}&port=5999": "is the server running",
        postgres_server.uri("forge_fixture", user="forge_plain", password="wrong"): "password authentication failed",
        postgres_server.uri("no_such_db"): 'database "no_such_db" does not exist',
    }
    for uri, expected in cases.items():
        with pytest.raises(InputError) as caught:
            connect(uri).close()
        message = str(caught.value)
        assert expected in message and "\n" not in message and "wrong" not in message


def _tool(tool_name: str, sql: str, mode: str = "read", kind: str = "other", **types: str) -> Tool:
    return Tool(name=tool_name, description=tool_name, sql=sql, mode=mode, kind=kind,
                parameters={"type": "object", "properties": {k: {"type": v} for k, v in types.items()}})


def test_tools_are_checked_by_the_parser_the_planner_and_a_trial_on_a_clone(source, manager):
    from environment.sources.postgres.tool_checks import check_tool

    schema = inspect_postgres(source)
    accepted = [
        (_tool("find_customer", "SELECT * FROM customers WHERE email = :email", email="string"),
         {"email": "ada@example.com"}),
        (_tool("add_customer", "INSERT INTO customers (email, name) VALUES (:email, :name) RETURNING customer_id",
               "write", "insert", email="string", name="string"), {"email": "new@example.com", "name": "New"}),
        (_tool("rename", "INSERT INTO customers (email, name) VALUES (:email, :name) ON CONFLICT (email) DO UPDATE "
               "SET name = EXCLUDED.name", "write", "update", email="string", name="string"),
         {"email": "ada@example.com", "name": "Ada B."}),
        (_tool("delete_visit", "DELETE FROM visits WHERE visit_id = :visit_id", "write", "delete",
               visit_id="integer"), {"visit_id": 1}),
        (_tool("recent_visits", "SELECT * FROM visits WHERE booked_at > now() - :days * interval '1 day'",
               days="integer"), {"days": 30}),
    ]
    refused = [
        (_tool("typo", "SELECT nme FROM customers"), {}, "the server cannot plan it: column \"nme\" does not exist"),
        (_tool("round_float", "SELECT ROUND(AVG(credit::float8), 2) AS avg FROM customers"), {},
         "function round(double precision, integer) does not exist"),
        (_tool("missing", "SELECT * FROM customers WHERE name = :name", email="string"), {"email": "x"},
         "only in the SQL ['name'], only in the parameters ['email']"),
        (_tool("into_view", "DELETE FROM open_visits WHERE visit_id = :v", "write", "delete", v="integer"),
         {"v": 1}, "writes to 'open_visits', a view"),
        (_tool("sneaky", "DELETE FROM visits", "read"), {}, "mode is 'read' but the SQL is a write"),
        (_tool("lucky", "SELECT * FROM customers ORDER BY random() LIMIT 1"), {}, "calls random()"),
        (_tool("two", "SELECT 1; SELECT 2"), {}, "exactly one statement"),
        (_tool("drop", "DROP TABLE customers", "write"), {}, "only SELECT, INSERT, UPDATE and DELETE"),
        (_tool("no_name", "INSERT INTO customers (email, name) VALUES (:email, NULL)", "write", "insert",
               email="string"), {"email": "z@example.com"}, "null value in column \"name\""),
    ]
    clone_uri = manager.clone("checks")
    before = database_checksum(clone_uri)
    with PostgresClone(clone_uri) as clone:
        for tool, arguments in accepted:
            assert check_tool(tool, schema, clone, arguments, clock=CLOCK) is None, tool.name
        for tool, arguments, why in refused:
            problem = check_tool(tool, schema, clone, arguments, clock=CLOCK)
            assert problem is not None and why in problem, (tool.name, problem)
    assert database_checksum(clone_uri) == before, "a check leaves the clone as it was, sequences included"


def test_dialogues_get_their_clones_at_the_same_time(manager):
    from concurrent.futures import ThreadPoolExecutor

    dialogues = [f"together-{i}" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        uris = list(pool.map(manager.clone, dialogues))
    assert len(set(uris)) == 4
    assert sorted(manager.databases()) == sorted([manager.template, *(manager.clone_name(d) for d in dialogues)])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(manager.release, dialogues))
    assert manager.databases() == [manager.template]
