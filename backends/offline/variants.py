"""The offline builder's hard cases: a standard task turned into a missing-information, missing-tool or
out-of-scope task (crowded toolsets are the task generator's: the decoys do not change the task).

Each transform keeps the task checkable: the held-back value stays in the plan (so the goal diff holds
it) but leaves the user's words; a withheld tool's subtask loses its plan and says why it cannot be done;
an out-of-scope request has no plan at all. A task that offers nothing to transform stays standard.
"""

from __future__ import annotations

import random
from typing import Any

from backends.offline.focus import ToolIndex
from backends.offline.phrasing import entity, plural, show, words
from state.tasks import HeldBack, ResultRef, Rubric, RubricItem, Subtask, Task
from state.tools import Tool

# Requests no database tool serves, whatever the domain (checked against the schema's words before use).
OUT_OF_SCOPE = [
    ("book a flight to Lisbon for next Tuesday", "could you book me a flight to Lisbon for next Tuesday?"),
    ("get tomorrow's weather forecast", "what's the weather going to be like tomorrow?"),
    ("order a pizza for the team", "can you order a large pizza for our team lunch?"),
    ("translate a birthday poem into Japanese", "could you translate a short birthday poem into Japanese for me?"),
    ("find out today's share price of a tech company", "what is the share price of a big tech company today?"),
    ("reserve a table at an Italian restaurant", "please reserve a table for four at an Italian restaurant tonight."),
    ("send a text message to a friend", "can you text my friend that I'll be late?"),
    ("get the score of last night's football match", "who won last night's football match?"),
]


def _words(text: str) -> set[str]:
    return {w for w in "".join(c if c.isalnum() else " " for c in text.casefold()).split() if len(w) > 3}


def _fragment(description: str) -> str:
    return description[0].lower() + description[1:].rstrip(".")


def _rewrite(task: Task, index: int, description: str, ask: str, **changes: Any) -> Task:
    """The task with one subtask's statement (and the goal that quotes it) rewritten."""
    old = task.subtasks[index]
    subtasks = list(task.subtasks)
    subtasks[index] = old.model_copy(update={"description": description, "ask": ask, **changes})
    goal = task.goal.replace(_fragment(old.description), _fragment(description))
    return task.model_copy(update={"subtasks": subtasks, "goal": goal})


def _references(task: Task) -> set[int]:
    """Subtasks whose results a later subtask's plan reads."""
    out: set[int] = set()
    for i, sub in enumerate(task.subtasks):
        for plan in [sub.steps, *sub.alternative_steps]:
            for step in plan:
                for call in step:
                    out |= {v.subtask for v in call.arguments.values() if isinstance(v, ResultRef) and v.subtask != i}
    return out


def missing_info(task: Task, index: ToolIndex, rng: random.Random) -> Task | None:
    """One write's literal value (a new value, a detail of a new record) held back for the user to give."""
    said = " ".join([task.goal, *(s.ask for s in task.subtasks)]).casefold()
    tools = {t.name: t for t in index.tools}
    for i, sub in enumerate(task.subtasks):
        if not sub.changes_data or not sub.steps:
            continue
        call = sub.steps[0][0]
        tool = tools.get(call.tool)
        if tool is None or tool.mode != "write" or tool.kind not in ("update", "insert"):
            continue
        columns = index.columns(tool)
        literal = [(a, v) for a, v in call.arguments.items() if not isinstance(v, (ResultRef, bool)) and v is not None
                   and len(show(v)) >= 3 and a in columns and show(v).casefold() in said]
        if tool.kind == "update":
            literal = [(a, v) for a, v in literal if columns[a][1] == "assign"]
        if not literal:
            continue
        argument, value = rng.choice(literal)
        column = columns[argument][0]
        name = entity(tool.table)
        if tool.kind == "update":
            label = f"new {words(column)}"
            description = f"Change the {words(column)} of that {name} (the user gives the new value when asked) " \
                          f"and confirm the record shows it."
            ask = rng.choice([f"I need to change the {words(column)} of this {name}, and then see the updated record.",
                              f"the {words(column)} of this {name} has to change. Could you update it and show me "
                              f"the record afterwards?"])
            reveal = rng.choice([f"The new {words(column)} should be {show(value)}.",
                                 f"Please make it {show(value)}.", f"It should be {show(value)}, thanks."])
        else:
            label = words(column)
            others = ", ".join(f"{words(columns[a][0])} {show(v)}" for a, v in call.arguments.items()
                               if a != argument and a in columns and not isinstance(v, ResultRef))
            details = f" ({others})" if others else ""
            description = f"Add a new {name} for that record{details}, its {label} given by the user when asked, " \
                          f"and check that it now appears in their list."
            ask = rng.choice([f"please add a new {name} for them{details}; I also have its {label} for you. Then "
                              f"show me their {plural(tool.table)}.",
                              f"I'd like a new {name} registered for them{details}, with its {label} too. Can you "
                              f"show me the list afterwards?"])
            reveal = rng.choice([f"The {label} is {show(value)}.", f"Its {label} should be {show(value)}."])
        changed = _rewrite(task, i, description, ask)
        rest = " ".join([changed.goal, *(s.ask for s in changed.subtasks), *(s.description for s in changed.subtasks)])
        if show(value).casefold() in rest.casefold():  # said elsewhere too: nothing is held back
            continue
        return changed.model_copy(update={"variant": "missing-info", "held_back": HeldBack(
            subtask=i, argument=argument, value=value, label=label, reveal=reveal)})
    return None


def missing_tool(task: Task, rng: random.Random) -> Task | None:
    """One subtask (a write where there is one) whose tool the assistant is not offered: no plan, no change,
    and the user must hear that it cannot be done."""
    referenced = _references(task)
    options = []
    for i, sub in enumerate(task.subtasks):
        if i in referenced or not sub.steps or len(task.subtasks) < 2:
            continue
        elsewhere = {c.tool for j, other in enumerate(task.subtasks) if j != i
                     for plan in [other.steps, *other.alternative_steps] for step in plan for c in step}
        own = [c.tool for step in sub.steps for c in step if c.tool not in elsewhere]
        if own:
            options.append((not sub.changes_data, i, own[0]))
    if not options:
        return None
    options.sort()
    _, i, tool = options[0] if options[0][0] is False else rng.choice(options)
    sub = task.subtasks[i]
    subtasks = list(task.subtasks)
    subtasks[i] = Subtask(description=sub.description, ask=sub.ask, changes_data=False,
                          cannot=f"it needs the tool {tool}, which this assistant is not offered")
    items = [item for item in task.rubric.items if item.subtask != i]
    items.append(RubricItem(text=f"Subtask {i + 1}: the assistant tells the user it cannot do this (no tool for it) "
                                 f"and claims no change.", category="Critical", subtask=i))
    pattern = [p for p in task.rubric.expected_tool_pattern if p.split("(", 1)[0] != tool]
    rubric = task.rubric.model_copy(update={"items": items, "expected_tool_pattern": pattern})
    return task.model_copy(update={"variant": "missing-tool", "subtasks": subtasks, "rubric": rubric,
                                   "withheld_tools": [tool]})


def out_of_scope(task: Task, schema_words: set[str], rng: random.Random) -> Task | None:
    """A request the domain cannot serve: nothing to call, and the user must hear that it cannot be done."""
    options = [(d, a) for d, a in OUT_OF_SCOPE if not (_words(d + " " + a) & schema_words)]
    if not options:
        return None
    description, ask = rng.choice(options)
    role = rng.choice(["A front-desk employee", "An office manager", "A staff member", "A team lead"])
    sub = Subtask(description=description[0].upper() + description[1:] + ".", ask=ask,
                  cannot="no tool of this assistant serves it: it is outside the domain")
    rubric = Rubric(success_criteria=["The assistant says it cannot do this and calls no tool."],
                    items=[RubricItem(text="The assistant calls no tool for the request and says it cannot help "
                                           "with it.", category="Critical", subtask=0)])
    return Task(goal=f"{role} asks the assistant to {description}, not knowing whether it can.",
                difficulty=task.difficulty, subtasks=[sub], relation=task.relation, rubric=rubric,
                variant="out-of-scope")


def schema_words(index: ToolIndex | None, tools: list[Tool]) -> set[str]:
    """The domain's own words (tables, columns, tool names and descriptions): an out-of-scope request uses none."""
    out: set[str] = set()
    for table in index.database.tables if index is not None else []:
        out |= _words(table.name.replace("_", " "))
        for column in table.columns:
            out |= _words(column.name.replace("_", " "))
    for tool in tools:
        out |= _words(tool.name.replace("_", " ") + " " + tool.description)
    return out


def as_variant(task: Task, variant: str, index: ToolIndex | None, tools: list[Tool], rng: random.Random) -> Task:
    """The task as the hard case asked for, or unchanged (standard) where it offers none (holding a value back
    needs the SQL a write binds it with: a simulated toolset gets no missing-info tasks)."""
    made: Task | None = None
    if variant == "missing-info" and index is not None:
        made = missing_info(task, index, rng)
    elif variant == "missing-tool":
        made = missing_tool(task, rng)
    elif variant == "out-of-scope":
        made = out_of_scope(task, schema_words(index, tools), rng)
    return made or task
