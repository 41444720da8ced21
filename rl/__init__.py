"""A run's verified tasks as reinforcement-learning environments (docs/rl.md).

`from_run(RUN_DIR, split="train")` gives the split's tasks; `.episode()` one environment instance:
`reset(task_id)` (a sandbox at the task's start, the user's opening), `call_tool(name, arguments)`,
`send_message_to_user(text)` (the user's reply) and `reward()` (the validator's verification and its parts).
`rl.trl` makes TRL GRPOTrainer's environment_factory and dataset of them; `rl.verifiers_env` a verifiers
environment.
"""

from rl.episode import Episode, Reward
from rl.splits import SplitRecord
from rl.suite import Environments, from_run

__all__ = ["Environments", "Episode", "Reward", "SplitRecord", "from_run"]
