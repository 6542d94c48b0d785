"""Every file in every config group composes, and instantiates what it describes."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tl_experiments.strategies import Strategy

from .conftest import CONF

GROUPS = ["model", "strategy", "data", "trainer"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_config_file_composes(group: str, option: str) -> None:
    overrides = [f"{group}={option}", "paths.output_dir=/tmp/x"]
    if option == "image_folder":
        overrides.append("data.root=/tmp/images")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved[group]  # the group is present and resolves
    if group == "strategy":
        strategy = Strategy.from_dict(resolved["strategy"])
        assert strategy.name == option  # each file names itself: reports group by it
    if group in ("model", "data"):
        assert resolved[group]["name"] == option


def test_every_group_has_files() -> None:
    for group in GROUPS:
        assert _options(group), group
    assert {"scratch", "feature_extraction", "partial_ft", "full_ft"} <= set(_options("strategy"))
    assert {
        "resnet50",
        "vgg16",
        "mobilenetv2_100",
        "efficientnet_b0",
        "inception_v3",
        "efficientnet_lite0",
        "test_resnet",
    } <= set(_options("model"))
    assert {"cpu", "gpu", "ddp", "debug"} <= set(_options("trainer"))


def test_model_configs_name_real_timm_models() -> None:
    import timm

    for option in _options("model"):
        cfg = OmegaConf.load(CONF / "model" / f"{option}.yaml")
        assert timm.is_model(cfg.arch), cfg.arch


def test_strategy_schema_defaults_are_the_strategys() -> None:
    # A key a strategy file leaves out gets the schema's default: the Strategy's own.
    from dataclasses import MISSING, fields

    from tl_experiments.config_schema import StrategySchema

    schema = OmegaConf.to_container(OmegaConf.structured(StrategySchema))
    own = {f.name: f for f in fields(Strategy)}
    for key, value in schema.items():
        if value == "???":
            continue  # every strategy file sets it
        f = own[key]
        default = f.default if f.default is not MISSING else f.default_factory()
        assert Strategy.from_dict({"name": "x", key: value}) == Strategy.from_dict(
            {"name": "x", key: default}
        ), key
    assert set(schema) == set(own)


@pytest.mark.parametrize(
    ("option", "expected"),
    [("cosine", "CosineAnnealingLR"), ("onecycle", "OneCycleLR"), ("constant", None)],
)
def test_every_scheduler_file_instantiates_its_schedule(option: str, expected) -> None:
    import torch
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"scheduler={option}"])
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    sched = instantiate(cfg.scheduler)(optimizer, 10, [1e-3])
    assert (sched and type(sched).__name__) == expected
