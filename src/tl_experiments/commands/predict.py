"""Classify images with a trained checkpoint.

    tl-predict ckpt=<run>/checkpoints/best.ckpt images=DIR_OR_FILES \
        [topk=5] [csv=predictions.csv] [batch_size=32]

Prints the top-k classes and their probabilities per image, using the eval transform and
the class names stored in the checkpoint: nothing of the training config is repeated.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tl_experiments.commands.args import find_images, parse_kv, positive_int
from tl_experiments.commands.guard import run_command
from tl_experiments.errors import UserError

if TYPE_CHECKING:  # torch is imported where it is used: --help answers in well under 3 s
    import torch
    import torch.nn as nn

__all__ = ["main", "predict", "predict_files"]

USAGE = "tl-predict ckpt=PATH images=DIR_OR_FILES [topk=5] [csv=OUT.csv] [batch_size=32]"
HELP = """Classify images with a trained checkpoint: the top classes and their probabilities.
  ckpt=PATH          a checkpoint, as report.md prints it (quoted or not)
  images=DIR_OR_FILES  image files and folders (searched recursively), comma-separated
  topk=5             how many classes to print per image
  csv=OUT.csv        also write every (image, rank, class, probability) row to this file
  batch_size=32      images per forward pass (lower it if memory runs out)
The eval transform and the class names come from the checkpoint."""


def predict(
    model: nn.Module, batch: torch.Tensor, class_names: Sequence[str], topk: int
) -> list[list[tuple[str, float]]]:
    """Top-``topk`` (class name, probability) pairs for each image of a transformed batch."""
    import torch

    with torch.no_grad():
        probs = model(batch).softmax(dim=1)
    values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
    return [
        [(class_names[i], float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def predict_files(
    model: nn.Module,
    files: Sequence[Path],
    transform: Callable,
    class_names: Sequence[str],
    topk: int = 5,
    batch_size: int = 32,
) -> list[list[tuple[str, float]]]:
    """:func:`predict` over image files, ``batch_size`` at a time (unreadable file: UserError)."""
    import torch

    from tl_experiments.data import to_pil

    model.eval()
    results = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        batch = torch.stack([transform(to_pil(f)) for f in chunk])
        results += predict(model, batch, class_names, topk)
    return results


def write_csv(files: Sequence[Path], results: list[list[tuple[str, float]]], path: Path) -> None:
    """One row per (image, rank): ``image,rank,class,probability``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "rank", "class", "probability"])
        for file, top in zip(files, results, strict=True):
            for rank, (name, p) in enumerate(top, start=1):
                w.writerow([str(file), rank, name, f"{p:.6f}"])


def _main(argv: list[str]) -> int:
    args = parse_kv(
        argv,
        {"ckpt": None, "images": None, "topk": "5", "csv": None, "batch_size": "32"},
        USAGE,
        HELP,
    )
    for key in ("ckpt", "images"):
        if not args[key]:
            raise UserError(f"Missing {key}=...; usage: {USAGE}")
    from tl_experiments.models.checkpoint import (
        eval_transform,
        load_checkpoint,
        module_from_checkpoint,
    )
    from tl_experiments.run.console import quiet_third_party

    quiet_third_party()  # PIL's warning on a photo over 89 Mpx, Lightning's notices
    topk, batch_size = positive_int(args, "topk"), positive_int(args, "batch_size")
    ckpt = load_checkpoint(args["ckpt"])
    files = find_images(args["images"])
    module = module_from_checkpoint(ckpt)
    results = predict_files(
        module, files, eval_transform(ckpt), module.class_names, topk, batch_size
    )
    for file, top in zip(files, results, strict=True):
        print(f"{file}: " + ", ".join(f"{name} {p:.4f}" for name, p in top))
    if args["csv"]:
        write_csv(files, results, Path(args["csv"]))
        print(f"Wrote {args['csv']}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 for a mistake the user can fix)."""
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
