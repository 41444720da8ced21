"""Working with one dialogue's checkpoints: list them, show the state at one, resume or fork from it.

Resuming or forking needs nothing but the checkpoint: the sandbox database is rebuilt from the writes
recorded in the state at that checkpoint, replayed onto a fresh copy of the source.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import StateGraph
from pydantic import BaseModel
from rich.console import Console

from environment.errors import InputError
from environment.sources.pool import DialogueSandboxes, sandbox_pool
from environment.sources.registry import load_source_kinds
from environment.sources.run_hooks import sources_for_run
from runner import run_folder as rf
from nodes.stored_values import toolset_of
from runner.lanes import recursion_limit
from runner.lines import LineWriter
from runner.persistence import checkpoint_location, keep_only_last_checkpoint, open_persistence
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings
from state.dialogue import DialogueState, ForkOrigin, UserTurn
from state.tools import Tool


class CheckpointRow(BaseModel):
    checkpoint_id: str
    step: int
    node: str
    task: int
    turn: int
    next: str
    excerpt: str


def excerpt(message: AnyMessage | None, width: int = 48) -> str:
    if message is None:
        return ""
    if isinstance(message, AIMessage) and message.tool_calls:
        text = "calls " + ", ".join(c["name"] for c in message.tool_calls)
    else:
        text = " ".join(message.text.split())
    label = {"human": "user", "ai": "assistant", "tool": "tool"}.get(message.type, message.type)
    text = f"{label}: {text}"
    return text if len(text) <= width else text[: width - 1] + "…"


class DialogueCheckpoints:
    """One run folder's checkpointer, opened for inspecting and continuing its dialogues."""

    def __init__(self, run_dir: Path, builder_factory: Callable[[], StateGraph], settings: Settings | None,
                 console: Console, owner: str | None = None) -> None:
        self.owner = owner  # the command, when it writes: the folder is then taken before anything is opened
        self.folder = RunFolder(run_dir)
        if not self.folder.file(rf.CONFIG).exists():
            raise InputError(f"not a run folder (no {rf.CONFIG}): {run_dir}")
        self.config = RunConfig.model_validate(self.folder.read_json(rf.CONFIG))
        load_source_kinds(list(self.config.settings.get("source_kinds") or []))  # the kinds the run was made with
        settings = Settings.of_run(self.config.settings, settings)
        if not settings.checkpointer and not self.folder.file(rf.CHECKPOINTS).exists():
            raise InputError(f"not a run folder (no {rf.CHECKPOINTS}): {run_dir}")
        self.settings = settings
        self.builder_factory = builder_factory
        self.console = console

    async def __aenter__(self) -> "DialogueCheckpoints":
        if self.owner:
            self.folder.own(self.owner)
        try:
            self._saver_cm = open_persistence(checkpoint_location(self.folder.path, self.settings))
            saver, self.store = await self._saver_cm.__aenter__()
        except BaseException:
            self.folder.release()
            raise
        self.graph = self.builder_factory().compile(checkpointer=saver, store=self.store)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._saver_cm.__aexit__(*exc)
        finally:
            self.folder.release()

    def _cfg(self, dialogue_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
        configurable = {"thread_id": dialogue_id}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
        return {"configurable": configurable, "recursion_limit": recursion_limit(self.config, self.settings)}

    async def history(self, dialogue_id: str) -> list[CheckpointRow]:
        """Every checkpoint of a dialogue, oldest first, with the node that wrote it."""
        snapshots = [s async for s in self.graph.aget_state_history(self._cfg(dialogue_id))]
        if not snapshots:
            raise InputError(f"no dialogue {dialogue_id!r} in {self.folder.path} (see its dialogues.jsonl ids)")
        snapshots.reverse()
        rows = []
        for i, snap in enumerate(snapshots):
            writer = "input" if i == 0 else ",".join(snapshots[i - 1].next) or "?"
            values = snap.values
            messages = values.get("messages") or []
            rows.append(CheckpointRow(
                checkpoint_id=snap.config["configurable"]["checkpoint_id"], step=snap.metadata.get("step", -1),
                node=writer, task=len(values.get("tasks") or []), turn=values.get("user_turns_in_task", 0),
                next=",".join(snap.next) or "END", excerpt=excerpt(messages[-1] if messages else None)))
        return rows

    async def snapshot(self, dialogue_id: str, checkpoint_id: str | None):
        snap = await self.graph.aget_state(self._cfg(dialogue_id, checkpoint_id))
        if not snap.values:
            where = f" at checkpoint {checkpoint_id}" if checkpoint_id else ""
            raise InputError(f"no state for dialogue {dialogue_id!r}{where} (list them with: "
                             f"python -m graphs.run history {self.folder.path} --dialogue {dialogue_id})")
        return snap

    async def state(self, dialogue_id: str, checkpoint_id: str | None = None) -> DialogueState:
        return DialogueState.model_validate((await self.snapshot(dialogue_id, checkpoint_id)).values)

    async def tools_of(self, state: DialogueState) -> list[Tool]:
        return await toolset_of(state, self.store)

    async def _writer_of(self, dialogue_id: str, checkpoint_id: str) -> str:
        rows = await self.history(dialogue_id)
        for row in rows:
            if row.checkpoint_id == checkpoint_id:
                return row.node
        raise InputError(f"dialogue {dialogue_id!r} has no checkpoint {checkpoint_id!r}")

    def _source_names(self) -> list[str]:
        return [ref.name for s in self.config.sources() for ref in s.sources]


    async def _finish(self, dialogue_id: str, started: float, replace: bool, run: Any) -> None:
        error = None
        try:
            with sources_for_run(self._source_names(), self.config.run_id, self.settings.keep_sandboxes), \
                    sandbox_pool(1):  # this one dialogue's sandboxes, closed when it ends
                await run
        except Exception as exc:  # reported in the dataset line, like any failed dialogue
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        values = (await self.graph.aget_state(self._cfg(dialogue_id))).values
        tools = await self.tools_of(DialogueState.model_validate(values)) if values else []
        await LineWriter(self.folder, self.config, self.settings).write(dialogue_id, values, time.perf_counter() - started, error, tools=tools,
                                  replace=replace)
        self.folder.sort_dataset()
        if self.settings.checkpoints == "final" and error is None:
            await keep_only_last_checkpoint(self.graph, self.graph.checkpointer, dialogue_id)

    async def resume(self, dialogue_id: str, checkpoint_id: str) -> None:
        """Continue a dialogue from one of its checkpoints; its line in the dataset is replaced."""
        await self._writer_of(dialogue_id, checkpoint_id)
        self.folder.own("resume --dialogue")
        started = time.perf_counter()
        run = self.graph.ainvoke(None, self._cfg(dialogue_id, checkpoint_id), context=self.settings)
        await self._finish(dialogue_id, started, replace=True, run=run)

    async def fork(self, dialogue_id: str, checkpoint_id: str, seed: int | None = None,
                   user_message: str | None = None) -> str:
        """Start a new dialogue from another's checkpoint, optionally with a different next user message."""
        if user_message is not None and not user_message.strip():
            raise InputError("--user-message is empty: give the text the user says next")
        writer = await self._writer_of(dialogue_id, checkpoint_id)
        snap = await self.snapshot(dialogue_id, checkpoint_id)
        if user_message is not None and tuple(snap.next) != ("user_simulator",):
            raise InputError(f"--user-message needs a checkpoint whose next step is the user simulator; "
                             f"{checkpoint_id} is followed by {', '.join(snap.next) or 'nothing'}")
        await self._refuse_past_divergence(DialogueState.model_validate(snap.values), checkpoint_id)
        self.folder.own("fork")  # held already when opened as the fork's owner
        new_id = await self._fresh_id(dialogue_id)
        values = {**snap.values, "dialogue_id": new_id,
                  "forked_from": ForkOrigin(dialogue=dialogue_id, checkpoint=checkpoint_id)}
        if seed is not None:
            values["seed"] = seed
        cfg = self._cfg(new_id)
        started = time.perf_counter()
        if writer == "input":
            run = self.graph.ainvoke(values, cfg, context=self.settings)
        else:
            await self.graph.aupdate_state(cfg, values, as_node=writer)
            if user_message is not None:
                state = DialogueState.model_validate(values)
                await self.graph.aupdate_state(cfg, {
                    "messages": [HumanMessage(content=user_message)],
                    "last_user_turn": UserTurn(user_message=user_message, is_task_complete=False),
                    "user_turns_in_task": state.user_turns_in_task + 1, "steps_in_turn": 0,
                }, as_node="user_simulator")
            run = self.graph.ainvoke(None, cfg, context=self.settings)
        await self._finish(new_id, started, replace=False, run=run)
        return new_id

    async def _refuse_past_divergence(self, state: DialogueState, checkpoint_id: str) -> None:
        """A fork continues on sandboxes rebuilt from the recorded calls: one that replays differently cannot be
        rebuilt, so a fork from past it is refused with the call that diverged."""
        if not state.calls:
            return
        made = {c.tool_call_id for c in state.calls}
        # a divergence recorded already (by a resume or the validator's replay) needs no sandbox to find again
        diverged = [c for c in state.replay_diverged if c in made]
        if not diverged:
            tools = {t.name: t for t in await self.tools_of(state)}
            # within the run's sources, as the dialogue itself runs: what a kind sets up for a run is removed after
            with sources_for_run(self._source_names(), self.config.run_id, self.settings.keep_sandboxes):
                sandboxes = await asyncio.to_thread(DialogueSandboxes, state.sources, state.seed)
                try:
                    await asyncio.to_thread(sandboxes.replay, state.calls, tools)
                finally:
                    await asyncio.to_thread(sandboxes.close)
            diverged = sandboxes.diverged
        if diverged:
            first = next(c for c in state.calls if c.tool_call_id in diverged)
            raise InputError(f"cannot fork from {checkpoint_id}: it is past call {first.tool_call_id} ({first.tool}), "
                             f"whose replay on a fresh sandbox gave another result than was recorded, so the "
                             f"dialogue's state cannot be rebuilt")

    async def _fresh_id(self, dialogue_id: str) -> str:
        taken = self.folder.finished_ids()
        n = 1
        while True:
            candidate = f"{dialogue_id}-fork{n}"
            if candidate not in taken and not (await self.graph.aget_state(self._cfg(candidate))).values:
                return candidate
            n += 1


def render_conversation(state: DialogueState, toolset: list[Tool], console: Console) -> None:
    """The conversation as it stood, readable: roles, tool calls with arguments, results, then the writes."""
    tools = {t.name: t for t in toolset}
    for message in state.messages:
        if isinstance(message, HumanMessage):
            console.print(f"[bold cyan]user[/]: {message.text}", highlight=False, markup=True)
        elif isinstance(message, AIMessage):
            if message.text.strip():
                console.print(f"[bold green]assistant[/]: {message.text}", highlight=False)
            for call in message.tool_calls:
                console.print(f"[green]assistant calls[/] {call['name']}({call.get('args')})", highlight=False)
        elif isinstance(message, ToolMessage):
            text = message.text if len(message.text) <= 400 else message.text[:399] + "…"
            console.print(f"[yellow]tool {message.name}[/]: {text}", highlight=False)
    if state.replay_diverged:
        console.print(f"[bold red]replay diverged[/]: calls {', '.join(state.replay_diverged)} gave another result "
                      f"when replayed on a fresh sandbox", highlight=False)
    writes = [w for w in state.writes() if w.tool in tools]
    console.print(f"\n[bold]writes applied so far: {len(writes)}[/]")
    for w in writes:
        console.print(f"  {w.tool}({w.arguments})", highlight=False)
