"""The typed shape of the config groups that have one: Hydra structured configs.

Each dataclass is stored in Hydra's ConfigStore (:func:`register_configs`, called by the
entry points before Hydra composes) and every YAML file of its group extends it through
its defaults list (``defaults: [base_strategy, _self_]``). Hydra then refuses an unknown
key (``strategy.lrr=1``) or a value of the wrong type (``strategy.lr=fast``) while it
composes, before anything runs; :mod:`tl_experiments.commands.preflight` turns that into
one sentence.

The schemas say which keys exist and their types; the YAML files keep the values and
their sources. A field the YAML files may leave out has a default: the same as the typed
object that reads it (:class:`~tl_experiments.strategies.Strategy`; ``tests/test_config.py``
checks they agree). ``???`` (MISSING) marks a key every file of the group sets. This
module imports nothing heavy: the entry points load it before torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

__all__ = ["AnalysisOptions", "DataSchema", "FolderDataSchema", "StrategySchema"]
__all__ += ["register_configs", "strategy_file", "wrong_type"]


@dataclass
class StrategySchema:
    """``conf/strategy/*.yaml``: the keys of :class:`~tl_experiments.strategies.Strategy`
    (its docstring says what each does). Value ranges are checked there."""

    name: str = MISSING
    pretrained: bool = MISSING
    trainable: Any = MISSING  # all | head | from:K | a list of stage names or indices
    lr: float = MISSING
    weight_decay: float = MISSING
    trainable_bn: str = MISSING  # train | frozen | reestimate
    backbone_lr_scale: float = 1.0
    lr_decay: float = 1.0
    train_bn: bool = False
    phases: list[Any] = field(default_factory=list)  # {start, trainable, lr_scale} each
    unfreeze_every_n_epochs: int | None = None
    unfreeze_milestones: list[Any] = field(default_factory=list)  # epochs or fractions
    unfreeze_warmup_epochs: int = 0
    l2sp_alpha: float = 0.0
    param_kinds: Any = "all"  # all, or a list of bias | norm | lora
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = ""
    search: dict[str, Any] = field(default_factory=dict)  # strategy key -> values to try


@dataclass
class DataSchema:
    """``conf/data/*.yaml``: where the images come from (``name``, ``source``,
    ``source_args``), then how a run draws and serves them
    (:class:`~tl_experiments.data.factory.DataSpec`). ``mnist_sample.yaml`` sets every key;
    the other files extend it."""

    name: str = MISSING
    source: str = MISSING
    source_args: dict[str, Any] = MISSING
    samples_per_class: int | None = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    split_seed: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int | None = MISSING
    num_workers: Any = MISSING  # a whole number, or auto
    augment: bool = MISSING
    skip_bad_images: bool = MISSING
    refuse_duplicates: bool = MISSING
    crop_pct: float = MISSING
    aug: dict[str, Any] | None = MISSING


@dataclass
class FolderDataSchema(DataSchema):
    """A data source read from a folder (``data=image_folder``, ``data=cifar10``): ``root``
    too. Only these options have it, so ``data.root=DIR`` without one of them is refused."""

    root: str = MISSING


@dataclass
class AnalysisOptions:
    """The ``analysis`` block of conf/train.yaml: what runs after test (docs/shift.md)."""

    enabled: bool = True
    defer: bool = False  # run it later, after the sweep's tables (run/deferred_analysis.py)
    shifts: bool = True  # evaluate the shifted test sets
    max_images: int = 256  # validation images for CKA
    shift_max_images: int | None = 500  # test images per shifted set; None = all
    photos: int = 32  # natural photos for the ImageNet-head agreement; 0 = skip it
    photo_size: int = 224  # ImageNet's own resolution: the source task as it was trained
    wise_ft: bool = True  # WiSE-FT interpolations after a fine-tuning run (wise_ft.py)
    wise_ft_val_images: int | None = None  # validation images that pick alpha; None = all


def strategy_file(path: str | Path) -> dict:
    """A ``conf/strategy`` file's keys, resolved, as Hydra composes them (the schema's
    defaults for the keys it leaves out): for code that reads one file, not the whole config."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(path)
    node.pop("defaults", None)  # the schema it extends, merged here instead
    return OmegaConf.to_container(OmegaConf.merge(StrategySchema, node), resolve=True)


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent): ``base_strategy`` and
    ``base_data`` / ``base_folder_data`` in their groups, ``base_train`` (the ``analysis``
    block) for ``conf/train.yaml``'s defaults list."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="strategy", name="base_strategy", node=StrategySchema)
    cs.store(group="data", name="base_data", node=DataSchema)
    cs.store(group="data", name="base_folder_data", node=FolderDataSchema)
    cs.store(name="base_train", node={"analysis": AnalysisOptions})


# OmegaConf's name of a field's type -> ours, and the fix.
_KINDS = {
    "Float": ("a number", "a number such as 0.001"),
    "Integer": ("a whole number", "a whole number such as 10"),
    "bool": ("true or false", "true or false"),
}
_REFUSED = "(?:could not be converted to|is not a valid)"  # OmegaConf 2.3's two wordings


def wrong_type(e: BaseException) -> str | None:
    """One sentence for a value the schema's type refuses (``strategy.lr=fast``), or None."""
    from omegaconf.errors import ValidationError

    cause = e.__cause__
    if not isinstance(cause, ValidationError) or not cause.full_key:
        return None
    line = str(cause).partition("\n")[0].rstrip(".")
    found = re.search(rf"Value '(.*?)'(?: of type '\w+')? {_REFUSED} (Float|Integer|bool)", line)
    if not found:  # another type (String, an Enum): OmegaConf's words, with the key
        return f"{cause.full_key}: {line}; give it a value of that type."
    key, (kind, fix) = cause.full_key, _KINDS[found.group(2)]
    return f"{key}={found.group(1)} is not {kind}; set {key} to {fix}."
