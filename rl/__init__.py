"""A run's verified tasks as reinforcement-learning environments (docs/rl.md).

`from_run(RUN_DIR, split="train")` gives the split's tasks; `.episode()` one environment instance:
`reset(task_id)` (a sandbox at the task's start, the user's opening), `call_tool(name, arguments)`,
`send_message_to_user(text)` (the user's reply) and `reward()` (the validator's verification and its parts).
`rl.trl` makes TRL GRPOTrainer's environment_factory and dataset of them; `rl.verifiers_env` a verifiers
environment. The names load on first use, so reading a run's split (rl.splits, for `report`) loads nothing else.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rl.episode import Episode, Reward
    from rl.splits import SplitRecord
    from rl.suite import Environments, from_run

_HOMES = {"Environments": "rl.suite", "from_run": "rl.suite", "Episode": "rl.episode", "Reward": "rl.episode",
          "SplitRecord": "rl.splits"}
__all__ = ["Environments", "Episode", "Reward", "SplitRecord", "from_run"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'rl' has no attribute {name!r}")
