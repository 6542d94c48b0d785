"""The advisor's rule table against the lesson's TransferLearningAdvisor."""

from __future__ import annotations

import itertools

import pytest

from tl_experiments.advisor import (
    BUDGETS,
    PRIORITIES,
    RULES,
    SIMILARITIES,
    SIZE_CLASSES,
    STRATEGIES,
    budget_class,
    draw_decision_tree,
    leaf_labels,
    recommend,
    size_class,
    tree_branches,
)

# The lesson's keys, mapped to the project's strategy config names.
SEED_TO_PROJECT = {
    "feature_extraction": "feature_extraction",
    "fine_tuning_conservative": "partial_ft",
    "fine_tuning_aggressive": "full_ft",
    "from_scratch": "scratch",
}


def seed_analyze_scenario(dataset_size, domain_similarity, compute_budget, priority):
    """The decision logic of the lesson's `analyze_scenario`, copied verbatim (the oracle)."""
    if dataset_size == "small":
        if domain_similarity in ["high", "medium"]:
            recommended = "feature_extraction"
        else:
            recommended = "fine_tuning_conservative"
    elif dataset_size == "medium":
        if compute_budget == "limited" or priority == "speed":
            recommended = "feature_extraction"
        else:
            recommended = "fine_tuning_conservative"
    else:  # large dataset
        if domain_similarity == "low" and compute_budget == "high":
            recommended = "from_scratch"
        else:
            recommended = "fine_tuning_aggressive"
    return recommended


ALL_COMBOS = list(itertools.product(SIZE_CLASSES, SIMILARITIES, BUDGETS, PRIORITIES))


def test_all_54_combinations_match_the_seed():
    assert len(ALL_COMBOS) == 3 * 3 * 3 * 2
    for combo in ALL_COMBOS:
        expected = SEED_TO_PROJECT[seed_analyze_scenario(*combo)]
        assert recommend(*combo).strategy == expected, combo


def test_recommendation_carries_the_seeds_hyperparameters_and_the_rule():
    rec = recommend("small", "low", "limited", "speed")
    assert (rec.strategy, rec.lr, rec.epochs) == ("partial_ft", 1e-4, (20, 30))
    assert rec.rule.description == "small dataset, low similarity"
    assert rec.rule is RULES[1]
    assert rec.best_for == STRATEGIES["partial_ft"].best_for
    assert (STRATEGIES["full_ft"].lr, STRATEGIES["full_ft"].epochs) == (1e-5, (30, 50))
    assert (STRATEGIES["scratch"].lr, STRATEGIES["scratch"].epochs) == (1e-3, (100, 200))
    assert {s.lesson_name for s in STRATEGIES.values()} == set(SEED_TO_PROJECT)


def test_every_rule_fires_for_some_input_and_its_description_names_its_values():
    fired = {recommend(*combo).rule for combo in ALL_COMBOS}
    assert fired == set(RULES), "a rule that never fires is shadowed by an earlier one"
    for rule in RULES:
        for values in (rule.size, rule.similarity, rule.budget, rule.priority):
            if values is not None:
                assert "/".join(values) in rule.description, rule


@pytest.mark.parametrize(
    ("n_samples", "similarity", "budget", "priority", "expected"),
    [
        (800, "medium", "limited", "speed", "feature_extraction"),  # dermoscopy
        (50_000, "high", "moderate", "accuracy", "full_ft"),  # fashion
        (5_000, "low", "moderate", "accuracy", "partial_ft"),  # satellite
    ],
    ids=["dermoscopy", "fashion", "satellite"],
)
def test_seed_scenarios(n_samples, similarity, budget, priority, expected):
    assert recommend(size_class(n_samples), similarity, budget, priority).strategy == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "small"), (999, "small"), (1_000, "medium"), (10_000, "medium"), (10_001, "large")],
)
def test_size_class_boundaries(n, expected):
    assert size_class(n) == expected


@pytest.mark.parametrize(
    ("hours", "expected"),
    [(0, "limited"), (0.99, "limited"), (1, "moderate"), (6, "moderate"), (6.01, "high")],
)
def test_budget_class_boundaries(hours, expected):
    assert budget_class(hours * 3600) == expected


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "800"])
def test_size_class_rejects_non_counts(bad):
    with pytest.raises(ValueError, match="n_samples"):
        size_class(bad)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_budget_class_rejects_bad_seconds(bad):
    with pytest.raises(ValueError, match="seconds"):
        budget_class(bad)


@pytest.mark.parametrize(
    ("args", "bad", "allowed"),
    [
        (("huge", "high", "limited", "speed"), "'huge'", "small, medium, large"),
        (("small", "hgh", "limited", "speed"), "'hgh'", "high, medium, low"),
        (("small", "high", "unlimited", "speed"), "'unlimited'", "limited, moderate, high"),
        (("small", "high", "limited", "cost"), "'cost'", "speed, accuracy"),
    ],
)
def test_recommend_names_the_bad_value_and_the_allowed_ones(args, bad, allowed):
    with pytest.raises(ValueError) as err:
        recommend(*args)
    message = str(err.value)
    assert bad in message and allowed in message
    assert message.count(".") == 1 and message.endswith(".")


def test_tree_is_built_from_the_rules():
    branches = tree_branches()
    assert len(branches) == len(RULES)
    assert [b.size for b in branches] == [r.size[0] for r in RULES]
    assert [b.strategy for b in branches] == [r.strategy for r in RULES]
    labels = leaf_labels()
    for name in {r.strategy for r in RULES}:
        lr = STRATEGIES[name].lr
        assert any(
            label.startswith(name + "\n") and f"{lr:.0e}".replace("e-0", "e-") in label
            for label in labels
        ), name


def test_draw_decision_tree_writes_a_png(tmp_path):
    out = draw_decision_tree(tmp_path / "figs" / "tree.png")
    assert out.is_file()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
