"""A tuned run: the strategy's grid searched by successive halving, the selected setting
tested once.

Each candidate trains in ``<run>/candidates/<setting>/`` (its checkpoints, TensorBoard, no
test and no analysis); its rung checkpoint lets the search resume it. The selected one is
then tested and analysed as an ordinary run is, and the run folder gets its ``metrics.json``
(with a ``tuning`` record of every candidate's validation curve and where it stopped) and
``checkpoints/best.ckpt``. A pruned candidate's test accuracy is never computed.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tl_experiments.callbacks import StopAtEpoch
from tl_experiments.schema import RunRecord
from tl_experiments.strategies import Strategy
from tl_experiments.tuning.halving import SearchResult, grid, successive_halving

__all__ = [
    "TuningSteps",
    "candidate_name",
    "search_space",
    "tuned_run",
    "tuning_applies",
    "with_params",
]


@dataclass(frozen=True)
class TuningSteps:
    """The steps of an ordinary run (``tl_experiments.train``) that the search reuses."""

    assemble: Callable[..., Any]  # (cfg, out, *callbacks) -> parts
    fit: Callable[..., tuple[float, list[dict]]]  # (cfg, out, parts, ckpt_path)
    finish: Callable[..., RunRecord]  # (cfg, out, parts, seconds, history, extra)


def search_space(cfg: DictConfig) -> tuple[tuple[str, tuple], ...]:
    """The strategy's ``search`` (from its YAML file), validated by :class:`Strategy`."""
    return Strategy.from_dict(OmegaConf.to_container(cfg.strategy, resolve=True)).search


def tuning_applies(cfg: DictConfig) -> bool:
    """``tune.enabled`` and the strategy has more than one setting to try."""
    tune = cfg.get("tune") or {}
    return bool(tune.get("enabled")) and len(grid(search_space(cfg))) > 1


def candidate_name(params: dict[str, Any]) -> str:
    """A folder name for a setting: ``lr=0.003``, ``backbone_lr_scale=0.3``."""
    return ",".join(f"{k}={v}" for k, v in params.items()).replace("/", "_")


@dataclass
class _Candidate:
    cfg: DictConfig
    out: Path
    epochs_done: int = 0
    seconds: float = 0.0  # training wall time over all its fits
    parts: Any = None
    history: list[dict] = field(default_factory=list)

    @property
    def rung_ckpt(self) -> Path:
        return self.out / "checkpoints" / "rung.ckpt"

    def train_to(self, until: int, epochs: int, steps: TuningSteps) -> list[float]:
        stop = [StopAtEpoch(until, self.rung_ckpt)] if until < epochs else []
        self.parts = steps.assemble(self.cfg, self.out, *stop)
        resume = str(self.rung_ckpt) if self.epochs_done else None
        self.seconds, self.history = steps.fit(self.cfg, self.out, self.parts, resume)
        self.epochs_done = until
        return [row.get("val_acc", float("nan")) for row in self.history]


def with_params(cfg: DictConfig, params: dict[str, Any], run_dir: Path) -> DictConfig:
    """A copy of ``cfg`` at one setting of the grid; a frozen backbone's features are kept in
    ``<run_dir>/features``, shared by the candidates and a later analysis."""
    c = copy.deepcopy(cfg)
    for key, value in params.items():
        OmegaConf.update(c, f"strategy.{key}", value, merge=False)
    if params and c.feature_cache.get("dir") is None:
        c.feature_cache.dir = str(run_dir / "features")
    return c


def _candidate_cfg(cfg: DictConfig, params: dict[str, Any], out: Path) -> DictConfig:
    c = with_params(cfg, params, out.parent.parent)
    c.paths.output_dir = str(out)
    c.analysis.enabled = False  # only the selected setting is analysed
    c.skip_finished, c.ckpt_path = False, None
    return c


def tuned_run(cfg: DictConfig, out: Path, steps: TuningSteps) -> tuple[RunRecord, Any]:
    """Search the strategy's grid on validation, then test and write the selected setting;
    its record and the selected candidate's parts (what ``steps.assemble`` returned)."""
    params, started_at, cpu_start = grid(search_space(cfg)), time.time(), time.process_time()
    epochs, tune = int(cfg.trainer.max_epochs), cfg.tune
    first = max(1, round(epochs * float(tune.rung)))
    shutil.rmtree(out / "candidates", ignore_errors=True)  # a killed search starts over
    cands = []
    for p in params:
        where = out / "candidates" / candidate_name(p)
        cands.append(_Candidate(_candidate_cfg(cfg, p, where), where))
    print(
        f"Tuning {cfg.strategy.name} on validation: {len(params)} settings of "
        f"{', '.join(k for k, _ in search_space(cfg))}, "
        + (
            "every one to the end (tune.exhaustive)."
            if tune.exhaustive
            else f"successive halving from epoch {first} (keeps 1/{tune.reduction_factor})."
        ),
        flush=True,
    )
    result = successive_halving(
        params,
        epochs,
        first,
        int(tune.reduction_factor),
        lambda i, until: cands[i].train_to(until, epochs, steps),
        exhaustive=bool(tune.exhaustive),
    )
    chosen = cands[result.selected]
    print(f"Selected on validation: {candidate_name(params[result.selected])}.", flush=True)
    seconds = sum(c.seconds for c in cands)  # what the search cost, not the winner alone
    record = {"tuning": _record(result, cands, first, tune), "selected": params[result.selected]}
    if tune.exhaustive:  # the reference grid: every setting's test accuracy, after selection
        for entry, c in zip(record["tuning"]["candidates"], cands, strict=True):
            entry["reference_test_acc"] = _test_once(c.parts)
    # The run began with the search, not with its last fit.
    chosen.parts.started_at, chosen.parts.cpu_start = started_at, cpu_start
    metrics = steps.finish(cfg, out, chosen.parts, seconds, chosen.history, record)
    _link_best(chosen.parts, out)
    return metrics, chosen.parts


def _record(result: SearchResult, cands: list[_Candidate], first: int, tune) -> dict:
    return {
        "method": "exhaustive" if tune.exhaustive else "successive_halving",
        "first_rung": first,
        "reduction_factor": int(tune.reduction_factor),
        "n_candidates": len(result.candidates),
        "n_stopped": result.n_stopped,
        "candidates": [
            {
                "params": c.params,
                "val_acc": [round(v, 6) for v in c.val_acc],
                # not what the search ranks on: for checks of other rung rules (issue 24)
                "val_loss": [
                    round(float(r["val_loss"]), 6) for r in run.history if "val_loss" in r
                ],
                "best_val_acc": round(c.best_val, 6),
                "stopped_at": c.stopped_at,
                "train_seconds": round(run.seconds, 3),
                "folder": str(run.out.name),
            }
            for c, run in zip(result.candidates, cands, strict=True)
        ],
    }


def _test_once(parts) -> float | None:
    """Test accuracy of a candidate's best checkpoint (exhaustive reference runs only)."""
    trainer = parts.trainer
    trainer.test(parts.module, datamodule=parts.dm, ckpt_path="best", verbose=False)
    acc = trainer.callback_metrics.get("test/acc")
    return None if acc is None else round(float(acc), 6)


def _link_best(parts, out: Path) -> None:
    """``<run>/checkpoints/best.ckpt``: the selected candidate's, where eval, predict,
    export and the report look for a run's checkpoint."""
    best = parts.trainer.checkpoint_callback.best_model_path
    if not best:
        return
    target = out / "checkpoints" / "best.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(Path(best).resolve(), target)
    except OSError:
        shutil.copy2(Path(best).resolve(), target)
