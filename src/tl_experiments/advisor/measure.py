"""Measure the advisor's judgements: domain similarity to ImageNet and the cost of training.

The lesson asks a person to guess both. Here:

- **Similarity** is how much the pretrained weights help on *this* data, over the same
  architecture with random weights: a cross-validated linear probe (logistic regression)
  on the pooled features of each. The score is the share of the random-init probe's
  held-out cross-entropy that pretrained features remove, ``1 - ce_pretrained /
  ce_random``, mapped to high/medium/low. Random-init features are the control: they say
  how much the task gives away for free (few or easy classes), so the score is what
  ImageNet pretraining adds. Cross-entropy, not accuracy, because easy natural-image
  tasks saturate: at 97% against 94% the score hangs on a handful of errors and swung
  from 0.14 to 0.46 between seeds (measured; docs/advisor.md calibrates the thresholds).
- **Budget** is the estimated wall-clock seconds of a full fine-tuning run, from a few
  timed optimiser steps on real batches.

Plain typed arguments only: the Hydra entry point is ``tl_experiments.commands.advise``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from tl_experiments.errors import UserError
from tl_experiments.feature_cache.store import extract_features

__all__ = [
    "HIGH_GAIN",
    "LOW_GAIN",
    "ProbeResult",
    "TrainingCost",
    "estimate_training_seconds",
    "probe_scores",
    "similarity_class",
    "similarity_probe",
    "subsample",
]

# Cross-entropy reduction of pretrained over random-init features, calibrated on real
# offline data (lite0 packaged weights, 64 px, 200 images; docs/advisor.md "Calibration").
HIGH_GAIN = 0.4
LOW_GAIN = 0.2


@dataclass(frozen=True)
class ProbeResult:
    """Linear-probe accuracies on pretrained and random-init features, and their gain.

    Attributes:
        n_images: Images probed.
        chance: Majority-class accuracy (what a probe that learnt nothing gets).
        acc_pretrained: Cross-validated accuracy on pretrained features.
        acc_random: The same on random-init features of the same architecture.
        ce_pretrained: Held-out cross-entropy (nats) of the probe on pretrained features.
        ce_random: The same on random-init features.
        gain: ``1 - ce_pretrained / ce_random``: 1 = pretrained features leave no
            uncertainty, 0 = no help, negative = worse than random weights.
    """

    n_images: int
    chance: float
    acc_pretrained: float
    acc_random: float
    ce_pretrained: float
    ce_random: float
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


def probe_scores(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[float, float]:
    """Held-out accuracy and cross-entropy (nats) of a logistic-regression probe, k-fold.

    Raises:
        UserError: If a class has fewer than two images (no fold could test it).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    if smallest < 2:
        raise UserError(
            "Measuring similarity needs at least 2 images in every class; add "
            "images or set similarity=high|medium|low by hand."
        )
    # Standardising matters: random-init features are orders of magnitude off in scale.
    # C=0.01: 1,280 features on 200 images; weaker regularisation made the held-out
    # cross-entropy of the random-init control swing by a third between seeds (measured).
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    cv = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    proba = cross_val_predict(probe, features, labels, cv=cv, method="predict_proba")
    return float((proba.argmax(1) == labels).mean()), float(log_loss(labels, proba))


def similarity_probe(
    pretrained: nn.Module, random_init: nn.Module, dataset: Dataset, labels: np.ndarray
) -> ProbeResult:
    """Probe pretrained against random-init features of the same images.

    Args:
        pretrained: A timm backbone with its pretrained weights.
        random_init: The same architecture, randomly initialised.
        dataset: Images transformed as for evaluation, with ``labels`` in its order.
        labels: Integer class ids (only the classes present are used).
    """
    labels = np.unique(labels, return_inverse=True)[1]  # dense ids for bincount
    chance = float(np.bincount(labels).max() / len(labels))
    (acc_p, ce_p), (acc_r, ce_r) = (
        probe_scores(extract_features(m, dataset).numpy(), labels)
        for m in (pretrained, random_init)
    )
    return ProbeResult(len(labels), chance, acc_p, acc_r, ce_p, ce_r, 1.0 - ce_p / ce_r)


def subsample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``n`` items, drawn in proportion to each class."""
    if n >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(
        np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed
    )
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


def estimate_training_seconds(
    model: nn.Module,
    batch: torch.Tensor,
    n_train: int,
    n_val: int,
    epochs: int,
    device: str = "cpu",
    repeats: int = 3,
) -> TrainingCost:
    """Time full fine-tuning steps on one real batch and extrapolate to a whole run.

    Every parameter trains (the lesson's "aggressive" fine-tuning: the dearest strategy
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
