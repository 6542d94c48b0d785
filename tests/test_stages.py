"""Stages across timm's families: the head is the new classifier only, pretrained layers
grouped with it form a neck, each stage owns exactly its modules, and the zoo check's
checks hold here (and fail where they should). The whole zoo: scripts/check_zoo.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn

from tl_experiments.errors import UserError
from tl_experiments.feature_cache import cache_blocker
from tl_experiments.models import create_backbone
from tl_experiments.models.module import TransferModule
from tl_experiments.stages.stage import get_stages, stage_summary
from tl_experiments.strategies import L2SP, compile_plan
from tl_experiments.strategies.apply import apply_phase

ROOT = Path(__file__).resolve().parents[1]


def _zoo():
    spec = importlib.util.spec_from_file_location("check_zoo", ROOT / "scripts/check_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_zoo"] = module
    spec.loader.exec_module(module)
    return module


zoo = _zoo()


def _module(arch: str, strategy: str) -> TransferModule:
    torch.manual_seed(0)
    backbone = create_backbone(arch, 5, "none")
    module = TransferModule(backbone, zoo._strategy(strategy), list("abcde"))
    apply_phase(module, 0)  # as a fit's first epoch
    return module


@pytest.mark.parametrize(
    ("arch", "names", "modules"),
    [
        # numeric children; parameter-free act1/maxpool finish the stem
        ("test_resnet", ["stem", "stage1", "stage2", "stage3", "stage4", "head"],
         {"stem": ["conv1", "bn1", "act1", "maxpool"], "stage1": ["layer1"], "head": ["fc"]}),
        # named children inside one `features` module, a final norm before the classifier
        ("densenet121", ["stem", "stage1", "stage2", "stage3", "stage4", "neck", "head"],
         {"stage1": ["features.denseblock1", "features.transition1"],
          "neck": ["features.norm5", "global_pool"], "head": ["head_drop", "classifier"]}),
        # a ViT: the final norm merges with the last block (timm's MATCH_PREV_GROUP)
        ("test_vit", ["stem", *(f"stage{i}" for i in range(1, 7)), "head"],
         {"stage6": ["blocks.5", "norm", "fc_norm"], "head": ["head_drop", "head"]}),
    ],
)  # fmt: skip
def test_stages_own_exactly_their_modules(arch: str, names: list, modules: dict) -> None:
    model = timm.create_model(arch, num_classes=5)
    stages = get_stages(model)
    assert [s.name for s in stages] == names
    for s in stages:
        if s.name in modules:
            assert s.module_names == modules[s.name]
        assert s.modules == [model.get_submodule(p) for p in s.module_names]
    zoo.check_partition(model, stages)


@pytest.mark.parametrize(
    ("arch", "neck"),
    [("mobilenetv3_small_050", "conv_head"), ("test_convnext", "head.norm")],
)
def test_feature_extraction_trains_only_the_classifier_and_caches_the_neck(
    arch: str, neck: str
) -> None:
    module = _module(arch, "feature_extraction")
    *body, head = module.stages
    assert body[-1].name == "neck" and body[-1].prefixes == neck
    assert not any(s.trainable for s in body) and head.trainable
    assert {id(p) for p in head.params} == {
        id(p) for p in module.backbone.get_classifier().parameters()
    }
    assert f"  neck     {neck}" in stage_summary(module.stages, arch)
    assert f"{head.num_params:>12,}  trainable" in stage_summary(module.stages, arch)
    x = torch.randn(4, 3, 64, 64)
    assert zoo.check_cache(module, x) == "used"  # the cached logits equal the model's


def test_partial_ft_on_densenet_trains_the_batchnorm_of_its_trainable_stages() -> None:
    module = _module("densenet121", "partial_ft")
    # BatchNorm in train mode where stages train (the shipped default keeps it in eval:
    # docs/schedules.md), so the modes show which stage owns each BatchNorm
    strategy = dataclasses.replace(module.strategy, trainable_bn="train")
    module.plan = compile_plan(strategy, module.stages, None)
    apply_phase(module, 0)
    bn = {
        s.name: [
            m.training for t in s.modules for m in t.modules() if isinstance(m, nn.BatchNorm2d)
        ]
        for s in module.stages
    }
    assert sum(len(v) for v in bn.values()) == 121  # every BatchNorm in exactly one stage
    assert set(bn["stem"] + bn["stage1"]) == {False}
    assert set(bn["stage2"] + bn["stage3"] + bn["stage4"] + bn["neck"]) == {True}
    x, y = torch.randn(4, 3, 64, 64), torch.arange(4)
    zoo._check_step(module, "partial_ft", x, y)  # frozen weights and statistics kept


def test_l2sp_pulls_the_neck_toward_its_starting_weights() -> None:
    model = timm.create_model("test_convnext", num_classes=5)
    stages = get_stages(model)
    reg = L2SP(stages, alpha=1.0)
    neck = stages[-2]
    w = neck.params[0]
    with torch.no_grad():
        w.add_(1.0)
    before = w.detach().clone()
    opt = torch.optim.SGD([{"params": s.params, "stage": s.index} for s in stages], lr=0.1)
    reg.attach(opt)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: the pull alone moves w, 0.1 of the way back to w0
    torch.testing.assert_close(w.detach(), before - 0.1 * torch.ones_like(before))
    assert reg.drift(stages)[neck.name] > 0


@pytest.mark.parametrize(
    ("arch", "heads"),
    [
        ("levit_128s", ["head", "head_dist"]),  # a conv-attention hybrid: distillation head
        ("volo_d1_224", ["head", "aux_head"]),  # token labelling: an auxiliary class head
    ],
)
def test_several_classifiers_form_the_head_and_refuse_the_cache(arch: str, heads: list) -> None:
    module = _module(arch, "feature_extraction")
    head = module.stages[-1]
    assert sorted(head.tensor_paths) == sorted(heads)
    assert all(torch.count_nonzero(p) == 0 for p in head.params)  # all zero-initialised
    assert "neck" not in [s.name for s in module.stages]  # aux_head is new, not pretrained
    dm = zoo.SimpleNamespace(deterministic={"train": True})
    reason = cache_blocker(module.plan, module.backbone, dm, {})
    assert (
        reason == "the model has several classifiers (distillation, auxiliary or per-branch heads)"
    )


def test_models_without_a_coarse_matcher_get_stages() -> None:
    # PiT has no group_matcher: its top-level children in order; RDNet only a fine one.
    pit = get_stages(timm.create_model("pit_ti_224", num_classes=5))
    assert [s.prefixes for s in pit] == [
        "patch_embed",
        "transformers.0",
        "transformers.1",
        "transformers.2",
        "norm",
        "head",
    ]


def test_a_model_without_a_classifier_is_named_in_one_sentence() -> None:
    model = timm.create_model("test_resnet", num_classes=0)
    with pytest.raises(UserError, match=r"^ResNet has no classifier with parameters .*\.$"):
        get_stages(model)


def test_the_zoo_check_catches_a_module_in_the_wrong_stage() -> None:
    model = timm.create_model("test_resnet", num_classes=5)
    stages = get_stages(model)
    stages[2].module_names.append("layer1.0")  # stage2 claiming part of stage1's layer1
    with pytest.raises(zoo.CheckFailed, match="overlaps"):
        zoo.check_partition(model, stages)
    stages = get_stages(model)
    stages[1].params.pop()  # a parameter left out
    with pytest.raises(zoo.CheckFailed, match="partition"):
        zoo.check_partition(model, stages)


def test_the_zoo_check_catches_a_frozen_batchnorm_left_in_train_mode() -> None:
    module = _module("test_resnet", "partial_ft")
    module.stages[1].modules = []  # as when stage modules collapsed: layer1 stays in train
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    with pytest.raises(zoo.CheckFailed, match=r"changed frozen stage1\.layer1\..*running_"):
        zoo._check_step(module, "partial_ft", x, y)


@pytest.mark.parametrize(
    ("arch", "last"), [("test_efficientnet", "stage5"), ("test_coatnet", "stage4")]
)
def test_every_zoo_check_passes_on_a_shipped_family_and_a_hybrid(arch: str, last: str) -> None:
    r = zoo.check("-", arch)  # test_coatnet: convolutional stages, then attention stages
    assert (r.error, r.cache) == ("", "used")
    assert r.stages.split(", ")[-2:] == [last, "head"]
