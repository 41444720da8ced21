"""The trilevel optimizer's nodes: the outer level evolves metric trees, the two inner levels tune θ
(the user agent's multi-turn prompt) and φ (the assistant's single-turn prompt) against a tree with
two-point zeroth-order steps, and the expert judge h scores what the tuned prompts produce.

Every random draw comes from a key made of the seed and where it is drawn (generation, tree, step),
never from a running generator, so a run resumed from any checkpoint draws what it would have drawn.
The dialogue graph is handed in by the graph that wires these nodes.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Awaitable, Callable

import numpy as np
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from backends.protocols import AgentBackend, QualityJudgeRequest
from knowledge.embedder import get_embedder
from metrics.base import Dialogue, Turn, exchanges, measure, transcript
from metrics.tree import BASELINES, MetricNode, offspring, random_tree
from nodes.user_agent import agent_backend_of, reasoning_settings
from state.agent import ItemInput, ReasoningSettings
from state.config import Settings
from state.optimize import Candidate, HScore, OptimizeState, ZOStep
from state.prompt_params import PromptParams, PromptStyle

JUDGE_SEED = 104_729  # the judge's dialogues use their own seeds, the same for every tree and the baseline


def rng_for(seed: int, *where: object) -> random.Random:
    return random.Random(":".join(map(str, (seed, *where))))


def direction(seed: int, size: int, *where: object) -> np.ndarray:
    """u ~ N(0, I), drawn from its own key."""
    return np.random.default_rng(rng_for(seed, *where).getrandbits(64)).standard_normal(size)


def zo_update(vector: np.ndarray, value: float, perturbed: float, u: np.ndarray, mu: float, lr: float) -> np.ndarray:
    """One ascent step of length `lr` along the two-point estimate ∇ ≈ [f(x + μu) − f(x)] / μ · u.

    The step is normalized because metric trees differ in scale by orders of magnitude (a product of
    small rates next to a sum of counts): a raw step would barely move the prompts under one tree and
    throw them to their limits under another. No change in f, no step."""
    gradient = (perturbed - value) / mu * u
    norm = float(np.linalg.norm(gradient))
    return vector + lr * gradient / norm if norm > 1e-12 else vector.copy()


async def zo_step(vector: np.ndarray, objective: Callable[[np.ndarray], Awaitable[float]], u: np.ndarray,
                  mu: float, lr: float) -> tuple[np.ndarray, float, float]:
    """Evaluate the objective at x and x + μu and step; returns (new x, f(x), f(x + μu))."""
    value, perturbed = await asyncio.gather(objective(vector), objective(vector + mu * u))
    return zo_update(vector, value, perturbed, u, mu, lr), value, perturbed


# ---------------------------------------------------------------- dialogues and scores

def turns_of(messages: list[Any]) -> Dialogue:
    turns = []
    for m in messages:
        if isinstance(m, HumanMessage):
            turns.append(Turn(speaker="user", text=m.text))
        elif isinstance(m, AIMessage) and m.text.strip():
            turns.append(Turn(speaker="assistant", text=m.text))
    return turns


async def generate_batch(dialogue_graph: Any, starts: list[ItemInput], params: PromptParams,
                         settings: ReasoningSettings, seed_offset: int,
                         running: asyncio.Semaphore | None = None) -> list[Dialogue]:
    """One dialogue per start, with these prompt parameters; the same offset gives the same turn-level draws
    (common random numbers, so two evaluations differ by their parameters only). `running` bounds how
    many dialogues run at once."""
    context = settings.model_copy(update={"prompt_params": params})
    limit = 2 * settings.max_dialogue_turns + 10
    running = running or asyncio.Semaphore(len(starts) or 1)

    async def one(start: ItemInput) -> Dialogue:
        item = start.model_copy(update={"seed": start.seed + seed_offset, "make_question": False})
        async with running:
            final = await dialogue_graph.ainvoke(item, {"recursion_limit": limit}, context=context)
        return turns_of(final["messages"])

    return list(await asyncio.gather(*(one(s) for s in starts)))


def tree_score(tree: MetricNode, batch: list[Dialogue], settings: ReasoningSettings) -> float:
    leaves = tree.leaves()
    embedder = get_embedder(settings.embedding_model) if "embedding_similarity" in leaves else None
    return round(tree.evaluate(measure(batch, leaves, embedder)), 6)


async def judge_batch(backend: AgentBackend, scenario: str, batch: list[Dialogue]) -> HScore:
    """h: the expert judge's mean coherence, fluency and diversity over the dialogues."""
    scores = await asyncio.gather(*(backend.judge_quality(QualityJudgeRequest(scenario=scenario,
                                                                              transcript=transcript(d)))
                                    for d in batch))
    n = len(scores)
    return HScore(coherence=round(sum(s.coherence for s, _ in scores) / n, 4),
                  fluency=round(sum(s.fluency for s, _ in scores) / n, 4),
                  diversity=round(sum(s.diversity for s, _ in scores) / n, 4))


async def judged(dialogue_graph: Any, state: OptimizeState, params: PromptParams,
                 runtime: Runtime[Settings]) -> HScore:
    settings = reasoning_settings(runtime)
    batch = await generate_batch(dialogue_graph, state.starts, params, settings, JUDGE_SEED,
                                 asyncio.Semaphore(state.concurrency))
    return await judge_batch(agent_backend_of(runtime, state.backend), state.scenario, batch)


# ---------------------------------------------------------------- the nodes

async def score_unoptimized(state: OptimizeState, runtime: Runtime[Settings], *, dialogue_graph: Any) -> dict:
    """h of the default prompt parameters: the table's first row."""
    return {"unoptimized": await judged(dialogue_graph, state, PromptParams(), runtime)}


async def seed_population(state: OptimizeState, runtime: Runtime[Settings]) -> dict:
    """Generation 0: the single-metric trees (the paper's baselines, judged the same way as every other
    tree) and `population` random trees of depth d."""
    budget = state.budget
    seeds = [Candidate(candidate_id=f"g0-{name}", generation=0, tree=tree, name=name, strategy="seed")
             for name, tree in BASELINES.items()]
    randoms = [Candidate(candidate_id=f"g0-c{i}", generation=0, strategy="random",
                         tree=random_tree(budget.depth, rng_for(state.seed, "init", i)))
               for i in range(budget.population)]
    return {"population": [*seeds, *randoms], "current": 0, "generation": 0}


async def tune(state: OptimizeState, runtime: Runtime[Settings], *, dialogue_graph: Any) -> dict:
    """One zeroth-order step on θ and on φ for the current tree (f on whole dialogues, g on exchanges)."""
    settings = reasoning_settings(runtime)
    budget = state.budget
    candidate = state.population[state.current]
    step = len(candidate.steps)
    theta, phi = candidate.params.user.vector(), candidate.params.assistant.vector()
    u1 = direction(state.seed, len(theta), candidate.candidate_id, step, "theta")
    u2 = direction(state.seed, len(phi), candidate.candidate_id, step, "phi")
    offset = 1 + step  # this step's own turn-level draws, shared by its three batches

    def params(t: np.ndarray, p: np.ndarray) -> PromptParams:
        return PromptParams(user=PromptStyle.from_vector("user", t), assistant=PromptStyle.from_vector("assistant", p))

    running = asyncio.Semaphore(state.concurrency)
    base, moved_theta, moved_phi = await asyncio.gather(
        generate_batch(dialogue_graph, state.starts, params(theta, phi), settings, offset, running),
        generate_batch(dialogue_graph, state.starts, params(theta + budget.mu * u1, phi), settings, offset, running),
        generate_batch(dialogue_graph, state.starts, params(theta, phi + budget.mu * u2), settings, offset, running))
    f, f_theta = tree_score(candidate.tree, base, settings), tree_score(candidate.tree, moved_theta, settings)
    g, g_phi = (tree_score(candidate.tree, exchanges(base), settings),
                tree_score(candidate.tree, exchanges(moved_phi), settings))
    tuned = params(zo_update(theta, f, f_theta, u1, budget.mu, budget.lr),
                   zo_update(phi, g, g_phi, u2, budget.mu, budget.lr))
    record = ZOStep(step=step, f=f, f_theta=f_theta, g=g, g_phi=g_phi,
                    theta=[round(float(v), 6) for v in tuned.user.vector()],
                    phi=[round(float(v), 6) for v in tuned.assistant.vector()])
    population = list(state.population)
    population[state.current] = candidate.model_copy(update={"params": tuned, "steps": [*candidate.steps, record]})
    return {"population": population}


def best(candidates: list[Candidate]) -> Candidate:
    """The highest mean under h; ties go to the earlier tree."""
    return max(candidates, key=lambda c: (c.score.mean if c.score else float("-inf"), -candidates.index(c)))


async def judge(state: OptimizeState, runtime: Runtime[Settings], *, dialogue_graph: Any) -> dict:
    """h scores the dialogues the current tree's tuned prompts produce; the best tree so far is kept."""
    candidate = state.population[state.current]
    scored = candidate.model_copy(update={"score": await judged(dialogue_graph, state, candidate.params, runtime)})
    population = list(state.population)
    population[state.current] = scored
    evaluated = [*state.evaluated, scored]
    return {"population": population, "evaluated": evaluated, "current": state.current + 1,
            "winner": best(evaluated).candidate_id}


async def select(state: OptimizeState, runtime: Runtime[Settings]) -> dict:
    """The best tree so far is the parent; each offspring is a copy, a new tree or a mutation of it."""
    parent = next(c for c in state.evaluated if c.candidate_id == state.winner)
    generation = state.generation + 1
    children = []
    for i in range(state.budget.population):
        child = offspring(parent.tree, state.budget.depth, rng_for(state.seed, "offspring", generation, i))
        children.append(Candidate(candidate_id=f"g{generation}-c{i}", generation=generation, tree=child.tree,
                                  parent=parent.candidate_id, strategy=child.strategy, mutation=child.mutation))
    return {"population": children, "current": 0, "generation": generation}
