"""One RL episode: a verified task of a run played from the state it began in.

Everything is the pipeline's own: the sandbox is the dialogue's (environment/sources/pool.DialogueSandboxes,
the earlier tasks' recorded writes replayed onto a fresh copy of the source), a tool call takes the executor's
path (nodes/tool_executor.execute_call: arguments checked, the call run on its sandbox), the user is the user
simulator's turn rule (nodes/user_simulator.next_user_turn) on the backend given, seeded as an evaluation trial
is, and the reward is the validator's verification (verification/verdict.py) read as evaluate reads it
(verification/scoring.py). The assistant under training talks to the user through `send_message_to_user`: the user's
reply is that call's result, so a trainer whose loop ends at the first turn without a tool call still plays the
whole multi-turn dialogue.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, convert_to_messages
from pydantic import BaseModel, Field

from backends.protocols import JudgeRequest, UserTurnRequest
from environment.errors import InputError
from environment.sources.dialogue_time import reference_time_for
from environment.sources.pool import DialogueSandboxes
from nodes.common import seeded_key
from verification.scoring import classify, reward_parts
from nodes.tool_executor import execute_call, simulator_of, tool_message, tool_message_content
from nodes.user_simulator import next_user_turn
from verification.verdict import verify
from rl import loop
from state.benchmark import BenchmarkTask, Fault
from state.dialogue import ExecutedCall
from state.verification import StateDiff, Verification

if TYPE_CHECKING:
    from rl.suite import Environments

USER_LEFT = "(The user has ended the conversation; nothing more reaches them.)"


class Reward(BaseModel):
    """An episode's reward and the parts it is made of."""

    value: float = Field(description="1.0 when the state matches a goal diff and every required fact was told "
                                      "(and the judge passed, where it is asked); 0.0 otherwise.")
    parts: dict[str, str] = Field(description="state, facts, judge, user_conduct: each part's verdict.")
    fault: Fault = Field(description="Whose fault a 0 was: 'simulator' (the user misbehaved or never stated part "
                                     "of its goal: exclude it from training), 'assistant', or 'none'.")
    failures: list[str] = Field(default_factory=list, description="Why it failed, each a line naming the row or "
                                                                  "the fact.")
    verification: Verification


class Episode:
    """One environment instance: reset to any task of its split, then tools, user messages and the reward."""

    def __init__(self, environments: Environments) -> None:
        self.environments = environments
        self.task: BenchmarkTask | None = None
        self.messages: list[AnyMessage] = []
        self.calls: list[ExecutedCall] = []
        self.done = False
        self.ended_by_budget = False
        self._boxes: DialogueSandboxes | None = None
        self._before: dict[str, Any] | None = None  # the sandboxes before the episode's first write
        self._start = 0
        self._user_turns = 0
        self._user_seed = 0
        self._lock = asyncio.Lock()

    # -- the synchronous face (TRL), each running its coroutine on the process's episode loop --------------

    def reset(self, task_id: str, user_seed: int | None = None) -> str:
        """Start the task over on a fresh sandbox; returns the user's opening message."""
        return loop.run(self.areset(task_id, user_seed))

    def call_tool(self, name: str, arguments: dict[str, Any], call_id: str | None = None) -> str:
        """Run one tool call; returns its result as the tool message carries it (JSON). `call_id`: the caller's
        id of the call, where it has one (kept when unique in the episode)."""
        return loop.run(self.acall_tool(name, arguments, call_id))

    def send_message_to_user(self, text: str) -> str:
        """Say something to the user; returns the user's reply."""
        return loop.run(self.asend_message_to_user(text))

    def reward(self) -> Reward:
        """The verification of the episode so far."""
        return loop.run(self.areward())

    # -- the asynchronous face (verifiers, benchmarks) ------------------------------------------------------

    async def areset(self, task_id: str, user_seed: int | None = None) -> str:
        task = self.environments.task(task_id)
        tools = self.environments.tools_of(task)
        self.close()
        boxes = DialogueSandboxes(task.sources, task.seed)
        try:
            await asyncio.to_thread(boxes.replay, task.prefix_calls, tools)
        except BaseException:
            boxes.close()
            raise
        self.task, self._boxes, self._before = task, boxes, None
        self.messages = list(convert_to_messages(task.prefix))
        self._start, self.calls, self._user_turns = len(self.messages), [], 0
        self.done = self.ended_by_budget = False
        self._user_seed = task.seed if user_seed is None else int(user_seed)
        return await self._user_says()

    async def acall_tool(self, name: str, arguments: dict[str, Any], call_id: str | None = None) -> str:
        task, boxes = self._started()
        async with self._lock:  # one call at a time: the clock and call ids follow the order of the calls
            tools = self.environments.tools_of(task)
            serial = len(task.prefix_calls) + len(self.calls)
            used = {c.tool_call_id for c in (*task.prefix_calls, *self.calls)}
            call = {"name": name, "args": dict(arguments or {}),
                    "id": call_id if call_id and call_id not in used else f"call_rl_{serial:04d}"}
            tool = tools.get(name)
            if tool is not None and tool.mode == "write" and self._before is None:
                await asyncio.to_thread(boxes.open_for, [tool])
                self._before = await asyncio.to_thread(boxes.snapshot)
            settings = self.environments.settings
            executed = await execute_call(
                boxes, tools, call, settings, position=0, serial=serial, malformed=None,
                reference_time=reference_time_for(task.seed), messages=self.messages,
                rng_key=seeded_key(task.seed, "simulate", task.index + 1, serial),
                simulate=simulator_of(self.environments.backend), task_index=task.index)
            boxes.recorded([executed])
            self.messages.append(AIMessage(content="", tool_calls=[{**call, "type": "tool_call"}]))
            self.messages.append(tool_message(executed))
            self.calls.append(executed)
            return tool_message_content(executed.result)

    async def asend_message_to_user(self, text: str) -> str:
        self._started()
        async with self._lock:
            self.messages.append(AIMessage(content=str(text)))
            if self.done:
                return USER_LEFT
            return await self._user_says()

    async def areward(self) -> Reward:
        task, boxes = self._started()
        async with self._lock:
            if self._before is None:  # no write ran: the state is the task's start state
                actual = StateDiff()
            else:
                actual = await asyncio.to_thread(lambda: boxes.diff(self._before, boxes.snapshot()))
            messages = self.messages[self._start:]
            judge = self.environments.judge
            judged = await self._judge(messages) if judge else True
            check = verify(task.task, messages, self.calls, actual, judged)
            value, parts = reward_parts(check, judge)
            fault, detail = classify(task, check, messages, self.calls, value, judge)
            return Reward(value=float(value), parts=parts, fault=fault, failures=detail if value == 0 else [],
                          verification=check)

    def close(self) -> None:
        """Drop the episode's sandboxes (a reset does too)."""
        if self._boxes is not None:
            self._boxes.close()
            self._boxes = None

    # -- inside ---------------------------------------------------------------------------------------------

    def _started(self) -> tuple[BenchmarkTask, DialogueSandboxes]:
        if self.task is None or self._boxes is None:
            raise InputError("the episode has not been reset to a task yet: call reset(task_id) first")
        return self.task, self._boxes

    async def _user_says(self) -> str:
        task = self.task
        assert task is not None
        settings = self.environments.settings
        if self._user_turns >= settings.max_user_turns_per_task:
            self.done = self.ended_by_budget = True
            return USER_LEFT
        request = UserTurnRequest(task=task.task, messages=self.messages, task_start=self._start,
                                  user_turn=self._user_turns,
                                  rng_key=seeded_key(self._user_seed, "user", task.index + 1, self._user_turns))
        turn, _ = await next_user_turn(self.environments.backend, request, settings.min_user_turns_per_task)
        self.messages.append(HumanMessage(content=turn.user_message))
        self._user_turns += 1
        self.done = turn.is_task_complete
        return turn.user_message

    async def _judge(self, messages: list[AnyMessage]) -> bool:
        task = self.task
        assert task is not None
        verdict, _ = await self.environments.backend.judge(JudgeRequest(
            task=task.task, messages=messages, calls=self.calls, user_declared_complete=self.done
            and not self.ended_by_budget, ended_by_budget=self.ended_by_budget, task_index=task.index))
        return verdict.judgment == "valid"

    def __del__(self) -> None:  # an episode a trainer drops still frees its sandboxes
        try:
            self.close()
        except Exception:
            pass
