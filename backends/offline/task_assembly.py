"""What both offline task builders share: the bookkeeping that turns planned calls into subtasks, rubric
items, the expected tool pattern and checkpoints, and the assembly of the finished task."""

from __future__ import annotations

import random

from backends.protocols import TaskRequest
from state.tasks import PlannedCall, ResultRef, Rubric, RubricItem, Subtask, Task


class TaskAssembly:
    def __init__(self, request: TaskRequest, rng: random.Random) -> None:
        self.request = request
        self.rng = rng
        self.subtasks: list[Subtask] = []
        self.items: list[RubricItem] = []
        self.pattern: list[str] = []
        self.checkpoints: list[str] = []
        self.has_write = False

    # -- bookkeeping -------------------------------------------------------------------------
    def _add(self, description: str, ask: str, steps: list[list[PlannedCall]], critical: list[int]) -> int:
        n = len(self.subtasks)
        writes = {t.name for t in self.request.tools if t.mode == "write"}
        changes = any(call.tool in writes for step in steps for call in step)
        self.subtasks.append(Subtask(description=description, ask=ask, steps=steps, changes_data=changes))
        for k, step in enumerate(steps):
            for call in step:
                literal = {a: v for a, v in call.arguments.items() if not isinstance(v, ResultRef)}
                shown = ", ".join(
                    f"{a}=<{v.field} from {self.subtasks[v.subtask].steps[v.step][0].tool}>"
                    if isinstance(v, ResultRef) else f"{a}={v!r}"
                    for a, v in call.arguments.items()
                )
                self.pattern.append(f"{call.tool}({shown})")
                category = "Critical" if k in critical else "Structural"
                self.items.append(RubricItem(
                    text=f"Subtask {n + 1}: {call.tool} is called" + (f" with {literal}" if literal else "")
                    + " and succeeds", category=category, subtask=n, tool=call.tool, arguments=literal))
        self.checkpoints.append(f"After subtask {n + 1}: {description}")
        return n


    def _task(self, relation: str) -> Task:
        parts = [s.description[0].lower() + s.description[1:].rstrip(".") for s in self.subtasks]
        role = self.rng.choice(["A front-desk employee", "An office manager", "A staff member", "A team lead"])
        goal = f"{role} wants to {parts[0]}"
        if len(parts) > 1:
            goal += "; then " + "; ".join(parts[1:])
        goal += ". They do not know any record ids and rely on the assistant to look them up."
        if relation == "extends":
            goal = "Following up on what they just learned, " + goal[0].lower() + goal[1:]
        criteria = [f"The user learns the outcome of: {s.description}" for s in self.subtasks]
        if self.has_write:
            criteria.append("Every requested change is actually executed and confirmed by reading the record back.")
        self.items.append(RubricItem(text="Replies are short and friendly.", category="NonCritical"))
        difficulty = self.request.difficulty
        return Task(
            goal=goal, difficulty=difficulty, subtasks=self.subtasks, relation=relation,  # type: ignore[arg-type]
            rubric=Rubric(success_criteria=criteria, expected_tool_pattern=self.pattern,
                          checkpoints=self.checkpoints, items=self.items),
        )



def as_question(task: Task) -> Task:
    """The same task, asked directly in one message (the task-oriented baseline)."""
    asks = [s.ask for s in task.subtasks if s.ask]
    question = asks[0][0].upper() + asks[0][1:] + "".join(f" Also, {a}" for a in asks[1:])
    return task.model_copy(update={"goal": question, "style": "question"})
