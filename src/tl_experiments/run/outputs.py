"""Files a finished run leaves behind: metrics.json (atomically), per-class report, plots."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from tl_experiments.atomic import write_atomic

__all__ = ["write_json_atomic", "write_class_report", "confusion_figure", "write_test_files"]


def write_json_atomic(obj: dict, path: Path) -> None:
    """Write JSON through a temp file and a rename: readers see all of it or nothing."""

    def dump(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())

    write_atomic(path, dump)


def write_class_report(per_class: dict[str, list], class_names: Sequence[str], path: Path) -> None:
    """One CSV row per class: precision, recall, F1 and support on the test split."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support"])
        for i, name in enumerate(class_names):
            w.writerow(
                [
                    name,
                    *(round(float(per_class[k][i]), 4) for k in ("precision", "recall", "f1")),
                    int(per_class["support"][i]),
                ]
            )


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str]):
    """A matplotlib figure of the confusion matrix (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix)
    n = len(class_names)
    size = min(max(4.0, 0.45 * n + 2), 14)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xlabel="predicted",
        ylabel="true",
        title="Test confusion matrix",
    )
    ax.set_xticklabels(class_names, rotation=90 if n > 10 else 0)
    ax.set_yticklabels(class_names)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if m[i, j] > m.max() / 2 else "black",
                )
    fig.tight_layout()
    return fig


def write_test_files(results: dict, class_names: Sequence[str], out: Path, tb_writer=None) -> None:
    """``test_report.csv`` and ``confusion_matrix.png`` in ``out``, from
    :meth:`TransferModule.test_results`; the figure also goes to TensorBoard if a writer is given.
    """
    write_class_report(results["per_class"], class_names, out / "test_report.csv")
    fig = confusion_figure(results["confusion_matrix"], class_names)
    fig.savefig(out / "confusion_matrix.png", dpi=100)
    if tb_writer is not None:
        tb_writer.add_figure("test/confusion_matrix", fig, close=True)
    else:
        import matplotlib.pyplot as plt

        plt.close(fig)
