"""SQL environment: read-only source, isolated sandboxes, tool checks that refuse what is unsafe."""

from __future__ import annotations

import sqlite3

import pytest

from environment.sources.sqlite.derive import derive_tools
from environment.errors import InputError
from environment.sources.sqlite.introspect import inspect_database, open_read_only
from environment.sources.pool import SandboxPool
from environment.sources.sqlite.sandbox import Sandbox
from environment.sources.sqlite.tool_checks import check_tool, static_problems
from state.dialogue import ExecutedCall
from state.tools import Tool, ToolResult
from tests.conftest import CLINIC, sha256


@pytest.fixture(scope="module")
def schema():
    return inspect_database(CLINIC)


def test_introspection_sees_keys_types_counts_and_a_data_view(schema):
    pets = schema.table("pets")
    assert [c.name for c in pets.primary_key] == ["pet_id"] and pets.key_assigned_on_insert
    assert {(f.column, f.ref_table) for f in pets.foreign_keys} == {("owner_id", "owners")}
    assert pets.column("weight_kg").json_type == "number"
    assert pets.column("birth_date").is_date
    assert pets.row_count == 100 and 0 < len(pets.sample_rows) <= 5


def test_source_is_read_only():
    conn = open_read_only(CLINIC)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM owners")
    conn.close()


def test_sandboxes_are_private_and_the_source_never_changes():
    before = sha256(CLINIC)
    a, b = Sandbox(str(CLINIC)), Sandbox(str(CLINIC))
    a.conn.execute("DELETE FROM invoices")
    assert a.conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0] == 0
    assert b.conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0] > 0
    a.close(), b.close()
    assert sha256(CLINIC) == before


def _write(tool: Tool, n: int, arguments: dict) -> ExecutedCall:
    return ExecutedCall(tool_call_id=f"c{n}", tool=tool.name, arguments=arguments, mode="write",
                        result=ToolResult(ok=True, rows_affected=1))


def test_pool_rebuilds_exactly_the_state_of_the_recorded_calls(schema):
    tools = {t.name: t for t in derive_tools(schema)}
    update = tools["update_owner_phone"]
    w1 = _write(update, 1, {"owner_id": 1, "new_phone": "111"})
    w2 = _write(update, 2, {"owner_id": 1, "new_phone": "222"})
    pool = SandboxPool(capacity=2)

    def phone(calls: list[ExecutedCall]) -> str:
        box = pool.checkout("d", str(CLINIC), 0, calls, tools).sandbox_for(update)
        return box.conn.execute("SELECT phone FROM owners WHERE owner_id = 1").fetchone()[0]

    assert phone([w1, w2]) == "222"
    # a fork from the checkpoint between the two writes: the sandbox goes back to that state
    assert phone([w1]) == "111"
    assert phone([]) not in ("111", "222")
    pool.close()


def test_a_replay_that_gives_another_result_is_reported(schema):
    tools = {t.name: t for t in derive_tools(schema)}
    update = tools["update_owner_phone"]
    same = _write(update, 1, {"owner_id": 1, "new_phone": "111"})
    claimed = same.model_copy(update={"tool_call_id": "c2", "result": ToolResult(ok=True, rows_affected=7)})
    entry = SandboxPool().checkout("x", str(CLINIC), 0, [same, claimed], tools)
    assert entry.diverged == ["c2"]
    entry.close()


def test_a_replayed_write_is_bound_as_it_first_ran(schema):
    """An integer given as 3.0 binds as 3 the first time and in every replay: a typed database would refuse a
    float for an integer column, and a key compared with 3.0 may match nothing."""
    tools = {t.name: t for t in derive_tools(schema)}
    update = tools["update_owner_phone"]
    call = _write(update, 1, {"owner_id": 3.0, "new_phone": "333"})
    first = Sandbox(str(CLINIC))
    ran = first.run(update, call.arguments)
    replayed = SandboxPool().checkout("r", str(CLINIC), 0, [call], tools).sandbox_for(update)
    query = "SELECT typeof(owner_id), phone FROM owners WHERE phone = '333'"
    assert ran.ok and ran.rows_affected == 1
    assert first.conn.execute(query).fetchall() == replayed.conn.execute(query).fetchall() == [("integer", "333")]
    assert first.snapshot() == replayed.snapshot()
    first.close()


def test_derived_tools_cover_every_kind_and_pass_their_checks(schema):
    tools = derive_tools(schema, max_tools=80)
    assert {"lookup", "search", "range", "join", "aggregate", "top", "insert", "update", "delete"} <= {t.kind for t in tools}
    box = Sandbox(schema.path)
    refused = {t.name: check_tool(t, schema, box) for t in tools}
    box.close()
    assert not [n for n, why in refused.items() if why], refused


def _tool(sql: str, props: dict, mode: str = "read", name: str = "probe") -> Tool:
    return Tool(name=name, description="d", parameters={"type": "object", "properties": props,
                                                            "required": list(props)}, sql=sql, mode=mode)


@pytest.mark.parametrize("tool, reason", [
    (_tool("SELECT * FROM owners WHERE owner_id = :id", {"owner_id": {"type": "integer"}}), "placeholders"),
    (_tool("SELECT * FROM owners; DELETE FROM owners", {}), "exactly one statement"),
    (_tool("DROP TABLE owners", {}), "only SELECT"),
    (_tool("DELETE FROM owners WHERE owner_id = :id", {"id": {"type": "integer"}}), "mode"),
    (_tool("SELECT random() AS r", {}), "non-deterministic"),
    (_tool("SELECT * FROM owners WHERE joined_on < date('now')", {}), "non-deterministic"),
    (_tool("SELECT * FROM owners", {}, name="Bad Name"), "snake_case"),
    (_tool("SELECT * FROM owners WHERE", {}), "does not parse"),
])
def test_unsafe_or_broken_tools_are_refused(tool, reason):
    assert reason in (static_problems(tool) or "")


def test_a_tool_that_fails_to_run_is_refused(schema):
    box = Sandbox(schema.path)
    why = check_tool(_tool("SELECT nope FROM owners WHERE owner_id = :owner_id", {"owner_id": {"type": "integer"}}),
                     schema, box)
    box.close()
    assert why and "failed on sample arguments" in why


def test_tool_errors_come_back_as_results(schema):
    tools = {t.name: t for t in derive_tools(schema)}
    box = Sandbox(schema.path)
    bad_type = box.run(tools["get_owner"], {"owner_id": "seven"})
    extra = box.run(tools["get_owner"], {"owner_id": 1, "x": 2})
    missing = box.run(tools["get_owner"], {})
    fk = box.run(tools["add_pet"], {"owner_id": 99999, "name": "Ghost", "species": "cat"})
    none = box.run(tools["get_owner"], {"owner_id": 99999})
    box.close()
    assert bad_type.error.type == extra.error.type == missing.error.type == "invalid_arguments"
    assert fk.error.type == "constraint_violation"
    assert none.ok and none.rows == [] and none.row_count == 0


def test_large_results_are_capped_and_say_so(schema):
    tools = {t.name: t for t in derive_tools(schema)}
    box = Sandbox(schema.path)
    result = box.run(tools["search_owners_by_city"] if "search_owners_by_city" in tools
                     else tools["search_appointments_by_status"], {next(iter(
                         (tools.get("search_owners_by_city") or tools["search_appointments_by_status"]).properties)): "a"},
                     max_rows=3)
    box.close()
    assert len(result.rows) == 3 and result.row_count > 3 and result.truncated
    assert "showing the first 3" in result.to_content()["note"]


def test_database_with_no_usable_table(tmp_path):
    db = tmp_path / "blobs.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE b (data BLOB)")
    conn.execute("INSERT INTO b VALUES (x'00ff')")
    conn.commit(), conn.close()
    with pytest.raises(InputError, match="no usable tables"):
        inspect_database(db)


def test_the_sandboxes_diff_covers_a_kind_opened_after_the_first_snapshot(schema):
    """A kind without a sandbox at the first snapshot had seen no call: its diff starts from a fresh copy."""
    from environment.sources.pool import DialogueSandboxes

    tools = {t.name: t for t in derive_tools(schema)}
    update = tools["update_owner_phone"]
    boxes = DialogueSandboxes(str(CLINIC), 0)
    before = boxes.snapshot()
    assert before == {}
    boxes.replay([_write(update, 1, {"owner_id": 3, "new_phone": "333"})], tools)
    (row,) = boxes.diff(before, boxes.snapshot()).tables["owners"].updated
    assert row.key == {"owner_id": 3} and row.changes["phone"].new == "333"
    assert row.changes["phone"].old != "333"
    boxes.close()
