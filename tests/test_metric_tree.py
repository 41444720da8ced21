"""Metric trees: initialisation to depth d, the three mutations and offspring, formulas, base metrics,
and the prompt parameters' rendering."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

from metrics.base import BASE_METRICS, Turn, exchanges, measure
from metrics.tree import (FORMULA_FUNCTIONS, OPERATORS, MetricNode, deletion, insertion, leaf, node, offspring,
                          random_tree, replacement)
from state.prompt_params import PromptParams, PromptStyle

VALUES = {name: round(0.05 + 0.09 * i, 3) for i, name in enumerate(sorted(BASE_METRICS))}


def valid(tree: MetricNode) -> bool:
    """Every operator has as many children as its arity (and wsum a weight per child), every leaf a metric."""
    MetricNode.model_validate(tree.model_dump())  # the model's own checks, run again from scratch
    if tree.is_leaf:
        return tree.metric in BASE_METRICS and not tree.children
    return len(tree.children) == OPERATORS[tree.op][0] and all(valid(c) for c in tree.children)


def formula_value(tree: MetricNode) -> float:
    return eval(tree.formula(), {"__builtins__": {}, **FORMULA_FUNCTIONS}, dict(VALUES))


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_initialisation_reaches_depth_d(depth):
    for seed in range(20):
        tree = random_tree(depth, random.Random(seed))
        assert tree.depth() == depth and valid(tree)


def test_trees_with_wrong_arity_are_refused():
    with pytest.raises(ValidationError, match="takes 2 children"):
        MetricNode(op="add", children=[leaf("distinct_1")])
    with pytest.raises(ValidationError, match="unknown operator"):
        MetricNode(op="pow", children=[leaf("distinct_1")])
    with pytest.raises(ValidationError, match="base metric"):
        leaf("bleu")


def test_insertion_puts_an_operator_between_a_node_and_its_parent():
    tree = node("sub", leaf("distinct_1"), node("neg", leaf("tfidf_similarity")))
    for seed in range(30):
        new = insertion(tree, random.Random(seed))
        assert valid(new)
        # undoing it: some non-root operator, replaced by one of its children, gives back the original
        undo = [(p, new.at(p)) for p in new.paths() if p and not new.at(p).is_leaf
                and any(new.replaced(p, child) == tree for child in new.at(p).children)]
        assert undo, new.formula()
        _, added = undo[0]
        assert new.size() == tree.size() + OPERATORS[added.op][0]  # the operator and arity - 1 new leaves
        assert new.op == "sub", "the root stays the root"


def test_deletion_links_a_child_to_its_former_parent():
    tree = node("add", node("mul", leaf("distinct_2"), leaf("figure_rate")), leaf("question_rate"))
    for seed in range(10):
        new = deletion(tree, random.Random(seed))
        assert valid(new)
        assert new.op == "add" and new.children[1] == leaf("question_rate")
        assert new.children[0] in (leaf("distinct_2"), leaf("figure_rate"))
    lone = node("neg", leaf("distinct_1"))
    assert deletion(lone, random.Random(0)) == leaf("distinct_1")  # only the root is inner: its child takes over


def test_replacement_swaps_an_operator_and_fixes_the_arity():
    tree = node("add", leaf("distinct_1"), leaf("distinct_2"))
    seen = set()
    for seed in range(40):
        new = replacement(tree, random.Random(seed))
        assert valid(new) and new.op != "add"
        seen.add(new.op)
        arity = OPERATORS[new.op][0]
        kept = [c for c in new.children if c in tree.children]
        assert len(kept) >= min(arity, 2) or new.children[:arity] == tree.children[:arity]
    assert {"neg", "wsum"} <= seen, "both smaller and larger arities occur"
    assert replacement(leaf("distinct_1"), random.Random(1)).metric != "distinct_1"


def test_formula_evaluates_to_the_tree_value():
    for seed in range(50):
        tree = random_tree(4, random.Random(seed))
        value = tree.evaluate(VALUES)
        assert math.isfinite(value)
        assert formula_value(tree) == pytest.approx(value, rel=1e-12, abs=1e-12), tree.formula()
    assert node("div", leaf("distinct_1"), node("sub", leaf("distinct_1"), leaf("distinct_1"))).evaluate(VALUES) \
        == VALUES["distinct_1"], "division by zero is protected"


def test_offspring_uses_all_three_strategies_and_stays_valid():
    parent = random_tree(3, random.Random(7))
    made = [offspring(parent, 3, random.Random(seed)) for seed in range(60)]
    assert {o.strategy for o in made} == {"copy", "reinit", "mutation"}
    assert {o.mutation for o in made if o.strategy == "mutation"} == {"insertion", "deletion", "replacement"}
    assert all(valid(o.tree) for o in made)
    assert all(o.tree == parent for o in made if o.strategy == "copy")
    assert all(o.tree.depth() == 3 for o in made if o.strategy == "reinit")
    again = [offspring(parent, 3, random.Random(seed)) for seed in range(60)]
    assert again == made, "the same draws give the same offspring"


def test_trees_round_trip_through_json():
    tree = random_tree(3, random.Random(3))
    assert MetricNode.model_validate_json(tree.model_dump_json()) == tree


def _batch():
    return [[Turn(speaker="user", text="I paid $12.00 for electricity. Is that fair?"),
             Turn(speaker="assistant", text="Electricity costs $12.00 per month as a standing charge."),
             Turn(speaker="user", text="Thanks. And the water?"),
             Turn(speaker="assistant", text="Water is $3.20 per cubic metre.")],
            [Turn(speaker="user", text="Hello, what do groceries cost?"),
             Turn(speaker="assistant", text="Eggs are $3.60 a dozen.")]]


def test_base_metrics_on_a_batch():
    values = measure(_batch(), list(BASE_METRICS), None)
    assert values["question_rate"] == pytest.approx(1.0)
    assert values["reference_back_rate"] == pytest.approx(2 / 4)  # electricity picked up; water, groceries, eggs not
    assert values["figure_rate"] == pytest.approx(4 / 6)
    assert 0 < values["tfidf_similarity"] < 1 and 0 < values["distinct_2"] <= 1
    assert len(exchanges(_batch())) == 3
    same = [_batch()[0], _batch()[0]]
    assert measure(same, ["tfidf_similarity"], None)["tfidf_similarity"] == pytest.approx(1.0)


def test_prompt_parameters_render_by_weight_and_round_trip():
    style = PromptStyle(role="user", weights={"refer_back": 3.0, "one_concern": -3.0, "vary_wording": 0.6},
                        temperature=0.4)
    text = style.render()
    assert text.splitlines()[0].startswith("- Always: refer back")
    assert "one concern" not in text.lower(), "a weight far below zero leaves the fragment out"
    assert text.index("Vary your wording") < text.index("Give concrete figures")
    again = PromptStyle.from_vector("user", style.vector())
    assert again == style
    assert PromptStyle.from_vector("user", style.vector() + 100).temperature == 1.5, "clipped to its range"
    params = PromptParams(user=style)
    assert PromptParams.from_file_data(params.summary()) == params
    with pytest.raises(ValidationError, match="unknown user fragment"):
        PromptStyle(role="user", weights={"be_rude": 1.0})
