"""`export RUN --format rl --out DIR`: the run's split task files and short, runnable training scripts.

DIR gets train.jsonl and test.jsonl (one prompt row per task: the prompt TRL's GRPOTrainer starts from, the task
id its environment resets to, the database), rl.json (the run, its recorded split and the counts), and two
scripts beside them: train_grpo.py (TRL) and forge_env.py (a verifiers environment module for vf-eval). The
scripts read the run folder itself (its toolsets and sources): they train on the live environments, the files
are what they will see. Written to a staging folder and renamed, so a failed export leaves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pydantic import BaseModel

from environment.errors import InputError
from rl.splits import SplitBy
from rl.suite import from_run
from rl.trl import prompt_rows

TRL_SCRIPT = '''"""GRPO with TRL on the verified tasks of {run}: python train_grpo.py --model MODEL

The reward is the environment's state check (the database's end state against the task's goal diff, and the
facts told); the simulated user runs on the offline backend unless --backend openai names a server.
"""

import argparse

import torch
from trl import GRPOConfig, GRPOTrainer

import rl
from state.config import Settings

RUN = {run!r}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", required=True, help="a causal LM with a tool-calling chat template (name or folder)")
parser.add_argument("--max-steps", type=int, default=100)
parser.add_argument("--num-generations", type=int, default=4, help="rollouts per task in a GRPO group")
parser.add_argument("--max-completion-length", type=int, default=1024)
parser.add_argument("--output-dir", default="grpo-out")
parser.add_argument("--backend", default="offline", help="the user simulator's backend: offline or openai")
parser.add_argument("--base-url", default="", help="the OpenAI-compatible server of the user simulator")
parser.add_argument("--user-model", default="", help="the user simulator's model on that server")
args = parser.parse_args()

settings = Settings(backend=args.backend, **{{k: v for k, v in {{"base_url": args.base_url,
                                                                "user_model": args.user_model}}.items() if v}})
environments = rl.from_run(RUN, split="train", by={by!r}, test_fraction={test_fraction!r}, seed={seed!r},
                           settings=settings)
gpu = torch.cuda.is_available()
config = GRPOConfig(output_dir=args.output_dir, max_steps=args.max_steps, num_generations=args.num_generations,
                    per_device_train_batch_size=args.num_generations,
                    max_completion_length=args.max_completion_length, logging_steps=1, report_to="none",
                    save_strategy="no", bf16=gpu, use_cpu=not gpu)
trainer = GRPOTrainer(model=args.model, args=config, train_dataset=environments.trl_dataset(),
                      environment_factory=environments.trl_environment_factory())
trainer.train()
'''

VERIFIERS_SCRIPT = '''"""A verifiers environment over the verified tasks of {run} (the test split by default).

    vf-eval forge_env -m MODEL -b http://localhost:8000/v1 -k API_KEY_VAR -n 20 -r 3
(run it from this folder, or put it on PYTHONPATH; -a '{{"split": "train"}}' picks another split).
"""

from rl.verifiers_env import load_environment as _load

RUN = {run!r}


def load_environment(run_dir: str = RUN, split: str = "test", **options):
    return _load(run_dir=run_dir, split=split, by={by!r}, test_fraction={test_fraction!r}, seed={seed!r},
                 **options)
'''


class RLExport(BaseModel):
    out: str
    by: SplitBy
    train: int
    test: int
    databases: list[str]


def export_rl(run_dir: Path, out: Path, by: SplitBy, test_fraction: float, seed: int) -> RLExport:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output already exists: {out} (choose another --out)")
    environments = from_run(run_dir, split="all", by=by, test_fraction=test_fraction, seed=seed)
    try:
        record = environments.record
        rows = {row["task_id"]: row for row in prompt_rows(environments)}
        run = str(Path(run_dir).resolve())
        staging = out.with_name(f".{out.name}.{os.getpid()}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for name in ("train", "test"):
                with open(staging / f"{name}.jsonl", "w", encoding="utf-8") as f:
                    for task_id in record.ids(name):  # type: ignore[arg-type]
                        row = {**rows[task_id], "database": environments.task(task_id).database}
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
            summary = RLExport(out=str(out), by=by, train=len(record.train), test=len(record.test),
                               databases=environments.databases)
            manifest = {"run_dir": run, "split": record.model_dump(mode="json"), **summary.model_dump()}
            (staging / "rl.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            values = {"run": run, "by": by, "test_fraction": test_fraction, "seed": seed}
            (staging / "train_grpo.py").write_text(TRL_SCRIPT.format(**values), encoding="utf-8")
            (staging / "forge_env.py").write_text(VERIFIERS_SCRIPT.format(**values), encoding="utf-8")
            if out.exists():
                out.rmdir()  # empty (checked above)
            os.rename(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return summary
    finally:
        environments.close()
