"""Offline tasks over tools with no rows to ground in (simulated tools, a source that offers its own tools):
subtasks chain through entity ids."""

from __future__ import annotations

from typing import Any

from backends.offline.phrasing import show
from backends.offline.shape_tasks import shape_subtasks
from backends.offline.task_assembly import TaskAssembly
from state.tasks import PlannedCall, ResultRef, Task
from state.tools import Tool


class SimulatedTaskBuilder(TaskAssembly):
    """Tasks over tools without a schema behind them: chains through entity ids, since there are no rows to
    ground in."""

    def _tool(self, entity: str, kind: str) -> Tool | None:
        return next((t for t in self.request.tools if t.table == entity and t.kind == kind), None)

    def _id_ref(self, entity: str, subtask: int, step: int = 0) -> dict[str, Any]:
        return {f"{entity}_id": ResultRef(subtask=subtask, step=step, field=f"{entity}_id")}

    def _value(self, name: str, prop: dict[str, Any]) -> Any:
        if prop.get("enum") or prop.get("examples"):  # examples: values the source holds (an MCP probe's)
            return self.rng.choice(prop.get("enum") or prop["examples"])
        t = prop.get("type", "string")
        if t == "integer":
            return self.rng.randint(1, 9)
        if t == "number":
            return round(self.rng.uniform(5, 200), 2)
        if t == "boolean":
            return True
        if "status" in name:
            return self.rng.choice(["active", "on hold", "closed"])
        return f"{self.rng.choice(['new', 'updated', 'corrected'])} {name.replace('_', ' ')}"

    def find(self, entity: str) -> int | None:
        search, get = self._tool(entity, "search"), self._tool(entity, "lookup")
        if search is None or get is None or f"{entity}_id" not in get.properties:
            return None
        query_param = next(iter(search.required or search.properties), None)
        if query_param is None:
            return None
        examples = search.properties[query_param].get("examples")
        word = self.rng.choice(examples or ["popular", "recent", "blue", "large", "classic", "new"])
        # over probed data, the search's yes/no filters are set too (e.g. only what can still be changed)
        flags = {p: True for p, s in search.properties.items() if s.get("type") == "boolean"} if examples else {}
        words = entity.replace("_", " ")
        steps = [[PlannedCall(tool=search.name, arguments={query_param: word, **flags})],
                 [PlannedCall(tool=get.name, arguments=self._id_ref(entity, len(self.subtasks)))]]
        return self._add(f"Find a {words} matching “{word}” and review its full record.",
                         self.rng.choice([f"could you search for {words}s matching “{word}” and show me the first one "
                                          f"in full?", f"I'm looking for a {words} that matches “{word}”. Can you find "
                                          f"one and give me its details?"]), steps, critical=[1])

    def update_found(self, entity: str, found: int) -> int | None:
        update, get = self._tool(entity, "update"), self._tool(entity, "lookup")
        editable = [p for p in (update.properties if update else {}) if p != f"{entity}_id"]
        if update is None or get is None or not editable:
            return None
        field = self.rng.choice(editable)
        value = self._value(field, update.properties[field])
        self.has_write = True
        args = {**self._id_ref(entity, found), field: value}
        steps = [[PlannedCall(tool=update.name, arguments=args)],
                 [PlannedCall(tool=get.name, arguments=self._id_ref(entity, found))]]
        return self._add(f"Change its {field.replace('_', ' ')} to {show(value)} and confirm the record shows it.",
                         self.rng.choice([f"please change its {field.replace('_', ' ')} to {show(value)} and show me "
                                          f"the updated record.", f"could you set the {field.replace('_', ' ')} to "
                                          f"{show(value)}? Then show me the record."]), steps, critical=[0, 1])

    def related(self, entity: str, found: int) -> int | None:
        for tool in self.request.tools:
            if tool.kind == "join" and tool.table != entity and f"{entity}_id" in tool.properties:
                child_get = self._tool(tool.table, "lookup")
                steps = [[PlannedCall(tool=tool.name, arguments=self._id_ref(entity, found))]]
                if child_get is not None and f"{tool.table}_id" in child_get.properties:
                    steps.append([PlannedCall(tool=child_get.name, arguments=self._id_ref(tool.table,
                                                                                           len(self.subtasks)))])
                kids = tool.table.replace("_", " ")
                return self._add(f"See the {kids}s linked to it and look at the first one.",
                                 self.rng.choice([f"which {kids}s are linked to it? Show me the first one in full.",
                                                  f"can you list its {kids}s and give me details on the first?"]),
                                 steps, critical=[0])
        return None

    def build(self) -> Task:
        from environment.seeds import tool_entity

        entities = []
        for tool in self.request.tools:
            entity = tool.table or tool_entity(tool.name)
            if entity not in entities:
                entities.append(entity)
        self.rng.shuffle(entities)
        target = (self.request.aim and self.request.aim.subtasks) or {"easy": 2, "medium": 3, "hard": 3}[
            self.request.difficulty]
        for entity in entities:
            found = self.find(entity)
            if found is None:
                continue
            extras = [self.update_found, self.related]
            if self.request.difficulty == "easy":
                extras = [self.related, self.update_found]
            aim = self.request.aim
            if aim is not None and aim.writes is not None:  # a write first, or none at all
                extras = [self.update_found, self.related] if aim.writes else [self.related]
            for make in extras:
                if len(self.subtasks) < target:
                    make(entity, found)
            if len(self.subtasks) >= 2:
                break
            self.subtasks, self.items, self.pattern, self.checkpoints = [], [], [], []
        if len(self.subtasks) < 2:  # no entity chains through ids: tasks from the tools' shapes
            self.subtasks, self.items, self.pattern, self.checkpoints, self.has_write = [], [], [], [], False
            shape_subtasks(self)
        if len(self.subtasks) < 2:
            raise ValueError("no entity has a search tool (a query argument), a lookup by its <entity>_id and a "
                             "second operation on it (an update, or a list of what links to it) to chain into a "
                             "task, and no read tool takes arguments the source shows (probed values, schema "
                             "examples, sandbox paths) with a second read or a write to read back; the tools: "
                             f"{', '.join(t.name for t in self.request.tools[:8])}")
        return self._task("first" if not self.request.previous_tasks else self.request.relation)
