"""The run's loggers, from the ``logger`` config group (``conf/logger/``): TensorBoard (the
default), CSV, MLflow, Weights & Biases, or several at once (``logger=[tensorboard,mlflow]``).

Every logger gets the same record: the hyperparameters, every metric the run logs (losses,
accuracies, the per-stage learning rates ``lr-AdamW/<stage>`` from ``strategies/apply.py``,
drift, the analysis), the
final metrics as ``hp/<name>`` and the test confusion matrix. How each tool stores the parts
that are not plain scalars (TensorBoard's text, hparams session, image and custom-scalars
layout; MLflow's artifacts; a W&B image; a CSV file) is decided here and nowhere else.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import singledispatch
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import (
    Logger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)

from tl_experiments.errors import UserError

__all__ = [
    "SCALARS_LAYOUT",
    "create_loggers",
    "log_confusion_matrix",
    "log_run_end",
    "log_run_start",
    "log_text",
    "logger_outputs",
]

# TensorBoard's custom-scalars dashboard: one chart per group, tags matched as regexes.
# Every run writes it; TensorBoard merges the layouts of a sweep's runs (duplicates dropped).
SCALARS_LAYOUT = {
    "learning rates": {
        "lr per stage (scheduled)": ["Multiline", [r"lr-.*"]],
        "trainable stages": ["Multiline", [r"trainable/.*", r"train/trainable_stages"]],
    },
    "drift": {
        "weight drift per stage (relative L2)": ["Multiline", [r"drift/.*"]],
        "CKA to the starting features, per stage": ["Multiline", [r"cka/.*"]],
    },
    "accuracy": {
        "train and validation accuracy": ["Multiline", [r"train/acc", r"val/acc"]],
        "train and validation loss": ["Multiline", [r"train/loss", r"val/loss"]],
        "shifted test sets": ["Multiline", [r"shift/.*"]],
    },
}


def create_loggers(configs: Mapping[str, Mapping] | None, run_name: str) -> list[Logger]:
    """One Lightning logger per entry of the ``logger`` config (name -> instantiable config).

    A ``name`` or ``run_name`` left null becomes ``run_name`` (the job's overrides), so an
    MLflow or W&B run is named like its run folder.
    """
    from hydra.utils import instantiate

    loggers = []
    for key, conf in (configs or {}).items():
        if not isinstance(conf, Mapping) or "_target_" not in conf:
            raise UserError(
                f"logger.{key} is not a logger config; choose logger=tensorboard, csv, mlflow "
                "or wandb, or several: logger=[tensorboard,mlflow]."
            )
        conf = {**conf}
        for field in ("name", "run_name"):
            if field in conf and conf[field] is None:
                conf[field] = run_name
        if conf["_target_"].endswith("MLFlowLogger"):
            loggers.append(_mlflow(conf, instantiate))
        else:
            loggers.append(instantiate(conf))
    return loggers


def _mlflow(conf: dict, instantiate) -> MLFlowLogger:
    """An MLflow logger whose local store paths are absolute, its run created at once.

    Parallel jobs share one SQLite store: the first creates its tables and the experiment,
    which is done under a file lock so two jobs never both try.
    """
    conf["tracking_uri"] = _absolute_store(conf.get("tracking_uri") or "")
    location = conf.get("artifact_location")
    if location and "://" not in location and not location.startswith("file:"):
        conf["artifact_location"] = Path(location).resolve().as_uri()
    logger = instantiate(conf)
    with _store_lock(conf["tracking_uri"]):
        _ = logger.run_id  # creates the store, the experiment and this run
    return logger


def _absolute_store(uri: str) -> str:
    """``sqlite:///rel/x.db`` and ``file:rel`` made absolute (relative to the working folder,
    where the command ran), their folder created; other URIs (a server) as they are."""
    for prefix in ("sqlite:///", "file:"):
        path = uri.removeprefix(prefix)
        if path != uri and not path.startswith("//"):
            full = Path(path).resolve()
            (full if prefix == "file:" else full.parent).mkdir(parents=True, exist_ok=True)
            return prefix + str(full)
    return uri


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    if not uri.startswith("sqlite:///"):  # a server or a folder store: nothing to create
        yield
        return
    with open(uri.removeprefix("sqlite:///") + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_TEXTS: dict[tuple[str, str], list[str]] = {}  # (MLflow run, tag) -> the lines so far


def log_text(loggers: Sequence[Logger], tag: str, text: str, step: int = 0) -> None:
    """A piece of text: TensorBoard's text tab (one entry per step); an MLflow artifact
    ``<tag>.txt`` holding every piece so far (an artifact is replaced, not appended to)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(tag, text, step)
        elif isinstance(logger, MLFlowLogger):
            lines = _TEXTS.setdefault((logger.run_id, tag), [])
            lines.append(text)
            logger.experiment.log_text(logger.run_id, "\n".join(lines) + "\n", f"{tag}.txt")


def log_run_start(loggers: Sequence[Logger], hparams: dict, summary: str) -> None:
    """The model summary, the TensorBoard layout, and (except in TensorBoard, whose hparams
    session is written once, with the final metrics) the hyperparameters."""
    log_text(loggers, "model_summary", f"```\n{summary}\n```")
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(SCALARS_LAYOUT)
        else:
            logger.log_hyperparams(hparams)


def log_run_end(
    trainer: pl.Trainer,
    hparams: dict,
    final: dict[str, float | None],
    out: Path,
    results: dict,
    class_names: Sequence[str],
) -> None:
    """Final metrics (``hp/<name>``), the confusion matrix (:func:`log_confusion_matrix`),
    then close every logger."""
    final = {f"hp/{k}": v for k, v in final.items() if v is not None}
    step, loggers = trainer.global_step, trainer.loggers
    confusion = results["confusion_matrix"]  # from TransferModule.test_results()
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, final)  # the hparams table's row for this run
        else:
            logger.log_metrics(final, step=step)
        log_confusion_matrix(logger, out, confusion, class_names, step)
    for logger in loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # the next job of a multirun starts a new W&B run


@singledispatch
def log_confusion_matrix(
    logger: Logger, out: Path, matrix: Sequence[Sequence[int]], names: Sequence[str], step: int
) -> None:
    """The test confusion matrix, as ``logger``'s tool keeps it; ``out`` is the run folder
    with ``confusion_matrix.png`` and ``test_report.csv`` already written.

    Any logger: the image where it takes images (``log_image``: W&B, Neptune, Comet), else
    the counts as ``confusion_matrix.csv`` in its folder (CSV). A logger that needs
    something else registers its own (``@log_confusion_matrix.register``), as below.
    """
    if callable(getattr(logger, "log_image", None)):
        logger.log_image("test/confusion_matrix", [str(out / "confusion_matrix.png")], step=step)
    elif getattr(logger, "log_dir", None):
        _write_matrix(matrix, names, Path(logger.log_dir) / "confusion_matrix.csv")


@log_confusion_matrix.register
def _tensorboard(logger: TensorBoardLogger, out: Path, matrix, names, step: int) -> None:
    image = _rgb(out / "confusion_matrix.png")
    logger.experiment.add_image("test/confusion_matrix", image, step, dataformats="HWC")


@log_confusion_matrix.register
def _mlflow_artifacts(logger: MLFlowLogger, out: Path, matrix, names, step: int) -> None:
    for path in (out / "confusion_matrix.png", out / "test_report.csv"):
        logger.experiment.log_artifact(logger.run_id, str(path))


def _rgb(png: Path):
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))


def _write_matrix(matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path) -> None:
    """Counts; rows: true class, columns: predicted class."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *names])
        writer.writerows(
            [name, *(int(v) for v in row)] for name, row in zip(names, matrix, strict=True)
        )


def logger_outputs(loggers: Sequence[Logger], out: Path) -> list[str]:
    """Where each logger's record is, for the closing summary: a folder (``tb/``, ``csv/``,
    the W&B run's folder; relative to the run folder ``out`` when inside it, with a
    trailing slash) or an MLflow run (its id and tracking URI)."""
    found = []
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            found.append(f"MLflow run {logger.run_id} in {logger.experiment.tracking_uri}")
        elif isinstance(logger, WandbLogger):
            found.append(_folder(Path(logger.experiment.dir).parent, out))
        elif getattr(logger, "log_dir", None):  # TensorBoard, CSV and most others: a folder
            found.append(_folder(Path(logger.log_dir), out))
    return found


def _folder(path: Path, out: Path) -> str:
    try:
        return f"{path.resolve().relative_to(Path(out).resolve())}/"
    except ValueError:
        return f"{path}/"
