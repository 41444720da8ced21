"""The RL environments under the trainers' own loops: TRL's GRPOTrainer trains two steps on the CPU with a
one-layer random model, and verifiers' `vf-eval` evaluates a model served by the stub server; in both the
reward is the environment's state check."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import rl
from langchain_core.messages import HumanMessage
from rl import loop
from rl.oracle import play_reference
from tests.rl_support import ReferenceModel
from tests.stub_server import StubServer
from tests.test_rl import rl_run  # noqa: F401  (the module's run: 4 dialogues x 2 tasks, offline)

ROOT = Path(__file__).resolve().parent.parent


def _user_messages(episode: rl.Episode) -> list[str]:
    return [m.text for m in episode.messages[len(episode.task.prefix):] if isinstance(m, HumanMessage)]


def test_grpo_trains_two_steps_on_the_cpu_rewarded_by_the_state_check(rl_run, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("trl")
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen3_chat_template

    from tests.tiny_model import tiny_model, tiny_tokenizer

    environments = rl.from_run(rl_run, split="train")
    dataset = environments.trl_dataset()
    base = environments.trl_environment_factory()
    rollouts = itertools.count()
    scored = []

    class Mixed(base):
        """Every other rollout is played by the reference policy before the model's turn (a random model never
        solves a task): each GRPO group then holds a 1 and a 0, so the advantage and the gradient are not zero."""

        def reset(self, **row):
            opening = super().reset(**row)
            if next(rollouts) % 2 == 0:
                loop.run(play_reference(self.episode, row["task_id"]))
            return opening

        def get_reward(self):
            value = super().get_reward()
            scored.append((value, self.last_reward))
            return value

    tokenizer = tiny_tokenizer([json.dumps(r["prompt"]) for r in dataset], tmp_path / "tokenizer",
                               chat_template=qwen3_chat_template)
    model = tiny_model(tokenizer)
    start = [p.detach().clone() for p in model.parameters()]
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, max_steps=2, use_cpu=True, report_to="none", logging_steps=1,
                      save_strategy="no", learning_rate=1e-2, seed=0, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=dataset,
                          environment_factory=Mixed)
    trainer.train()

    assert [value for value, _ in scored] == [1.0, 0.0, 1.0, 0.0]
    for value, reward in scored:  # each is the verification of its episode's end state and words
        assert reward.value == value
        if value:
            assert reward.parts["state"] == "match" and reward.parts["facts"] == "pass"
        else:
            assert reward.parts["state"] == "mismatch" or reward.parts["facts"] == "fail"
    steps = [h for h in trainer.state.log_history if "rewards/Mixed/mean" in h]
    assert len(steps) == 2
    assert all(h["rewards/Mixed/mean"] == 0.5 and h["reward_std"] > 0 for h in steps)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(start, model.parameters())), "the model trained"
    environments.close()


def test_vf_eval_scores_a_served_model_by_the_state_check_as_the_episode_does(rl_run, tmp_path):  # noqa: F811
    pytest.importorskip("verifiers")
    command = shutil.which("vf-eval")
    if command is None:
        pytest.skip("verifiers' vf-eval is not on PATH")
    environments = rl.from_run(rl_run, split="all")
    episode = environments.episode()
    expected = {}
    for task_id in environments.task_ids:  # in-process, and through TRL's environment class: the same
        reward = loop.run(play_reference(episode, task_id))
        expected[task_id] = (_user_messages(episode), reward.value)
        trl_environment = environments.trl_environment_factory()()
        trl_environment.reset(task_id=task_id)
        loop.run(play_reference(trl_environment.episode, task_id))
        assert trl_environment.get_reward() == reward.value == 1.0
        assert _user_messages(trl_environment.episode) == expected[task_id][0]
    silent = set(environments.task_ids[1::2])
    model = ReferenceModel(environments, {t: messages[0] for t, (messages, _) in expected.items()}, silent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "STUB_API_KEY": "stub"}
    out = tmp_path / "vf"
    with StubServer(model) as server:
        done = subprocess.run([command, "rl.verifiers_env", "-a", json.dumps({"run_dir": str(rl_run), "split": "all"}),
                               "-m", "stub-model", "-b", server.base_url, "-k", "STUB_API_KEY", "-n", "8", "-r", "1",
                               "-s", "-d", "-o", str(out)], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    [results] = list(out.rglob("results.jsonl"))
    lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    assert len(lines) == 8
    for line in lines:
        info = line["info"] if isinstance(line["info"], dict) else json.loads(line["info"])
        task_id = info["task_id"]
        if task_id in silent:
            assert line["reward"] == 0.0 and line["state_check"] == 0.0
            continue
        users = [line["prompt"][-1]["content"]] + [m["content"] for m in line["completion"] if m["role"] == "user"]
        assert users == expected[task_id][0], task_id
        assert line["reward"] == expected[task_id][1] == 1.0
        assert line["state_match"] == 1.0 and line["facts_pass"] == 1.0 and line["simulator_fault"] == 0.0
    episode.close()
    environments.close()


def test_the_exported_grpo_script_trains_a_step(rl_run, tmp_path):  # noqa: F811
    pytest.importorskip("trl")
    from trl.chat_template_utils import qwen3_chat_template

    from graphs.run import main
    from tests.tiny_model import tiny_model, tiny_tokenizer

    out = tmp_path / "rl-export"
    assert main(["export", str(rl_run), "--format", "rl", "--out", str(out)]) == 0
    model_dir = tmp_path / "tiny-model"
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    tokenizer = tiny_tokenizer([json.dumps(r["prompt"]) for r in rows], model_dir, chat_template=qwen3_chat_template)
    tiny_model(tokenizer).save_pretrained(str(model_dir))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRL_EXPERIMENTAL_SILENCE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(["python", str(out / "train_grpo.py"), "--model", str(model_dir), "--max-steps", "1",
                           "--num-generations", "2", "--max-completion-length", "8",
                           "--output-dir", str(tmp_path / "grpo")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'train_runtime'" in done.stdout + done.stderr
