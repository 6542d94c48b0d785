"""Fine-tuning schedules: exact lr and requires_grad of every stage at every step, frozen
stages untouched, the same phase after a resume, and the same unfreezing on every DDP rank.

test_resnet's stages: stem, stage1, stage2, stage3, stage4, head (indices 0..5).
"""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from tl_experiments.data import create_datamodule, load_image_set
from tl_experiments.stages.stage import get_stages
from tl_experiments.strategies import L2SP, Strategy, compile_plan, stage_lrs
from tl_experiments.strategies.schedule import build_phases, stage_scales
from tl_experiments.train import create_module

EPOCHS, BATCHES = 3, 2
ALL = set(range(6))
# strategy (+ overrides) -> per epoch: (stages that train, lr scale of each stage).
EXPECTED = {
    "gradual_unfreeze": (
        ["strategy.unfreeze_warmup_epochs=1"],
        [
            ({5}, [1, 1, 1, 1, 1, 1]),
            ({4, 5}, [1, 1, 1, 1, 0.5, 1]),  # stage4 in its warm-up epoch: half its lr
            ({3, 4, 5}, [1, 1, 1, 0.5, 1, 1]),
        ],
    ),
    "discriminative": ([], [(ALL, [1] * 6)] * EPOCHS),
    "lp_ft": (
        [],
        [  # start 0.25 of 3 epochs -> epoch 1
            ({5}, [1] * 6),
            (ALL, [0.1] * 6),
            (ALL, [0.1] * 6),
        ],
    ),
    "l2sp": ([], [(ALL, [1] * 6)] * EPOCHS),
    "surgical": ([], [({1, 5}, [1] * 6)] * EPOCHS),
}


class Recorder(pl.Callback):
    """Per step: epoch, lr of every group, stages that train; per epoch: frozen stages changed?"""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, int, list[float], set[int]]] = []
        self.changed_while_frozen: list[str] = []
        self.stop_after = stop_after
        self._before: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        lrs = [g["lr"] for g in trainer.optimizers[0].param_groups]
        trainable = {s.index for s in pl_module.stages if s.trainable}
        self.steps.append((trainer.current_epoch, trainer.global_step, lrs, trainable))
        if batch_idx == 0:  # after the schedule applied this epoch's phase
            self._before = {s.name: _stage_state(s) for s in pl_module.stages if not s.trainable}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for s in pl_module.stages:
            if s.name in self._before:
                after = _stage_state(s)
                if any(not torch.equal(after[k], v) for k, v in self._before[s.name].items()):
                    self.changed_while_frozen.append(f"epoch {trainer.current_epoch}: {s.name}")
        if self.stop_after == trainer.current_epoch:
            trainer.should_stop = True


def _stage_state(stage) -> dict[str, torch.Tensor]:
    """Weights and BatchNorm running statistics of a stage's modules."""
    return {
        f"{i}.{k}": v.detach().clone()
        for i, m in enumerate(stage.modules)
        for k, v in m.state_dict().items()
    }


def _build(make_cfg, strategy: str, *overrides: str):
    cfg = make_cfg(f"strategy={strategy}", *overrides)
    pl.seed_everything(0)
    module = create_module(cfg, 10, [str(i) for i in range(10)])
    dm, _ = create_datamodule(
        load_image_set("mnist_sample"), module.backbone, 32, samples_per_class=5, batch_size=8
    )
    # A fixed batch order, so that an interrupted and an uninterrupted run see the same data.
    dm.train_dataloader = lambda: DataLoader(dm.image_dataset("train"), batch_size=8)
    return module, dm


def _trainer(*callbacks, epochs: int = EPOCHS, **kwargs) -> pl.Trainer:
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=BATCHES,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=checkpointing,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **kwargs,
    )


def _unit_lrs(scheduler: str, total: int) -> list[float]:
    """The torch scheduler's own lr at each step for a base lr of 1."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_stage_has_the_exact_lr_and_trainability(make_cfg, name: str, scheduler: str) -> None:
    overrides, per_epoch = EXPECTED[name]
    module, dm = _build(make_cfg, name, f"scheduler={scheduler}", *overrides)
    recorder = Recorder()
    _trainer(recorder).fit(module, datamodule=dm)

    base = stage_lrs(module.strategy, 6)
    unit = _unit_lrs(scheduler, EPOCHS * BATCHES)
    assert len(recorder.steps) == EPOCHS * BATCHES
    for epoch, step, lrs, trainable in recorder.steps:
        expected_trainable, scales = per_epoch[epoch]
        assert trainable == expected_trainable, (epoch, step)
        expected = [b * s * unit[step] for b, s in zip(base, scales, strict=True)]
        assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15), (epoch, step)
    assert recorder.changed_while_frozen == []


@pytest.mark.parametrize(
    "overrides",
    [
        ("strategy.unfreeze_warmup_epochs=1",),
        # stage4 starts at epoch 2, the epoch the run resumes in: re-estimated all the same
        ("strategy.trainable_bn=reestimate",),
    ],
)
def test_resume_continues_in_the_same_phase(make_cfg, tmp_path, overrides) -> None:
    args = ("gradual_unfreeze", *overrides)
    module, dm = _build(make_cfg, *args)
    full = Recorder()
    _trainer(full).fit(module, datamodule=dm)

    # Stopped after epoch 1, stage4 half-way through its warm-up; resumed from last.ckpt.
    first, dm = _build(make_cfg, *args)
    # Written at the end of the training epoch, as a rung's checkpoint is (callbacks/rung.py).
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_on_train_epoch_end=True)
    _trainer(Recorder(stop_after=1), ckpt).fit(first, datamodule=dm)
    resumed, dm = _build(make_cfg, *args)
    rest = Recorder()
    trainer = _trainer(rest)
    trainer.fit(resumed, datamodule=dm, ckpt_path=str(tmp_path / "last.ckpt"))

    later = [s for s in full.steps if s[0] >= 2]
    assert [(e, t, tr) for e, t, _, tr in rest.steps] == [(e, t, tr) for e, t, _, tr in later]
    for (_, _, lrs, _), (_, _, expected, _) in zip(rest.steps, later, strict=True):
        assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    for (k, v), w in zip(module.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(v.float(), w.float(), atol=1e-6), k


def test_phases_compile_from_the_strategy() -> None:
    import timm

    stages = get_stages(timm.create_model("test_efficientnet", num_classes=3))  # 7 stages
    s = Strategy("g", trainable="head", unfreeze_milestones=(2, 0.5))
    assert [(p.start, sorted(p.trainable)) for p in build_phases(s, stages, 12)] == [
        (0, [6]),
        (2, [5, 6]),
        (6, [4, 5, 6]),
    ]
    lp = Strategy.from_dict(
        {
            "name": "lp",
            "trainable": "head",
            "phases": [{"start": 0.25, "trainable": "all", "lr_scale": 0.1}],
        }
    )
    phases = build_phases(lp, stages, 8)
    assert [p.start for p in phases] == [0, 2]
    assert stage_scales(phases, 1, 7) == [1.0] * 7
    assert stage_scales(phases, 2, 7, warmup_epochs=2) == pytest.approx([0.1 / 3] * 6 + [0.1])
    assert stage_scales(phases, 4, 7, warmup_epochs=2) == pytest.approx([0.1] * 7)


def test_a_phase_that_never_starts_is_said_in_one_line(make_cfg, caplog) -> None:
    """lp_ft in 1 epoch: its fine-tuning phase would start at epoch 1, after the run."""
    import timm

    from tl_experiments.strategies.plan import unreached_note

    stages = get_stages(timm.create_model("test_efficientnet", num_classes=3))
    lp = Strategy.from_dict(
        {"name": "lp_ft", "trainable": "head", "phases": [{"start": 0.25, "trainable": "all"}]}
    )
    short = compile_plan(lp, stages, 1)
    assert [p.start for p in short.phases] == [0] and not short.schedule_runs
    assert short.ever_trained == {6}  # nothing below the head ever trains: cacheable
    line = unreached_note(short, stages)
    assert "from epoch 1 never start" in line and "trains only head" in line
    assert "trainer.max_epochs to at least 2" in line
    assert unreached_note(compile_plan(lp, stages, 4), stages) is None
    assert compile_plan(lp, stages, 4).schedule_runs
    # Said once, when the fit starts (the test and the cached path compile the plan again).
    from tl_experiments.train import run

    cfg = make_cfg("strategy=lp_ft", "trainer.max_epochs=1", "analysis.enabled=false")
    with caplog.at_level("WARNING", logger="tl_experiments.strategies.unfreeze"):
        run(cfg)
    said = [r.getMessage() for r in caplog.records if "never start" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("Strategy lp_ft: its phase(s) from epoch 1")


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"phases": [{"start": 1.0, "trainable": "all"}]}, "ambiguous"),
        ({"phases": [{"start": 0, "trainable": "all"}]}, "must increase strictly"),
        ({"phases": [{"at": 1}]}, "needs 'start'"),
        ({"unfreeze_every_n_epochs": 1, "phases": [{"start": 1}]}, "one of them"),
        ({"l2sp_alpha": -1.0}, "must be >= 0"),
        ({"trainable_bn": "batch"}, "not one of train, frozen, reestimate"),
    ],
)
def test_schedule_mistakes_name_the_fix(cfg: dict, message: str) -> None:
    import timm

    from tl_experiments.errors import UserError

    stages = get_stages(timm.create_model("test_resnet", num_classes=3))
    with pytest.raises(UserError, match=message):
        build_phases(Strategy.from_dict({"name": "x", **cfg}), stages, 8)


def test_l2sp_pulls_the_backbone_toward_w0_decoupled() -> None:
    """Each step moves a trainable backbone weight lr * alpha of the way back to w0 (on top
    of Adam's own update); the head keeps plain weight decay; frozen stages are not touched."""
    import timm

    strategy = Strategy.from_dict({"name": "l2sp", "l2sp_alpha": 5.0, "weight_decay": 0.1})
    stages = get_stages(timm.create_model("test_resnet", num_classes=3))
    reg = L2SP(stages, alpha=strategy.l2sp_alpha)
    groups = compile_plan(strategy, stages, None).param_groups(stages)
    assert [g["weight_decay"] for g in groups] == [0.0] * (len(stages) - 1) + [0.1]
    opt = torch.optim.SGD(groups, lr=0.01)  # SGD with zero grads: the pull alone moves w
    reg.attach(opt)
    w = stages[2].params[0]
    with torch.no_grad():
        w.add_(1.0)
    before = w.detach().clone()
    w0 = reg.get_buffer("w0__" + stages[2].param_names[0].replace(".", "__"))
    for s in stages:
        for p in s.params:
            p.grad = None if s.index == 1 else torch.zeros_like(p)
    frozen_before = stages[1].params[0].detach().clone()
    opt.step()
    lr = groups[2]["lr"]
    torch.testing.assert_close(w.detach(), before - lr * 5.0 * (before - w0))
    torch.testing.assert_close(stages[1].params[0].detach(), frozen_before)  # no grad, no pull
    drift = reg.drift(stages)
    assert drift["stage1"] == 0 and drift["stage2"] > 0 and "head" not in drift
    assert all(not b.requires_grad for b in reg.buffers())


def _ddp_fit(make_cfg, out) -> None:
    """Two ranks, gloo on CPU: each writes what it trains and its weights after the unfreeze."""
    module, _ = _build(make_cfg, "gradual_unfreeze")
    dm, _ = create_datamodule(
        load_image_set("mnist_sample"), module.backbone, 32, samples_per_class=5, batch_size=8
    )
    trainer = _trainer(
        _DumpRank(str(out)), epochs=2, strategy="ddp_spawn_find_unused_parameters_true", devices=2
    )
    trainer.fit(module, datamodule=dm)


class _DumpRank(pl.Callback):
    def __init__(self, out: str) -> None:
        self.out = out
        self.start: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = copy.deepcopy(pl_module.backbone.state_dict())

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(
            {
                "requires_grad": {n: p.requires_grad for n, p in pl_module.named_parameters()},
                "start": self.start,
                "weights": pl_module.backbone.state_dict(),
            },
            f"{self.out}/rank{trainer.global_rank}.pt",
        )


@pytest.mark.slow
def test_ddp_ranks_unfreeze_together(make_cfg, tmp_path) -> None:
    _ddp_fit(make_cfg, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["requires_grad"] == r1["requires_grad"]
    assert r0["requires_grad"]["backbone.layer4.0.conv1.weight"]  # stage4 unfroze at epoch 1
    assert not r0["requires_grad"]["backbone.layer3.0.conv1.weight"]
    # Each rank saw different batches: equal weights mean the unfrozen stage's gradients
    # were all-reduced (the trap of Lightning issue 20340 leaves them rank-local).
    for k, v in r0["weights"].items():
        assert torch.allclose(v.float(), r1["weights"][k].float(), atol=1e-6), k
    key = "layer4.0.conv1.weight"
    assert not torch.equal(r0["weights"][key], r0["start"][key])  # it did train
