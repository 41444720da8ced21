"""TRL: the environment_factory and the prompt dataset GRPOTrainer trains on (TRL >= 1.16).

TRL reads an environment's tools from its class: every public method but `reset` and `get_reward`, with typed
arguments and a Google-style docstring. A toolset's tools become such methods on a class made for it (one
class per database of the run), next to `send_message_to_user`, the user as a tool. `reset(**row)` gets the
dataset row: its `task_id` picks the task (and an optional `user_seed` the user sample); it returns the user's
opening, which TRL appends to the prompt's last (empty) user message. `get_reward()` is the state check: the
reward's value, or None for a simulator fault when the environments exclude them (TRL leaves a None out).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

from prompts import load_prompt
from rl.episode import Episode, Reward
from rl.tools import callables_of

if TYPE_CHECKING:
    from rl.suite import Environments

USER_TOOL_NOTE = ("Talk to the user only through the send_message_to_user tool: it delivers your message and "
                  "returns the user's reply. Keep going until the user says they are done.")


class DatabaseEnvironment:
    """The base of every toolset's TRL environment class; its tools are added as methods per toolset."""

    environments: Environments  # set on each generated class
    exclude_simulator_faults = False

    def __init__(self) -> None:
        self.episode: Episode = self.environments.episode()
        self.last_reward: Reward | None = None

    def reset(self, **row: Any) -> str:
        self.last_reward = None
        seed = row.get("user_seed")
        return self.episode.reset(str(row["task_id"]), None if seed is None else int(seed))

    def send_message_to_user(self, message: str) -> str:
        """Send a message to the user you are helping; the user reads it and answers.

        Args:
            message: What you say to the user: an answer, a confirmation of a change, or a question.

        Returns:
            The user's reply.
        """
        return self.episode.send_message_to_user(message)

    def get_reward(self) -> float | None:
        self.last_reward = self.episode.reward()
        if self.exclude_simulator_faults and self.last_reward.fault == "simulator":
            return None
        return self.last_reward.value


def _invoke(self: DatabaseEnvironment, name: str, arguments: dict[str, Any]) -> str:
    return self.episode.call_tool(name, arguments)


def environment_class(environments: Environments, database: str, exclude_simulator_faults: bool = False) -> type:
    """A DatabaseEnvironment subclass with the database's toolset as typed methods."""
    methods = {fn.__name__: fn for fn in callables_of(environments.toolset_of_database(database), _invoke,
                                                      method=True)}
    name = "".join(p.capitalize() for p in re.split(r"\W+", database) if p) or "Database"
    return type(f"{name}Environment", (DatabaseEnvironment,), {
        **methods, "environments": environments, "exclude_simulator_faults": exclude_simulator_faults,
        "__module__": __name__, "__doc__": f"The {database} database's tasks as an RL environment."})


def environment_factory(environments: Environments, exclude_simulator_faults: bool = False) \
        -> Callable[[], DatabaseEnvironment] | dict[str, Callable[[], DatabaseEnvironment]]:
    """GRPOTrainer's `environment_factory`: one class (a zero-argument callable) for a run over one database, a
    dict {database: class} for several (the dataset's `environment` column picks one per row)."""
    classes = {db: environment_class(environments, db, exclude_simulator_faults) for db in environments.databases}
    return next(iter(classes.values())) if len(classes) == 1 else classes


def system_prompt() -> str:
    return f"{load_prompt('assistant').text.strip()}\n\n{USER_TOOL_NOTE}"


def _prefix_turns(prefix: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier tasks' conversation as the model sees it: the user's and the assistant's words (their tool
    calls and results stay in the episode, which replayed them onto the sandbox)."""
    out: list[dict[str, Any]] = []
    for message in prefix:
        text = message.get("content")
        if message.get("role") not in ("user", "assistant") or not isinstance(text, str) or not text.strip():
            continue
        if out and out[-1]["role"] == message["role"]:
            out[-1] = {"role": message["role"], "content": f"{out[-1]['content']}\n\n{text}"}
        else:
            out.append({"role": message["role"], "content": text})
    if out and out[-1]["role"] == "user":  # the opening comes from reset, as the last (user) message
        out.pop()
    return out


def prompt_rows(environments: Environments, repeat: int = 1) -> list[dict[str, Any]]:
    """The dataset's rows: the prompt (system, the earlier conversation, an empty user message the opening goes
    into), the task id, and the `environment` where the run spans several databases."""
    several = len(environments.databases) > 1
    rows = []
    for _ in range(repeat):
        for task in environments.tasks:
            row: dict[str, Any] = {"prompt": [{"role": "system", "content": system_prompt()},
                                              *_prefix_turns(task.prefix), {"role": "user", "content": ""}],
                                   "task_id": task.task_id}
            if several:
                row["environment"] = task.database
            rows.append(row)
    return rows


def dataset(environments: Environments, repeat: int = 1):
    """A datasets.Dataset of prompt_rows (the split's tasks, `repeat` times over)."""
    from datasets import Dataset

    return Dataset.from_list(prompt_rows(environments, repeat))
