"""Offline task generation: descriptive tasks grounded in the data view and earlier tool outcomes.

A task is built around a focal record: a row the generator can see (from the data view or from a
result an earlier task produced). Subtasks chain tool calls on it and on its neighbours along foreign
keys; values only a tool can reveal are referenced (`ResultRef`), never stated.
"""

from __future__ import annotations

import json
import random
from typing import Any

from backends.protocols import TaskRequest
from backends.offline.focus import Focus, ToolIndex, focus_candidates, is_changed, new_value, pk_ref
from backends.offline.phrasing import entity, plural, show, words
from backends.offline.simulated_tasks import SimulatedTaskBuilder
from backends.offline.task_assembly import TaskAssembly, as_question
from backends.offline.variants import as_variant
from environment.sources.sqlite.tool_checks import group_columns
from state.schema import DatabaseSchema
from state.tasks import PlannedCall, ResultRef, Task
from state.tools import Tool


class TaskBuilder(TaskAssembly):
    """Tasks grounded in the rows of a real database."""

    def __init__(self, request: TaskRequest, rng: random.Random) -> None:
        super().__init__(request, rng)
        self.index = ToolIndex(request.tools, request.database)

    # -- subtask kinds -------------------------------------------------------------------------
    def find(self, focus: Focus) -> int:
        lookup = self.index.lookup(focus.table.name)
        assert lookup is not None
        name, col = entity(focus.table.name), words(focus.column)
        (param,) = focus.search.properties
        steps = [[PlannedCall(tool=focus.search.name, arguments={param: focus.value})],
                 [PlannedCall(tool=lookup.name, arguments=pk_ref(self.index, len(self.subtasks), 0, lookup))]]
        return self._add(
            f"Find the {name} whose {col} contains “{focus.value}” and review its full record.",
            self.rng.choice([
                f"could you look up the {name} whose {col} is {focus.value} and show me the full record?",
                f"can you find the {name} with {col} “{focus.value}” and pull up all of its details?",
                f"I'm looking for the {name} with {col} {focus.value}. Can you find it and give me its details?",
            ]),
            steps, critical=[1])

    def children(self, focus: Focus, found: int) -> int | None:
        # an empty child table lists nothing, and the plan check refuses a plan that reads on from nothing
        options = [(t, fk) for t, fk in self.index.children_lister(focus.table.name)
                   if self.request.database.table(t.table).row_count]
        if not options:
            return None
        tool, fk = self.rng.choice(options)
        child = self.request.database.table(tool.table)
        lookup = self.index.lookup(child.name)
        parent_key = next(fk_.ref_column for fk_ in child.foreign_keys if fk_.column == fk)
        (param,) = tool.properties
        steps = [[PlannedCall(tool=tool.name, arguments={param: ResultRef(subtask=found, step=0, field=parent_key)})]]
        if lookup is not None:
            steps.append([PlannedCall(tool=lookup.name, arguments=pk_ref(self.index, len(self.subtasks), 0, lookup))])
        kids, name = plural(child.name), entity(focus.table.name)
        return self._add(
            f"Find out which {kids} belong to that {name} and look at the first one in detail.",
            self.rng.choice([
                f"which {kids} are on file for this {name}? Please give me the details of the first one.",
                f"can you list the {kids} linked to that {name} and show me the first one in full?",
            ]),
            steps, critical=[0])

    def update(self, focus: Focus, found: int) -> int | None:
        lookup = self.index.lookup(focus.table.name)
        for tool in self.index.of("update", focus.table.name):
            cols = self.index.columns(tool)
            target = [(p, c) for p, (c, role) in cols.items() if role == "assign"]
            if len(target) != 1 or lookup is None:
                continue
            param, column = target[0]
            col = focus.table.column(column)
            seen = [r.get(column) for r in focus.table.sample_rows]
            value = new_value(column, col.json_type, focus.row.get(column), seen, self.rng)
            args: dict[str, Any] = {p: ResultRef(subtask=found, step=0, field=c) for p, (c, r) in cols.items()
                                    if r != "assign"}
            args[param] = value
            self.has_write = True
            name = entity(focus.table.name)
            steps = [[PlannedCall(tool=tool.name, arguments=args)],
                     [PlannedCall(tool=lookup.name, arguments=pk_ref(self.index, found, 0, lookup))]]
            return self._add(
                f"Change the {words(column)} of that {name} to {show(value)} and confirm the record shows it.",
                self.rng.choice([
                    f"please change its {words(column)} to {show(value)} and show me the updated record.",
                    f"could you set the {words(column)} to {show(value)}? Then show me the record so I can see it.",
                ]),
                steps, critical=[0, 1])
        return None

    def add_child(self, focus: Focus, found: int) -> int | None:
        for tool, fk in self.index.children_lister(focus.table.name):
            child = self.request.database.table(tool.table)
            inserts = self.index.of("insert", child.name)
            link = child.column(fk)
            if not inserts or not child.sample_rows or link.unique or link.pk_position:
                # The link is (part of) the child's key: the data view cannot tell which keys this parent
                # has free, and a one-to-one child cannot get a second row.
                continue
            insert = inserts[0]
            cols = self.index.columns(insert)
            template = self.rng.choice(child.sample_rows)
            parent_key = next(f.ref_column for f in child.foreign_keys if f.column == fk)
            args: dict[str, Any] = {}
            for param, (column, _) in cols.items():
                col = child.column(column)
                if column == fk:
                    args[param] = ResultRef(subtask=found, step=0, field=parent_key)
                elif param not in insert.required and self.rng.random() < 0.5:
                    continue
                elif col.unique:
                    args[param] = f"{show(template.get(column))}-{self.rng.randint(100, 999)}" \
                        if col.json_type == "string" else None
                    if args[param] is None:
                        return None
                else:
                    value = template.get(column)
                    if value is None and param in insert.required:
                        return None
                    if value is None or (isinstance(value, str) and value.startswith("<BLOB")):
                        continue
                    args[param] = value
            (list_param,) = tool.properties
            self.has_write = True
            kid, name = entity(child.name), entity(focus.table.name)
            details = ", ".join(f"{words(cols[p][0])} {show(v)}" for p, v in args.items()
                                if not isinstance(v, ResultRef))
            steps = [[PlannedCall(tool=insert.name, arguments=args)],
                     [PlannedCall(tool=tool.name, arguments={list_param: ResultRef(subtask=found, step=0,
                                                                                   field=parent_key)})]]
            return self._add(
                f"Add a new {kid} for that {name} ({details}) and check that it now appears in their list.",
                self.rng.choice([
                    f"please add a new {kid} for them with {details}, and then show me their {plural(child.name)}.",
                    f"I'd like to register a new {kid} for this {name}: {details}. Can you show me the list afterwards?",
                ]),
                steps, critical=[0, 1])
        return None

    def top(self) -> int | None:
        tops = [t for t in self.request.tools if t.kind == "top"]
        self.rng.shuffle(tops)
        for tool in tops:
            table = self.request.database.table(tool.table)
            lookup = self.index.lookup(table.name)
            key = sorted(c.name for c in table.primary_key)  # a join tool taking the key: the record and its parent
            joined = [t for t in self.index.of("join", table.name)
                      if sorted(c for c, _ in self.index.columns(t).values()) == key]
            detail = (joined or [lookup])[0] if (joined or lookup) else None
            if detail is None or table.row_count == 0:
                continue
            n = self.rng.choice([2, 3, 5])
            order_col = tool.name.split("_by_", 1)[-1].replace("_", " ")
            steps = [[PlannedCall(tool=tool.name, arguments={"limit": n})],
                     [PlannedCall(tool=detail.name, arguments=pk_ref(self.index, len(self.subtasks), 0, detail))]]
            return self._add(
                f"Find the {n} {plural(table.name)} with the highest {order_col} and look at the top one in detail.",
                self.rng.choice([
                    f"which {n} {plural(table.name)} have the highest {order_col}? Tell me more about the top one.",
                    f"can you show me the top {n} {plural(table.name)} by {order_col}, with details for the first?",
                ]),
                steps, critical=[0, 1])
        return None

    def aggregate(self) -> int | None:
        aggs = [t for t in self.request.tools if t.kind == "aggregate" and not t.properties]
        self.rng.shuffle(aggs)
        for tool in aggs:
            table = self.request.database.table(tool.table)
            grouped = group_columns(tool.sql, self.request.database.dialect)
            if len(grouped) != 1:
                continue
            group = grouped[0]
            searches = [s for s in self.index.of("search", table.name)
                        if [c for c, _ in self.index.columns(s).values()] == [group]]
            if not searches or table.row_count == 0:
                continue
            (param,) = searches[0].properties
            steps = [[PlannedCall(tool=tool.name)],
                     [PlannedCall(tool=searches[0].name,
                                  arguments={param: ResultRef(subtask=len(self.subtasks), step=0, field=group)})]]
            return self._add(
                f"Get a breakdown of {plural(table.name)} by {words(group)} and list the ones in the largest group.",
                self.rng.choice([
                    f"how do our {plural(table.name)} break down by {words(group)}? Then list the ones in the biggest group.",
                    f"could you give me a count of {plural(table.name)} per {words(group)}, and show the rows of the most common one?",
                ]),
                steps, critical=[0])
        return None

    def range(self) -> int | None:
        ranges = [t for t in self.request.tools if t.kind == "range"]
        self.rng.shuffle(ranges)
        for tool in ranges:
            table = self.request.database.table(tool.table)
            lookup = self.index.lookup(table.name)
            cols = self.index.columns(tool)
            column = next(iter(cols.values()))[0]
            values = sorted({r.get(column) for r in table.sample_rows if r.get(column) is not None}, key=str)
            if lookup is None or len(values) < 2:
                continue
            lo_v, hi_v = values[0], values[-1]
            args = {p: (lo_v if role == "low" else hi_v) for p, (c, role) in cols.items()}
            steps = [[PlannedCall(tool=tool.name, arguments=args)],
                     [PlannedCall(tool=lookup.name, arguments=pk_ref(self.index, len(self.subtasks), 0, lookup))]]
            return self._add(
                f"List the {plural(table.name)} with {words(column)} between {show(lo_v)} and {show(hi_v)} "
                f"and look at the first one in detail.",
                self.rng.choice([
                    f"which {plural(table.name)} have a {words(column)} between {show(lo_v)} and {show(hi_v)}? "
                    f"Show me the first one in full.",
                    f"can you pull the {plural(table.name)} whose {words(column)} falls from {show(lo_v)} to "
                    f"{show(hi_v)}, and give me details on the first?",
                ]),
                steps, critical=[0])
        return None

    # -- assembly ------------------------------------------------------------------------------
    def build(self) -> Task:
        req = self.request
        rows_by_table = {t.name: list(t.sample_rows) for t in req.database.tables}
        relation = req.relation
        if relation == "extends":
            seen = self._rows_from_previous_calls() or self._rows_from_conversation()
            if seen:
                rows_by_table = seen
            else:
                relation = "independent"
        changed = self._changed_rows()
        focuses = [f for f in focus_candidates(self.index, rows_by_table) if not is_changed(f, changed)]
        if not focuses and relation == "extends":
            relation = "independent"
            focuses = [f for f in focus_candidates(self.index, {t.name: list(t.sample_rows)
                                                                 for t in req.database.tables})
                       if not is_changed(f, changed)]
        previous = {s.description for t in req.previous_tasks for s in t.subtasks}
        focuses = [f for f in focuses if f"contains “{f.value}”" not in " ".join(previous)] or focuses
        if req.aim is not None:
            focuses = self._aimed_focuses(focuses)
        target = (req.aim and req.aim.subtasks) or {"easy": 2, "medium": 3, "hard": 4}[req.difficulty]
        if focuses:
            focus = self.rng.choice(focuses)
            found = self.find(focus)
            extra = [self.children, self.update, self.add_child]
            self.rng.shuffle(extra)
            if req.aim is not None and req.aim.writes is not None:  # a write first, or none at all
                writes = [m for m in extra if m != self.children]
                extra = [*writes, self.children] if req.aim.writes else [self.children]
            elif req.difficulty == "easy":
                extra = [self.children]
            room = target - (1 if req.difficulty == "hard" else 0)
            if req.aim is not None and req.aim.writes:
                room = max(room, 2)  # the focus's own subtasks hold the write
            for make in extra:
                if len(self.subtasks) >= room:
                    break
                make(focus, found)
        for make in self.rng.sample([self.top, self.aggregate, self.range], 3):
            if len(self.subtasks) >= target:
                break
            make()
        if len(self.subtasks) < 2 and not self.subtasks:
            raise ValueError("the toolset offers nothing to build a task from (no searchable table with rows)")
        return self._task(relation)

    def _aimed_focuses(self, focuses: list[Focus]) -> list[Focus]:
        """The focal records a targeted task leans to: on a table it can change (when it is to write), and on the
        aimed tool's table where there is one."""
        aim = self.request.aim
        assert aim is not None
        if aim.writes:
            focuses = [f for f in focuses if self._writable(f.table.name)] or focuses
        tool = next((t for t in self.request.tools if t.name == aim.tool), None)
        if tool is not None and tool.table:
            focuses = [f for f in focuses if f.table.name == tool.table] or focuses
        return focuses

    def _writable(self, table: str) -> bool:
        return bool(self.index.of("update", table)) or any(
            self.index.of("insert", t.table)
            for t, _ in self.index.children_lister(table))

    def _changed_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Per table, the keys of rows an earlier task updated or deleted: the data view is stale for them."""
        by_name = {t.name: t for t in self.request.tools}
        changed: dict[str, list[dict[str, Any]]] = {}
        for call in self.request.previous_calls:
            tool = by_name.get(call.tool)
            if tool is None or tool.kind not in ("update", "delete") or not call.result.ok:
                continue
            key = {col: call.arguments.get(param) for param, (col, role) in self.index.columns(tool).items()
                   if role != "assign"}
            changed.setdefault(tool.table, []).append(key)
        return changed

    def _rows_from_previous_calls(self) -> dict[str, list[dict[str, Any]]]:
        by_name = {t.name: t for t in self.request.tools}
        rows: dict[str, list[dict[str, Any]]] = {}
        for call in self.request.previous_calls:
            tool = by_name.get(call.tool)
            if tool is None or not call.result.ok or not call.result.rows or tool.kind not in ("join", "search", "top"):
                continue
            table_cols = {c.name for c in self.request.database.table(tool.table).columns}
            for row in call.result.rows:
                if table_cols <= set(row):
                    rows.setdefault(tool.table, []).append({k: row[k] for k in table_cols})
        return rows

    def _rows_from_conversation(self) -> dict[str, list[dict[str, Any]]]:
        """Rows that tool results of a given conversation showed, matched to tables by their columns."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for message in self.request.conversation:
            if message.type != "tool":
                continue
            try:
                content = json.loads(message.text)
            except ValueError:
                continue
            found = content.get("rows") if isinstance(content, dict) else content
            for row in found if isinstance(found, list) else []:
                if not isinstance(row, dict):
                    continue
                for table in self.request.database.tables:
                    columns = {c.name for c in table.columns}
                    if columns <= set(row):
                        rows.setdefault(table.name, []).append({k: row[k] for k in columns})
        return rows


def generate_task(request: TaskRequest) -> Task:
    # a task refused at the plan check comes back with the reason: the builder draws again
    rng = random.Random(request.rng_key + (":refused" if request.feedback else ""))
    builder = (TaskBuilder if request.database is not None else SimulatedTaskBuilder)(request, rng)
    task = builder.build()
    if request.variant not in ("standard", "crowded"):  # crowded offers decoys beside the task: the node's part
        task = as_variant(task, request.variant, getattr(builder, "index", None), request.tools, rng)
    return as_question(task) if request.style == "question" else task


def task_shortfall(tools: list[Tool], database: DatabaseSchema | None, tries: int = 6) -> str | None:
    """Why no task can be made from these tools (the builder tried under a few seeds), or None when one can:
    a run asks before it starts, so a toolset that yields none stops it in one line instead of rejecting
    every dialogue."""
    reasons: list[str] = []
    for attempt in range(tries):
        request = TaskRequest(database=database, tools=tools, difficulty="medium", relation="first",
                              rng_key=f"task-shortfall-{attempt}")
        try:
            generate_task(request)
            return None
        except ValueError as exc:
            reasons.append(str(exc))
    return reasons[0] if reasons else None
