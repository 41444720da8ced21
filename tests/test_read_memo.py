"""A read made again on the same rows is answered from its first result, and never on other rows.

The plan check runs a task's reads on the dialogue's own sandbox in a savepoint; after the rollback the
dialogue repeats them on the same rows and is answered without running the statement again (a scan of a big
table, run twice before). The results must be exactly what running it would give, whatever came between:
writes of every kind, rollbacks, another sandbox of the same source at another state.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.test_change_capture import SCHEMA, WRITES

from environment.sources.read_memo import memoizable
from environment.sources.sqlite.sandbox import Sandbox

CLINIC = Path(__file__).resolve().parent.parent / "examples" / "clinic.sqlite"

READS = [
    "SELECT * FROM parent ORDER BY id",
    "SELECT parent_id, count(*), group_concat(note, ',') FROM (SELECT * FROM child ORDER BY id) GROUP BY parent_id "
    "ORDER BY parent_id",
    "SELECT n, parent_id, hex(data) FROM follower ORDER BY n",
    "SELECT * FROM tag ORDER BY code",
    "SELECT a, b, v FROM pair ORDER BY a, b",
    "SELECT rowid, x, y FROM loose ORDER BY rowid",
    "SELECT count(*), max(id) FROM audit",
]



def memo_ops(writes: st.SearchStrategy, reads: int) -> st.SearchStrategy:
    """One step of a sandbox's life: a write, one of `reads` reads, a savepoint, or a rollback to it."""
    return st.one_of(
        st.tuples(st.just("write"), writes),
        st.tuples(st.just("read"), st.integers(0, reads - 1)),
        st.tuples(st.just("savepoint"), st.none()),
        st.tuples(st.just("rollback"), st.none()),
    )


OPS = memo_ops(WRITES, len(READS))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("memo") / "every_case.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.close()
    return str(path)


def _count_statements(box: Sandbox) -> list[str]:
    """The statements the sandbox really runs (the memo's answers are not among them)."""
    ran: list[str] = []
    original = box._execute

    def counted(sql, params, mode, max_rows, clock):  # type: ignore[no-untyped-def]
        ran.append(sql)
        return original(sql, params, mode, max_rows, clock)

    box._execute = counted  # type: ignore[method-assign]
    return ran


def _apply(box: Sandbox, op: tuple, points: list[str]) -> object:
    kind, value = op
    if kind == "write":
        sql, params = value
        try:
            box.conn.execute(sql, params)
        except sqlite3.Error:
            pass
        return None
    if kind == "savepoint":
        points.append(box.savepoint())
        return None
    if kind == "rollback":
        if points:
            box.rollback_to(points.pop())
        return None
    return box.execute(READS[value], {}, "read", max_rows=50).model_dump()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(other=st.lists(OPS, max_size=10), ops=st.lists(OPS, min_size=1, max_size=24))
def test_answered_reads_equal_what_running_them_gives(source: str, other: list, ops: list) -> None:
    # another sandbox of the source fills the shared results at states of its own first
    neighbour = Sandbox(source)
    neighbour_points: list[str] = []
    for op in other:
        _apply(neighbour, op, neighbour_points)
    box, reference = Sandbox(source), Sandbox(source, memo_capacity=0)
    box_points: list[str] = []
    reference_points: list[str] = []
    try:
        for op in ops:
            got = _apply(box, op, box_points)
            expected = _apply(reference, op, reference_points)
            assert got == expected, op
            _apply(neighbour, op, neighbour_points)  # interleaved writes elsewhere change nothing here
    finally:
        for sandbox in (neighbour, box, reference):
            sandbox.close()


def test_a_read_repeated_on_the_same_rows_runs_once_and_a_write_or_rollback_is_seen(source: str) -> None:
    box = Sandbox(source, memo_capacity=64)
    ran = _count_statements(box)
    read = "SELECT * FROM tag ORDER BY code"
    first = box.execute(read, {}, "read")
    assert box.execute(read, {}, "read") == first and ran == [read]

    point = box.savepoint()  # as a plan check does: a write, its read, then the rollback
    box.conn.execute("UPDATE tag SET label = 'changed' WHERE code = 't1'")
    changed = box.execute(read, {}, "read")
    assert changed.rows[0]["label"] == "changed" and len(ran) == 2
    box.rollback_to(point)
    assert box.execute(read, {}, "read") == first and len(ran) == 2  # the rows as before: answered

    box.conn.execute("UPDATE tag SET label = 'changed' WHERE code = 't1'")  # the dialogue makes the same write
    assert box.execute(read, {}, "read") == changed and len(ran) == 2
    box.conn.execute("UPDATE tag SET label = 'one!' WHERE code = 't1'")  # and undoes it: the rows as at first
    assert box.execute(read, {}, "read") == first
    box.close()


def test_sandboxes_of_one_source_share_results_at_the_same_state(source: str) -> None:
    read = "SELECT * FROM parent ORDER BY id"
    first = Sandbox(source)
    first.execute(read, {}, "read")
    second = Sandbox(source)
    ran = _count_statements(second)
    assert second.execute(read, {}, "read") == first.execute(read, {}, "read") and ran == []
    first.conn.execute("DELETE FROM parent WHERE id = 3")
    assert [r["id"] for r in first.execute(read, {}, "read").rows] == [1, 2]
    assert [r["id"] for r in second.execute(read, {}, "read").rows] == [1, 2, 3] and ran == []
    first.close()
    second.close()


def test_a_changed_source_file_is_another_source(tmp_path: Path) -> None:
    path = tmp_path / "one.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');")
    conn.close()
    box = Sandbox(str(path))
    assert box.execute("SELECT v FROM t", {}, "read").rows == [{"v": "a"}]
    box.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE t SET v = 'bb'")  # another size: the file as it stands now
    conn.commit()
    conn.close()
    again = Sandbox(str(path))
    assert again.execute("SELECT v FROM t", {}, "read").rows == [{"v": "bb"}]
    again.close()


def test_reads_of_the_connection_state_errors_and_arguments_are_handled(source: str) -> None:
    box = Sandbox(source, memo_capacity=64)
    ran = _count_statements(box)
    for _ in range(2):
        box.execute("SELECT last_insert_rowid() AS id", {}, "read")
        box.execute("SELECT * FROM no_such_table", {}, "read")  # an error is not kept
    assert len(ran) == 4
    by_code = "SELECT * FROM tag WHERE code = :code"
    assert box.execute(by_code, {"code": "t1"}, "read").rows[0]["code"] == "t1"
    assert box.execute(by_code, {"code": "t2"}, "read").rows[0]["code"] == "t2"  # other arguments: run
    assert box.execute(by_code, {"code": "t1"}, "read", max_rows=1).row_count == 1  # another limit: run
    assert len(ran) == 7
    box.close()
    assert not memoizable("SELECT changes()") and not memoizable("SELECT * FROM sqlite_sequence")
    assert not memoizable("SELECT * FROM temp.scratch") and memoizable("SELECT * FROM purchase WHERE id = :id")


def test_a_run_without_answered_reads_writes_the_same_dialogues(tmp_path: Path, monkeypatch) -> None:
    from graphs.run import main

    lines = []
    for entries in ("1024", "0"):
        monkeypatch.setenv("FORGE_READ_MEMO_ENTRIES", entries)
        out = tmp_path / entries / "run"  # one name: the dialogue ids are the run's
        assert main(["generate", "--db", str(CLINIC), "--dialogues", "3", "--tasks-per-dialogue", "2", "--seed", "5",
                     "--out", str(out)]) == 0
        lines.append([line for line in (out / "dialogues.jsonl").read_text().splitlines()])
    assert lines[0] and lines[0] == lines[1]
