"""Parameter-efficient strategies (BitFit, norm tuning, LoRA via peft): each trains exactly
the parameters it names; LoRA trains, saves only what trained, reloads over the same base
weights only, merges, and exports a graph without adapters that matches the unmerged model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import onnx
import pytest
import pytorch_lightning as pl
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from tl_experiments.commands.export import export
from tl_experiments.errors import UserError
from tl_experiments.models.base_weights import base_digest, fill_base, frozen_base_keys
from tl_experiments.models.checkpoint import load_checkpoint, module_from_checkpoint
from tl_experiments.models.export_formats import RUNNERS, WRITERS
from tl_experiments.models.module import TransferModule
from tl_experiments.stages.kinds import param_kinds
from tl_experiments.strategies import Strategy
from tl_experiments.strategies.lora import add_lora, has_lora, merge_lora
from tl_experiments.train import create_module, run

DEFAULT_TARGETS = r".*\.(conv_pw|conv_pwl|conv1|conv3|qkv|fc1|fc2)|conv_head"


def _fit(module: pl.LightningModule, size: int = 32, steps: int = 3) -> None:
    """A few optimizer steps on random images (enough for every named parameter to move)."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8 * steps, 3, size, size, generator=g),
                         torch.randint(0, 5, (8 * steps,), generator=g))  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, num_sanity_val_steps=0,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=8))


@pytest.mark.parametrize(
    ("strategy", "kind"), [("bitfit", "bias"), ("norm_tuning", "norm"), ("lora", "lora")]
)
def test_each_strategy_trains_exactly_the_parameters_it_names(make_cfg, strategy, kind) -> None:
    cfg = make_cfg(f"strategy={strategy}", "model=test_efficientnet")
    pl.seed_everything(0)
    module = create_module(cfg, 5, list("abcde"))
    before = {k: v.detach().clone() for k, v in module.backbone.named_parameters()}
    kinds = param_kinds(module.backbone)
    head = set(module.stages[-1].param_names)
    named = {n for n, k in kinds.items() if kind in k} | head
    _fit(module)
    assert {n for n, p in module.backbone.named_parameters() if p.requires_grad} == named
    moved = {n for n, p in module.backbone.named_parameters() if not torch.equal(p, before[n])}
    assert moved == named
    assert any(k != frozenset() and kind in k for n, k in kinds.items() if n not in head)
    row = [s for s in module.stages if s.name == "stage4"][0]  # the per-stage count
    assert 0 < row.num_trainable < row.num_params


def test_kinds_and_lora_must_agree() -> None:
    with pytest.raises(UserError, match="param_kinds"):
        Strategy.from_dict({"name": "x", "param_kinds": ["biases"]})
    with pytest.raises(UserError, match="lora_rank"):
        Strategy.from_dict({"name": "x", "param_kinds": ["lora"]})
    with pytest.raises(UserError, match="lora_rank"):
        Strategy.from_dict({"name": "x", "lora_rank": 4, "lora_targets": ".*"})


def test_a_new_strategy_is_not_trained_on_cached_features(make_cfg, capsys) -> None:
    from tl_experiments.feature_cache import cache_blocker

    module = create_module(make_cfg("strategy=bitfit"), 5, list("abcde"))
    dm = type("DM", (), {"deterministic": {"train": True}})()
    reason = cache_blocker(module.plan, module.backbone, dm, {})
    assert reason == "stages below the head train (bias only)"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> tuple[Path, Path]:
    """A LoRA run of train.py on a tiny CNN over base weights from a file (random init)."""
    from hydra import compose, initialize_config_dir

    from .conftest import CONF, TINY

    tmp = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    weights = tmp / "base.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), weights)
    overrides = [*TINY, "model=test_efficientnet", "strategy=lora", "model.weights=file",
                 f"model.weights_file={weights}", f"paths.output_dir={tmp / 'run'}",
                 "trainer.max_epochs=2"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    run(cfg)
    return tmp / "run", weights


def test_lora_checkpoint_holds_only_what_trained(lora_run) -> None:
    run_dir, _ = lora_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ckpt = load_checkpoint(run_dir / "checkpoints/best.ckpt")
    state = ckpt["state_dict"]
    assert ckpt["tl_experiments"]["base_weights"] and ckpt["tl_experiments"]["lora"]["rank"] == 4
    params = [k for k in state if k.endswith(("weight", "bias")) and "running" not in k]
    assert params and all(".lora_" in k or "classifier" in k or "bn" in k for k in params)
    assert not any("base_layer" in k for k in state)
    # BatchNorm affine parameters did not train (frozen base); their statistics are buffers
    assert not any(k.endswith("bn1.weight") for k in state)
    assert metrics["trainable_params"] == sum(v.numel() for k, v in state.items()
                                              if ".lora_" in k or "classifier" in k)  # fmt: skip
    assert metrics["checkpoint_bytes"] < 0.5 * metrics["total_params"] * 4
    summary = (run_dir / "summary.txt").read_text()  # trainable count per stage
    assert "stem     conv_stem, bn1                    696  frozen             0" in summary
    assert f"Trainable parameters: {metrics['trainable_params']:,} of" in summary


def test_lora_reloads_merged_and_only_over_its_base(lora_run, tmp_path) -> None:
    run_dir, weights = lora_run
    ckpt = load_checkpoint(run_dir / "checkpoints/best.ckpt")
    merged = module_from_checkpoint(ckpt).backbone
    unmerged = module_from_checkpoint(ckpt, merge=False).backbone
    assert has_lora(unmerged) and not has_lora(merged)
    assert set(merged.state_dict()) == set(timm.create_model("test_efficientnet").state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(merged(x), unmerged(x), atol=1e-5)
        assert (merged(x) - merged(x).mean(0)).abs().max() > 0  # trained: not a constant
    original = torch.load(weights)
    torch.save({k: v + 0.01 for k, v in original.items()}, weights)  # other base weights
    try:
        with pytest.raises(UserError, match="base weights"):
            module_from_checkpoint(load_checkpoint(run_dir / "checkpoints/best.ckpt"))
    finally:
        torch.save(original, weights)


def test_lora_export_has_no_adapters_and_matches_the_unmerged_model(lora_run, tmp_path) -> None:
    run_dir, _ = lora_run
    info = export(run_dir / "checkpoints/best.ckpt", "onnx", tmp_path / "m.onnx", n_check=8)
    assert info["format"] == "onnx" and info["check"]["max_abs_diff"] <= 1e-4
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    names = [n.name for n in graph.node] + [i.name for i in graph.initializer]
    assert names and not any("lora" in n for n in names)


def test_lora_on_a_tiny_vit_trains_saves_reloads_merges_and_exports(tmp_path) -> None:
    torch.manual_seed(0)
    base = timm.create_model("test_vit", num_classes=5, img_size=32)
    model = copy.deepcopy(base)
    names = add_lora(model, 4, 8, 0.0, DEFAULT_TARGETS)
    assert {n.rsplit(".", 1)[-1] for n in names} == {"qkv", "fc1", "fc2"}
    strategy = Strategy.from_dict({"name": "lora", "param_kinds": ["lora"], "lora_rank": 4,
                                   "lora_targets": DEFAULT_TARGETS, "lr": 1e-2})  # fmt: skip
    module = TransferModule(model, strategy, list("abcde"))
    _fit(module)
    keys = frozen_base_keys(model)
    saved = {k: v for k, v in model.state_dict().items() if k not in keys}  # what trained
    assert sum(v.numel() for v in saved.values()) < 0.2 * sum(p.numel() for p in base.parameters())
    digest = base_digest(model.state_dict(), keys)
    rebuilt = copy.deepcopy(base)
    add_lora(rebuilt, 4, 8, 0.0, names)
    rebuilt.load_state_dict(fill_base(saved, rebuilt.state_dict(), digest))
    x = torch.randn(3, 3, 32, 32)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(rebuilt(x), expected)
        merge_lora(rebuilt)
        assert not has_lora(rebuilt) and torch.allclose(rebuilt(x), expected, atol=1e-5)
    WRITERS["onnx"](rebuilt, x[:2], tmp_path / "vit.onnx")
    assert not any("lora" in n.name for n in onnx.load(str(tmp_path / "vit.onnx")).graph.node)
    exported = RUNNERS["onnx"](tmp_path / "vit.onnx")(x.numpy())
    assert float(abs(exported - expected.numpy()).max()) <= 1e-4  # vs the unmerged model
    wrong = copy.deepcopy(base)
    torch.nn.init.normal_(wrong.blocks[0].attn.qkv.weight)
    add_lora(wrong, 4, 8, 0.0, names)
    with pytest.raises(UserError, match="base weights"):
        fill_base(saved, wrong.state_dict(), digest)


def test_kinds_hold_in_every_phase_of_a_schedule(make_cfg) -> None:
    """Gradual unfreezing of BitFit: the stage unfrozen at epoch 1 trains its biases only."""
    cfg = make_cfg(
        "strategy=bitfit", "model=test_efficientnet", "+strategy.unfreeze_every_n_epochs=1"
    )
    cfg.strategy.trainable = "head"
    pl.seed_everything(0)
    module = create_module(cfg, 5, list("abcde"))
    before = {k: v.detach().clone() for k, v in module.backbone.named_parameters()}
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 5, (16,), generator=g)
    )
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, num_sanity_val_steps=0,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=8))
    moved = {n for n, p in module.backbone.named_parameters() if not torch.equal(p, before[n])}
    top = module.stages[-2]
    expected = {n for n, k in zip(top.param_names, top.kinds, strict=True) if "bias" in k}
    assert expected and moved == expected | set(module.stages[-1].param_names)


def test_a_cached_parameter_efficient_run_writes_a_checkpoint_that_loads(tmp_path) -> None:
    """BitFit on the head alone trains on cached features; its checkpoint is the cache's
    (whole at the end of the fit), not base_weights.py's form, so eval/predict load it."""
    from hydra import compose, initialize_config_dir

    from tl_experiments.models.checkpoint import load_checkpoint, module_from_checkpoint

    from .conftest import CONF, TINY

    weights = tmp_path / "base.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), weights)
    overrides = [
        *TINY,
        "model=test_efficientnet",
        "strategy=bitfit",
        "strategy.trainable=head",
        "model.weights=file",
        f"model.weights_file={weights}",
        f"paths.output_dir={tmp_path / 'run'}",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=1.0",
        "trainer.limit_val_batches=1.0",
        "trainer.limit_test_batches=1.0",
    ]  # fmt: skip (the cache needs whole epochs)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        metrics = run(compose(config_name="train", overrides=overrides))
    assert metrics["feature_cache"] is True
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/best.ckpt")
    assert "base_weights" not in ckpt["tl_experiments"]
    module_from_checkpoint(ckpt)  # raised "trained over base weights ..." before
