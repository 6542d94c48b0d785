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
    draw_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Index arrays for train/val/test.

    Splits the source defines are kept; missing ones are carved out of the training pool,
    stratified by class, with ``split_seed`` (fixed across a sweep, so every run is
    validated and tested on the same images). ``samples_per_class`` then draws that many
    training images per class with ``draw_seed`` (the run's seed, so seeds differ in their
    data, and runs of one seed are paired across strategies). The draw is nested: for one
    ``draw_seed``, the k-per-class subset holds the j-per-class subset for every j < k.
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
            taken, rest = _stratified_take(labels, pool, frac, rng)
            if len(taken) == 0 and len(pool):
                raise UserError(_empty_split(name, frac, np.bincount(labels[pool])))
            splits[name], pool = taken, rest
    if samples_per_class is not None:
        pool = _per_class(labels, pool, samples_per_class, draw_seed)
    splits["train"] = pool
    for name in ("train", "val", "test"):
        if len(splits[name]) == 0:
            raise UserError(
                f"The {name} split is empty; raise data.{name}_fraction or add more images."
            )
    return splits


def _empty_split(name: str, frac: float, counts: np.ndarray) -> str:
    """Why carving ``frac`` of each class took nothing: the classes are too small."""
    key = f"data.{name}_fraction"
    if frac == 0:
        return f"The {name} split is empty: {key}=0; set it above 0 or give a {name}/ folder."
    need = int(0.5 / frac) + 1  # round(frac * n) >= 1 from n = need on
    counts = counts[counts > 0]
    return (
        f"The {name} split is empty: {key}={frac} takes round({frac} x n) images of a class "
        f"of n, none below {need}, and the largest of the {len(counts)} classes has "
        f"{counts.max()} image(s); add images (at least {need} to a class), or give the "
        f"splits as folders (root/train/<class>/, root/{name}/<class>/)."
    )


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


def _per_class(labels: np.ndarray, pool: np.ndarray, k: int, draw_seed: int) -> np.ndarray:
    """The first ``k`` of a per-class permutation that depends only on the seed and the
    class (not on ``k``): a larger draw extends a smaller one."""
    if k <= 0:
        raise UserError(f"data.samples_per_class={k} must be positive, or null for all images.")
    chosen = []
    for c in np.unique(labels):
        idx = np.sort(pool[labels[pool] == c])
        if len(idx) < k:
            raise UserError(
                f"data.samples_per_class={k} is more than class {c} has in the "
                f"training pool ({len(idx)}); lower it to at most {len(idx)}."
            )
        order = np.random.default_rng([draw_seed, int(c)]).permutation(len(idx))
        chosen.append(idx[order[:k]])
    return np.sort(np.concatenate(chosen))
