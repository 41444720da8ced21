"""Change capture folds to exactly the diff of two whole-database snapshots, whatever the writes.

Random sequences of writes run on a schema holding every case the fold must get right: key changes,
INSERT OR REPLACE and ON CONFLICT, UPDATE OR REPLACE, ON DELETE CASCADE and SET NULL, the schema's own
triggers, rowid tables, WITHOUT ROWID tables, clock-default columns, keys the database assigns
(INTEGER PRIMARY KEY and AUTOINCREMENT), unique columns, REAL and BLOB values. After each sequence the
change log's fold since a mark taken part way equals the snapshot diff between the same two moments.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from environment.sources.sqlite.sandbox import Sandbox

SCHEMA = """
PRAGMA foreign_keys = ON;
CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL,
                     created TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE child (id INTEGER PRIMARY KEY AUTOINCREMENT, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE
                    ON UPDATE CASCADE, note TEXT);
CREATE TABLE follower (n INTEGER NOT NULL PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE SET NULL,
                       data BLOB);
CREATE TABLE tag (code TEXT NOT NULL PRIMARY KEY, label TEXT);
CREATE TABLE pair (a INTEGER NOT NULL, b INTEGER NOT NULL, v REAL, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE loose (x TEXT, y INTEGER);
CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT, at TEXT DEFAULT (datetime('now')));
CREATE TRIGGER parent_renamed AFTER UPDATE OF name ON parent BEGIN
  INSERT INTO audit (what) VALUES ('renamed ' || OLD.name || ' to ' || NEW.name);
END;
CREATE TRIGGER tag_added AFTER INSERT ON tag BEGIN
  UPDATE tag SET label = coalesce(NEW.label, 'none') || '!' WHERE code = NEW.code;
END;
INSERT INTO parent (id, name, score, created) VALUES (1, 'a', 1.5, '2024-01-01 00:00:00'),
  (2, 'b', NULL, '2024-01-02 00:00:00'), (3, 'c', 3.0, '2024-01-03 00:00:00');
INSERT INTO child (parent_id, note) VALUES (1, 'x'), (1, 'y'), (2, 'z');
INSERT INTO follower (n, parent_id, data) VALUES (1, 1, X'00ff'), (2, 3, NULL);
INSERT INTO tag VALUES ('t1', 'one'), ('t2', 'two');
INSERT INTO pair VALUES (1, 1, 0.5), (1, 2, 1.0), (2, 1, NULL);
INSERT INTO loose VALUES ('p', 1), ('q', 2), ('p', 1);
INSERT INTO audit (id, what, at) VALUES (1, 'made', '2024-01-01 00:00:00');
"""

small = st.integers(min_value=1, max_value=5)
names = st.sampled_from(["a", "b", "c", "d", "e"])
texts = st.sampled_from(["t1", "t2", "t3", "t4"])
reals = st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.25]), st.integers(0, 3))

WRITES = st.one_of(
    st.tuples(st.just("INSERT INTO parent (name, score) VALUES (?, ?)"), st.tuples(names, reals)),
    st.tuples(st.just("INSERT INTO parent (id, name) VALUES (?, ?)"), st.tuples(small, names)),
    st.tuples(st.just("INSERT OR REPLACE INTO parent (id, name, score) VALUES (?, ?, ?)"),
              st.tuples(small, names, reals)),
    st.tuples(st.just("INSERT INTO parent (id, name) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name"),
              st.tuples(small, names)),
    st.tuples(st.just("UPDATE parent SET id = ? WHERE id = ?"), st.tuples(small, small)),
    st.tuples(st.just("UPDATE OR REPLACE parent SET name = ? WHERE id = ?"), st.tuples(names, small)),
    st.tuples(st.just("UPDATE parent SET score = ? WHERE id = ?"), st.tuples(reals, small)),
    st.tuples(st.just("DELETE FROM parent WHERE id = ?"), st.tuples(small)),
    st.tuples(st.just("INSERT INTO child (parent_id, note) VALUES (?, ?)"), st.tuples(small, names)),
    st.tuples(st.just("DELETE FROM child WHERE id = ?"), st.tuples(small)),
    st.tuples(st.just("UPDATE child SET note = note WHERE parent_id = ?"), st.tuples(small)),
    st.tuples(st.just("INSERT OR REPLACE INTO follower (n, parent_id, data) VALUES (?, ?, ?)"),
              st.tuples(small, small, st.sampled_from([None, b"\x01", b"\x00\xff"]))),
    st.tuples(st.just("INSERT INTO tag VALUES (?, ?)"), st.tuples(texts, st.one_of(st.none(), names))),
    st.tuples(st.just("UPDATE tag SET code = ? WHERE code = ?"), st.tuples(texts, texts)),
    st.tuples(st.just("REPLACE INTO tag VALUES (?, ?)"), st.tuples(texts, names)),
    st.tuples(st.just("INSERT INTO pair VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET v = excluded.v"),
              st.tuples(small, small, reals)),
    st.tuples(st.just("UPDATE pair SET b = ? WHERE a = ?"), st.tuples(small, small)),
    st.tuples(st.just("DELETE FROM pair WHERE a = ?"), st.tuples(small)),
    st.tuples(st.just("INSERT INTO loose VALUES (?, ?)"), st.tuples(names, small)),
    st.tuples(st.just("UPDATE loose SET y = ? WHERE x = ?"), st.tuples(small, names)),
    st.tuples(st.just("DELETE FROM loose WHERE y = ?"), st.tuples(small)),
    st.tuples(st.just("DELETE FROM audit"), st.just(())),
    st.tuples(st.just("DELETE FROM child"), st.just(())),
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("capture") / "every_case.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.close()
    return str(path)


def _run(box: Sandbox, writes: list[tuple[str, tuple]]) -> None:
    for sql, params in writes:
        try:
            box.conn.execute(sql, params)
        except sqlite3.Error:
            pass  # a refused write changes nothing: the fold must see nothing of it either


@pytest.mark.parametrize("foreign_keys", ["ON", "OFF"])  # OFF: REPLACE deletes rows without firing triggers
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(WRITES, max_size=8), then=st.lists(WRITES, min_size=1, max_size=14))
def test_the_fold_of_the_log_equals_the_snapshot_diff(source: str, foreign_keys: str, first: list, then: list) -> None:
    box = Sandbox(source)
    box.conn.execute(f"PRAGMA foreign_keys = {foreign_keys}")
    assert not box.changes.unwatched  # every table is watched by triggers, none compared by snapshots
    try:
        _run(box, first)
        before, mark = box.snapshot(), box.mark()
        _run(box, then)
        assert box.changes_since(mark).model_dump() == box.diff(before, box.snapshot()).model_dump()
    finally:
        box.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(WRITES, min_size=1, max_size=10))
def test_a_rolled_back_savepoint_leaves_state_and_log_as_they_were(source: str, writes: list) -> None:
    box = Sandbox(source)
    try:
        before, mark = box.snapshot(), box.mark()
        point = box.savepoint()
        _run(box, writes)
        box.rollback_to(point)
        assert box.snapshot() == before
        assert box.changes_since(mark).is_empty()
        assert box.mark().position == mark.position
    finally:
        box.close()


def test_changes_are_folded_per_row(source: str) -> None:
    """Inserted then updated is one insert; updated back to its old values is no change; a changed key is a
    delete and an insert; a cascade shows in the child table; the schema's trigger shows in its table."""
    box = Sandbox(source)
    try:
        mark = box.mark()
        box.conn.execute("INSERT INTO tag VALUES ('t9', 'nine')")
        box.conn.execute("UPDATE tag SET label = 'NINE' WHERE code = 't9'")
        box.conn.execute("UPDATE parent SET score = 9 WHERE id = 2")
        box.conn.execute("UPDATE parent SET score = NULL WHERE id = 2")
        box.conn.execute("UPDATE pair SET a = 7 WHERE a = 2")
        box.conn.execute("DELETE FROM parent WHERE id = 1")
        box.conn.execute("UPDATE parent SET name = 'cc' WHERE id = 3")
        found = box.changes_since(mark).tables
        assert [r.values for r in found["tag"].inserted] == [{"code": "t9", "label": "NINE"}]
        assert not found["tag"].updated and not found["tag"].deleted
        assert [r.key for r in found["parent"].deleted] == [{"id": 1}]
        assert [r.key for r in found["parent"].updated] == [{"id": 3}]  # id 2 went back to its old score
        assert [r.key for r in found["pair"].deleted] == [{"a": 2, "b": 1}]
        assert [r.key for r in found["pair"].inserted] == [{"a": 7, "b": 1}]
        assert sorted(r.key["id"] for r in found["child"].deleted) == [1, 2]
        assert [r.key for r in found["follower"].updated] == [{"n": 1}]
        assert [r.values["what"] for r in found["audit"].inserted] == ["renamed c to cc"]
        assert found["audit"].clock_columns == ["at"] and found["audit"].assigned_keys == "inserted"
    finally:
        box.close()


def test_capture_lives_on_the_connection_only(source: str) -> None:
    """The triggers and the log are temporary: the source file gains nothing, a plain copy of it neither."""
    box = Sandbox(source)
    try:
        box.conn.execute("DELETE FROM loose")
    finally:
        box.close()
    conn = sqlite3.connect(source)
    try:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'forge_%'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM loose").fetchone()[0] == 3
    finally:
        conn.close()
