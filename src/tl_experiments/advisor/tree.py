"""The lesson's decision-tree figure, drawn from the rule table.

The lesson draws its flowchart by hand with fixed coordinates, and it drifted from its own
logic (its medium branch asks only "Priority?", though the code also checks the budget).
Here every branch is built by walking ``RULES``, so the figure shows what ``recommend``
does: dataset size at level 1, then each size's rules left to right in the order they are
tried, with the strategy and its lr at the leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tl_experiments.advisor.rules import (
    LARGE_ABOVE,
    RULES,
    SIZE_CLASSES,
    SMALL_BELOW,
    STRATEGIES,
    Rule,
)

__all__ = ["Branch", "draw_decision_tree", "leaf_labels", "tree_branches"]

_SIZE_RANGES = {
    "small": f"< {SMALL_BELOW:,}",
    "medium": f"{SMALL_BELOW:,}-{LARGE_ABOVE:,}",
    "large": f"> {LARGE_ABOVE:,}",
}
_BOX_HALF_H = 0.035  # half a two-line box's height, in axes units
# White backing so a condition label reads cleanly over its arrow.
_CONDITION_BBOX = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none"}
_COLOURS = {"root": "#FFE66D", "size": "#95E1D3", "leaf": "#4ECDC4"}


@dataclass(frozen=True)
class Branch:
    """One root-to-leaf path of the tree.

    Attributes:
        size: Dataset size class at level 1.
        order: 1-based position among this size's rules (first match wins).
        condition: The rule's remaining conditions, or "otherwise" when it has none.
        strategy: Strategy config name at the leaf.
        leaf_label: Text drawn in the leaf box.
    """

    size: str
    order: int
    condition: str
    strategy: str
    leaf_label: str


def _condition(rule: Rule) -> str:
    parts = [
        f"{'/'.join(values)} {field}"
        for field, values in (
            ("similarity", rule.similarity),
            ("budget", rule.budget),
            ("priority", rule.priority),
        )
        if values is not None
    ]
    return "\n".join(parts) or "otherwise"


def tree_branches(rules: tuple[Rule, ...] = RULES) -> list[Branch]:
    """Walk the rule table into the tree's branches, grouped by dataset size.

    Args:
        rules: Decision table, first match wins; a rule with a wildcard size is placed
            under every size class.

    Returns:
        Branches ordered by size class, then by the order their rules are tried.
    """
    branches: list[Branch] = []
    for size in SIZE_CLASSES:
        group = [r for r in rules if r.size is None or size in r.size]
        for order, rule in enumerate(group, start=1):
            info = STRATEGIES[rule.strategy]
            label = f"{info.name}\nlr {_lr(info.lr)}, {info.epochs[0]}-{info.epochs[1]} ep"
            branches.append(Branch(size, order, _condition(rule), rule.strategy, label))
    return branches


def leaf_labels(rules: tuple[Rule, ...] = RULES) -> list[str]:
    """The text of every leaf box, left to right."""
    return [b.leaf_label for b in tree_branches(rules)]


def _lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")  # 1e-3, as the lesson writes it


def _box(ax, x: float, y: float, text: str, colour: str, size: float = 10, **kw) -> None:
    bbox = {"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "0.3"}
    ax.text(x, y, text, ha="center", va="center", fontsize=size, bbox=bbox, **kw)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    # From the bottom edge of one box to the top edge of the next, so no line crosses text.
    props = {"arrowstyle": "-|>", "color": "0.25", "shrinkA": 0, "shrinkB": 0}
    (x0, y0), (x1, y1) = start, end
    ax.annotate("", xy=(x1, y1 + _BOX_HALF_H), xytext=(x0, y0 - _BOX_HALF_H), arrowprops=props)


def _leaf_xs(branches: list[Branch]) -> list[float]:
    # Evenly spaced leaves with one extra slot between size groups, so groups read apart.
    slots, slot = [], 0
    for i, b in enumerate(branches):
        if i and b.size != branches[i - 1].size:
            slot += 1
        slots.append(slot)
        slot += 1
    return [(s + 0.5) / slot for s in slots]


def _draw_tree(ax, branches: list[Branch]) -> None:
    root, size_y, cond_y, leaf_y = (0.5, 0.93), 0.74, 0.52, 0.34
    _box(ax, *root, "Dataset size?", _COLOURS["root"], 13, fontweight="bold")
    xs = _leaf_xs(branches)
    for size in SIZE_CLASSES:
        idx = [i for i, b in enumerate(branches) if b.size == size]
        if not idx:
            continue
        sx = sum(xs[i] for i in idx) / len(idx)
        _arrow(ax, root, (sx, size_y))
        _box(ax, sx, size_y, f"{size}\n({_SIZE_RANGES[size]})", _COLOURS["size"], 11)
        for i in idx:
            b = branches[i]
            _arrow(ax, (sx, size_y), (xs[i], leaf_y))
            cond = f"{b.order}. {b.condition}"
            ax.text(xs[i], cond_y, cond, ha="center", va="center", fontsize=9, style="italic",
                    bbox=_CONDITION_BBOX)  # fmt: skip
            _box(ax, xs[i], leaf_y, b.leaf_label, _COLOURS["leaf"], 9)


def _draw_legend(ax) -> None:
    lines = ["Rules under each size are tried left to right; the first match wins."]
    lines += [
        f"{s.name} (seed: {s.title}): lr {_lr(s.lr)}, {s.epochs[0]}-{s.epochs[1]} epochs. "
        f"Best for: {s.best_for}"
        for s in STRATEGIES.values()
    ]
    ax.text(0.5, 0.15, "\n".join(lines), ha="center", va="center", fontsize=9, linespacing=1.6)


def draw_decision_tree(path: str | Path) -> Path:
    """Draw the advisor's decision tree, built from ``RULES``, as a PNG.

    Args:
        path: Output file; parent folders are created.

    Returns:
        The path written.
    """
    # Figure + Agg canvas, not pyplot: no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(16, 8))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 0.93))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.suptitle("Transfer Learning Strategy Decision Tree", fontsize=16, fontweight="bold")
    _draw_tree(ax, tree_branches())
    _draw_legend(ax)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
