"""The lesson's transfer-learning decision rules, held as data.

The lesson (``seed/000_c85b82a0c749f6da.txt``, ``TransferLearningAdvisor``) writes
its advice as a nested if/else in ``analyze_scenario``. Here the same logic is one table,
``RULES``, read top to bottom; the first row that matches wins. ``recommend`` evaluates it
and ``tree.py`` draws the decision-tree figure from it, so the code, the figure and the
tests cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "BUDGETS",
    "PRIORITIES",
    "RULES",
    "SIMILARITIES",
    "SIZE_CLASSES",
    "STRATEGIES",
    "Recommendation",
    "Rule",
    "StrategyInfo",
    "budget_class",
    "recommend",
    "size_class",
]

SIZE_CLASSES = ("small", "medium", "large")
SIMILARITIES = ("high", "medium", "low")
BUDGETS = ("limited", "moderate", "high")
PRIORITIES = ("speed", "accuracy")

# The lesson's wording: "Small (<1K), Medium (1K-10K), Large (>10K)". Read literally, both ends of
# "1K-10K" belong to medium: 999 is small, 1,000 and 10,000 are medium, 10,001 is large.
SMALL_BELOW = 1_000
LARGE_ABOVE = 10_000
# The lesson's wording: "'limited' (<1 hour), 'moderate' (1-6 hours), 'high' (>6 hours)"; same
# reading: exactly 1 h and exactly 6 h are moderate.
LIMITED_BELOW_S = 3_600.0
HIGH_ABOVE_S = 6 * 3_600.0


@dataclass(frozen=True)
class StrategyInfo:
    """One strategy the advisor can recommend, with the lesson's starting hyperparameters.

    Attributes:
        name: The project's strategy config name (``conf/strategy/<name>.yaml``).
        lesson_name: The lesson's key in ``TransferLearningAdvisor.strategies``.
        title: The lesson's display name.
        lr: Learning rate the lesson's advisor gives.
        epochs: Inclusive (low, high) epoch range.
        best_for: The lesson's "best for" sentence.
    """

    name: str
    lesson_name: str
    title: str
    lr: float
    epochs: tuple[int, int]
    best_for: str


# The lesson writes epochs as `10-20`, which Python evaluates to -10; the ranges are kept
# here as the (low, high) pairs the author meant.
STRATEGIES: Mapping[str, StrategyInfo] = MappingProxyType({
    s.name: s
    for s in (
        StrategyInfo(
            "feature_extraction", "feature_extraction", "Feature Extraction (Frozen Base)",
            1e-3, (10, 20), "Small datasets, similar domains.",
        ),
        # The lesson: conv1 + conv2 frozen, i.e. the stem and the first stage.
        StrategyInfo(
            "partial_ft", "fine_tuning_conservative", "Conservative Fine-tuning",
            1e-4, (20, 30), "Medium datasets, moderate domain shift.",
        ),
        # 1e-5 is the lesson's advisor's number; DESIGN.md's full_ft uses 1e-4 for the head.
        StrategyInfo(
            "full_ft", "fine_tuning_aggressive", "Aggressive Fine-tuning",
            1e-5, (30, 50), "Large datasets, significant domain shift.",
        ),
        StrategyInfo(
            "scratch", "from_scratch", "Train from Scratch",
            1e-3, (100, 200), "Very large datasets, completely different domain.",
        ),
    )
})  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """One row of the decision table. A field set to ``None`` matches any value.

    Attributes:
        strategy: Config name of the strategy this row recommends.
        description: Human-readable condition, e.g. "small dataset, high/medium similarity".
        size: Dataset size classes this row covers.
        similarity: Domain similarities to ImageNet this row covers.
        budget: Compute budgets this row covers.
        priority: Priorities this row covers.
    """

    strategy: str
    description: str
    size: tuple[str, ...] | None = None
    similarity: tuple[str, ...] | None = None
    budget: tuple[str, ...] | None = None
    priority: tuple[str, ...] | None = None

    def matches(self, size: str, similarity: str, budget: str, priority: str) -> bool:
        """Whether every non-wildcard field of this row contains the given value."""
        pairs = (
            (self.size, size),
            (self.similarity, similarity),
            (self.budget, budget),
            (self.priority, priority),
        )
        return all(allowed is None or value in allowed for allowed, value in pairs)


# Order matters: first match wins, exactly like the lesson's if/elif chain.
RULES: tuple[Rule, ...] = (
    # The lesson: small -> feature extraction if similarity is high/medium, else conservative.
    Rule("feature_extraction", "small dataset, high/medium similarity",
         size=("small",), similarity=("high", "medium")),
    Rule("partial_ft", "small dataset, low similarity",
         size=("small",), similarity=("low",)),
    # The lesson: medium -> feature extraction if budget is limited OR priority is speed.
    Rule("feature_extraction", "medium dataset, limited budget",
         size=("medium",), budget=("limited",)),
    Rule("feature_extraction", "medium dataset, speed priority",
         size=("medium",), priority=("speed",)),
    Rule("partial_ft", "medium dataset, otherwise (moderate/high budget, accuracy priority)",
         size=("medium",)),
    # The lesson: large -> scratch only for low similarity AND high budget, else aggressive.
    Rule("scratch", "large dataset, low similarity, high budget",
         size=("large",), similarity=("low",), budget=("high",)),
    Rule("full_ft", "large dataset, otherwise",
         size=("large",)),
)  # fmt: skip


@dataclass(frozen=True)
class Recommendation:
    """The advisor's answer: a strategy, its starting hyperparameters and why.

    Attributes:
        strategy: The project's strategy config name.
        lr: Starting learning rate.
        epochs: Inclusive (low, high) epoch range.
        best_for: The lesson's "best for" sentence for this strategy.
        rule: The table row that fired.
    """

    strategy: str
    lr: float
    epochs: tuple[int, int]
    best_for: str
    rule: Rule


def _check(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {kind} {value!r}; use one of: {', '.join(allowed)}.")


def size_class(n_samples: int) -> str:
    """Classify a labelled-sample count as the lesson does.

    Args:
        n_samples: Number of labelled training samples, at least 1.

    Returns:
        ``"small"`` below 1,000; ``"medium"`` from 1,000 to 10,000 inclusive; ``"large"``
        above 10,000 (the lesson's "<1K", "1K-10K", ">10K", with both 1K and 10K medium).

    Raises:
        ValueError: If ``n_samples`` is not a positive integer.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    if n_samples < SMALL_BELOW:
        return "small"
    return "medium" if n_samples <= LARGE_ABOVE else "large"


def budget_class(seconds: float) -> str:
    """Classify a compute budget given in seconds of training time as the lesson does.

    Args:
        seconds: Wall-clock training time available, in seconds.

    Returns:
        ``"limited"`` under 1 hour; ``"moderate"`` from 1 to 6 hours inclusive; ``"high"``
        over 6 hours.

    Raises:
        ValueError: If ``seconds`` is negative or not finite.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"Budget must be a finite number of seconds >= 0, got {seconds!r}.")
    if seconds < LIMITED_BELOW_S:
        return "limited"
    return "moderate" if seconds <= HIGH_ABOVE_S else "high"


def recommend(size: str, similarity: str, budget: str, priority: str) -> Recommendation:
    """Pick a transfer-learning strategy with the lesson's decision rules.

    Args:
        size: Dataset size class, one of ``SIZE_CLASSES`` (see ``size_class``).
        similarity: Domain similarity to ImageNet, one of ``SIMILARITIES``.
        budget: Compute budget class, one of ``BUDGETS`` (see ``budget_class``).
        priority: ``"speed"`` or ``"accuracy"``.

    Returns:
        The recommended strategy with its lr, epoch range and the rule that fired.

    Raises:
        ValueError: If any argument is not one of its allowed values.
    """
    _check("dataset size class", size, SIZE_CLASSES)
    _check("domain similarity", similarity, SIMILARITIES)
    _check("compute budget", budget, BUDGETS)
    _check("priority", priority, PRIORITIES)
    rule = next(r for r in RULES if r.matches(size, similarity, budget, priority))
    info = STRATEGIES[rule.strategy]
    return Recommendation(info.name, info.lr, info.epochs, info.best_for, rule)
