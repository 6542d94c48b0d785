"""Export a trained checkpoint (or the best run of a sweep) to ONNX or TorchScript.

    tl-export ckpt=<run>/checkpoints/best.ckpt [format=onnx] [out=PATH]
    tl-export sweep=logs/multirun/<date>/<time>   # the sweep's winner

The exported model maps float32 images (N, 3, H, W), normalised as in the sidecar JSON's
``data_config``, to logits over the sidecar's ``class_names``; the batch size is dynamic.
LoRA adapters are merged into their layers first (the graph has none); before anything is
reported as written, the exported model's outputs are compared with PyTorch's (the unmerged
model's, for LoRA) on real images (the training data's test split, or ``images=``); a mismatch
above ``atol`` removes the file and exits non-zero. ONNX needs the ``export`` extra:
``pip install 'tl-experiments[export]'`` (onnx, onnxruntime).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tl_experiments.commands.args import find_images, parse_kv, positive_int
from tl_experiments.commands.guard import run_command
from tl_experiments.errors import UserError
from tl_experiments.run.outputs import write_json_atomic

if TYPE_CHECKING:  # torch is imported where it is used: --help answers in well under 3 s
    import torch

__all__ = ["best_checkpoint", "check_batch", "export", "main"]

USAGE = (
    "tl-export ckpt=PATH|sweep=SWEEP_DIR [format=onnx|torchscript] "
    "[out=PATH] [images=DIR_OR_FILES] [check_images=16] [atol=1e-4]"
)
_DEFAULTS = {
    "ckpt": None,
    "sweep": None,
    "format": "onnx",
    "out": None,
    "images": None,
    "check_images": "16",
    "atol": "1e-4",
}
_INSTALL = "pip install 'tl-experiments[export]' (onnx, onnxruntime)"
HELP = f"""Export a checkpoint to ONNX or TorchScript, checked against PyTorch on real images.
  ckpt=PATH            a checkpoint, as report.md prints it (quoted or not)
  sweep=SWEEP_DIR      instead of ckpt: the best run of a sweep (its validation winner)
  format=onnx          onnx (needs {_INSTALL}) or torchscript; ONNX falls back to
                       TorchScript, with a note, where it cannot express the model
  out=PATH             the model file (default: beside the checkpoint; for a sweep,
                       <sweep>/best_model.onnx); a sidecar .json with classes and normalisation
  images=DIR_OR_FILES  images for the check (default: the training data's test split)
  check_images=16      how many images the check runs
  atol=1e-4            the largest difference of the logits allowed; above it the file is
                       removed and the command fails"""


def best_checkpoint(sweep_dir: str | Path) -> Path:
    """The best checkpoint of a sweep's winning group, as the compare report names it."""
    from tl_experiments.report import compare_sweep
    from tl_experiments.report.paired import BEST, TIED

    comparison = compare_sweep(sweep_dir)
    winners = comparison[comparison["verdict"].isin([BEST, TIED])] if len(comparison) else []
    if len(winners) > 1:
        names = ", ".join(f"{w['strategy']} ({w['best_run']})" for _, w in winners.iterrows())
        raise UserError(
            f"The sweep '{sweep_dir}' has no single winner: {names} tie on mean validation "
            "accuracy; pass the checkpoint of the one you want as ckpt=PATH."
        )
    best = winners.iloc[0] if len(winners) else None
    ckpt = None if best is None else best.get("best_checkpoint")
    if not isinstance(ckpt, str) or not Path(ckpt).is_file():
        raise UserError(
            f"The sweep '{sweep_dir}' has no finished run with a checkpoint; "
            "pass ckpt=PATH instead, or rerun the sweep."
        )
    print(
        f"Best of the sweep: {best['model']} / {best['strategy']} (mean val acc "
        f"{best['best_val_acc_mean']:.4f} over {best['n']} run(s)), run {best['best_run']}",
        file=sys.stderr,
    )
    return Path(ckpt)


def check_batch(ckpt: dict, images: str | None, n: int) -> torch.Tensor:
    """Up to ``n`` real images, transformed as in training: ``images`` or the test split."""
    import numpy as np
    import torch

    from tl_experiments.commands.evaluate import eval_images
    from tl_experiments.data import to_pil
    from tl_experiments.models.checkpoint import eval_transform

    tf = eval_transform(ckpt)
    if images:
        files = find_images(images)
        return torch.stack([tf(to_pil(f)) for f in files[:n]])
    meta = ckpt["tl_experiments"]
    data = meta.get("config", {}).get("data")
    try:
        if data is None:
            raise UserError("the checkpoint stores no data config.")
        test, _ = eval_images(data, list(meta["class_names"]), "test")
    except UserError as e:
        raise UserError(
            f"Cannot load the training data's test images to check the export "
            f"({e}); pass images=DIR_OR_FILES."
        ) from None
    # Spread over the split (it is sorted by class), so every class is represented.
    idx = np.unique(np.linspace(0, len(test) - 1, min(n, len(test))).round().astype(int))
    return torch.stack([tf(to_pil(test.items[i])) for i in idx])


def export(
    ckpt_path: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    images: str | None = None,
    n_check: int = 16,
    atol: float = 1e-4,
) -> dict:
    """Write the model of ``ckpt_path`` as ``fmt`` plus a sidecar JSON.

    ONNX falls back to TorchScript (with a printed note) when the exporter cannot express
    the model.

    Returns:
        The sidecar's content plus ``path``, the written model file.

    Raises:
        UserError: when outputs differ from PyTorch's by more than ``atol`` (max absolute
            difference of the logits), or for a bad checkpoint, format or image.
    """
    import numpy as np
    import torch

    from tl_experiments.models.checkpoint import load_checkpoint, module_from_checkpoint
    from tl_experiments.models.export_formats import FORMATS, RUNNERS, SUFFIXES

    if fmt not in FORMATS:
        raise UserError(f"format={fmt} is not one of {', '.join(FORMATS)}; pick one of them.")
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise UserError(f"ONNX export and its check need onnx and onnxruntime; {_INSTALL}.")
    ckpt = load_checkpoint(ckpt_path)
    model = module_from_checkpoint(ckpt).backbone.eval()  # LoRA adapters merged in
    # The check compares with the model as it trained: adapters unmerged, where it has them.
    lora = bool(ckpt["tl_experiments"].get("lora"))
    reference = module_from_checkpoint(ckpt, merge=False).backbone.eval() if lora else model
    batch = check_batch(ckpt, images, n_check)
    path = Path(out) if out else Path(ckpt_path).with_suffix(SUFFIXES[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, path = _write(model, batch[:2], fmt, path)
    with torch.no_grad():
        expected = reference(batch).numpy()
    diff = float(np.abs(RUNNERS[fmt](path)(batch.numpy()) - expected).max())
    if not diff <= atol:
        path.unlink()
        raise UserError(
            f"The {fmt} model's outputs differ from PyTorch's by {diff:.2e} "
            f"(> atol={atol}) on {len(batch)} images, so it was removed; try "
            "another format=."
        )
    return _write_sidecar(ckpt, ckpt_path, fmt, path, diff, len(batch))


def _write(model: torch.nn.Module, example: torch.Tensor, fmt: str, path: Path) -> tuple[str, Path]:
    """Write ``fmt``, or TorchScript where ONNX cannot express the model; return which."""
    from tl_experiments.models.export_formats import SUFFIXES, WRITERS

    try:
        WRITERS[fmt](model, example, path)
        return fmt, path
    except Exception as e:  # the ONNX exporter raises several types for unsupported ops
        if fmt != "onnx":
            raise
        path.unlink(missing_ok=True)
        print(
            f"ONNX cannot express this model ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160]}); exporting TorchScript instead.",
            file=sys.stderr,
        )
    path = path.with_suffix(SUFFIXES["torchscript"])
    WRITERS["torchscript"](model, example, path)
    return "torchscript", path


def _write_sidecar(ckpt: dict, ckpt_path, fmt: str, path: Path, diff: float, n: int) -> dict:
    meta = ckpt["tl_experiments"]
    info = {
        "format": fmt,
        "file": path.name,
        "ckpt": str(Path(ckpt_path).resolve()),
        "arch": meta["arch"],
        "class_names": list(meta["class_names"]),
        "data_config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in meta["data_config"].items()
        },
        "input": {
            "name": "input",
            "shape": ["batch", *meta["data_config"]["input_size"]],
            "dtype": "float32",
        },
        "output": {"name": "logits", "shape": ["batch", len(meta["class_names"])]},
        "check": {"images": n, "max_abs_diff": diff},
    }
    write_json_atomic(info, path.with_suffix(".json"))
    return {**info, "path": str(path)}


def _main(argv: list[str]) -> int:
    args = parse_kv(argv, _DEFAULTS, USAGE, HELP)
    from tl_experiments.models.export_formats import SUFFIXES
    from tl_experiments.run.console import quiet_third_party

    quiet_third_party()  # PIL's warning on a photo over 89 Mpx, Lightning's notices
    if bool(args["ckpt"]) == bool(args["sweep"]):
        raise UserError(f"Pass exactly one of ckpt=PATH or sweep=SWEEP_DIR; usage: {USAGE}")
    ckpt, out = args["ckpt"], args["out"]
    if args["sweep"]:
        ckpt = best_checkpoint(args["sweep"])
        suffix = SUFFIXES.get(args["format"], "")
        out = out or str(Path(args["sweep"]) / f"best_model{suffix}")
    try:
        atol = float(args["atol"])
    except ValueError:
        raise UserError(f"atol={args['atol']} must be a number such as 1e-4.") from None
    info = export(
        ckpt, args["format"], out, args["images"], positive_int(args, "check_images"), atol
    )
    check = info["check"]
    print(
        f"Wrote {info['path']} and its .json ({info['format']}); outputs match PyTorch's "
        f"within {check['max_abs_diff']:.1e} on {check['images']} real images."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 for a mistake the user can fix)."""
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
