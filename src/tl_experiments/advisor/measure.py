"""Measure the advisor's judgements: domain similarity to ImageNet and the cost of training.

The seed asks a person to guess both. Here:

- **Similarity** is how much the pretrained weights help on *this* data, over the same
  architecture with random weights: a cross-validated linear probe (logistic regression)
  on the pooled features of each. The score is the share of the random-init probe's
  errors that pretrained features remove, ``1 - err_pretrained / err_random``, mapped to
  high/medium/low. Random-init features are the control: they say how much the task
  gives away for free (few or easy classes), so the score is what ImageNet pretraining
  adds. An error *ratio*, not an accuracy difference, because easy natural-image tasks
  saturate: 97% against 91% is a small difference but a third of the errors (measured
  in docs/advisor.md, where the thresholds are calibrated).
- **Budget** is the estimated wall-clock seconds of a full fine-tuning run, from a few
  timed optimiser steps on real batches.

Plain typed arguments only: the Hydra entry point is ``tl_experiments.advise``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from tl_experiments.data.feature_cache import extract_features
from tl_experiments.errors import UserError

__all__ = [
    "HIGH_GAIN",
    "LOW_GAIN",
    "ProbeResult",
    "TrainingCost",
    "error_reduction",
    "estimate_training_seconds",
    "probe_accuracy",
    "similarity_class",
    "similarity_probe",
    "subsample",
]

# Error reduction of pretrained over random-init features, calibrated on real offline
# data (lite0 packaged weights, 64 px, 200 images per set; docs/advisor.md "Calibration").
HIGH_GAIN = 0.5
LOW_GAIN = 0.2


@dataclass(frozen=True)
class ProbeResult:
    """Linear-probe accuracies on pretrained and random-init features, and their gain.

    Attributes:
        n_images: Images probed.
        chance: Majority-class accuracy (what a probe that learnt nothing gets).
        acc_pretrained: Cross-validated accuracy on pretrained features.
        acc_random: The same on random-init features of the same architecture.
        gain: ``1 - err_pretrained / err_random``: 1 = pretraining removes every error,
            0 = no help, negative = worse than random weights.
    """

    n_images: int
    chance: float
    acc_pretrained: float
    acc_random: float
    gain: float


@dataclass(frozen=True)
class TrainingCost:
    """Timed steps and the full fine-tuning run they predict.

    Attributes:
        step_seconds: Median seconds of one training step (forward, backward, update).
        eval_seconds: Median seconds of one no-grad validation batch.
        steps_per_epoch: Training batches per epoch.
        val_batches: Validation batches per epoch.
        epochs: Epochs of the run estimated.
        total_seconds: ``epochs * (steps * step_seconds + val_batches * eval_seconds)``.
    """

    step_seconds: float
    eval_seconds: float
    steps_per_epoch: int
    val_batches: int
    epochs: int
    total_seconds: float


def error_reduction(acc_pretrained: float, acc_random: float, n: int) -> float:
    """``1 - err_pretrained / err_random``, each error floored at half an image of ``n``.

    The floor keeps the ratio finite when the random-init probe makes no error: then
    pretraining cannot show, and the score is 0 (no measured help), not a division by 0.
    """
    floor = 0.5 / n
    return 1.0 - max(1.0 - acc_pretrained, floor) / max(1.0 - acc_random, floor)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Mean stratified k-fold accuracy of a standardised logistic-regression probe.

    Raises:
        UserError: If a class has fewer than two images (no fold could test it).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    if smallest < 2:
        raise UserError("Measuring similarity needs at least 2 images in every class; add "
                        "images or set similarity=high|medium|low by hand.")
    # Standardising matters: random-init features are orders of magnitude off in scale.
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    return float(cross_val_score(probe, features, labels, cv=cv).mean())


def similarity_probe(pretrained: nn.Module, random_init: nn.Module, dataset: Dataset,
                     labels: np.ndarray) -> ProbeResult:
    """Probe pretrained against random-init features of the same images.

    Args:
        pretrained: A timm backbone with its pretrained weights.
        random_init: The same architecture, randomly initialised.
        dataset: Images transformed as for evaluation, with ``labels`` in its order.
        labels: Integer class ids (only the classes present are used).
    """
    labels = np.unique(labels, return_inverse=True)[1]  # dense ids for bincount
    chance = float(np.bincount(labels).max() / len(labels))
    accs = [probe_accuracy(extract_features(m, dataset).numpy(), labels)
            for m in (pretrained, random_init)]
    gain = error_reduction(accs[0], accs[1], len(labels))
    return ProbeResult(len(labels), chance, accs[0], accs[1], gain)


def subsample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``n`` items, drawn in proportion to each class."""
    if n >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels,
                              random_state=seed)
    return np.sort(idx)


def similarity_class(gain: float) -> str:
    """``high`` at a gain >= ``HIGH_GAIN``, ``low`` below ``LOW_GAIN``, else ``medium``."""
    if gain >= HIGH_GAIN:
        return "high"
    return "low" if gain < LOW_GAIN else "medium"


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, cuDNN autotuning and lazy init are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def estimate_training_seconds(model: nn.Module, batch: torch.Tensor, n_train: int, n_val: int,
                              epochs: int, device: str = "cpu", repeats: int = 3) -> TrainingCost:
    """Time full fine-tuning steps on one real batch and extrapolate to a whole run.

    Every parameter trains (the seed's "aggressive" fine-tuning: the dearest strategy
    short of scratch, which costs the same per step). Data loading is not timed: the
    project's data module keeps deterministic splits as ready tensors.

    Args:
        model: The backbone to time; its weights change (use a copy you can spare).
        batch: One training batch of images at the run's size and batch size.
        n_train: Training images per epoch.
        n_val: Validation images per epoch.
        epochs: Epochs of the run (``trainer.max_epochs``).
        device: Where to time it (``cpu`` or ``cuda``).
        repeats: Timed steps after one warm-up step.
    """
    model = model.to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    x = batch.to(device)
    y = torch.zeros(len(x), dtype=torch.long, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def evaluate() -> None:
        with torch.no_grad():
            model.eval()(x)
        model.train()

    step_s, eval_s = _median_seconds(step, repeats), _median_seconds(evaluate, repeats)
    bs = len(x)
    steps, val_batches = -(-n_train // bs), -(-n_val // bs)  # ceil: last partial batch
    total = epochs * (steps * step_s + val_batches * eval_s)
    return TrainingCost(step_s, eval_s, steps, val_batches, epochs, total)
