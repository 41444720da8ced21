"""`evaluate`: the tasks of a finished run played again by a model under test, K trials each.

A trial is one thread of the dialogue graph, seeded as if `prepare` had just run: the conversation before
the task, the earlier tasks and their calls (the tool executor's sandbox pool replays them onto a fresh copy
of the source, so the task starts in the state it began in), and the task itself as the one the task
generator takes. The graph then runs that task to its verdict; the validator's Verification is the score.
Lanes, checkpoints and the sandbox pool are the run machinery's (runner/lanes.py): kill -9 and resume
continues each trial from its last checkpoint, and a trial's line is written only once it ended.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any, Callable

from langchain_core.messages import convert_to_messages
from langgraph.graph import StateGraph
from pydantic import BaseModel, Field
from rich.console import Console

from environment.errors import InputError
from environment.sources.dialogue_time import reference_time_for
from environment.sources.registry import label_of, load_source_kinds
from verification.scoring import classify, reward_parts
from runner import layout
from runner.lanes import Ended, Lanes
from runner.export import openai_message
from runner.preflight import backend_notice, run_settings
from runner.processes import run_in_processes, run_in_worker
from runner.progress import progress_bar
from runner.run_folder import RunFolder, new_run_folder
from state.benchmark import BenchmarkTask, EvaluationConfig, TrialRecord, tasks_of_line, trial_seed
from state.config import RunConfig, Settings
from state.dialogue import DialogueState
from state.sources import joined_name, read_joined
from state.tools import Tool


class TrialPlan(BaseModel):
    task: BenchmarkTask
    trial: int
    seed: int
    attempt: int = 0
    rerun_of_seed: int | None = None
    rerun_from: str = ""
    replaces: bool = Field(False, description="The trial has a line already (a simulator fault, an infrastructure "
                                             "failure): the new line takes its place.")
    fork_thread: str = Field("", description="A re-run of a user who ended too early: the spoiled trial's thread, "
                                             "continued from the checkpoint before its last user turn.")

    @property
    def id(self) -> str:
        return f"{self.task.task_id}#{self.trial}"

    @property
    def thread_id(self) -> str:
        return self.id if not self.attempt else f"{self.id}~{self.attempt}"


def model_under_test(settings: Settings) -> str:
    return settings.role_target("assistant")[0] if settings.backend_kind == "openai" else settings.backend


def select_tasks(run_dir: Path, count: int | None, task_ids: list[str], seed: int,
                 works_on: str = "evaluate works on dialogue runs") -> tuple[list[BenchmarkTask], RunConfig]:
    """The run's tasks that have an expected outcome: those named, or `count` drawn with the seed, or all."""
    config = RunConfig.model_validate(layout.dialogue_run_config(run_dir, works_on))
    load_source_kinds(list(config.settings.get("source_kinds") or []))  # the kinds the run was made with
    files = layout.RunFiles(run_dir)
    style = "question" if config.pipeline == "task" else "descriptive"
    tasks: list[BenchmarkTask] = []
    for line, tools in files.lines_with_tools():
        source = line.get("metadata", {}).get("source_database") or ""
        tasks.extend(tasks_of_line(line, tools, label_of(read_joined(source)) if source else "simulated", style))
    if not tasks:
        raise InputError(f"{run_dir} has no valid dialogue with a checked task ({works_on.split()[0]} needs them)")
    if task_ids:
        known = {t.task_id: t for t in tasks}
        missing = [i for i in task_ids if i not in known]
        if missing:
            raise InputError(f"no task {missing[0]!r} in {run_dir} (task ids look like {tasks[0].task_id})")
        return [known[i] for i in dict.fromkeys(task_ids)], config
    if count is not None and count < len(tasks):
        chosen = set(random.Random(seed).sample(range(len(tasks)), count))
        tasks = [t for i, t in enumerate(tasks) if i in chosen]
    return tasks, config


def _trial_worker_main(builder_factory: Callable[[], StateGraph], folder: str, config: RunConfig, settings: Settings,
                       share: tuple[dict[str, list[Tool]], EvaluationConfig, list[TrialPlan]], events: Any,
                       number: int, parent: int) -> None:
    """A worker process of an evaluation: its share of the trials, at its share of the concurrency."""
    toolsets, evaluation, plan = share
    evaluation = evaluation.model_copy(update={"concurrency": config.concurrency})
    batch = TrialBatch(builder_factory, RunFolder(Path(folder)), evaluation, settings, toolsets, plan,
                       Console(quiet=True))
    run_in_worker(batch, list(range(len(plan))), events, number, parent)


class TrialBatch:
    """An evaluation's trials on the one dialogue path (runner/lanes.py): index i is trial i of the plan, its
    thread seeded where its task began, its end scored into a trial line."""

    noun = "trial"
    worker_main = staticmethod(_trial_worker_main)

    def __init__(self, builder_factory: Callable[[], StateGraph], folder: RunFolder, evaluation: EvaluationConfig,
                 settings: Settings, toolsets: dict[str, list[Tool]], plan: list[TrialPlan], console: Console) -> None:
        self.config = RunConfig.model_validate(evaluation.run_config).model_copy(
            update={"concurrency": evaluation.concurrency, "workers": 1})
        self.builder_factory, self.folder, self.toolsets, self.console = builder_factory, folder, toolsets, console
        self.lanes = Lanes(folder, self.config, settings, toolsets)
        self.settings = self.lanes.settings
        self.evaluation, self.plan = evaluation, plan
        self.forked: dict[str, str] = {}  # re-run thread -> the checkpoint it continued from

    def start_values(self, plan: TrialPlan) -> dict[str, Any]:
        task = plan.task
        return {"dialogue_id": plan.thread_id, "sources": task.sources, "seed": task.seed, "user_seed": plan.seed,
                "tasks_per_dialogue": task.index + 1, "task_style": task.task_style,
                "toolset_key": self.lanes.toolset_keys[task.toolset],
                "schema_key": self.lanes.schema_keys.get(joined_name(task.sources), ""),
                "messages": convert_to_messages(task.prefix), "tasks": task.earlier_tasks,
                "task_starts": task.earlier_starts, "calls": task.prefix_calls,
                "planned_tasks": [*task.earlier_tasks, task.task], "reference_time": reference_time_for(task.seed)}

    def worker_share(self, indices: list[int]) -> Any:
        return self.toolsets, self.evaluation, [self.plan[i] for i in indices]

    async def run_shard(self, indices: list[int], on_done: Callable[[], None]) -> None:
        """These trials in this process, on its lanes."""
        await self.lanes.run(self.builder_factory, self, indices, on_done)

    async def run_in_processes(self, indices: list[int], workers: int, on_done: Callable[[], None]) -> None:
        await run_in_processes(self.worker_main, self.builder_factory, self.folder, self.config, self.settings,
                               self.worker_share, indices, workers, on_done)

    def thread_id(self, i: int) -> str:
        return self.plan[i].thread_id

    def resume_command(self) -> str:
        return f"python -m graphs.run evaluate --resume {self.folder.path}"

    async def play(self, graph: Any, cfg: dict[str, Any], i: int) -> None:
        plan = self.plan[i]
        snapshot = await graph.aget_state(cfg)
        if not snapshot.values:  # a new trial: the thread starts where the task began (or before the fault)
            fork = await fork_point(graph, plan.fork_thread) if plan.fork_thread else None
            if fork is None:
                await graph.aupdate_state(cfg, self.start_values(plan), as_node="prepare")
            else:
                checkpoint, writer, values = fork
                await graph.aupdate_state(cfg, {**values, "dialogue_id": plan.thread_id, "user_seed": plan.seed},
                                          as_node=writer)
                self.forked[plan.thread_id] = checkpoint
            await graph.ainvoke(None, cfg, context=self.settings)
        elif snapshot.next or snapshot.tasks:  # cut off part way: go on from its last checkpoint
            await graph.ainvoke(None, cfg, context=self.settings)

    async def finish(self, graph: Any, cfg: dict[str, Any], i: int, ended: Ended) -> None:
        """The trial's line (a failure is the run's error path: counted apart, never scored)."""
        plan = self.plan[i]
        record = self.record(plan, ended.values, ended.error or "", ended.latency)
        await self.lanes.lines.append(layout.TRIALS, record.model_dump(mode="json"),
                                      replacing=plan.id if plan.replaces else None)

    def record(self, plan: TrialPlan, values: dict[str, Any], error: str, latency: float) -> TrialRecord:
        task = plan.task
        base = TrialRecord(id=plan.id, task_id=task.task_id, trial=plan.trial, seed=plan.seed, attempt=plan.attempt,
                           model=self.evaluation.model, latency_s=round(latency, 4), rerun_of_seed=plan.rerun_of_seed,
                           rerun_from=self.forked.get(plan.thread_id, plan.rerun_from or "task start")
                           if plan.attempt else "")
        state = DialogueState.model_validate(values) if values else None
        verdict = next((v for v in state.verdicts if v.task_index == task.index), None) if state else None
        if state is not None:
            base.tokens = {"prompt": state.usage.prompt_tokens, "completion": state.usage.completion_tokens,
                           "llm_calls": state.usage.llm_calls}
        if error or state is None or verdict is None or verdict.verification is None:
            base.error = error or "the trial ended without a verdict"
            base.fault = "infrastructure"
            return base
        start = state.task_starts[-1]
        messages = state.messages[start:]
        calls = [c for c in state.calls if c.task_index == task.index]
        check = verdict.verification
        reward, parts = reward_parts(check, self.evaluation.judge)
        fault, detail = classify(task, check, messages, calls, reward, self.evaluation.judge)
        return base.model_copy(update={
            "messages": [openai_message(m) for m in messages], "calls": calls, "real_diff": check.state.real_diff,
            "reward": reward, "parts": parts, "fault": fault, "fault_detail": detail,
            "judge_valid": check.judge == "pass",
            "user_ended": bool(state.last_user_turn and state.last_user_turn.is_task_complete)})


async def fork_point(graph: Any, thread_id: str) -> tuple[str, str, dict[str, Any]] | None:
    """The checkpoint of a finished trial just before its user's last turn (the one that ended the task):
    its id, the node that wrote it and its values; None where the thread has no such checkpoint."""
    snapshots = [s async for s in graph.aget_state_history({"configurable": {"thread_id": thread_id}})]
    snapshots.reverse()  # oldest first: a checkpoint's writer is what the one before it said came next
    for i in range(len(snapshots) - 1, 0, -1):
        if tuple(snapshots[i].next) == ("user_simulator",) and snapshots[i].values.get("user_turns_in_task"):
            writer = ",".join(snapshots[i - 1].next)
            return snapshots[i].config["configurable"]["checkpoint_id"], writer, dict(snapshots[i].values)
    return None


def read_tasks(folder: layout.RunFiles) -> list[BenchmarkTask]:
    return [BenchmarkTask.model_validate(line) for line in folder.iter_lines(layout.TASKS)]


def _plan(evaluation: EvaluationConfig, tasks: list[BenchmarkTask], done: dict[str, dict[str, Any]],
          rerun_faults: bool) -> list[TrialPlan]:
    plan = []
    for task in tasks:
        for trial in range(evaluation.trials):
            key = f"{task.task_id}#{trial}"
            line = done.get(key)
            if line is None:
                user = 0 if evaluation.same_user else trial
                plan.append(TrialPlan(task=task, trial=trial, seed=trial_seed(evaluation.seed, task.task_id, user)))
            elif line.get("fault") == "infrastructure":  # never scored: its thread goes on from its last checkpoint
                plan.append(TrialPlan(task=task, trial=trial, seed=line["seed"], attempt=int(line.get("attempt") or 0),
                                      rerun_of_seed=line.get("rerun_of_seed"), rerun_from=line.get("rerun_from", ""),
                                      replaces=True))
            elif rerun_faults and line.get("fault") == "simulator":  # a fresh user sample
                attempt = int(line.get("attempt") or 0) + 1
                ended_early = line.get("user_ended") and any(d.startswith("the user never stated")
                                                             for d in line.get("fault_detail", []))
                spoiled = key if not line.get("attempt") else f"{key}~{line['attempt']}"
                plan.append(TrialPlan(task=task, trial=trial, attempt=attempt, rerun_of_seed=line["seed"],
                                      replaces=True,
                                      seed=trial_seed(evaluation.seed, task.task_id, trial, attempt),
                                      fork_thread=spoiled if ended_early else ""))
    return plan


async def run_trials(builder_factory: Callable[[], StateGraph], folder: RunFolder, settings: Settings,
                     console: Console, rerun_faults: bool = False) -> int:
    """Every trial of the evaluation folder not yet written (and, with rerun_faults, each simulator fault
    again with a fresh user); returns how many ran."""
    evaluation = EvaluationConfig.model_validate(folder.read_json(layout.CONFIG))
    tasks = read_tasks(folder)
    done = {line["id"]: line for line in folder.iter_lines(layout.TRIALS)}
    plan = _plan(evaluation, tasks, done, rerun_faults)
    toolsets = {name: layout.load_toolset(folder.file(name)) for name in sorted({t.toolset for t in tasks})}
    batch = TrialBatch(builder_factory, folder, evaluation, settings, toolsets, plan, console)
    total = len(tasks) * evaluation.trials
    with progress_bar(console, "trials", total, total - sum(not p.replaces for p in plan)) as on_done:
        workers = min(evaluation.workers, len(plan))
        if workers > 1:
            await batch.run_in_processes(list(range(len(plan))), workers, on_done)
        elif plan:
            await batch.run_shard(list(range(len(plan))), on_done)
    folder.sort_lines(layout.TRIALS)  # the same bytes whichever trial happened to end first
    return len(plan)


async def evaluate(builder_factory: Callable[[], StateGraph], run_dir: Path, out: Path, settings: Settings,
                   console: Console, trials: int, seed: int = 0, count: int | None = None,
                   task_ids: list[str] | None = None, judge: bool = False, concurrency: int = 8,
                   workers: int = 1, same_user: bool = False) -> RunFolder:
    """A new evaluation folder: the chosen tasks and the run's toolsets copied in, then every trial run."""
    tasks, run_config = select_tasks(run_dir, count, task_ids or [], seed)
    kinds = list(dict.fromkeys([*(run_config.settings.get("source_kinds") or []), *settings.source_kinds]))
    settings = run_settings(settings.model_copy(update={"source_kinds": kinds}),
                            run_config.model_copy(update={"concurrency": concurrency}), executor=False)
    if workers > 1 and settings.backend_kind == "custom":
        raise InputError(f"--workers needs the offline or openai backend, not {settings.backend!r}")
    evaluation = EvaluationConfig(run_dir=str(run_dir), run_config=run_config.model_dump(mode="json"), trials=trials,
                                  seed=seed, task_ids=[t.task_id for t in tasks], judge=judge, concurrency=concurrency,
                                  workers=workers, model=model_under_test(settings), settings=settings.public(),
                                  same_user=same_user)
    with new_run_folder(out, "evaluate") as folder:  # on failure here, no partial folder is left
        for name in sorted({t.toolset for t in tasks}):
            folder.file(name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(run_dir) / name, folder.file(name))
        folder.rewrite_lines(layout.TASKS, [t.model_dump(mode="json") for t in tasks])
        folder.write_json(layout.CONFIG, evaluation.model_dump(mode="json"))
    with folder:
        backend_notice(settings, console)
        console.print(f"{len(tasks)} tasks x {trials} trials of {evaluation.model}; evaluation folder: {out}")
        await run_trials(builder_factory, folder, settings, console)
    return folder


def evaluation_settings(folder: layout.RunFiles, given: Settings | None) -> Settings:
    """The settings an evaluation was started with, the options given now on top."""
    if not folder.file(layout.CONFIG).exists() or layout.run_kind(folder.path) != "evaluate":
        raise InputError(f"not an evaluation folder (no evaluate config.json): {folder.path}")
    evaluation = EvaluationConfig.model_validate(folder.read_json(layout.CONFIG))
    settings = Settings.of_run(evaluation.settings, given)
    kinds = list(dict.fromkeys([*(evaluation.settings.get("source_kinds") or []), *settings.source_kinds]))
    return settings.model_copy(update={"source_kinds": kinds})  # capped by the lanes that run the trials
