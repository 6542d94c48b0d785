"""``evaluate(cfg) -> metrics``: test a trained checkpoint, write what a training run's test writes.

Used by the root ``eval.py``. The model (architecture, class names, weights, transform) comes
from the checkpoint alone; the config only chooses the data, the split and the trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger

from tl_experiments.data import DataSpec, ImageDataModule, ImageSet, load_image_set, make_splits
from tl_experiments.errors import UserError
from tl_experiments.models.checkpoint import eval_transform, load_checkpoint, module_from_checkpoint
from tl_experiments.run.console import quiet_third_party
from tl_experiments.run.outputs import write_json_atomic, write_test_files

__all__ = ["SPLITS", "evaluate", "eval_images"]

SPLITS = ("auto", "test", "all")

log = logging.getLogger(__name__)


def eval_images(
    data: Mapping, class_names: list[str], split: str = "auto", trained: Mapping | None = None
) -> tuple[ImageSet, str]:
    """The images of a data config to evaluate on, labelled with the checkpoint's class ids.

    Args:
        data: a data config (``cfg.data`` as a plain dict).
        class_names: the checkpoint's classes; the data's classes must be among them.
        split: ``test`` (the split a training run tests on), ``all`` (every image), or
            ``auto``: ``test`` on the data the checkpoint was trained on (``all`` would
            score its training images too), ``all`` on other data without its own
            ``test/`` subfolder (new images to score), else ``test``.
        trained: the data config the checkpoint was trained with; on that data the test
            split is drawn with its fractions and seed, so it is the run's own.

    Returns:
        The images and the split they are (``auto`` resolved).
    """
    if split not in SPLITS:
        raise UserError(f"split={split} is not one of {', '.join(SPLITS)}; pick one of them.")
    image_set = load_image_set(data["source"], data.get("source_args"))
    own = trained is not None and same_data(data, trained)
    if split == "auto":
        folder = data["source"] == "image_folder" and "test" not in image_set.splits
        split = "all" if folder and not own else "test"
    if split == "all":
        if own:
            log.warning(
                "split=all on the data this checkpoint was trained on scores its "
                "training images too; use split=test for the run's own test split."
            )
        idx = np.arange(len(image_set))
    else:
        # The run's own fractions and seed on its own data, with the same defaults.
        draw = DataSpec.from_config(trained if own else data)
        # Same arguments as training (samples_per_class only thins the train split).
        idx = make_splits(
            image_set.labels,
            image_set.splits,
            draw.val_fraction,
            draw.test_fraction,
            None,
            draw.split_seed,
        )["test"]
    image_set = _relabel(image_set, class_names)
    images = replace(
        image_set, items=[image_set.items[i] for i in idx], labels=image_set.labels[idx], splits={}
    )
    return images, split


def same_data(a: Mapping, b: Mapping) -> bool:
    """Whether two data configs read the same images (same source, same folder)."""

    def where(d: Mapping) -> dict:
        args = dict(d.get("source_args") or {})
        if args.get("root"):
            args["root"] = str(Path(args["root"]).expanduser().resolve())
        return {"source": d["source"], **args}

    return where(a) == where(b)


def eval_data(cfg: DictConfig, ckpt: dict) -> tuple[dict, dict | None]:
    """The data to evaluate on and the data the checkpoint was trained on.

    Without ``data=`` or ``data.*`` on the command line (``data_from=auto``), or with
    ``data_from=ckpt``, that is the checkpoint's own data: ``python eval.py ckpt=...``
    re-tests the run on its own test split.
    """
    trained = ckpt["tl_experiments"].get("config", {}).get("data")
    mode = cfg.get("data_from", "config")
    if mode not in ("auto", "ckpt", "config"):
        raise UserError(f"data_from={mode} is not one of auto, ckpt, config; pick one of them.")
    from_ckpt = mode == "ckpt" or (mode == "auto" and not _data_on_command_line())
    if from_ckpt and trained:
        return dict(trained), trained
    return OmegaConf.to_container(cfg.data, resolve=True), trained


def _data_on_command_line() -> bool:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # called from Python: the config is what was asked for
        return True
    keys = (o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task)
    return any(k == "data" or k.startswith("data.") for k in keys)


def _relabel(image_set: ImageSet, class_names: list[str]) -> ImageSet:
    """Map the data's labels onto the checkpoint's class ids, by class name."""
    if image_set.class_names == class_names:
        return image_set
    unknown = [c for c in image_set.class_names if c not in class_names]
    if unknown:
        raise UserError(
            f"Class(es) {', '.join(unknown)} of the data are not among the "
            f"checkpoint's classes ({', '.join(class_names)}); rename or remove "
            "those class folders."
        )
    ids = np.array([class_names.index(c) for c in image_set.class_names])
    return replace(image_set, labels=ids[image_set.labels], class_names=list(class_names))


def evaluate(cfg: DictConfig) -> dict:
    """Test ``cfg.ckpt`` on ``cfg.data``; write and return ``eval_metrics.json``.

    Also writes ``test_report.csv``, ``confusion_matrix.png`` and TensorBoard events into
    ``cfg.paths.output_dir``, as a training run does after its test.
    """
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise UserError("No checkpoint given; pass ckpt=<run folder>/checkpoints/best.ckpt.")
    quiet_third_party()  # Lightning's pytree deprecation, adverts, GPU/TPU lines
    out = Path(cfg.paths.output_dir)
    ckpt = load_checkpoint(cfg.ckpt)
    module = module_from_checkpoint(ckpt)
    data, trained = eval_data(cfg, ckpt)
    images, split = eval_images(data, module.class_names, cfg.get("split", "auto"), trained)
    dm = _datamodule(ckpt, images, data)
    out.mkdir(parents=True, exist_ok=True)
    trainer = _trainer(cfg, out)
    trainer.test(module, datamodule=dm, verbose=False)
    results = module.test_results()
    write_test_files(results, module.class_names, out, trainer.logger.experiment)
    # Images actually tested: trainer.limit_test_batches may stop before the end.
    n_tested = int(sum(results["per_class"]["support"]))
    metrics = _metrics(cfg, ckpt, trainer.callback_metrics, split, n_tested, data["name"])
    write_json_atomic(metrics, out / "eval_metrics.json")
    print(
        f"Test accuracy {metrics['test_acc']:.4f}, macro F1 {metrics['test_f1_macro']:.4f} "
        f"on {n_tested} images ({data['name']}, split {split}); wrote {out}",
        flush=True,
    )
    return metrics


def _datamodule(ckpt: dict, images: ImageSet, data: Mapping) -> ImageDataModule:
    """All of ``images`` as the test split, through the checkpoint's own eval transform."""
    tf = eval_transform(ckpt)
    img_size = int(ckpt["tl_experiments"]["data_config"]["input_size"][-1])
    return ImageDataModule(
        images,
        {"test": np.arange(len(images))},
        tf,
        tf,
        augment=False,
        img_size=img_size,
        batch_size=data.get("batch_size", 32),
        eval_batch_size=data.get("eval_batch_size"),
        num_workers=data.get("num_workers", 0),
    )


def _trainer(cfg: DictConfig, out: Path) -> pl.Trainer:
    """The configured trainer, logging to TensorBoard in ``out`` and saving no checkpoints."""
    logger = TensorBoardLogger(save_dir=str(out), name="tb", version="", default_hp_metric=False)
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs.pop("early_stopping_patience", None)  # training only (train.create_trainer)
    kwargs.update(logger=logger, enable_checkpointing=False, default_root_dir=str(out))
    return pl.Trainer(**kwargs)


def _metrics(
    cfg: DictConfig, ckpt: dict, logged: Mapping, split: str, num_images: int, data_name: str
) -> dict:
    meta = ckpt["tl_experiments"]
    trained = meta.get("config", {})
    return {
        "status": "ok",
        "ckpt": str(Path(cfg.ckpt).resolve()),
        "arch": meta["arch"],
        "strategy": meta.get("strategy"),
        "trained_on": trained.get("data", {}).get("name"),
        "data": data_name,
        "split": split,
        "num_images": num_images,
        "num_classes": len(meta["class_names"]),
        **{
            key: _num(logged.get(f"test/{name}"))
            for key, name in (
                ("test_acc", "acc"),
                ("test_f1_macro", "f1_macro"),
                ("test_loss", "loss"),
            )
        },
    }


def _num(x) -> float | None:
    return None if x is None else round(float(x), 6)
