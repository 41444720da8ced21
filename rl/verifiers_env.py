"""verifiers (Prime Intellect's environments library): `load_environment(run_dir=..., split=...)`.

A multi-turn environment over the same episodes as TRL's: the dataset's rows are the split's tasks (their
tools in `info["tool_defs"]`, per database), `setup_state` resets an episode and puts the user's opening into
the prompt, the environment's response to a tool call is the tool's result (the executor's path) and to a
reply in words the simulated user's answer, so the model meets the user as it would in a dialogue. The rollout
stops once the user has ended the task and the model has answered it. The rubric's reward is the episode's
verification (the state check times the facts told); its parts are metrics of weight 0, and a simulator fault
is one of them, to filter on.

Needs the `verifiers` package (`pip install verifiers`); evaluate with its own command:
    vf-eval rl.verifiers_env -a '{"run_dir": "runs/clinic"}' -m MODEL -b http://localhost:8000/v1 -k KEY_VAR
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rl.episode import Episode, Reward
from rl.suite import Environments, from_run
from rl.trl import USER_TOOL_NOTE, prompt_rows, system_prompt
from state.config import Settings

REWARD_KEY = "dialogue_forge_reward"


def tool_defs(environments: Environments, database: str) -> list[dict[str, Any]]:
    """The database's toolset in verifiers' provider-agnostic shape (name, description, JSON Schema)."""
    return [{"name": t.name, "description": t.description, "parameters": t.parameters or {"type": "object",
                                                                                          "properties": {}}}
            for t in environments.toolset_of_database(database)]


def dataset_rows(environments: Environments, repeat: int = 1) -> list[dict[str, Any]]:
    """TRL's prompt rows, the user reached by replying in words (no user tool), the task id and tools in info."""
    prompt = system_prompt().replace(f"\n\n{USER_TOOL_NOTE}", "")
    defs = {db: tool_defs(environments, db) for db in environments.databases}
    rows = []
    for row in prompt_rows(environments, repeat):
        task = environments.task(row["task_id"])
        messages = [{"role": "system", "content": prompt}, *row["prompt"][1:-1]]  # the opening comes in setup
        rows.append({"prompt": messages, "answer": "",
                     "info": json.dumps({"task_id": task.task_id, "database": task.database,
                                         "tool_defs": defs[task.database]})})
    return rows


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(getattr(p, "text", None) or (p.get("text", "") if isinstance(p, dict) else "")
                       for p in content)
    return ""


def load_environment(run_dir: str, split: str = "test", by: str = "task", test_fraction: float = 0.2, seed: int = 0,
                     backend: str = "offline", base_url: str = "", model: str = "", judge: bool = False,
                     max_turns: int = 60, repeat: int = 1, **settings: Any):
    """A verifiers MultiTurnEnv over a run's split (test by default: what one evaluates on).

    Args:
        run_dir: a run folder made by `generate`.
        split, by, test_fraction, seed: the run's recorded split (rl.from_run).
        backend, base_url, model: where the user simulator runs (offline by default); `settings` may name any
            other field of state/config.Settings (e.g. user_model, max_user_turns_per_task).
        judge: score the judge's non-state rubric items too.
        max_turns: model turns per rollout at most.
        repeat: the split's tasks this many times over.
    """
    import verifiers as vf
    from datasets import Dataset
    from verifiers.types import ToolMessage, UserMessage

    options = {k: v for k, v in {"backend": backend, "base_url": base_url, "model": model}.items() if v}
    environments = from_run(Path(run_dir), split=split, by=by,  # type: ignore[arg-type]
                            test_fraction=test_fraction, seed=seed, settings=Settings(**options, **settings),
                            judge=judge)
    rows = dataset_rows(environments, repeat)

    async def reward_of(state: Any) -> Reward | None:
        stored = state.get(REWARD_KEY)
        return Reward.model_validate(stored) if stored else None

    async def state_check(state: Any, **_: Any) -> float:
        """1 when the database's end state matches the task's goal diff and every required fact was told."""
        reward = await reward_of(state)
        return reward.value if reward else 0.0

    def part(name: str, passing: str):
        async def metric(state: Any, **_: Any) -> float:
            reward = await reward_of(state)
            return float(bool(reward) and reward.parts.get(name, "").startswith(passing))
        metric.__name__ = f"{name}_{passing}"
        return metric

    async def simulator_fault(state: Any, **_: Any) -> float:
        """1 where a 0 was the simulated user's fault (exclude such rollouts from training)."""
        reward = await reward_of(state)
        return float(bool(reward) and reward.fault == "simulator")

    rubric = vf.Rubric(funcs=[state_check, part("state", "match"), part("facts", "pass"), simulator_fault],
                       weights=[1.0, 0.0, 0.0, 0.0])

    class DatabaseTasksEnv(vf.MultiTurnEnv):
        """A run's verified tasks: tools on a private sandbox, a simulated user, the state check as reward."""

        async def setup_state(self, state: Any) -> Any:
            info = state["info"] if isinstance(state["info"], dict) else json.loads(state["info"])
            episode = environments.episode()
            opening = await episode.areset(info["task_id"])
            state["episode"] = episode
            state["prompt"] = [*state["prompt"], UserMessage(content=opening)]
            return state

        async def env_response(self, messages: Any, state: Any, **kwargs: Any) -> Any:
            episode: Episode = state["episode"]
            last = messages[-1]
            calls = getattr(last, "tool_calls", None) or []
            if not calls:
                return [UserMessage(content=await episode.asend_message_to_user(_text(last.content)))]
            out = []
            for call in calls:
                try:
                    arguments = json.loads(call.arguments or "{}")
                except ValueError:
                    arguments = None
                if not isinstance(arguments, dict):
                    content = json.dumps({"error": {"type": "invalid_arguments",
                                                    "message": "arguments are not a JSON object"}})
                else:
                    content = await episode.acall_tool(call.name, arguments, call.id)
                out.append(ToolMessage(tool_call_id=call.id, content=content))
            return out

        @vf.stop
        async def user_has_left(self, state: Any, **kwargs: Any) -> bool:
            episode: Episode | None = state.get("episode")
            if episode is None or not episode.done or not state["trajectory"]:
                return False
            last = state["trajectory"][-1]["completion"][-1]
            if getattr(last, "role", "") != "assistant" or getattr(last, "tool_calls", None):
                return False
            await episode.asend_message_to_user(_text(last.content))  # the closing words count (facts told)
            return True

        @vf.cleanup
        async def score_and_close(self, state: Any) -> None:
            episode: Episode | None = state.pop("episode", None)
            if episode is None:
                return
            try:
                state[REWARD_KEY] = (await episode.areward()).model_dump(mode="json")
            finally:
                episode.close()

    return DatabaseTasksEnv(dataset=Dataset.from_list(rows), eval_dataset=Dataset.from_list(rows), rubric=rubric,
                            max_turns=max_turns)
