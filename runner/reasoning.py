"""Method B runs: profiles, one checkpointed item graph per dialogue, the hardening loop, quality.

Everything that can be wrong with the input (scenario, corpus, embedding model, backend, output
folder) is checked before the run folder is made; a run that fails before its first item leaves no
folder behind. Items are threads of the run's sqlite checkpointer, and so is the hardening loop.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from langchain_core.messages import SystemMessage
from langgraph.graph import StateGraph
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backends.protocols import AgentBackend
from backends.registry import agent_backend_for
from environment.errors import InputError
from knowledge.corpus import load_corpus, read_text_file
from knowledge.embedder import Embedder, get_embedder
from knowledge.retriever import retriever_for
from metrics.ablation import MODES, ablation_table, similarity_plot
from metrics.quality import quality_report
from nodes.reasoning import transcript_of
from nodes.user_generator import generate_profile_pool
from runner import run_folder as rf
from runner.lanes import run_thread
from runner.preflight import backend_notice, check_backend, settle_backend
from runner.persistence import open_checkpointer
from runner.export import openai_message
from runner.run_folder import RunFolder, create_run_dir, new_run_folder
from state.agent import (HardeningEntry, HardeningInput, HardeningState, ItemInput, ItemOutput, ItemState, Profile,
                         QualityReport, ReasoningRunConfig, ReasoningSettings, UserAgentInput, UserAgentState)
from state.dialogue import Usage
from state.persistence import model_types

PROFILES = "profiles.json"
ITEMS = "items.jsonl"
HARDENING = "hardening.json"
QUALITY = "quality.json"
ABLATION = "ablation.json"
ABLATION_DIALOGUES = "ablation_dialogues.jsonl"
SIMILARITY_PLOT = "similarity.png"


STATE_TYPES = sorted({(t.__module__, t.__name__)
                      for root in (UserAgentState, UserAgentInput, ItemState, ItemInput, ItemOutput, HardeningState,
                                   HardeningInput)
                      for t in model_types(root)})


@asynccontextmanager
async def open_reasoning_checkpointer(path: Path) -> AsyncIterator[Any]:
    """The run's sqlite checkpointer, allowed to revive this method's state models (and only those besides
    the dialogue graph's)."""
    async with open_checkpointer(path) as saver:
        yield saver.with_allowlist(STATE_TYPES)


@dataclass
class Prepared:
    scenario: str
    embedder: Embedder
    backend: AgentBackend


async def prepare(config: ReasoningRunConfig, settings: ReasoningSettings, out: Path,
                  existing: bool = False, console: Console | None = None) -> Prepared:
    """Check every input and load what the run needs; nothing is written yet."""
    scenario = read_text_file(Path(config.scenario_file), "scenario file")
    load_corpus(config.corpus)  # one clear line for a missing or empty corpus, before the model loads
    embedder = await asyncio.to_thread(get_embedder, settings.embedding_model)
    await asyncio.to_thread(retriever_for, config.corpus, settings.embedding_model)
    check_backend(settings)
    backend = agent_backend_for(settings)
    await settle_backend(backend, console or Console(quiet=True))
    if not existing and out.exists() and (not out.is_dir() or any(out.iterdir())):
        create_run_dir(out)  # raises the usual one-line error
    return Prepared(scenario, embedder, backend)


def reasoning_backend_notice(settings: ReasoningSettings, console: Console) -> None:
    backend_notice(settings, console, "templated profiles and actions, computed questions, solver strategies")


async def _start_folder(config: ReasoningRunConfig, settings: ReasoningSettings, prepared: Prepared, out: Path,
                        console: Console) -> tuple[RunFolder, list[Profile]]:
    with new_run_folder(out, config.command) as folder:
        folder.write_json(rf.CONFIG, config.model_dump(mode="json"))
        with console.status(f"generating {config.users} user profiles"):
            pool = await generate_profile_pool(prepared.scenario, config.users, prepared.backend, prepared.embedder,
                                               settings, config.seed)
        if not pool.profiles:
            raise RuntimeError("the user generator returned no usable profile")
        folder.write_json(PROFILES, {"profiles": [p.model_dump(mode="json") for p in pool.profiles],
                                     "regenerated_near_duplicates": pool.regenerated,
                                     "threshold": settings.profile_similarity, "notes": pool.notes})
    for note in pool.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"profiles: {len(pool.profiles)} ({pool.regenerated} near-duplicates regenerated); run folder: {out}")
    return folder, pool.profiles


def _recursion_limit(settings: ReasoningSettings) -> int:
    return 3 * settings.max_actions + 2 * settings.max_dialogue_turns + 20


def _progress(console: Console, label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


async def run_items(graph: Any, starts: list[ItemInput], settings: ReasoningSettings, concurrency: int,
                    console: Console, label: str) -> dict[str, ItemState | str]:
    """Run (or finish) each item's thread; the final state of each, or the error that stopped it."""
    results: dict[str, ItemState | str] = {}
    sem = asyncio.Semaphore(concurrency)
    with _progress(console, label) as progress:
        bar = progress.add_task(label, total=len(starts))

        async def one(start: ItemInput) -> None:
            cfg = {"configurable": {"thread_id": start.agent_id}, "recursion_limit": _recursion_limit(settings)}
            async with sem:
                try:
                    await run_thread(graph, start, cfg, settings)
                    results[start.agent_id] = ItemState.model_validate((await graph.aget_state(cfg)).values)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # a failed item is recorded with its reason; the run goes on
                    results[start.agent_id] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            progress.advance(bar)

        await asyncio.gather(*(one(s) for s in starts))
    return results


def dialogue_messages(state: ItemState) -> list[dict[str, Any]]:
    return [openai_message(SystemMessage(content=state.scenario.strip())),
            *(openai_message(m) for m in state.messages)]


def _starts(config: ReasoningRunConfig, profiles: list[Profile], prepared: Prepared, mode: str = "actions",
            make_question: bool = True, tag: str = "") -> list[ItemInput]:
    return [ItemInput(agent_id=config.item_id(i, tag), scenario=prepared.scenario, corpus=config.corpus,
                      profile=profiles[i % len(profiles)], seed=config.item_seed(i), mode=mode,  # type: ignore[arg-type]
                      make_question=make_question)
            for i in range(config.dialogues)]


def easy_ratio_table(curve: list[float]) -> Table:
    table = Table(title="Easy ratio per round")
    table.add_column("round", justify="right")
    table.add_column("easy ratio", justify="right")
    for i, ratio in enumerate(curve):
        table.add_row(str(i), f"{100 * ratio:.1f}%")
    return table


def quality_table(report: QualityReport, title: str) -> Table:
    table = ablation_table({"run": report})
    table.title = title
    return table


async def run_reasoning(config: ReasoningRunConfig, settings: ReasoningSettings, out: Path, console: Console,
                        item_graph: Callable[[], StateGraph], hardening_graph: Callable[[], StateGraph]
                        ) -> dict[str, Any]:
    """Items first (one thread each), then the hardening loop over their questions."""
    prepared = await prepare(config, settings, out, console=console)
    reasoning_backend_notice(settings, console)
    folder, profiles = await _start_folder(config, settings, prepared, out, console)
    with folder:  # owned since it was made
        return await _items_then_hardening(folder, config, settings, prepared, profiles, console, item_graph,
                                           hardening_graph)


async def resume_reasoning(run_dir: Path, settings: ReasoningSettings | None, console: Console,
                           item_graph: Callable[[], StateGraph], hardening_graph: Callable[[], StateGraph]
                           ) -> dict[str, Any]:
    """Finish an interrupted `reasoning` run: every item and the hardening loop go on from their last
    checkpoint; the output files are written anew from the final states."""
    folder = RunFolder(run_dir)
    if not folder.file(rf.CONFIG).exists() or not folder.file(PROFILES).exists():
        raise InputError(f"not a reasoning run folder (no {rf.CONFIG} or {PROFILES}): {run_dir}")
    config = ReasoningRunConfig.model_validate(folder.read_json(rf.CONFIG))
    if config.command != "reasoning":
        raise InputError(f"{run_dir} is an {config.command} run; only reasoning runs can be resumed")
    settings = ReasoningSettings.of_run(config.settings, settings)
    profiles = [Profile.model_validate(p) for p in folder.read_json(PROFILES)["profiles"]]
    with folder.own("resume"):
        prepared = await prepare(config, settings, run_dir, existing=True, console=console)
        reasoning_backend_notice(settings, console)
        return await _items_then_hardening(folder, config, settings, prepared, profiles, console, item_graph,
                                           hardening_graph)


async def _items_then_hardening(folder: RunFolder, config: ReasoningRunConfig, settings: ReasoningSettings,
                                prepared: Prepared, profiles: list[Profile], console: Console,
                                item_graph: Callable[[], StateGraph], hardening_graph: Callable[[], StateGraph]
                                ) -> dict[str, Any]:
    starts = _starts(config, profiles, prepared)
    async with open_reasoning_checkpointer(folder.file(rf.CHECKPOINTS)) as saver:
        items = await run_items(item_graph().compile(checkpointer=saver), starts, settings,
                                config.concurrency, console, "items")
        entries = []
        for start in starts:
            state = items[start.agent_id]
            if isinstance(state, ItemState) and state.question is not None:
                entries.append(HardeningEntry(item_id=start.agent_id, scenario=state.scenario, profile=state.profile,
                                              actions=state.actions, transcript=transcript_of(state.messages),
                                              question=state.question))
        final: HardeningState | None = None
        if entries:
            final = await run_hardening(hardening_graph().compile(checkpointer=saver), entries, config,
                                        settings, console)
    by_id = {e.item_id: e for e in (final.entries if final else [])}
    records, rejected = [], []
    for start in starts:
        state = items[start.agent_id]
        if isinstance(state, str) or start.agent_id not in by_id:
            reason = state if isinstance(state, str) else "no reasoning question was produced"
            rejected.append({"id": start.agent_id, "reason": reason})
            continue
        records.append(item_record(start.agent_id, state, by_id[start.agent_id], config, settings))
    # every line follows from the final states, so the files are written whole (a resume rewrites them)
    folder.rewrite_lines(ITEMS, records)
    folder.rewrite_lines(rf.REJECTED, rejected)
    curve = final.easy_ratio if final else []
    summary = {
        "easy_ratio": curve, "rounds": (final.round if final else 0), "max_rounds": settings.max_rounds,
        "threshold": settings.hard_threshold, "solvers": settings.solver_names(),
        "hard_bank": [b.model_dump(mode="json") for b in final.bank] if final else [],
        "final_status": _count([e.status or "" for e in final.entries]) if final else {},
        "usage": (final.usage if final else Usage()).model_dump(),
    }
    folder.write_json(HARDENING, summary)
    done = [items[s.agent_id] for s in starts if isinstance(items[s.agent_id], ItemState)]
    report, _ = await quality_report([transcript_of(s.messages) for s in done], prepared.scenario,  # type: ignore[union-attr]
                                     prepared.embedder, prepared.backend)
    folder.write_json(QUALITY, report.summary())
    console.print(easy_ratio_table(curve))
    console.print(quality_table(report, "Dialogue quality"))
    console.print(f"wrote {len(by_id)} items to {folder.file(ITEMS)}; easy-ratio curve in {folder.file(HARDENING)}, "
                  f"quality in {folder.file(QUALITY)}")
    return {"easy_ratio": curve, "quality": report.summary(), "items": len(by_id)}


def _count(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


async def run_hardening(graph: Any, entries: list[HardeningEntry], config: ReasoningRunConfig,
                        settings: ReasoningSettings, console: Console) -> HardeningState:
    start = HardeningInput(run_id=config.run_id, entries=entries, solvers=settings.solver_names(),
                           max_rounds=settings.max_rounds, threshold=settings.hard_threshold, seed=config.seed,
                           backend=settings.backend)
    cfg = {"configurable": {"thread_id": f"{config.run_id}-hardening"},
           "recursion_limit": 3 * settings.max_rounds + 10}
    with _progress(console, "hardening rounds") as progress:
        bar = progress.add_task("rounds", total=settings.max_rounds + 1)
        snapshot = await graph.aget_state(cfg)
        first = None if snapshot.values else start
        async for update in graph.astream(first, cfg, context=settings, stream_mode="updates"):
            if "triage" in update:
                progress.advance(bar)
        progress.update(bar, completed=settings.max_rounds + 1)
    return HardeningState.model_validate((await graph.aget_state(cfg)).values)


def item_record(item_id: str, state: ItemState, entry: HardeningEntry, config: ReasoningRunConfig,
                settings: ReasoningSettings) -> dict[str, Any]:
    question = entry.question
    return {
        "id": item_id,
        "profile": state.profile.model_dump(mode="json") if state.profile else None,
        "actions": [a.model_dump(mode="json") for a in state.actions],
        "memory": state.memory.model_dump(mode="json"),
        "memory_sizes": [m.size for m in state.memory_history],
        "messages": dialogue_messages(state),
        "question": question.question,
        "kind": question.kind,
        "label": question.label,
        "derivation": question.derivation,
        "solver_answers": [a.model_dump() for a in entry.answers],
        "accuracy": entry.accuracy,
        "status": entry.status,
        "difficulty_history": [r.model_dump() for r in entry.history],
        "metadata": {"run_id": config.run_id, "backend": settings.backend, "seed": state.seed,
                     "template": question.template, "reference": question.reference,
                     "facts": [f.model_dump() for f in question.facts],
                     "usage": state.usage.model_dump(),
                     **({"model": settings.model} if settings.uses_model else {})},
    }


async def run_ablation(config: ReasoningRunConfig, settings: ReasoningSettings, out: Path, console: Console,
                       item_graph: Callable[[], StateGraph]) -> dict[str, QualityReport]:
    prepared = await prepare(config, settings, out, console=console)
    reasoning_backend_notice(settings, console)
    folder, profiles = await _start_folder(config, settings, prepared, out, console)
    with folder:  # owned since it was made
        return await _ablation_modes(folder, config, settings, prepared, profiles, console, item_graph)


async def _ablation_modes(folder: RunFolder, config: ReasoningRunConfig, settings: ReasoningSettings,
                          prepared: Prepared, profiles: list[Profile], console: Console,
                          item_graph: Callable[[], StateGraph]) -> dict[str, QualityReport]:
    reports: dict[str, QualityReport] = {}
    async with open_reasoning_checkpointer(folder.file(rf.CHECKPOINTS)) as saver:
        graph = item_graph().compile(checkpointer=saver)
        for mode in MODES:
            starts = _starts(config, profiles, prepared, mode=mode, make_question=False, tag=mode)
            items = await run_items(graph, starts, settings, config.concurrency, console, MODES[mode])
            done = []
            for start in starts:
                state = items[start.agent_id]
                if isinstance(state, str):
                    folder.append_line(rf.REJECTED, {"id": start.agent_id, "mode": mode, "reason": state})
                    continue
                done.append(state)
                folder.append_line(ABLATION_DIALOGUES, {"id": start.agent_id, "mode": mode,
                                                        "messages": dialogue_messages(state)})
            reports[mode], _ = await quality_report([transcript_of(s.messages) for s in done], prepared.scenario,
                                                    prepared.embedder, prepared.backend)
    folder.write_json(ABLATION, {mode: r.model_dump(mode="json") for mode, r in reports.items()})
    plot = similarity_plot(reports, folder.file(SIMILARITY_PLOT))
    console.print(ablation_table(reports))
    console.print(f"wrote {folder.file(ABLATION)} and the similarity plot {plot}")
    return reports
