"""Writing a finished dialogue's line: the dataset line (or the rejected one, with its reason) and its timing,
appended whole by one writer at a time within a process."""

from __future__ import annotations

import asyncio
from typing import Any

from backends.registry import backend_for
from environment.sources.registry import open_source
from nodes.toolbox import offered
from runner import run_folder as rf
from runner.export import DialogueRecord, export_dialogue
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings
from state.dialogue import DialogueState, Usage
from state.sources import SourceRef, joined_name
from state.tools import Tool


class LineWriter:
    """The one writer of a run folder's line files in this process (dialogues, rejected, timings, trials)."""

    def __init__(self, folder: RunFolder, config: RunConfig, settings: Settings) -> None:
        self.folder = folder
        self.config = config
        self.settings = settings
        self.schemas: dict[str, Any] = {}  # by source name, read when a line needs it (decoys)
        self.lock = asyncio.Lock()

    def _schema(self, sources: list[SourceRef]) -> Any:
        """A dialogue's database schema (None for simulated tools), read once per writer."""
        key = joined_name(sources)
        if key not in self.schemas:
            self.schemas[key] = open_source(sources).catalog().database if sources else None
        return self.schemas[key]

    async def write(self, dialogue_id: str, values: dict[str, Any], latency: float, error: str | None,
                    tools: list[Tool], replace: bool = False, failed_usage: Usage | None = None) -> None:
        """Write a finished dialogue's line; with replace, its earlier line (in either file) goes."""
        # the latency goes beside the dataset, not in it: the same seed gives the same dataset, byte for byte
        extra: dict[str, Any] = {"run_id": self.config.run_id, "backend": self.settings.backend}
        if self.settings.uses_model:
            extra["model"] = self.settings.model
        extra.update(backend_for(self.settings).record())  # models per role, structured mode per endpoint
        if values:
            state = DialogueState.model_validate(values)
            extra["usage"] = (state.usage + failed_usage if isinstance(failed_usage, Usage) else state.usage).model_dump()
            extra["completed"] = error is None and len(state.verdicts) == state.tasks_per_dialogue and \
                not state.ended_by_budget
            extra["toolset"] = self.config.toolset_file_of(state.sources)
            if state.replay_diverged:
                extra["replay_diverged"] = state.replay_diverged
            if state.current_task is not None and (state.current_task.withheld_tools or state.current_task.decoys):
                # the line's tools are those its assistant was offered (less a withheld tool, plus decoys)
                tools = offered(tools, state.current_task, await asyncio.to_thread(self._schema, state.sources))
            record, ok, _ = export_dialogue(state, tools, extra)
        else:
            if isinstance(failed_usage, Usage):
                extra["usage"] = failed_usage.model_dump()
            record = DialogueRecord(id=dialogue_id, messages=[], tools=[], metadata={**extra, "completed": False},
                                    reason="no state was recorded")
            ok = False
        if error is not None:
            record.metadata["error"] = error
            record.reason = f"error: {error}"
            ok = False
        line = record.model_dump(exclude_none=not (record.reason and not ok))
        async with self.lock:
            if replace:
                for name in (rf.DIALOGUES, rf.REJECTED):
                    self.folder.drop_lines(name, {dialogue_id})
            # the fsync runs off the event loop, so other dialogues keep their model calls going
            await asyncio.to_thread(self.folder.append_line, rf.TIMINGS, {"id": dialogue_id,
                                                                          "latency_s": round(latency, 4)})
            await asyncio.to_thread(self.folder.append_line, rf.DIALOGUES if ok else rf.REJECTED, line)

    async def append(self, name: str, line: dict[str, Any], replacing: str | None = None) -> None:
        """Append one line to `name`; with replacing, the line of that id goes first (a trial run again)."""
        async with self.lock:
            if replacing is not None:
                await asyncio.to_thread(self.folder.drop_lines, name, {replacing})
            await asyncio.to_thread(self.folder.append_line, name, line)
