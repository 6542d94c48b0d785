"""Strategy advisor: the lesson's decision rules as data, and the tree figure drawn from them.

Measuring dataset size, domain similarity and budget lives in ``advisor.measure``
(imported on demand: it needs torch); the ``tl-advise`` command
ties them together (docs/advisor.md).
"""

from tl_experiments.advisor.rules import (
    BUDGETS,
    PRIORITIES,
    RULES,
    SIMILARITIES,
    SIZE_CLASSES,
    STRATEGIES,
    Recommendation,
    Rule,
    StrategyInfo,
    budget_class,
    recommend,
    size_class,
)
from tl_experiments.advisor.tree import Branch, draw_decision_tree, leaf_labels, tree_branches

__all__ = [
    "BUDGETS",
    "PRIORITIES",
    "RULES",
    "SIMILARITIES",
    "SIZE_CLASSES",
    "STRATEGIES",
    "Branch",
    "Recommendation",
    "Rule",
    "StrategyInfo",
    "budget_class",
    "draw_decision_tree",
    "leaf_labels",
    "recommend",
    "size_class",
    "tree_branches",
]
