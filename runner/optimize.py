"""`optimize` runs: the users and their action sequences are made once, then the optimizer graph
(one checkpointed thread) evolves metric trees and tunes the prompts; the outputs are written whole
from its final state, so `resume` finishes an interrupted run with the same winner.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from langgraph.graph import StateGraph
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from environment.errors import InputError
from runner import run_folder as rf
from runner.persistence import open_checkpointer
from runner.reasoning import STATE_TYPES, Prepared, reasoning_backend_notice, prepare
from runner.run_folder import RunFolder, new_run_folder
from nodes.user_generator import generate_profile_pool
from state.agent import ItemInput, ReasoningSettings, UserAgentState
from state.optimize import Candidate, HScore, OptimizeInput, OptimizeRunConfig, OptimizeState
from state.persistence import model_types

METRIC_TREE = "metric_tree.json"
PROMPT_PARAMS = "prompt_params.json"
HISTORY = "history.jsonl"
TABLE = "quality_table.json"

OPTIMIZER_TYPES = sorted(set(STATE_TYPES) | {(t.__module__, t.__name__) for root in (OptimizeState, OptimizeInput)
                                             for t in model_types(root)})


@asynccontextmanager
async def open_optimizer_checkpointer(path: Path) -> AsyncIterator[Any]:
    async with open_checkpointer(path) as saver:
        yield saver.with_allowlist(OPTIMIZER_TYPES)


async def action_sequences(config: OptimizeRunConfig, settings: ReasoningSettings, prepared: Prepared,
                           agent_graph: Callable[[], StateGraph], console: Console) -> list[ItemInput]:
    """One user per dialogue of an evaluation, each with the action sequence its agent took: the fixed
    input x every evaluation makes its dialogues from."""
    with console.status(f"generating {config.users} user profiles and their actions"):
        pool = await generate_profile_pool(prepared.scenario, config.users, prepared.backend, prepared.embedder,
                                           settings, config.seed)
        if not pool.profiles:
            raise RuntimeError("the user generator returned no usable profile")
        graph = agent_graph().compile()
        starts = []
        for i in range(config.budget.dialogues):
            start = ItemInput(agent_id=config.item_id(i), scenario=prepared.scenario, corpus=config.corpus,
                              profile=pool.profiles[i % len(pool.profiles)], seed=config.item_seed(i))
            final = UserAgentState.model_validate(await graph.ainvoke(
                start.model_dump(include=set(UserAgentState.model_fields) & set(ItemInput.model_fields)),
                {"recursion_limit": 3 * settings.max_actions + 10}, context=settings))
            starts.append(start.model_copy(update={"actions": final.actions, "memory": final.memory,
                                                   "agent_done": True, "make_question": False}))
    return starts


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


async def run_optimizer(graph: Any, start: OptimizeInput | None, config: OptimizeRunConfig,
                        settings: ReasoningSettings, console: Console) -> OptimizeState:
    """Run (or finish) the optimizer's thread; a bar for generations and one for dialogue batches."""
    budget = config.budget
    cfg = {"configurable": {"thread_id": f"{config.run_id}-optimizer"}, "recursion_limit": 10_000}
    trees = 3 + budget.population * budget.generations
    snapshot = await graph.aget_state(cfg)
    done = OptimizeState.model_validate(snapshot.values) if snapshot.values else None
    with _progress(console) as progress:
        gens = progress.add_task("generations", total=budget.generations)
        evals = progress.add_task("evaluations (dialogue batches)", total=1 + trees * budget.evaluations_per_tree())
        if done is not None:  # resumed: count what the checkpoint already holds
            progress.update(gens, completed=done.generation)
            progress.update(evals, completed=(1 if done.unoptimized else 0) + sum(
                3 * len(c.steps) + (c.score is not None) for c in done.evaluated) + sum(
                3 * len(c.steps) for c in done.population if c.score is None))
        async for update in graph.astream(start if done is None else None, cfg, context=settings,
                                          stream_mode="updates"):
            node = next(iter(update), "")
            progress.advance(evals, 3 if node == "tune" else 1 if node in ("judge", "score_unoptimized") else 0)
            if node == "select":
                progress.advance(gens)
        progress.update(gens, completed=budget.generations)
    return OptimizeState.model_validate((await graph.aget_state(cfg)).values)


def table_rows(state: OptimizeState) -> list[tuple[str, HScore, Candidate | None]]:
    """The paper's Table 2 for this scenario: unoptimized, the three single-metric trees, the evolved tree."""
    assert state.unoptimized is not None and state.winner is not None
    by_id = {c.candidate_id: c for c in state.evaluated}
    seeds = {c.name: c for c in state.evaluated if c.name}
    rows: list[tuple[str, HScore, Candidate | None]] = [("Unoptimized", state.unoptimized, None)]
    for name in ("distinct-n", "TF-IDF", "embedding"):
        rows.append((name, seeds[name].score, seeds[name]))  # type: ignore[arg-type]
    winner = by_id[state.winner]
    rows.append(("Evolved tree", winner.score, winner))  # type: ignore[arg-type]
    return rows


def quality_table(state: OptimizeState, scenario_name: str) -> Table:
    table = Table(title=f"Dialogue quality by the metric the prompts were tuned against ({scenario_name})")
    for column in ("Metric", "Coherence", "Fluency", "Diversity", "Avg"):
        table.add_column(column, justify="left" if column == "Metric" else "right")
    for label, score, _ in table_rows(state):
        table.add_row(label, *(f"{v:.2f}" for v in score.row().values()))
    return table


def write_outputs(folder: RunFolder, state: OptimizeState) -> dict[str, Any]:
    winner = next(c for c in state.evaluated if c.candidate_id == state.winner)
    folder.rewrite_lines(HISTORY, [c.record() for c in state.evaluated])
    folder.write_json(PROMPT_PARAMS, {"candidate": winner.candidate_id, **winner.params.summary()})
    tree = {"candidate": winner.candidate_id, "generation": winner.generation, "formula": winner.tree.formula(),
            "depth": winner.tree.depth(), "h": winner.score.row() if winner.score else None,
            "tree": winner.tree.model_dump(mode="json")}
    folder.write_json(METRIC_TREE, tree)
    rows = [{"metric": label, **score.row(), "candidate": c.candidate_id if c else None,
             "formula": c.tree.formula() if c else None} for label, score, c in table_rows(state)]
    folder.write_json(TABLE, rows)
    return {"winner": winner.candidate_id, "formula": tree["formula"], "table": rows}


async def run_optimize(config: OptimizeRunConfig, settings: ReasoningSettings, out: Path, console: Console,
                       optimizer_graph: Callable[[], StateGraph], agent_graph: Callable[[], StateGraph]
                       ) -> dict[str, Any]:
    prepared = await prepare(config, settings, out)  # type: ignore[arg-type]
    reasoning_backend_notice(settings, console)
    with new_run_folder(out, "optimize") as folder:
        folder.write_json(rf.CONFIG, config.model_dump(mode="json"))
    with folder:  # owned since it was made
        return await _optimize(folder, config, settings, prepared, console, optimizer_graph, agent_graph)


async def resume_optimize(run_dir: Path, console: Console, optimizer_graph: Callable[[], StateGraph],
                          agent_graph: Callable[[], StateGraph]) -> dict[str, Any]:
    folder = RunFolder(run_dir)
    if not folder.file(rf.CONFIG).exists():
        raise InputError(f"not an optimize run folder (no {rf.CONFIG}): {run_dir}")
    config = OptimizeRunConfig.model_validate(folder.read_json(rf.CONFIG))
    settings = ReasoningSettings.of_run(config.settings)
    with folder.own("resume"):
        prepared = await prepare(config, settings, run_dir, existing=True)  # type: ignore[arg-type]
        reasoning_backend_notice(settings, console)
        return await _optimize(folder, config, settings, prepared, console, optimizer_graph, agent_graph)


async def _optimize(folder: RunFolder, config: OptimizeRunConfig, settings: ReasoningSettings, prepared: Prepared,
                    console: Console, optimizer_graph: Callable[[], StateGraph],
                    agent_graph: Callable[[], StateGraph]) -> dict[str, Any]:
    async with open_optimizer_checkpointer(folder.file(rf.CHECKPOINTS)) as saver:
        graph = optimizer_graph().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": f"{config.run_id}-optimizer"}}
        start = None
        if not (await graph.aget_state(cfg)).values:  # not started yet: make the users and their actions first
            starts = await action_sequences(config, settings, prepared, agent_graph, console)
            start = OptimizeInput(run_id=config.run_id, scenario=prepared.scenario, starts=starts,
                                  budget=config.budget, seed=config.seed, backend=settings.backend,
                                  concurrency=config.concurrency)
        final = await run_optimizer(graph, start, config, settings, console)
    summary = await asyncio.to_thread(write_outputs, folder, final)
    console.print(quality_table(final, Path(config.scenario_file).parent.name))
    console.print(f"evolved metric ({summary['winner']}): {summary['formula']}")
    console.print(f"wrote {folder.file(METRIC_TREE)}, {folder.file(PROMPT_PARAMS)} and {folder.file(HISTORY)}")
    return summary
