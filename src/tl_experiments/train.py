"""``run(cfg) -> metrics``: seed, build, fit, test, write the run folder. Linear on purpose."""

from __future__ import annotations

import json
import logging
import os
import signal
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
from tl_experiments.jobs import (
    core_share,
    ddp_children_run_this_job_only,
    end_distributed,
    maybe_claim_gpu,
    parallel_share,
    set_threads,
)
from tl_experiments.models import stage_summary
from tl_experiments.models.backbone import WeightsInfo, create_backbone_and_weights
from tl_experiments.models.module import TransferModule
from tl_experiments.outputs import write_json_atomic, write_test_files
from tl_experiments.peak_memory import measure_peak_memory
from tl_experiments.run_record import HP_METRICS, collect_metrics, flat_hparams
from tl_experiments.strategies import Strategy, stage_lrs
from tl_experiments.strategies.lora import adapters_for
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
    lora = adapters_for(backbone, strategy)  # peft LoRA adapters, when the strategy has them
    module = TransferModule(backbone, strategy, class_names, cfg.scheduler, cfg.label_smoothing)
    module.meta |= {"weights": asdict(info)} | ({"lora": lora} if lora else {})  # checkpoints
    module.base_only = strategy.parameter_efficient and weights != "none"
    module.base_only &= not module.unfreezes_later  # a fixed base (base_weights.py)
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
    set_threads(cfg.get("threads") or parallel_share())
    share = core_share(cfg)
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
    gpu_slot = maybe_claim_gpu(cfg)
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
    ddp_children_run_this_job_only(out)
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
        end_distributed()


def _fit_test_write(
    cfg, out, trainer, module, dm, data_cfg, history, w0, start, gpu_slot, started_at
) -> dict:
    """Fit (or resume), test the best checkpoint, analyse, write the run folder."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and cfg.get("skip_finished") and (out / "checkpoints/last.ckpt").is_file():
        print(f"Resuming the unfinished job in {out} from its last.ckpt.", flush=True)
        ckpt_path = "last"  # a re-run sweep continues a killed job instead of restarting it
    with _stopped_by_ctrl_c(trainer, out, "during training"), measure_peak_memory() as peak:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_path(ckpt_path, out))
    # A resumed run adds the fit time before its checkpoint, so resumed jobs compare fairly.
    train_seconds = time.perf_counter() - start + history.resumed_seconds
    best = trainer.checkpoint_callback.best_model_path or None
    fit_history = list(history.rows)  # test() restores callback state from the best epoch
    log.info("Testing the best checkpoint (%s).", Path(best).name if best else "last weights")
    with _stopped_by_ctrl_c(trainer, out, "during the test"):
        trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False)
    metrics = collect_metrics(cfg, trainer, module, dm, fit_history, train_seconds)
    metrics |= {"peak_memory_mb": peak}  # the fit's, not the test's or the analysis'
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
    trainer.logger.log_hyperparams(flat_hparams(cfg), {f"hp/{k}": metrics[k] for k in HP_METRICS})
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
