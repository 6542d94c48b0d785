"""The feature cache and the lean cached path (docs/speed.md): same result, less work."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from tl_experiments.data import create_datamodule, load_image_set
from tl_experiments.errors import UserError
from tl_experiments.feature_cache import CachedHeadModule, cache_blocker
from tl_experiments.feature_cache.store import FeatureCache, cache_key
from tl_experiments.models.checkpoint import load_checkpoint, module_from_checkpoint
from tl_experiments.train import create_module, run

# The cached path needs whole epochs (the debug trainer stops after 3 batches).
WHOLE = [
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=1.0",
    "trainer.limit_val_batches=1.0",
    "trainer.limit_test_batches=1.0",
    "analysis.enabled=false",
]


def test_cached_run_matches_the_uncached_run(make_cfg, tmp_path: Path) -> None:
    FeatureCache.clear_memory()
    on, off = (
        run(
            make_cfg(
                "strategy=feature_extraction",
                *WHOLE,
                # Dropout masks drawn in the same order, soft targets: still the same curves.
                "model.drop_rate=0.3",
                "label_smoothing=0.1",
                f"feature_cache.enabled={flag}",
                f"paths.output_dir={tmp_path / flag}",
            )
        )
        for flag in ("true", "false")
    )
    assert on["feature_cache"] is True and off["feature_cache"] is False
    assert on["test_acc"] == pytest.approx(off["test_acc"], abs=1e-6)
    # Same minibatches, optimizer steps and schedule: the same curves, epoch by epoch.
    assert len(on["history"]) == len(off["history"]) == 3
    for a, b in zip(on["history"], off["history"], strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
    # TensorBoard's x axis in optimizer steps on both paths (the cached one logs "step").
    for tag in ("train/loss", "val/acc", "lr-AdamW/head"):
        assert _steps(tmp_path / "true", tag) == _steps(tmp_path / "false", tag), tag


def _steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = []
    for events in sorted((run / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        steps += [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []
    return steps


def _cached(module, batch_size: int, digest: str) -> CachedHeadModule:
    """``module``'s backbone and plan, trained on features."""
    return CachedHeadModule(
        module.backbone,
        module.plan,
        module.class_names,
        label_smoothing=module.label_smoothing,
        batch_size=batch_size,
        frozen_digest=digest,
    )


def _closed_form_and_autograd(
    module, x: torch.Tensor, y: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Logits and head gradients of one step, closed form then autograd (same dropout)."""
    head = module.backbone.get_classifier()
    torch.manual_seed(0)
    logits = module._linear_head_grads(head, x, module._soft_targets(y, head.out_features))
    closed = [logits, head.weight.grad, head.bias.grad]
    head.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same dropout mask
    loss, expected, _ = module._step((x, y))
    loss.backward()
    return closed, [expected, head.weight.grad, head.bias.grad]


def test_closed_form_head_gradients_equal_autograds(make_cfg) -> None:
    cfg = make_cfg("strategy=feature_extraction", "model.drop_rate=0.3", "label_smoothing=0.1")
    module = create_module(cfg, 4, list("abcd"))
    module = _cached(module, 8, "digest")  # forward: dropout + classifier
    module.train()
    head = module.backbone.get_classifier()
    torch.nn.init.normal_(head.weight)  # the head starts at zero: make the softmax uneven
    x, y = torch.randn(8, head.in_features), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])

    closed, auto = _closed_form_and_autograd(module, x, y)
    for got, want in zip(closed, auto, strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    assert auto[1].abs().sum() > 0
    # bf16 autocast (trainer.precision=bf16-mixed): the same bf16 matmuls as autograd's.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        closed, auto = _closed_form_and_autograd(module, x, y)
    assert closed[1].dtype == auto[1].dtype == torch.float32
    for got, want in zip(closed, auto, strict=True):
        assert torch.allclose(got.float(), want.float(), atol=1e-6)
    # Weights in bf16 (trainer.precision=bf16-true): gradients in the weights' dtype.
    head.to(torch.bfloat16)
    closed, auto = _closed_form_and_autograd(module, x.bfloat16(), y)
    assert closed[1].dtype == closed[2].dtype == torch.bfloat16
    for got, want in zip(closed, auto, strict=True):  # autograd's softmax rounds to bf16 too
        scale = want.float().abs().max().item()
        assert torch.allclose(got.float(), want.float(), rtol=0, atol=0.02 * scale)


def test_cached_run_writes_full_checkpoints(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("strategy=feature_extraction", *WHOLE)
    metrics = run(cfg)
    assert metrics["feature_cache"] is True
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / name)
        assert "frozen_backbone" not in ckpt["tl_experiments"]  # completed at fit end
        module = module_from_checkpoint(ckpt)  # strict load: every backbone weight is there
        assert module.backbone.get_classifier().weight.abs().sum() > 0  # the trained head


def test_finished_cached_run_resumes_from_its_full_checkpoint(make_cfg) -> None:
    cfg = make_cfg("strategy=feature_extraction", *WHOLE)
    first = run(cfg)
    # Resuming a finished fit: nothing left to train, and its checkpoints are already full.
    again = run(make_cfg("strategy=feature_extraction", *WHOLE, "ckpt_path=last"))
    assert again["test_acc"] == first["test_acc"]


def test_head_only_checkpoint_fills_in_only_the_same_backbone(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("strategy=feature_extraction", *WHOLE)
    image_set = load_image_set(cfg.data.source)
    module = create_module(cfg, len(image_set.class_names), image_set.class_names)
    module = _cached(module, 16, "abc")
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    head = {f"backbone.{k}" for k in module.stages[-1].param_names}
    assert set(ckpt["state_dict"]) == head  # the frozen body is left out
    module.on_load_checkpoint(ckpt)
    assert set(ckpt["state_dict"]) == set(module.state_dict())
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "head.ckpt")
    with pytest.raises(UserError, match="only the head"):  # eval/predict/export say why
        load_checkpoint(tmp_path / "head.ckpt")
    module.frozen_digest = "other weights"
    with pytest.raises(UserError, match="same model and weights"):
        module.on_load_checkpoint(ckpt)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["strategy=feature_extraction"], None),
        (["strategy=full_ft"], "stages below the head train"),
        (["strategy=lp_ft"], "stages below the head train"),  # unfreezes later
        (["strategy=lp_ft", "trainer.max_epochs=1"], None),  # ...after the run: never
        (["strategy=feature_extraction", "data.augment=true"], "random augmentation"),
        (["strategy=feature_extraction", "strategy.train_bn=true"], "train_bn"),
        (["strategy=feature_extraction", "trainer.limit_train_batches=3"], "limit_train"),
        (["strategy=feature_extraction", "+trainer.gradient_clip_val=1.0"], "gradient_clip"),
        (["strategy=feature_extraction", "trainer.precision=16-mixed"], "loss scaler"),
        (["strategy=feature_extraction", "trainer.precision=bf16-mixed"], None),
    ],
)
def test_cache_is_used_only_when_it_cannot_change_the_result(
    make_cfg, overrides: list[str], reason: str | None
) -> None:
    from omegaconf import OmegaConf

    cfg = make_cfg(*WHOLE, *overrides)
    image_set = load_image_set(cfg.data.source)
    module = create_module(cfg, len(image_set.class_names), image_set.class_names)
    dm, _ = create_datamodule(
        image_set, module.backbone, cfg.model.img_size, augment=cfg.data.augment
    )
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    got = cache_blocker(module.plan, module.backbone, dm, args)
    assert (got is None) if reason is None else (reason in got)


def test_cache_key_covers_what_changes_the_features() -> None:
    base = dict(arch="a", weights="w", split="train", indices=[1, 2], transform={"size": 32})
    key = cache_key(**base)
    assert cache_key(**base) == key
    for change in (
        {"weights": "w2"},
        {"arch": "b"},
        {"indices": [1, 3]},
        {"transform": {"size": 64}},
        {"split": "val"},
    ):
        assert cache_key(**{**base, **change}) != key, change


def _race(cache_dir: str, queue) -> None:
    feats = FeatureCache(cache_dir).get_or_compute("k", lambda: torch.arange(200_000.0))
    queue.put(float(feats.sum()))


def test_disk_cache_is_shared_and_racing_writers_never_corrupt_it(tmp_path: Path) -> None:
    # Fresh processes (no memory cache) forked from one that imported this module once,
    # rather than each spawned writer importing torch and Lightning on its own.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    sums = [queue.get(timeout=5) for _ in procs]
    assert len(set(sums)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["k.pt"]  # no temp file left behind
    cache = FeatureCache(tmp_path)
    FeatureCache.clear_memory()
    feats = cache.get_or_compute("k", lambda: pytest.fail("recomputed"))  # read from disk
    assert cache.hits == 1 and float(feats.sum()) == sums[0]


def test_parallel_jobs_split_the_cores_among_those_running(tmp_path: Path) -> None:
    from tl_experiments.run.core_share import CoreShare, running_jobs

    before = torch.get_num_threads()
    a, b = CoreShare(tmp_path, cores=4), CoreShare(tmp_path, cores=4)
    torch.set_num_threads(2)
    try:
        a.claim()
        assert running_jobs(tmp_path) == 1
        assert a.rebalance() == 2  # more threads only when seen twice in a row
        assert a.rebalance() == 4
        b.claim()  # a second job starts: fewer threads at once
        assert running_jobs(tmp_path) == 2 and a.rebalance() == 2
        b.release()  # it ends: the job still running takes the whole machine
        assert running_jobs(tmp_path) == 1 and a.rebalance() == 2 and a.rebalance() == 4
    finally:
        a.release()
        b.release()
        torch.set_num_threads(before)


@pytest.mark.slow
def test_bench_prints_its_tables() -> None:
    import subprocess
    import sys

    from .conftest import ROOT

    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/bench.py"),
            "--quick",
            "--sections",
            "cache,partial",
            # The script's tables, not its numbers: a tiny model, 32 px, 5 images per class.
            *("--override=model=test_resnet", "--override=data.samples_per_class=5"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| epochs | cached (s) | uncached (s) |" in proc.stdout
    assert "| partial_ft |" in proc.stdout
