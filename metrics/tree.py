"""Metric trees: the outer level's search space. The root gives the score, inner nodes are operators,
leaves are base metrics (metrics/base.py); weighted sums carry the parameters ω.

Trees are pydantic models (saved as JSON). Every operation here is pure: it returns a new tree, and
draws its random choices from the `random.Random` it is given, so a seed fixes the search.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Literal

from pydantic import BaseModel, Field, model_validator

from metrics.base import BASE_METRICS

EPS = 1e-6


def _div(a: float, b: float) -> float:
    """Protected division: a / b, or a itself when b is (nearly) zero."""
    return a / b if abs(b) > EPS else a


def _log1p(a: float) -> float:
    """Protected log1p: sign(a) · log(1 + |a|), defined everywhere."""
    return math.copysign(math.log1p(abs(a)), a)


def _sqrt(a: float) -> float:
    """Protected square root: sign(a) · sqrt(|a|)."""
    return math.copysign(math.sqrt(abs(a)), a)


# name -> (arity, function of the children's values; wsum takes the weights first)
OPERATORS: dict[str, tuple[int, Callable[..., float]]] = {
    "add": (2, lambda a, b: a + b),
    "sub": (2, lambda a, b: a - b),
    "mul": (2, lambda a, b: a * b),
    "div": (2, _div),
    "neg": (1, lambda a: -a),
    "log1p": (1, _log1p),
    "sqrt": (1, _sqrt),
    "min": (2, min),
    "max": (2, max),
    "wsum": (3, None),  # type: ignore[dict-item]  # Σ ω_i · child_i
}
INFIX = {"add": "+", "sub": "-", "mul": "*"}

FORMULA_FUNCTIONS: dict[str, Callable[..., float]] = {"div": _div, "log1p": _log1p, "sqrt": _sqrt, "min": min,
                                                      "max": max}
"""The functions a formula calls besides + - *: evaluate one with these and the leaf values as names."""

Mutation = Literal["insertion", "deletion", "replacement"]
Strategy = Literal["seed", "random", "copy", "reinit", "mutation"]


class MetricNode(BaseModel):
    op: str = Field(description="An operator name, or 'leaf'.")
    metric: str | None = Field(None, description="The base metric of a leaf.")
    weights: list[float] = Field(default_factory=list, description="ω of a wsum node, one per child.")
    children: list["MetricNode"] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> "MetricNode":
        if self.op == "leaf":
            if self.metric not in BASE_METRICS or self.children:
                raise ValueError(f"a leaf names one base metric and has no children (got {self.metric!r})")
            return self
        if self.op not in OPERATORS:
            raise ValueError(f"unknown operator {self.op!r} (known: {', '.join(OPERATORS)})")
        arity = OPERATORS[self.op][0]
        if len(self.children) != arity:
            raise ValueError(f"operator {self.op} takes {arity} children, not {len(self.children)}")
        if self.op == "wsum" and len(self.weights) != arity:
            raise ValueError(f"wsum needs {arity} weights")
        return self

    # ------------------------------------------------------------ reading

    @property
    def is_leaf(self) -> bool:
        return self.op == "leaf"

    def depth(self) -> int:
        """Edges on the longest root-to-leaf path (a lone leaf has depth 0)."""
        return 0 if self.is_leaf else 1 + max(c.depth() for c in self.children)

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.children)

    def leaves(self) -> set[str]:
        return {self.metric} if self.is_leaf else set().union(*(c.leaves() for c in self.children))  # type: ignore[arg-type]

    def paths(self, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
        """Every node's path (child indices from the root), the root's being ()."""
        found = [prefix]
        for i, child in enumerate(self.children):
            found.extend(child.paths((*prefix, i)))
        return found

    def at(self, path: tuple[int, ...]) -> "MetricNode":
        node = self
        for i in path:
            node = node.children[i]
        return node

    def replaced(self, path: tuple[int, ...], new: "MetricNode") -> "MetricNode":
        """A copy of the tree with the node at `path` replaced by `new`."""
        if not path:
            return new
        children = list(self.children)
        children[path[0]] = children[path[0]].replaced(path[1:], new)
        return self.model_copy(update={"children": children})

    def evaluate(self, values: dict[str, float]) -> float:
        """The score, given every leaf's base-metric value."""
        if self.is_leaf:
            return float(values[self.metric])  # type: ignore[index]
        args = [c.evaluate(values) for c in self.children]
        if self.op == "wsum":
            return sum(w * a for w, a in zip(self.weights, args))
        return float(OPERATORS[self.op][1](*args))

    def formula(self) -> str:
        """A readable formula that evaluates to the same value (see FORMULA_FUNCTIONS)."""
        if self.is_leaf:
            return str(self.metric)
        parts = [c.formula() for c in self.children]
        if self.op in INFIX:
            return f"({parts[0]} {INFIX[self.op]} {parts[1]})"
        if self.op == "neg":
            return f"(-{parts[0]})"
        if self.op == "wsum":
            return "(" + " + ".join(f"{w!r}*{p}" for w, p in zip(self.weights, parts)) + ")"
        return f"{self.op}({', '.join(parts)})"


# ---------------------------------------------------------------- building

def leaf(metric: str) -> MetricNode:
    return MetricNode(op="leaf", metric=metric)


def node(op: str, *children: MetricNode, weights: list[float] | None = None) -> MetricNode:
    return MetricNode(op=op, children=list(children), weights=weights or [])


def random_leaf(rng: random.Random) -> MetricNode:
    return leaf(rng.choice(sorted(BASE_METRICS)))


def random_operator_node(op: str, children: list[MetricNode], rng: random.Random) -> MetricNode:
    weights = [round(rng.uniform(-1.0, 1.0), 4) for _ in children] if op == "wsum" else []
    return MetricNode(op=op, children=children, weights=weights)


def random_tree(depth: int, rng: random.Random, leaf_chance: float = 0.4) -> MetricNode:
    """Expand from the root: sample an operator, add children by its arity; one child on a designated
    path keeps expanding until that root-to-leaf path reaches `depth`, the others stop at random (never
    deeper than `depth`)."""

    def grow(level: int, on_path: bool) -> MetricNode:
        if level == depth or (not on_path and rng.random() < leaf_chance):
            return random_leaf(rng)
        op = rng.choice(sorted(OPERATORS))
        arity = OPERATORS[op][0]
        deep = rng.randrange(arity) if on_path else -1
        return random_operator_node(op, [grow(level + 1, i == deep) for i in range(arity)], rng)

    return grow(0, True)


BASELINES: dict[str, MetricNode] = {
    "distinct-n": node("add", leaf("distinct_1"), leaf("distinct_2")),
    "TF-IDF": node("neg", leaf("tfidf_similarity")),
    "embedding": node("neg", leaf("embedding_similarity")),
}
"""The single-metric trees of the paper's Table 2 (scores to maximize: distinct n-grams up, pairwise
similarity down)."""


# ---------------------------------------------------------------- mutations

def _fill(op: str, keep: list[MetricNode], rng: random.Random) -> MetricNode:
    """`op` over the kept children, cut or topped up with random leaves to its arity."""
    arity = OPERATORS[op][0]
    children = list(keep[:arity]) + [random_leaf(rng) for _ in range(arity - len(keep))]
    return random_operator_node(op, children, rng)


def insertion(tree: MetricNode, rng: random.Random) -> MetricNode:
    """A random operator goes between a non-root node and its parent; the node becomes one of its
    children, random leaves fill the others (a lone leaf gets its operator above it)."""
    paths = [p for p in tree.paths() if p] or [()]
    path = rng.choice(paths)
    op = rng.choice(sorted(OPERATORS))
    arity = OPERATORS[op][0]
    moved = tree.at(path)
    children = [random_leaf(rng) for _ in range(arity)]
    children[rng.randrange(arity)] = moved
    return tree.replaced(path, random_operator_node(op, children, rng))


def deletion(tree: MetricNode, rng: random.Random) -> MetricNode:
    """An intermediate node is removed and one of its children takes its place under its parent (the
    root when the tree has no other inner node; a lone leaf is returned unchanged)."""
    inner = [p for p in tree.paths() if not tree.at(p).is_leaf]
    paths = [p for p in inner if p] or inner
    if not paths:
        return tree
    path = rng.choice(paths)
    removed = tree.at(path)
    return tree.replaced(path, rng.choice(removed.children))


def replacement(tree: MetricNode, rng: random.Random) -> MetricNode:
    """A node's operator is swapped for another, its children cut or topped up to the new arity (a
    leaf's metric is swapped when the tree has no operator)."""
    inner = [p for p in tree.paths() if not tree.at(p).is_leaf]
    if not inner:
        others = sorted(set(BASE_METRICS) - {tree.metric})
        return leaf(rng.choice(others))
    path = rng.choice(inner)
    old = tree.at(path)
    op = rng.choice(sorted(set(OPERATORS) - {old.op}))
    return tree.replaced(path, _fill(op, old.children, rng))


MUTATIONS: dict[str, Callable[[MetricNode, random.Random], MetricNode]] = {
    "insertion": insertion, "deletion": deletion, "replacement": replacement}


class Offspring(BaseModel):
    tree: MetricNode
    strategy: Strategy
    mutation: Mutation | None = None


def offspring(parent: MetricNode, depth: int, rng: random.Random) -> Offspring:
    """One child of the parent: a copy, a fresh tree, or a mutation (each a third of the time)."""
    strategy = rng.choice(["copy", "reinit", "mutation"])
    if strategy == "copy":
        return Offspring(tree=parent.model_copy(deep=True), strategy="copy")
    if strategy == "reinit":
        return Offspring(tree=random_tree(depth, rng), strategy="reinit")
    name = rng.choice(sorted(MUTATIONS))
    return Offspring(tree=MUTATIONS[name](parent, rng), strategy="mutation", mutation=name)  # type: ignore[arg-type]
