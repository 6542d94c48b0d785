"""``run(cfg) -> metrics``: seed, build, fit, test, write the run folder. Linear on purpose."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from tl_experiments.analysis import analyze
from tl_experiments.assembly import build_run, create_module
from tl_experiments.callbacks import EpochHistory, RandomState, early_stopping
from tl_experiments.data import load_image_set
from tl_experiments.errors import UserError, require_seed
from tl_experiments.feature_cache import CachedHeadModule
from tl_experiments.models import stage_summary
from tl_experiments.models.backbone import WeightsInfo
from tl_experiments.models.module import TransferModule
from tl_experiments.run.checkpoint_writer import LocalFileCheckpointIO
from tl_experiments.run.console import RunProgress, closing_summary, quiet_third_party
from tl_experiments.run.deferred_analysis import analyse_pending, analysis_pending
from tl_experiments.run.jobs import JobInfo, Placement, placed
from tl_experiments.run.loggers import create_loggers, log_run_end, log_run_start, logger_outputs
from tl_experiments.run.outputs import write_json_atomic, write_test_files
from tl_experiments.run.peak_memory import measure_peak_memory
from tl_experiments.run.record import HP_METRICS, collect_metrics, flat_hparams, run_name
from tl_experiments.run.resume import resume_path, stopped_by_ctrl_c
from tl_experiments.schema import RunRecord
from tl_experiments.tuning import TuningSteps, tuned_run, tuning_applies, with_params

__all__ = ["create_module", "create_trainer", "run"]

log = logging.getLogger(__name__)


def create_trainer(
    cfg: DictConfig,
    out: Path,
    history: EpochHistory,
    module: TransferModule,
    *extra: pl.Callback,
    train_batches: int | None = None,
    name: str = "",
) -> pl.Trainer:
    """Trainer with checkpoints (best + last), lr monitor and the configured loggers
    (``conf/logger/``; TensorBoard in the run folder's tb/), naming the run after ``name``."""
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
    loggers = create_loggers(OmegaConf.to_container(cfg.logger, resolve=True), run_name(cfg, name))
    # Each stage's lr is logged by the plan's callback (strategies/apply.py), not by
    # Lightning's LearningRateMonitor, whose x axis is a private count of batches that a
    # feature-cached run (one batch an epoch) cannot set through a public API.
    callbacks = [ckpt, RandomState(), history, *extra]
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    patience = args.pop("early_stopping_patience", None)
    if patience is not None:  # a run that stopped learning ends (callbacks/early_stop.py)
        stopper, min_epochs = early_stopping(patience, module.plan)
        callbacks.append(stopper)
        args["min_epochs"] = max(args.get("min_epochs") or 0, min_epochs)
    if args.get("enable_progress_bar", True):
        callbacks.append(RunProgress())
    if train_batches:  # Lightning warns when an epoch is shorter than its logging interval
        args["log_every_n_steps"] = max(1, min(args.get("log_every_n_steps", 50), train_batches))
    args.setdefault("plugins", [LocalFileCheckpointIO()])  # unless the config sets its own
    return pl.Trainer(
        **args, logger=loggers or False, callbacks=callbacks, default_root_dir=str(out)
    )


def run(cfg: DictConfig, job: JobInfo | None = None) -> RunRecord:
    """Train and test one (model, strategy, data, seed); return and write ``metrics.json``."""
    out = Path(cfg.paths.output_dir)
    done = out / "metrics.json"
    if cfg.get("skip_finished") and cfg.get("ckpt_path") is None and done.is_file():
        record = json.loads(done.read_text())
        if analysis_pending(record, cfg):  # analysis.defer: the tables came first
            run_cfg = with_params(cfg, record.get("selected") or {}, out)
            with placed(cfg, job) as placement:
                assemble = partial(_assemble, placement=placement)
                return analyse_pending(run_cfg, out, record, assemble, _analyse)
        print(f"Skipping {out}: it already has metrics.json (skip_finished=true).", flush=True)
        return record
    (out / "error.json").unlink(missing_ok=True)  # a re-run replaces an earlier failure
    quiet_third_party()
    begin = time.perf_counter()
    with placed(cfg, job) as placement:
        if tuning_applies(cfg):  # each candidate of strategy.search, then the selected one
            steps = TuningSteps(partial(_assemble, placement=placement), _fit, _test_and_write)
            metrics, parts = tuned_run(cfg, out, steps)
            parts.resumed_seconds = 0.0  # the search's pauses at its rungs are no resume
        else:
            parts = _assemble(cfg, out, placement=placement)
            train_seconds, fit_history = _fit(cfg, out, parts)
            metrics = _test_and_write(cfg, out, parts, train_seconds, fit_history)
    seconds, outputs = time.perf_counter() - begin, logger_outputs(parts.trainer.loggers, out)
    print(closing_summary(metrics, str(out), seconds, parts.resumed_seconds, outputs), flush=True)
    return metrics


@dataclass
class _Parts:
    """What one run assembles before it trains."""

    module: TransferModule
    dm: Any  # ImageDataModule, or CachedFeatureData serving its features
    data_cfg: dict  # timm's resolved data config (mean, std, input size...)
    w0: dict  # the backbone's starting weights, for drift and CKA
    trainer: pl.Trainer
    history: EpochHistory
    placement: Placement
    start: float  # perf_counter when training (and computing cached features) began
    started_at: float = field(default_factory=time.time)
    cpu_start: float = field(default_factory=time.process_time)  # for cpu_seconds (all threads)
    peak_memory_mb: dict = field(default_factory=dict)  # set by _fit
    resumed_seconds: float = 0.0  # set by _fit: training before a resume (test() reloads it)


def _assemble(cfg: DictConfig, out: Path, *callbacks: pl.Callback, placement: Placement) -> _Parts:
    """Seed, build (module and data, on cached features when possible), summary, trainer."""
    clock = time.time(), time.process_time()  # _Parts.started_at, _Parts.cpu_start
    pl.seed_everything(require_seed("seed", cfg.seed), workers=True)
    image_set = load_image_set(cfg.data.source, cfg.data.get("source_args"))
    built = build_run(cfg, image_set)
    start = time.perf_counter()  # training time includes computing cached features (lazily)
    module, dm = built.module, built.dm
    summary = _write_summary(cfg, module, built.weights, out)
    history = EpochHistory()
    batches = dm.train_batches  # 1 on cached features: a split is one batch
    if cfg.trainer.get("limit_train_batches") and cfg.trainer.limit_train_batches >= 1:
        batches = min(batches, int(cfg.trainer.limit_train_batches))
    extra = [*placement.callbacks, *callbacks]
    name = placement.job.name
    trainer = create_trainer(cfg, out, history, module, *extra, train_batches=batches, name=name)
    log_run_start(trainer.loggers, flat_hparams(cfg, name), summary)
    return _Parts(module, dm, built.data_cfg, built.w0, trainer, history, placement, start, *clock)


def _write_summary(cfg: DictConfig, module: TransferModule, weights: WeightsInfo, out: Path) -> str:
    """The stage table (what trains at the start, at which lr), printed and kept in
    summary.txt."""
    plan = module.plan
    summary = stage_summary(
        module.stages,
        f"{cfg.model.name} ({cfg.model.arch}), strategy {cfg.strategy.name}",
        list(plan.lrs),
        weights.describe(),
        plan.trainable_counts(module.stages, 0),
    )
    print(summary, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(summary + "\n")
    return summary


def _fit(
    cfg: DictConfig, out: Path, parts: _Parts, ckpt_path: str | None = None
) -> tuple[float, list[dict]]:
    """Fit, or resume a killed job (or ``ckpt_path``); the training seconds and the
    per-epoch history."""
    ckpt_path = ckpt_path or cfg.get("ckpt_path")
    if ckpt_path is None and cfg.get("skip_finished") and (out / "checkpoints/last.ckpt").is_file():
        print(f"Resuming the unfinished job in {out} from its last.ckpt.", flush=True)
        ckpt_path = "last"  # a re-run sweep continues a killed job instead of restarting it
    ctrl_c = stopped_by_ctrl_c(parts.trainer, out, "during training", parts.placement.job.overrides)
    with ctrl_c, measure_peak_memory() as peak:
        parts.trainer.fit(parts.module, datamodule=parts.dm, ckpt_path=resume_path(ckpt_path, out))
    parts.peak_memory_mb = peak  # the fit's, not the test's or the analysis'
    # A resumed run adds the fit time before its checkpoint, so resumed jobs compare fairly.
    parts.resumed_seconds = parts.history.resumed_seconds
    train_seconds = time.perf_counter() - parts.start + parts.resumed_seconds
    return train_seconds, list(parts.history.rows)  # test() restores callback state


def _test_and_write(
    cfg: DictConfig,
    out: Path,
    parts: _Parts,
    train_seconds: float,
    fit_history: list[dict],
    extra: dict | None = None,
) -> RunRecord:
    """Test the best checkpoint, analyse, log the final metrics, write the run folder
    (``extra``: more of the record, e.g. a tuned run's search)."""
    trainer, module = parts.trainer, parts.module
    best = trainer.checkpoint_callback.best_model_path or None
    log.info("Testing the best checkpoint (%s).", Path(best).name if best else "last weights")
    with stopped_by_ctrl_c(trainer, out, "during the test", parts.placement.job.overrides):
        trainer.test(module, datamodule=parts.dm, ckpt_path=best, verbose=False)
    cached = isinstance(module, CachedHeadModule)
    metrics = collect_metrics(cfg, trainer, module, parts.dm, fit_history, train_seconds, cached)
    metrics |= {"peak_memory_mb": parts.peak_memory_mb} | (extra or {})
    results = module.test_results()  # on every rank: torchmetrics syncs across DDP ranks
    if not trainer.is_global_zero:  # DDP: rank 0 alone writes the run folder
        return metrics
    write_test_files(results, module.class_names, out)
    interrupted = _analyse(cfg, parts, metrics)
    if cfg.analysis.enabled and cfg.analysis.get("defer"):
        metrics["analysis_pending"] = True  # run/deferred_analysis.py
    final = {k: metrics[k] for k in HP_METRICS}
    hparams = flat_hparams(cfg, parts.placement.job.name)
    log_run_end(trainer, hparams, final, out, results, module.class_names)
    metrics.update(
        gpu_slot=parts.placement.gpu_slot,
        pid=os.getpid(),
        started_at=parts.started_at,
        finished_at=time.time(),
        cpu_seconds=round(time.process_time() - parts.cpu_start, 2),
    )
    write_json_atomic(metrics, out / "metrics.json")
    if interrupted:
        raise KeyboardInterrupt(
            f"Interrupted during the analysis; {out / 'metrics.json'} has the training and "
            "test results without it (analysis.enabled=false skips the analysis)."
        )
    return metrics


def _analyse(cfg: DictConfig, parts: _Parts, metrics: dict) -> bool:
    """Forgetting, drift, CKA, shifted test sets (docs/shift.md) into ``metrics``; True when
    Ctrl-C stopped it (training and test are done: they are kept)."""
    if not cfg.analysis.enabled or cfg.analysis.get("defer"):
        return False
    log.info("Analysis: drift, CKA, ImageNet agreement, shifted test sets (docs/shift.md).")
    try:
        options, model = OmegaConf.to_container(cfg.analysis), OmegaConf.to_container(cfg.model)
        p = parts
        metrics |= analyze(p.module, p.dm, p.data_cfg, p.w0, options, model, p.trainer)
    except KeyboardInterrupt:
        metrics["analysis_interrupted"] = True
        return True
    return False
