"""The OmegaConf resolvers the config files use (``${tl_dirname:...}``,
``${tl_optuna_db:...}``, ``${tl_model_default:...}``); every Hydra entry point registers them
before Hydra composes."""

from __future__ import annotations

import fcntl
from pathlib import Path

from tl_experiments.paths import job_dirname

__all__ = ["optuna_sqlite", "register_resolvers"]


def register_resolvers() -> None:
    """OmegaConf resolvers the configs use (``${tl_dirname:...}``) and the typed config
    schemas (:mod:`tl_experiments.config_schema`); call before Hydra composes."""
    from omegaconf import OmegaConf

    from tl_experiments.config_schema import register_configs

    register_configs()

    resolvers = {"tl_dirname": job_dirname, "tl_optuna_db": optuna_sqlite}
    for name, resolver in (resolvers | {"tl_model_default": _model_default}).items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def _model_default(key: str, arch: str, file_arch: str | None = None, value=None):
    """conf/model's ``${tl_model_default:...}``: the file's name or img_size (``value``) while
    ``model.arch`` is its arch, else that arch's own (timm imported then only: models/size.py)."""
    if arch == file_arch or key == "name":
        return value if arch == file_arch else arch
    from tl_experiments.models.size import own_img_size

    return own_img_size(arch)


def optuna_sqlite(path: str) -> str:
    """``sqlite:///<absolute path>`` for an Optuna study file, its folder and tables created.

    The sweeper opens the study before any job has made the sweep folder, and SQLite cannot
    create a file in a missing folder. The tables are created under a file lock: several
    searches started at once on one new file would otherwise race to create them.
    """
    full = Path(path).resolve()
    full.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{full}"
    with open(f"{full}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            from optuna.storages import RDBStorage

            RDBStorage(url)  # creates the tables once; later opens only check the schema
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return url
