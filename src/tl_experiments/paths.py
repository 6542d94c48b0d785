"""Paths as folders are named and as users pass them back.

A sweep job's folder is named by :func:`job_dirname`: a short readable part of its overrides
plus a hash of all of them, made only of ``[A-Za-z0-9._-]``, so whatever an override holds
(``data.root=../../photos``, an absolute path, ``=`` or ``,`` in a value) the folder is one
name inside the sweep folder, and the same overrides always give the same name (re-running a
sweep into its folder finds each finished job: ``skip_finished``). The overrides themselves
stay in the job's ``.hydra/overrides.yaml`` and in ``metrics.json``.

A path printed by the report can be passed back to every command as it is, quoted or not:
:func:`quote_path_overrides` quotes the path values of a Hydra command line (Hydra's grammar
refuses ``=`` or ``,`` in a plain value) and :func:`unquote` strips the quotes a user added.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["PATH_KEYS", "job_dirname", "quote_path_overrides", "short_name", "unquote"]

# Config keys whose value is a path (train.py, eval.py): quoted for Hydra when needed.
PATH_KEYS = (
    "ckpt",
    "ckpt_path",
    "data.root",
    "feature_cache.dir",
    "hydra.run.dir",
    "hydra.sweep.dir",
    "model.weights_file",
    "paths.log_dir",
)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def job_dirname(overrides: str, limit: int = 60) -> str:
    """A sweep job's folder name from its override string (``hydra.job.override_dirname``).

    ``seed=0,strategy=full_ft`` gives ``seed-0_strategy-full_ft_<8 hex>``: undotted keys
    first, ``=`` becomes ``-``, every other character outside ``[A-Za-z0-9._-]`` ``_``, a run
    of dots one dot, the readable part cut to ``limit`` characters; the hash (of the whole
    string) keeps two jobs whose readable parts agree apart. No overrides: an empty name
    (the sweep folder).
    """
    if not overrides:
        return ""
    # Choices of whole groups and top-level keys (strategy=, seed=, model=) first: what a
    # sweep usually varies stays readable when the dotted settings are cut off.
    items = overrides.split(",")  # only for reading: the hash covers the exact string
    items.sort(key=lambda item: "." in item.partition("=")[0])
    readable = _UNSAFE.sub("_", ",".join(items).replace("=", "-"))
    readable = re.sub(r"\.{2,}", ".", readable).strip("._-")[:limit].rstrip("._-")
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:8]
    return f"{readable}_{digest}" if readable else digest


def short_name(name: str, limit: int = 120) -> str:
    """A run's display name (MLflow, W&B, TensorBoard's hparams): its overrides as they are,
    cut and hashed when longer than ``limit``. Not a folder name: see :func:`job_dirname`."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - 12]}_{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def unquote(value: str) -> str:
    """``value`` without one pair of matching surrounding quotes (``'...'`` or ``"..."``)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def quote_path_overrides(argv: Iterable[str], keys: Iterable[str] = PATH_KEYS) -> list[str]:
    """``argv`` with the values of the path ``keys`` quoted for Hydra, unless already quoted.

    ``ckpt=/runs/seed=0,lr=0.1/best.ckpt`` and ``ckpt='/runs/...'`` both reach Hydra as one
    quoted string. A value with a quote or an interpolation inside is left to Hydra as it is,
    and so is a multirun's command line (``-m``), where a comma separates the values of a sweep.
    """
    argv, keys = list(argv), tuple(keys)
    if "-m" in argv or "--multirun" in argv:
        return argv
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        plain = sep and key.lstrip("+~") in keys and unquote(value) == value
        if plain and "'" not in value and "${" not in value and any(c in value for c in "=, ()[]"):
            arg = f"{key}='{value}'"
        out.append(arg)
    return out
