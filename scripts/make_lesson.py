"""Regenerate docs/lesson.md: the lesson's sections, with every number measured.

    python scripts/make_lesson.py                       # from the default sweep folders
    python scripts/make_lesson.py --compare DIR --data-efficiency DIR --out docs

Reads only finished sweep folders (the compare report's own functions) and the advisor's
rule table; copies the pictures into docs/img/. Where the lesson printed a simulated table
or drew a simulated plot, the lesson shows the command that makes the real one and its
output. Re-run it after a new sweep, so the lesson cannot go stale silently.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tl_experiments.advisor import RULES, draw_decision_tree, recommend, size_class
from tl_experiments.report import write_report

# The lesson's three scenarios (section "Hands-On Activity"), exactly as it states them.
SCENARIOS = [
    ("Medical imaging startup (dermoscopy)", 800, "medium", "limited", "speed"),
    ("E-commerce fashion classifier", 50_000, "high", "moderate", "accuracy"),
    ("Satellite imagery (land use)", 5_000, "low", "moderate", "accuracy"),
]


def _first_summary(sweep: Path, strategy: str) -> str:
    for run in sorted(sweep.glob(f"*strategy={strategy}*")):
        if (run / "summary.txt").is_file():
            return (run / "summary.txt").read_text().strip()
    return f"(no finished {strategy} run in {sweep})"


def _copy(report_files: list[Path], img: Path, prefix: str) -> dict[str, str]:
    img.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in report_files:
        if f.suffix == ".png":
            shutil.copyfile(f, img / f"{prefix}_{f.name}")
            out[f.stem] = f"img/{prefix}_{f.name}"
    return out


def _scenarios() -> str:
    rows = [
        "| scenario | samples | similarity | budget | priority | pick | lr | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, n, sim, budget, prio in SCENARIOS:
        r = recommend(size_class(n), sim, budget, prio)
        rows.append(
            f"| {name} | {n:,} | {sim} | {budget} | {prio} | {r.strategy} | "
            f"{r.lr:g} | {r.epochs[0]}-{r.epochs[1]} |"
        )
    return "\n".join(rows)


def build(compare: Path, efficiency: Path | None, out: Path) -> str:
    report = write_report(compare)
    pics = _copy(report.files, out / "img", "compare")
    parts = [
        "# Transfer learning, measured\n",
        "The lesson the project grew from (*Day 37: Transfer Learning: Fine-tuning Pre-trained "
        "Models*) with its "
        "simulated tables and plots replaced by real runs: EfficientNet-Lite0 with ImageNet "
        "weights, the 5,000-image MNIST sample (50 training images per class), 64 px, 8 epochs, "
        "on a 2-core CPU. Regenerate: `python scripts/make_lesson.py`.\n",
        "## 1. Loading a pre-trained model: the model summary\n",
        "The lesson prints a made-up ResNet50 table. The real one is printed at the start of "
        "every run (`python train.py strategy=full_ft`), one row per timm stage:\n",
        f"```\n{_first_summary(compare, 'full_ft')}\n```\n",
        "## 2-3. Strategy 1: feature extraction (frozen base)\n",
        "`python train.py strategy=feature_extraction`\n",
        f"```\n{_first_summary(compare, 'feature_extraction')}\n```\n",
        "## 4. Strategy 2: fine-tuning (partial unfreezing)\n",
        "`python train.py strategy=partial_ft`\n",
        f"```\n{_first_summary(compare, 'partial_ft')}\n```\n",
        "## 5. Performance comparison\n",
        "`python train.py -m experiment=compare_strategies` then "
        f"`tl-compare {compare}` (mean ± 95% interval over seeds):\n",
        # The table and the analysis tables; plots follow below, paths are the sweep's own.
        report.markdown.split("\n", 1)[1].split("## Best run")[0].strip() + "\n",
        "## 6. Parameter efficiency and performance against training time\n",
    ]
    for key in ("trainable_params", "accuracy_vs_time", "learning_curves"):
        if key in pics:
            parts.append(f"![{key}]({pics[key]})\n")
    if efficiency is not None and efficiency.is_dir():
        eff = write_report(efficiency)
        eff_pics = _copy(eff.files, out / "img", "efficiency")
        parts += [
            "## Dataset size, measured\n",
            "`python train.py -m experiment=data_efficiency`:\n",
        ]
        if "data_efficiency" in eff_pics:
            parts.append(f"![data efficiency]({eff_pics['data_efficiency']})\n")
    tree = draw_decision_tree(out / "img" / "decision_tree.png")
    parts += [
        "## Hands-on: the decision framework\n",
        f"The lesson's `TransferLearningAdvisor`, as a table of {len(RULES)} rules "
        "(`tl_experiments.advisor.rules`); its three scenarios give the lesson's answers:\n",
        _scenarios() + "\n",
        "On your own data the advisor measures size, similarity and budget itself: "
        "`tl-advise data=image_folder data.root=DIR` (docs/advisor.md).\n",
        "## The decision tree\n",
        "Drawn from the same rule table, so it cannot disagree with the code:\n",
        f"![decision tree](img/{tree.name})\n",
    ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, default=Path("logs/multirun/compare_strategies"))
    parser.add_argument(
        "--data-efficiency", type=Path, default=Path("logs/multirun/data_efficiency")
    )
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    text = build(args.compare, args.data_efficiency, args.out)
    (args.out / "lesson.md").write_text(text)
    print(f"Wrote {args.out / 'lesson.md'}")


if __name__ == "__main__":
    main()
