"""Each classic strategy trains exactly the stages it says, and leaves the rest untouched."""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch

from tl_experiments.data import create_datamodule, load_image_set
from tl_experiments.stages.stage import get_stages, select_stages
from tl_experiments.strategies import Strategy, stage_lrs
from tl_experiments.train import create_module

# strategy -> (pretrained, names of the stages that train) for test_resnet:
# stem, stage1..stage4, head.
EXPECTED = {
    "scratch": (False, ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
    "feature_extraction": (True, ["head"]),
    "partial_ft": (True, ["stage2", "stage3", "stage4", "head"]),
    "full_ft": (True, ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
}


def _fit(module) -> tuple[pl.Trainer, object]:
    image_set = load_image_set("mnist_sample")
    dm, _ = create_datamodule(image_set, module.backbone, 32, samples_per_class=5, batch_size=16)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    return trainer, dm


def test_validation_gives_back_the_modes_it_found(make_cfg) -> None:
    module = create_module(make_cfg("strategy=partial_ft"), 10, [str(i) for i in range(10)])
    trainer, dm = _fit(module)  # each epoch ends with a validation
    modes = {s.name: {m.training for m in s.modules} for s in module.stages}
    assert modes == {
        "stem": {False},
        "stage1": {False},
        **{s: {True} for s in EXPECTED["partial_ft"][1]},
    }
    module.eval()
    trainer.validate(module, datamodule=dm, verbose=False)
    assert not any(m.training for m in module.modules())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_strategy_freezes_exactly_its_stages(make_cfg, name: str) -> None:
    cfg = make_cfg(f"strategy={name}")
    module = create_module(cfg, 10, [str(i) for i in range(10)])
    pretrained, trainable = EXPECTED[name]
    assert module.strategy.pretrained is pretrained
    assert module.backbone.get_classifier().out_features == 10

    before = copy.deepcopy(module.backbone.state_dict())
    _fit(module)
    assert [s.name for s in module.stages if s.trainable] == trainable  # set by ApplyPlan
    for s in module.stages:  # all or nothing within a stage
        assert {p.requires_grad for p in s.params} == {s.name in trainable}
    after = module.backbone.state_dict()
    frozen_prefixes = [
        n.rsplit(".", 1)[0] for s in module.stages if not s.trainable for n in s.param_names
    ]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for key in before:  # weights AND BatchNorm running statistics of frozen stages
        if any(key.startswith(p + ".") for p in frozen_prefixes):
            assert key not in changed, f"{name}: frozen {key} changed"
    head = module.stages[-1].param_names
    assert set(head) <= changed, f"{name}: the head did not train"
    # BatchNorm statistics move only where trainable stages use batch statistics (scratch);
    # pretrained strategies keep the pretrained ones (trainable_bn: frozen, docs/schedules.md)
    moved = any(k.endswith("running_mean") for k in changed)
    assert moved == (module.strategy.trainable_bn == "train"), name


def test_head_has_the_data_classes(make_cfg) -> None:
    module = create_module(make_cfg("model=test_efficientnet"), 7, list("abcdefg"))
    logits = module(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7)
    assert module.stages[-1].name == "head"


def test_per_stage_learning_rates() -> None:
    s = Strategy(name="x", lr=1e-3, backbone_lr_scale=0.1, lr_decay=0.5)
    assert stage_lrs(s, 4) == pytest.approx([1e-3 * 0.1 * 0.25, 1e-3 * 0.1 * 0.5, 1e-4, 1e-3])
    groups = create_module_groups()
    assert [g["name"] for g in groups] == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]


def create_module_groups() -> list[dict]:
    import timm

    from tl_experiments.strategies import compile_plan

    stages = get_stages(timm.create_model("test_resnet", num_classes=3))
    return compile_plan(Strategy(name="x"), stages, None).param_groups(stages)


def test_stage_selection_syntax() -> None:
    import timm

    stages = get_stages(timm.create_model("test_resnet", num_classes=3))
    names = lambda spec: [s.name for s in select_stages(stages, spec)]  # noqa: E731
    assert names("head") == ["head"]
    assert names("from:4") == ["stage4", "head"]
    assert names(["stem", -1]) == ["stem", "head"]
    assert names("none") == []
    from tl_experiments.errors import UserError

    with pytest.raises(UserError, match="stage index 9 is out of range|Stage index 9"):
        select_stages(stages, [9])
    with pytest.raises(UserError, match="Unknown stage 'layerX'"):
        select_stages(stages, ["layerX"])
