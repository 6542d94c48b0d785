"""The record a run leaves: ``metrics.json``'s fields and the hparams TensorBoard shows.
docs/run_folder.md lists the fields; ``report/`` reads them."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tl_experiments.schema import RunRecord

__all__ = ["HP_METRICS", "collect_metrics", "flat_hparams", "run_name"]


HP_METRICS = ("test_acc", "test_f1_macro", "best_val_acc", "train_val_gap", "train_seconds")


def collect_metrics(
    cfg, trainer, module, dm, history: list[dict], train_seconds: float, feature_cache: bool
) -> RunRecord:
    """The run's record before the analysis adds to it (schema.py: every field)."""
    m = trainer.callback_metrics
    last = history[-1] if history else {}
    ckpt = trainer.checkpoint_callback
    total = sum(s.num_params for s in module.stages)
    trainable = sum(s.num_trainable for s in module.stages)
    train_acc, val_acc = last.get("train_acc"), last.get("val_acc")
    return {
        "status": "ok",
        "model": cfg.model.name,
        "arch": cfg.model.arch,
        "strategy": cfg.strategy.name,
        "data": cfg.data.name,
        "samples_per_class": cfg.data.get("samples_per_class"),
        "img_size": cfg.model.img_size,
        "seed": cfg.seed,
        "num_classes": len(dm.class_names),
        **{f"{k}_size": len(dm.splits[k]) for k in ("train", "val", "test")},
        "trainable_params": trainable,
        "total_params": total,
        "train_seconds": round(train_seconds, 3),
        "epochs": trainer.current_epoch,
        "best_val_acc": _num(ckpt.best_model_score),
        "val_acc": val_acc,
        "train_acc": train_acc,
        "train_val_gap": None if None in (train_acc, val_acc) else round(train_acc - val_acc, 6),
        "test_acc": _num(m.get("test/acc")),
        "test_f1_macro": _num(m.get("test/f1_macro")),
        "feature_cache": feature_cache,
        **_cost(trainer, history),
        "settings": _settings(cfg),
        "weights": module.meta.get("weights"),
        "skipped_images": {k: len(v) for k, v in dm.skipped.items()},
        "history": history,
    }


def _cost(trainer, history: list[dict]) -> dict:
    """Seconds per epoch and per optimizer step (training only), the best checkpoint's size."""
    seconds = history[-1]["seconds"] if history else None
    path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    size = Path(path).resolve().stat().st_size if path and Path(path).is_file() else None
    return {
        "epoch_seconds": None if not seconds else round(seconds / len(history), 4),
        "step_seconds": None if not seconds else round(seconds / max(trainer.global_step, 1), 5),
        "checkpoint_bytes": size,
    }


def _settings(cfg: DictConfig) -> dict:
    """The resolved config as dotted keys (the report groups runs by all of them but the
    seed); ``paths`` and ``logger`` are left out: they say where the run is recorded, not
    what it is."""
    flat: dict = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node if isinstance(node, int | float | str | bool) else str(node)

    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("paths", None)
    config.pop("logger", None)
    walk(config, "")
    return flat


def _num(x) -> float | None:
    return None if x is None else round(float(x), 6)


def run_name(cfg: DictConfig, job_name: str = "") -> str:
    """A run's name in TensorBoard's hparams table, MLflow and W&B: the job's overrides
    (``job_name``: ``seed=0,strategy=full_ft``, ``JobInfo.name``), else strategy and seed."""
    from tl_experiments.paths import short_name

    return short_name(job_name or f"seed={cfg.seed},strategy={cfg.strategy.name}")


def flat_hparams(cfg: DictConfig, job_name: str = "") -> dict:
    """The hyperparameters every logger gets (the columns of TensorBoard's hparams table)."""
    keys = {
        "run": run_name(cfg, job_name),
        "model": cfg.model.name,
        "arch": cfg.model.arch,
        "strategy": cfg.strategy.name,
        "data": cfg.data.name,
        "seed": cfg.seed,
        "img_size": cfg.model.img_size,
        "samples_per_class": cfg.data.get("samples_per_class") or -1,
        "lr": cfg.strategy.lr,
        "max_epochs": cfg.trainer.get("max_epochs", -1),
    }
    return {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in keys.items()}
