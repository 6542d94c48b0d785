"""``run(cfg) -> metrics``: seed, build, fit, test, write the run folder. Linear on purpose."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from tl_experiments.analysis import analyze, snapshot_weights
from tl_experiments.cached_features import cache_blocker, use_cached_features
from tl_experiments.callbacks import CoreShare, EpochHistory
from tl_experiments.checkpoint_io import LocalFileCheckpointIO
from tl_experiments.console import RunProgress, closing_summary, quiet_third_party
from tl_experiments.data import create_datamodule, load_image_set
from tl_experiments.data.feature_cache import FeatureCache
from tl_experiments.errors import UserError
from tl_experiments.models import stage_summary
from tl_experiments.models.backbone import WeightsInfo, create_backbone_and_weights
from tl_experiments.models.module import TransferModule
from tl_experiments.outputs import write_json_atomic, write_test_files
from tl_experiments.strategies import Strategy, stage_lrs
from tl_experiments.tensorboard import RunLogger

__all__ = ["run"]

log = logging.getLogger(__name__)


def create_module(cfg: DictConfig, num_classes: int, class_names: list[str]) -> TransferModule:
    """Backbone with its starting weights, wrapped under the configured strategy."""
    strategy = Strategy.from_dict(OmegaConf.to_container(cfg.strategy, resolve=True))
    weights = cfg.model.weights if strategy.pretrained else "none"
    backbone, info = create_backbone_and_weights(
        cfg.model.arch,
        num_classes,
        weights,
        cfg.model.get("weights_file"),
        cfg.model.get("drop_rate"),
        cfg.get("zero_head", True),
    )
    module = TransferModule(backbone, strategy, class_names, cfg.scheduler, cfg.label_smoothing)
    module.meta["weights"] = asdict(info)  # kept in every checkpoint
    speed = cfg.get("speed") or {}
    module.set_speed_options(
        bool(speed.get("channels_last")),
        bool(speed.get("compile")),
        bool(speed.get("fused_optimizer")),
    )
    return module


def create_trainer(
    cfg: DictConfig,
    out: Path,
    history: EpochHistory,
    *extra: pl.Callback,
    train_batches: int | None = None,
) -> pl.Trainer:
    """Trainer with checkpoints (best + last), lr monitor and TensorBoard in the run folder."""
    if cfg.trainer.get("max_epochs", 1) <= 0:
        raise UserError(f"trainer.max_epochs={cfg.trainer.max_epochs} must be positive.")
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor="val/acc",
        mode="max",
        # Lightning writes last.ckpt only in an epoch that also wrote best.ckpt, so the two
        # hold the same state: "link" makes last a symlink instead of a second full write.
        save_last="link",
        enable_version_counter=False,
    )
    logger = RunLogger(save_dir=str(out), name="tb", version="", default_hp_metric=False)
    callbacks = [ckpt, LearningRateMonitor(logging_interval="epoch"), history, *extra]
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    if args.get("enable_progress_bar", True):
        callbacks.append(RunProgress())
    if train_batches:  # Lightning warns when an epoch is shorter than its logging interval
        args["log_every_n_steps"] = max(1, min(args.get("log_every_n_steps", 50), train_batches))
    args.setdefault("plugins", [LocalFileCheckpointIO()])  # unless the config sets its own
    return pl.Trainer(
        **args,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(out),
    )


def run(cfg: DictConfig) -> dict:
    """Train and test one (model, strategy, data, seed); return and write ``metrics.json``."""
    out = Path(cfg.paths.output_dir)
    if (
        cfg.get("skip_finished")
        and cfg.get("ckpt_path") is None
        and (out / "metrics.json").is_file()
    ):
        print(f"Skipping {out}: it already has metrics.json (skip_finished=true).", flush=True)
        return json.loads((out / "metrics.json").read_text())
    (out / "error.json").unlink(missing_ok=True)  # a re-run replaces an earlier failure
    set_threads(cfg.get("threads") or _parallel_share())
    share = _core_share(cfg)
    quiet_third_party()
    begin = time.perf_counter()
    try:
        metrics = _run(cfg, out, share)
    finally:
        if share:
            share.release()
    print(closing_summary(metrics, str(out), time.perf_counter() - begin), flush=True)
    return metrics


def _run(cfg: DictConfig, out: Path, share: CoreShare | None) -> dict:
    gpu_slot = _maybe_claim_gpu(cfg)
    started_at = time.time()
    pl.seed_everything(cfg.seed, workers=True)
    image_set = load_image_set(cfg.data.source, cfg.data.get("source_args"))
    module = create_module(cfg, len(image_set.class_names), image_set.class_names)
    w0 = snapshot_weights(module.backbone)  # starting weights, for drift and CKA
    data_kwargs = OmegaConf.to_container(cfg.data, resolve=True)
    for key in ("name", "source", "source_args", "root"):
        data_kwargs.pop(key, None)
    dm, data_cfg = create_datamodule(
        image_set, module.backbone, cfg.model.img_size, seed=cfg.seed, **data_kwargs
    )
    module.meta = {
        **module.meta,
        "arch": cfg.model.arch,
        "data_config": data_cfg,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    start = time.perf_counter()  # training time includes computing cached features
    _maybe_cache_features(cfg, module, dm, data_cfg)

    summary = stage_summary(
        module.stages,
        f"{cfg.model.name} ({cfg.model.arch}), strategy {cfg.strategy.name}",
        stage_lrs(module.strategy, len(module.stages)),
        WeightsInfo(**module.meta["weights"]).describe(),
    )
    print(summary, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(summary + "\n")

    history = EpochHistory()
    _ddp_children_run_this_job_only(out)
    batches = -(-len(dm.splits["train"]) // dm.batch_size)
    if cfg.trainer.get("limit_train_batches") and cfg.trainer.limit_train_batches >= 1:
        batches = min(batches, int(cfg.trainer.limit_train_batches))
    trainer = create_trainer(cfg, out, history, *([share] if share else []), train_batches=batches)
    trainer.logger.experiment.add_text("model_summary", f"```\n{summary}\n```")
    try:
        return _fit_test_write(
            cfg, out, trainer, module, dm, data_cfg, history, w0, start, gpu_slot, started_at
        )
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """Leave no DDP state behind for the next job of a multirun in this process: Lightning
    reads LOCAL_RANK etc. to decide whether it must start child processes."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)


def _fit_test_write(
    cfg, out, trainer, module, dm, data_cfg, history, w0, start, gpu_slot, started_at
) -> dict:
    """Fit (or resume), test the best checkpoint, analyse, write the run folder."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and cfg.get("skip_finished") and (out / "checkpoints/last.ckpt").is_file():
        print(f"Resuming the unfinished job in {out} from its last.ckpt.", flush=True)
        ckpt_path = "last"  # a re-run sweep continues a killed job instead of restarting it
    with _stopped_by_ctrl_c(trainer, out, "during training"):
        trainer.fit(module, datamodule=dm, ckpt_path=resume_path(ckpt_path, out))
    # A resumed run adds the fit time before its checkpoint, so resumed jobs compare fairly.
    train_seconds = time.perf_counter() - start + history.resumed_seconds
    best = trainer.checkpoint_callback.best_model_path or None
    fit_history = list(history.rows)  # test() restores callback state from the best epoch
    log.info("Testing the best checkpoint (%s).", Path(best).name if best else "last weights")
    with _stopped_by_ctrl_c(trainer, out, "during the test"):
        trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False)
    metrics = _collect(cfg, trainer, module, dm, fit_history, train_seconds)
    results = module.test_results()  # on every rank: torchmetrics syncs across DDP ranks
    if not trainer.is_global_zero:  # DDP: rank 0 alone writes the run folder
        return metrics
    write_test_files(results, module.class_names, out, trainer.logger.experiment)
    interrupted = False
    if cfg.analysis.enabled:  # forgetting, drift, CKA, shifted test sets (docs/shift.md)
        log.info("Analysis: drift, CKA, ImageNet agreement, shifted test sets (docs/shift.md).")
        try:
            metrics |= analyze(
                module,
                dm,
                data_cfg,
                w0,
                OmegaConf.to_container(cfg.analysis),
                OmegaConf.to_container(cfg.model),
                trainer,
            )
        except KeyboardInterrupt:  # training and test are done: keep them
            interrupted = metrics["analysis_interrupted"] = True
    trainer.logger.log_hyperparams(_flat_hparams(cfg), {f"hp/{k}": metrics[k] for k in _HP_METRICS})
    trainer.logger.finalize("success")  # flush and close what test and analysis logged
    metrics.update(
        gpu_slot=gpu_slot, pid=os.getpid(), started_at=started_at, finished_at=time.time()
    )
    write_json_atomic(metrics, out / "metrics.json")
    if interrupted:
        raise KeyboardInterrupt(
            f"Interrupted during the analysis; {out / 'metrics.json'} has the training and "
            "test results without it (analysis.enabled=false skips the analysis)."
        )
    return metrics


@contextmanager
def _stopped_by_ctrl_c(trainer: pl.Trainer, out: Path, where: str) -> Iterator[None]:
    """Lightning answers Ctrl-C with its own shutdown and ``sys.exit(1)``; say instead how
    to resume (``KeyboardInterrupt`` with that sentence, which ``cli.guarded`` prints)."""
    try:
        yield
    except SystemExit:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored it
        raise KeyboardInterrupt(f"Interrupted {where}; {resume_hint(out)}") from None


def resume_hint(out: Path) -> str:
    """How to continue this run from its last checkpoint, as a command."""
    if not (out / "checkpoints" / "last.ckpt").exists():
        return "no epoch finished yet, so run the same command again to start over."
    overrides = []
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        skip = ("hydra.run.dir=", "ckpt_path=")
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(skip)]
    args = " ".join([*overrides, f"hydra.run.dir={out}", "ckpt_path=last"])
    return f"resume with: python train.py {args}"


def _ddp_children_run_this_job_only(out: Path) -> None:
    """Make Lightning's DDP child processes re-run this job, not the whole sweep.

    Lightning starts DDP children as ``sys.argv`` plus ``hydra.run.dir=<run.dir>``; inside a
    multirun that would be ``-m`` with every sweep value, so each child would start the sweep
    again (lightning-hydra-template issue 393). This job's own overrides and folder are used.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(out)


def resume_path(ckpt_path: str | None, out: Path) -> str | None:
    """The checkpoint to resume from (``last`` = this run folder's last.ckpt), checked to be
    a plain-data file before Lightning unpickles it."""
    if not ckpt_path:
        return None
    path = out / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise UserError(
            f"No checkpoint at '{path}' to resume from; pass the killed run's "
            "folder as hydra.run.dir=... with ckpt_path=last, or a .ckpt path."
        )
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"Refused to resume from '{path}': it is not a plain checkpoint "
            f"({type(e).__name__}); use a checkpoint written by train.py."
        ) from None
    return str(path)


def _maybe_cache_features(cfg: DictConfig, module: TransferModule, dm, data_cfg: dict) -> bool:
    """Train the head on cached features when that cannot change the result."""
    if not cfg.feature_cache.enabled:
        return False
    reason = cache_blocker(module, dm, OmegaConf.to_container(cfg.trainer, resolve=True))
    if reason is not None:
        log.info("Feature cache not used: %s.", reason)
        return False
    key_parts = {
        "arch": cfg.model.arch,
        "source": cfg.data.source,
        "source_args": OmegaConf.to_container(cfg.data.source_args, resolve=True),
        "transform": data_cfg,
    }
    use_cached_features(module, dm, FeatureCache(cfg.feature_cache.dir), key_parts)
    log.info("Feature cache: the frozen backbone runs once per split; the head trains on that.")
    return True


_HP_METRICS = ("test_acc", "test_f1_macro", "best_val_acc", "train_val_gap", "train_seconds")


def _collect(cfg, trainer, module, dm, history: list[dict], train_seconds: float) -> dict:
    m = trainer.callback_metrics
    last = history[-1] if history else {}
    ckpt = trainer.checkpoint_callback
    total = sum(s.num_params for s in module.stages)
    trainable = sum(s.num_params for s in module.stages if s.trainable)
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
        "feature_cache": module.features_input,
        "settings": _settings(cfg),
        "weights": module.meta.get("weights"),
        "skipped_images": {k: len(v) for k, v in dm.skipped.items()},
        "history": history,
    }


def _settings(cfg: DictConfig) -> dict:
    """The resolved config as dotted keys (the report groups runs by all of them but the
    seed); ``paths`` are left out: they name where the run is, not what it is."""
    flat: dict = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node if isinstance(node, int | float | str | bool) else str(node)

    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("paths", None)
    walk(config, "")
    return flat


def _num(x) -> float | None:
    return None if x is None else round(float(x), 6)


def _flat_hparams(cfg: DictConfig) -> dict:
    keys = {
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


def set_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (parallel sweep jobs must not oversubscribe cores)."""
    if n:
        torch.set_num_threads(int(n))


def _core_share(cfg: DictConfig) -> CoreShare | None:
    """Parallel CPU jobs (joblib launcher) with no fixed ``threads`` split the cores among
    the jobs running at the moment (callbacks/core_share.py)."""
    if cfg.get("threads") or _parallel_share() is None:
        return None
    accelerator = cfg.trainer.get("accelerator")
    if not (accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.device_count())):
        return None
    share = CoreShare(cfg.get("cpu_lock_dir") or f"/tmp/tl_experiments_cpu_slots_{os.getuid()}")
    try:
        share.claim()
    except OSError as e:  # e.g. a lock folder this user may not write: keep the fixed share
        log.warning("Core sharing off (%s); this job keeps %d threads.", e, torch.get_num_threads())
        return None
    return share


def _maybe_claim_gpu(cfg: DictConfig) -> int | None:
    """With ``gpu_per_job`` (auto: parallel jobs on a multi-GPU machine), pin one GPU."""
    mode = cfg.get("gpu_per_job", "auto")
    # device_count() asks NVML and does not start CUDA (is_available() would, and then
    # CUDA_VISIBLE_DEVICES set below would be ignored).
    count = cfg.get("gpu_count") or torch.cuda.device_count()
    if mode == "auto":
        on_gpu = cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")
        mode = on_gpu and _parallel_share() is not None and count > 1
    if not mode:
        return None
    if count < 1:
        raise UserError(
            "gpu_per_job=true needs GPUs; none are visible (set gpu_count for a "
            "simulated run, or gpu_per_job=false)."
        )
    from tl_experiments.gpu_slots import claim_gpu

    slot = claim_gpu(count, cfg.get("gpu_lock_dir") or "/tmp/tl_experiments_gpu_slots")
    log.info("gpu_per_job: this job runs on GPU %d (CUDA_VISIBLE_DEVICES=%d).", slot, slot)
    return slot


def _parallel_share() -> int | None:
    """Cores per job when Hydra's joblib launcher runs ``n_jobs`` jobs side by side."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if not n_jobs or n_jobs < 1:
        return None
    return max(1, (os.cpu_count() or 1) // int(n_jobs))
