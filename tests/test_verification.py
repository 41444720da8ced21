"""Verified dialogues: planted faults caught by the state and facts checks whatever the judge says, the plan
check's refusals, alternatives, clock and autoincrement columns, and determinism."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from backends.protocols import TaskRequest
from environment.sources.sqlite.derive import derive_tools
from environment.sources.sqlite.diff import diff, snapshot
from environment.sources.sqlite.introspect import inspect_database
from environment.state_match import match
from nodes.task_generator import checked_task
from state.config import Settings
from state.dialogue import DialogueState
from state.tasks import PlannedCall, ResultRef, Subtask, Task
from tests.verification_support import (DEPOSIT, DEPOSIT_TASK, FIND, TOOLS, PlantedBackend, bank, call, calls,
                                        run_planted)

USER = ["What is Ada's balance?", "Please deposit 40 into her account.", "That's all, thanks!"]
FIND_ADA = call("find_account", name="Ada")


@pytest.fixture()
def db(tmp_path):
    return bank(tmp_path)


def verdict_of(final):
    (verdict,) = final["verdicts"]
    return verdict


def test_a_correct_dialogue_matches_the_state_and_tells_every_fact(db):
    final = run_planted(db, DEPOSIT_TASK, [FIND_ADA, "Ada's balance is 120.5.", call("deposit", account_id=1, amount=40),
                                           "Done: 40 was deposited.", "You're welcome!"], USER)
    verdict = verdict_of(final)
    assert verdict.judgment == "valid", verdict.reasoning
    check = verdict.verification
    assert check.state.status == "match" and check.facts_told and check.user_conduct == "ok"
    (accounts,) = check.state.real_diff.tables.values()
    assert accounts.updated[0].key == {"account_id": 1}
    assert accounts.updated[0].changes["balance"].model_dump() == {"old": 120.5, "new": 160.5}


@pytest.mark.parametrize("fault,script,named", [
    ("wrong row", [FIND_ADA, "Ada's balance is 120.5.", call("deposit", account_id=2, amount=40), "Done.",
                   "You're welcome!"],
     ["state mismatch", "accounts row account_id=2: unexpected change", "accounts row account_id=1: expected change"]),
    ("done twice", [FIND_ADA, "Ada's balance is 120.5.", calls(("deposit", {"account_id": 1, "amount": 40}),
                                                               ("deposit", {"account_id": 1, "amount": 40})),
                    "Done twice over.", "You're welcome!"],
     ["state mismatch", "accounts row account_id=1: balance is 200.5, expected 160.5"]),
    ("extra write", [FIND_ADA, "Ada's balance is 120.5.", calls(("deposit", {"account_id": 1, "amount": 40}),
                                                                ("add_note", {"note": "deposit made"})),
                     "Done, and noted.", "You're welcome!"],
     ["state mismatch", "audit row entry_id=2: unexpected change"]),
    ("wrong number told", [FIND_ADA, "Ada's balance is 150.", call("deposit", account_id=1, amount=40), "Done.",
                           "You're welcome!"],
     ["facts not told: subtask 1: balance = 120.5"]),
    ("completion without the write", [FIND_ADA, "Ada's balance is 120.5.", "Done, I deposited 40 for her.",
                                      "You're welcome!"],
     ["state mismatch", "accounts row account_id=1: expected change missing"]),
])
def test_planted_faults_pass_the_judge_and_fail_the_state_check(db, fault, script, named):
    verdict = verdict_of(run_planted(db, DEPOSIT_TASK, script, USER, name=f"planted-{fault}"))
    assert verdict.verification.judge == "pass", "the judge approves everything"
    assert verdict.judgment == "invalid", fault
    for words in named:
        assert words in verdict.reasoning, (fault, verdict.reasoning)


def test_an_assistant_that_never_calls_a_tool_is_rejected_for_missing_facts(db):
    bob = Subtask(description="Find Bob's balance.", ask="and Bob's?", answer_fields=["balance"],
                  steps=[[PlannedCall(tool="find_account", arguments={"name": "Bob"})]])
    task = Task(goal="A clerk wants Ada's and Bob's balances.", difficulty="easy", subtasks=[FIND, bob])
    final = run_planted(db, task, ["Ada has 500 and Bob has 300.", "Bob has 300, as I said.", "You're welcome!"],
                        ["What is Ada's balance?", "And Bob's?", "That's all, thanks!"], name="planted-inventor")
    verdict = verdict_of(final)
    assert not final["calls"]
    assert verdict.verification.judge == "pass" and verdict.verification.state.status == "match"
    assert verdict.judgment == "invalid"
    assert "facts not told: subtask 1: balance = 120.5; subtask 2: balance = 80.0" in verdict.reasoning


def test_a_user_that_pastes_its_scaffolding_is_a_simulator_fault(db):
    user = ["What you want (hidden from the assistant; never paste it): Ada wants to know her balance.", *USER[1:]]
    final = run_planted(db, DEPOSIT_TASK, [FIND_ADA, "Ada's balance is 120.5.", call("deposit", account_id=1, amount=40),
                                           "Done: 40 was deposited.", "You're welcome!"], user, name="planted-paste")
    verdict = verdict_of(final)
    assert verdict.verification.user_conduct == "fault"
    assert verdict.judgment == "invalid" and "simulator fault: the user quoted its instructions' scaffolding" in \
        verdict.reasoning


def test_a_user_repeating_itself_while_the_assistant_is_stuck_is_a_simulator_fault(db):
    user = ["What is Ada's balance?", "What is Ada's balance?", "That's all, thanks!"]
    task = Task(goal="A clerk wants Ada's balance.", difficulty="easy", subtasks=[FIND])
    final = run_planted(db, task, ["Let me see.", "Let me see.", "You're welcome!"], user, name="planted-repeat")
    assert "simulator fault: the user repeated itself verbatim" in verdict_of(final).reasoning


EITHER = Task(goal="Ada's family wants 40 deposited into Ada's or Bob's account.", difficulty="easy", subtasks=[
    Subtask(description="Deposit 40 into Ada's or Bob's account.", ask="deposit 40 into Ada's or Bob's account.",
            changes_data=True, steps=[[PlannedCall(tool="deposit", arguments={"account_id": 1, "amount": 40})]],
            alternative_steps=[[[PlannedCall(tool="deposit", arguments={"account_id": 2, "amount": 40})]]])])


@pytest.mark.parametrize("account,valid,alternative", [(1, True, 0), (2, True, 1), (3, False, None)])
def test_alternatives_pass_with_either_outcome_and_fail_with_neither(db, account, valid, alternative):
    final = run_planted(db, EITHER, [call("deposit", account_id=account, amount=40), "Done: deposited 40.",
                                     "You're welcome!"],
                        ["Please deposit 40 into Ada's or Bob's account.", "Thanks, that's all."],
                        name=f"planted-either-{account}")
    verdict = verdict_of(final)
    assert len(final["tasks"][0].expected.alternatives) == 2
    assert (verdict.judgment == "valid") is valid, verdict.reasoning
    assert verdict.verification.state.alternative == alternative
    if not valid:
        assert "accounts row account_id=3: unexpected change" in verdict.reasoning


def test_clock_and_autoincrement_columns_never_cause_a_false_mismatch(db):
    opening = Task(goal="Dee opens an account.", difficulty="easy", subtasks=[
        FIND, Subtask(description="Open an account for Dee with 10.", ask="open one for Dee with 10.",
                      changes_data=True,
                      steps=[[PlannedCall(tool="open_account", arguments={"name": "Dee", "balance": 10.0})]])])
    # an extra read first: the insert runs a minute later than in the plan, so its opened_at differs
    final = run_planted(db, opening, [FIND_ADA, FIND_ADA, "Ada's balance is 120.5.",
                                      call("open_account", name="Dee", balance=10.0), "Done: account opened.",
                                      "You're welcome!"],
                        ["What is Ada's balance?", "Open one for Dee with 10.", "That's all, thanks!"],
                        name="planted-clock")
    verdict = verdict_of(final)
    real = verdict.verification.state.real_diff.tables["accounts"].inserted[0].values
    planned = final["tasks"][0].expected.alternatives[0].tables["accounts"].inserted[0].values
    assert real["opened_at"] != planned["opened_at"], "the clock columns really differ"
    assert verdict.judgment == "valid" and verdict.verification.state.status == "match", verdict.reasoning


def test_assigned_keys_are_matched_by_the_rows_other_values(db):
    plan = sqlite3.connect(db)
    before = snapshot(plan)
    plan.execute("INSERT INTO accounts (name, balance, opened_at) VALUES ('Dee', 10, '2025-01-01 09:00:00')")
    expected = diff(before, snapshot(plan))
    real = sqlite3.connect(":memory:")
    plan.rollback()
    plan.backup(real)
    real.execute("INSERT INTO accounts (name, balance) VALUES ('Tmp', 1)")
    real.execute("DELETE FROM accounts WHERE name = 'Tmp'")  # AUTOINCREMENT moves on: Dee gets another id
    start = snapshot(real)
    real.execute("INSERT INTO accounts (name, balance) VALUES ('Dee', 10)")  # opened_at from the wall clock
    actual = diff(start, snapshot(real))
    assert expected.tables["accounts"].inserted[0].key != actual.tables["accounts"].inserted[0].key
    assert match([expected], actual) == (0, [])
    real.execute("UPDATE accounts SET balance = 11 WHERE name = 'Dee'")
    chosen, found = match([expected], diff(start, snapshot(real)))
    assert chosen is None and {d.kind for d in found} == {"missing", "unexpected"}


# -- the plan check -------------------------------------------------------------------------------

def _start(db) -> tuple[DialogueState, TaskRequest, list]:
    """A dialogue's start on the bank: our tools and those derived from its schema (for a replacement task)."""
    schema = inspect_database(str(db))
    tools = [*TOOLS, *(t for t in derive_tools(schema) if t.name not in {u.name for u in TOOLS})]
    state = DialogueState(dialogue_id="plan", source_db=str(db), seed=3, database=schema,
                          toolset=[t.model_dump() for t in tools])
    return state, TaskRequest(database=schema, tools=tools, difficulty="easy", relation="first",
                              rng_key="3:task:0"), tools


def test_a_plan_that_fails_is_refused_fed_back_once_and_the_retry_kept(db):
    broken = DEPOSIT_TASK.model_copy(update={"subtasks": [
        FIND.model_copy(update={"steps": [[PlannedCall(tool="find_account", arguments={"name": 7})]]}), DEPOSIT]})
    backend = PlantedBackend([broken, DEPOSIT_TASK], [], [])
    state, request, tools = _start(db)
    task, _ = asyncio.run(checked_task(state, tools, Settings(), backend, request))
    assert len(backend.task_requests) == 2
    assert "subtask 1, step 1: find_account" in backend.task_requests[1].feedback
    assert task.subtasks == DEPOSIT_TASK.subtasks
    assert task.expected.refused == [backend.task_requests[1].feedback]


@pytest.mark.parametrize("changes_data,amount,why", [
    (True, 0, "subtask 2 asks for a change, but its plan changes nothing"),
    (False, 40, "subtask 2 is read-only, but its plan writes"),
])
def test_a_write_that_changes_nothing_or_a_read_that_writes_is_refused_then_replaced(db, changes_data, amount, why):
    bad_step = [[PlannedCall(tool="deposit", arguments={"account_id": ResultRef(subtask=0, step=0, field="account_id"),
                                                        "amount": amount})]]
    bad = DEPOSIT_TASK.model_copy(update={"subtasks": [
        FIND, DEPOSIT.model_copy(update={"changes_data": changes_data, "steps": bad_step})]})
    backend = PlantedBackend(bad, [], [])
    state, request, tools = _start(db)
    task, _ = asyncio.run(checked_task(state, tools, Settings(), backend, request))
    assert len(backend.task_requests) == 2, "the model got the refusal back once"
    assert backend.task_requests[1].feedback == why
    assert task.expected.refused[:2] == [why, why]
    assert task.goal != bad.goal, "then the task was replaced by one whose plan passes"


def test_the_same_seed_gives_the_same_goal_diffs_and_verdicts_byte_for_byte():
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.dialogue import build_dialogue_graph
    from tests.conftest import CLINIC

    def once() -> str:
        graph = build_dialogue_graph().compile(checkpointer=InMemorySaver())
        final = asyncio.run(graph.ainvoke(
            {"dialogue_id": "same", "source_db": str(CLINIC), "seed": 11, "tasks_per_dialogue": 2},
            {"configurable": {"thread_id": "same"}, "recursion_limit": 500}, context=Settings(backend="offline")))
        return "\n".join([*(t.expected.model_dump_json() for t in final["tasks"]),
                          *(v.model_dump_json() for v in final["verdicts"])])

    first = once()
    assert '"alternatives"' in first and '"verification"' in first
    assert first == once()


def test_the_dataset_line_and_the_report_show_the_diff_of_a_failed_task(db):
    from runner.export import export_dialogue
    from results.exporters.source import SourceDialogue
    from results.report.browser import browser_entry

    final = run_planted(db, DEPOSIT_TASK, [FIND_ADA, "Ada's balance is 120.5.", call("deposit", account_id=2, amount=40),
                                           "Done.", "You're welcome!"], USER, name="planted-report")
    state = DialogueState(dialogue_id="planted-report", source_db=str(db), tasks_per_dialogue=1, task_starts=[0],
                          messages=final["messages"], tasks=final["tasks"], verdicts=final["verdicts"],
                          calls=final["calls"])
    record, ok, _ = export_dialogue(state, TOOLS, {})
    assert not ok
    (entry,) = record.metadata["verification"]
    assert entry["goal_diff"][0]["tables"]["accounts"]["updated"][0]["key"] == {"account_id": 1}
    assert entry["real_diff"]["tables"]["accounts"]["updated"][0]["key"] == {"account_id": 2}
    assert entry["verification"]["state"] == "mismatch" and entry["verification"]["judge"] == "pass"
    assert [f["told"] for f in entry["facts"]] == [True, True]
    assert "verification" not in record.metadata["verdicts"][0]
    shown = browser_entry(SourceDialogue(id=record.id, run="r", valid=ok, reason=record.reason,
                                         messages=record.messages, tools=record.tools, metadata=record.metadata))
    (verdict,) = shown["verdicts"]
    assert verdict["state"] == "mismatch"
    assert any("accounts row account_id=2: unexpected change" in d for d in verdict["differences"])
    assert verdict["real_diff"] == ["accounts updated account_id=2: balance: 80.0 -> 120.0"]


@pytest.mark.parametrize("value,kind,text,expected", [
    (120.5, "value", "Her balance is $120.50.", True),
    (1234, "count", "There are 1,234 of them.", True),
    (3, "count", "I found three.", True),
    (3, "count", "I found thirty.", False),
    ("2025-01-06 13:30", "value", "It is on January 6, 2025 at 13:30.", True),
    ("2025-01-06", "value", "It is on 06/01/2025.", True),
    ("2025-01-06", "value", "It is on 2025-01-07.", False),
    ("Ada Lovelace", "value", "That is ADA LOVELACE.", True),
    ("Ada", "value", "That is Adams.", False),
    (None, "none", "I found no matching pets.", True),
    (None, "none", "No problem, here it is.", False),
    (None, "confirmation", "Done: the record was updated.", True),
    (None, "confirmation", "Here it is.", False),
])
def test_facts_are_found_with_numbers_dates_and_names_normalised(value, kind, text, expected):
    from verification.facts import told

    assert told(value, kind, text) is expected


def test_a_plan_whose_second_run_differs_is_refused(db):
    from verification.plan_check import check
    from tests.verification_support import _tool

    lottery = _tool("draw_balance", "UPDATE accounts SET balance = random() WHERE account_id = :account_id",
                    "write", "update", "accounts", account_id="integer")
    task = Task(goal="Ada's balance is redrawn.", difficulty="easy", subtasks=[
        Subtask(description="Redraw Ada's balance.", ask="redraw it.", changes_data=True,
                steps=[[PlannedCall(tool="draw_balance", arguments={"account_id": 1})]])])
    state, _, tools = _start(db)
    assert asyncio.run(check(state, [*tools, lottery], Settings(), task)) == "the plan gives a different outcome when run again"
    assert not isinstance(asyncio.run(check(state, tools, Settings(), DEPOSIT_TASK)), str)
