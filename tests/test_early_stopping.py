"""Early stopping: a run that stopped learning ends, but never inside a schedule's phases."""

from __future__ import annotations

import pytest

from tl_experiments.train import create_module, run


def test_a_run_that_stopped_learning_ends_early(make_cfg) -> None:
    # lr 1e-12: validation accuracy cannot move, so after `patience` epochs the run stops.
    cfg = make_cfg(
        "analysis.enabled=false",
        "trainer.max_epochs=6",
        "trainer.early_stopping_patience=1",
        "strategy=full_ft",
        "strategy.lr=1e-12",
    )
    metrics = run(cfg)
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2


@pytest.mark.parametrize("strategy", ["full_ft", "gradual_unfreeze"])
def test_min_epochs_covers_the_last_phase(make_cfg, strategy: str) -> None:
    from tl_experiments.callbacks import early_stopping
    from tl_experiments.strategies import compile_plan

    cfg = make_cfg(f"strategy={strategy}")
    module = create_module(cfg, 10, [str(i) for i in range(10)])
    # gradual_unfreeze: the head first, then one more of test_resnet's 5 stages each epoch.
    last_start = 5 if strategy == "gradual_unfreeze" else 0
    stopper, min_epochs = early_stopping(2, compile_plan(module.strategy, module.stages, 20))
    assert stopper.monitor == "val/acc" and stopper.patience == 2
    assert min_epochs == last_start + 3
    short = compile_plan(module.strategy, module.stages, 4)
    assert early_stopping(2, short)[1] == min(4, last_start + 3)
