"""Postgres clones answer a read repeated on the same rows from its first result, and never on other rows.

As on SQLite (test_read_memo.py): random writes of every kind, plan-check savepoints rolled back, and another
clone of the run's template at states of its own; every read a clone answers equals what running it gives.
"""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from environment.sources.postgres.clones import CloneManager
from environment.sources.postgres.sandbox import PostgresSandbox
from state.tools import Tool
from tests.test_postgres_change_capture import SCHEMA, WRITES, _run
from tests.test_read_memo import memo_ops

# every table keyed (the change log covers it); `loose` has no key, so it is left out here
KEYED_SCHEMA = "\n".join(line for line in SCHEMA.splitlines() if "loose" not in line)

READS = [Tool(name=f"read_{n}", description="a read", parameters={"type": "object", "properties": {}}, sql=sql,
              source="postgres", mode="read")
         for n, sql in enumerate([
             "SELECT id, name, score FROM parent ORDER BY id",
             "SELECT parent_id, count(*) AS n, string_agg(note, ',' ORDER BY id) AS notes FROM child "
             "GROUP BY parent_id ORDER BY parent_id",
             "SELECT n, parent_id, encode(data, 'hex') AS data FROM follower ORDER BY n",
             "SELECT * FROM tag ORDER BY code",
             "SELECT a, b, v FROM pair ORDER BY a, b",
             "SELECT count(*) AS n, max(id) AS last FROM audit",
         ])]

OPS = memo_ops(WRITES, len(READS))


@pytest.fixture(scope="module")
def manager(postgres_server):
    uri = postgres_server.create_database("forge_memo_cases")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(KEYED_SCHEMA)
    runs = CloneManager(uri, "memo-property")
    runs.prepare()
    yield runs
    runs.close()


def _apply(box: PostgresSandbox, op: tuple, points: list) -> object:
    kind, value = op
    if kind == "write":
        _run(box, [value])
    elif kind == "savepoint" and not points:  # the plan check holds one savepoint at a time
        points.append(box.savepoint())
    elif kind == "rollback" and points:
        box.rollback_to(points.pop())
    elif kind == "read":
        return box.run(READS[value], {}, max_rows=50).model_dump()
    return None


def _counted(box: PostgresSandbox) -> list[str]:
    ran: list[str] = []
    original = box.clone.execute

    def counted(sql, *args, **kwargs):  # type: ignore[no-untyped-def]
        ran.append(sql)
        return original(sql, *args, **kwargs)

    box.clone.execute = counted  # type: ignore[method-assign]
    return ran


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(other=st.lists(OPS, max_size=6), ops=st.lists(OPS, min_size=1, max_size=16))
def test_answered_reads_equal_what_running_them_gives(manager, other: list, ops: list) -> None:
    neighbour, box = PostgresSandbox(manager, "neighbour"), PostgresSandbox(manager, "memo")
    reference = PostgresSandbox(manager, "reference", memo_capacity=0)
    points: dict[str, list] = {"neighbour": [], "box": [], "reference": []}
    try:
        for op in other:
            _apply(neighbour, op, points["neighbour"])
        for op in ops:
            assert _apply(box, op, points["box"]) == _apply(reference, op, points["reference"]), op
            _apply(neighbour, op, points["neighbour"])
    finally:
        for sandbox in (neighbour, box, reference):
            sandbox.close()


def test_a_read_is_run_once_per_state_and_a_clone_of_the_template_shares_it(manager) -> None:
    first, second = PostgresSandbox(manager, "one"), PostgresSandbox(manager, "two")
    try:
        ran_first, ran_second = _counted(first), _counted(second)
        tags = READS[3]
        answer = first.run(tags, {})
        assert first.run(tags, {}) == answer and second.run(tags, {}) == answer
        assert len(ran_first) == 1 and ran_second == []
        point = first.savepoint()
        _run(first, [("UPDATE tag SET label = %s WHERE code = %s", ("changed", "t1"))])
        assert first.run(tags, {}).rows[0]["label"] == "changed" and len(ran_first) == 2
        first.rollback_to(point)
        assert first.run(tags, {}) == answer and len(ran_first) == 2
    finally:
        first.close()
        second.close()


def test_a_clone_with_a_table_no_log_covers_runs_every_read(postgres_server) -> None:
    uri = postgres_server.create_database("forge_memo_unkeyed")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE item (id integer PRIMARY KEY, v text); CREATE TABLE loose (x text);"
                     "INSERT INTO item VALUES (1, 'a'); INSERT INTO loose VALUES ('p');")
    runs = CloneManager(uri, "memo-unkeyed")
    runs.prepare()
    box = PostgresSandbox(runs, "unkeyed")
    try:
        ran = _counted(box)
        read = READS[0].model_copy(update={"sql": "SELECT * FROM item ORDER BY id"})
        box.run(read, {})
        box.run(read, {})
        assert len(ran) == 2  # a write to `loose` would not show in the log: nothing is answered
    finally:
        box.close()
        runs.close()
