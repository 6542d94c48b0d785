"""Stratified train/val/test splits and the seeded few-shot draw (``samples_per_class``)."""

from __future__ import annotations

import numpy as np

from tl_experiments.errors import UserError

__all__ = ["make_splits"]


def make_splits(
    labels: np.ndarray,
    given: dict[str, np.ndarray],
    val_fraction: float,
    test_fraction: float,
    samples_per_class: int | None,
    split_seed: int,
) -> dict[str, np.ndarray]:
    """Index arrays for train/val/test.

    Splits the source defines are kept; missing ones are carved out of the training pool,
    stratified by class, with ``split_seed`` (fixed across a sweep, so every run sees the
    same test set). ``samples_per_class`` then draws that many training images per class:
    the seed lesson's limited-data scenario.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise UserError(f"data.{name}={frac} must be in [0, 1).")
    rng = np.random.default_rng(split_seed)
    pool = given.get("train", np.arange(len(labels)))
    splits = {}
    for name, frac in (("test", test_fraction), ("val", val_fraction)):
        if name in given:
            splits[name] = given[name]
        else:
            splits[name], pool = _stratified_take(labels, pool, frac, rng)
    if samples_per_class is not None:
        pool = _per_class(labels, pool, samples_per_class, rng)
    splits["train"] = pool
    for name in ("train", "val", "test"):
        if len(splits[name]) == 0:
            raise UserError(
                f"The {name} split is empty; raise data.{name}_fraction or add more images."
            )
    return splits


def _stratified_take(
    labels: np.ndarray, pool: np.ndarray, frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    taken, rest = [], []
    for c in np.unique(labels[pool]):
        idx = rng.permutation(pool[labels[pool] == c])
        k = int(round(frac * len(idx)))
        taken.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(taken)), np.sort(np.concatenate(rest))


def _per_class(
    labels: np.ndarray, pool: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    if k <= 0:
        raise UserError(f"data.samples_per_class={k} must be positive, or null for all images.")
    chosen = []
    for c in np.unique(labels):
        idx = pool[labels[pool] == c]
        if len(idx) < k:
            raise UserError(
                f"data.samples_per_class={k} is more than class {c} has in the "
                f"training pool ({len(idx)}); lower it to at most {len(idx)}."
            )
        chosen.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(chosen))
