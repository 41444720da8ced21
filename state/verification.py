"""What a task is expected to leave behind, and how a finished task was checked against it.

A task's expected outcome is a goal diff (per table, the rows its reference plan inserted, deleted and
updated) and the facts the user must be told. A verdict's verification block records each part of the
check: the database's real diff against the goal diff, each fact and whether it was told, the judge's
non-state rubric items, and the simulated user's conduct.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ColumnChange(BaseModel):
    old: Any = None
    new: Any = None


class RowChange(BaseModel):
    """One row that changed: its key (primary key columns, or `rowid` where the table has none)."""

    key: dict[str, Any]
    values: dict[str, Any] = Field(default_factory=dict, description="The whole row (inserted or deleted).")
    changes: dict[str, ColumnChange] = Field(default_factory=dict, description="Updated columns, old -> new.")


class TableDiff(BaseModel):
    inserted: list[RowChange] = []
    deleted: list[RowChange] = []
    updated: list[RowChange] = []
    clock_columns: list[str] = Field(
        default_factory=list, description="Columns the dialogue's clock fills: any time there matches.")
    assigned_keys: Literal["", "inserted", "all"] = Field(
        "", description="Keys the store assigns: 'inserted' (INTEGER PRIMARY KEY / rowid: new rows are matched by "
                        "their other values), 'all' (the simulator's ids: every row is matched by its values).")

    def is_empty(self) -> bool:
        return not (self.inserted or self.deleted or self.updated)


class StateDiff(BaseModel):
    """Per table (only tables that changed), what changed."""

    tables: dict[str, TableDiff] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return all(t.is_empty() for t in self.tables.values())


class Fact(BaseModel):
    """A value the user must be told for one subtask."""

    subtask: int
    field: str = Field("", description="The result field it comes from ('' for a count or a confirmation).")
    kind: Literal["value", "count", "none", "confirmation", "cannot"] = "value"
    value: Any = None
    resolved: bool = Field(True, description="False for simulated tools: the value is read from the real result.")


class TaskExpectation(BaseModel):
    """The outcome a task's reference plan produced on a scratch copy of the dialogue's state at its start."""

    source: Literal["sql", "simulated"] = "sql"
    alternatives: list[StateDiff] = Field(default_factory=lambda: [StateDiff()],
                                          description="Acceptable goal diffs; the real diff must equal one of them.")
    facts: list[Fact] = []
    refused: list[str] = Field(default_factory=list,
                               description="Why each earlier candidate for this task was refused at the plan check.")


class Difference(BaseModel):
    """One way the real diff departs from the goal diff."""

    table: str
    kind: Literal["missing", "unexpected", "wrong_value"]
    key: dict[str, Any] = Field(default_factory=dict)
    column: str = ""
    expected: Any = None
    actual: Any = None

    def describe(self) -> str:
        key = ", ".join(f"{k}={v!r}" for k, v in self.key.items())
        where = f"{self.table} row {key}" if key else self.table
        if self.kind == "wrong_value":
            return f"{where}: {self.column} is {self.actual!r}, expected {self.expected!r}"
        if self.kind == "missing":
            return f"{where}: expected change missing ({self.expected})"
        return f"{where}: unexpected change ({self.actual})"


class StateCheck(BaseModel):
    status: Literal["match", "mismatch", "unchecked"]
    real_diff: StateDiff = Field(default_factory=StateDiff)
    alternative: int | None = Field(None, description="Which acceptable goal diff matched.")
    differences: list[Difference] = Field(default_factory=list,
                                          description="Against the closest goal diff, for a mismatch.")


class FactCheck(BaseModel):
    fact: Fact
    told: bool


class Verification(BaseModel):
    """The verification block of one task's verdict: valid only when state, facts and judge all pass and the
    user behaved."""

    state: StateCheck
    facts: list[FactCheck] = []
    facts_told: bool = True
    judge: Literal["pass", "fail"] = "pass"
    user_conduct: Literal["ok", "fault"] = "ok"
    user_fault: str = ""
    variant: str = Field("standard", description="The task's hard case (docs/hard-cases.md).")
    variant_failures: list[str] = Field(default_factory=list, description="What the hard case asks of the "
                                        "assistant and it did not do (ask for a held-back value, call no tool).")

    @property
    def passed(self) -> bool:
        return (self.state.status != "mismatch" and self.facts_told and self.judge == "pass"
                and self.user_conduct == "ok" and not self.variant_failures)

    def failures(self) -> list[str]:
        """Why the task fails, the state first: each names the row or the fact."""
        out = []
        if self.user_conduct == "fault":
            out.append(f"simulator fault: {self.user_fault}")
        if self.state.status == "mismatch":
            out.append("state mismatch: " + "; ".join(d.describe() for d in self.state.differences[:5]))
        missing = [c.fact for c in self.facts if not c.told]
        if missing:
            out.append("facts not told: " + "; ".join(describe_fact(f) for f in missing[:5]))
        out.extend(f"{self.variant}: {failure}" for failure in self.variant_failures)
        return out


def describe_fact(fact: Fact) -> str:
    if fact.kind == "confirmation":
        return f"subtask {fact.subtask + 1}: confirmation of the write"
    if fact.kind == "none":
        return f"subtask {fact.subtask + 1}: that nothing matched"
    if fact.kind == "cannot":
        return f"subtask {fact.subtask + 1}: that it cannot be done"
    label = "count" if fact.kind == "count" else fact.field
    return f"subtask {fact.subtask + 1}: {label} = {fact.value!r}"
