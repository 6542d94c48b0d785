"""What a run prints: no third-party noise the project can avoid, and a closing summary."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tl_experiments.commands.args import parse_kv
from tl_experiments.train import run


def test_a_run_is_quiet_and_ends_with_a_summary(make_cfg, recwarn, capsys, caplog) -> None:
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    lightning.addHandler(caplog.handler)  # Lightning's logger need not propagate to the root
    try:
        cfg = make_cfg("analysis.enabled=false", "trainer.log_every_n_steps=50")
        metrics = run(cfg)
    finally:
        lightning.removeHandler(caplog.handler)
    warned = [str(w.message) for w in recwarn]
    for noise in ("in eval mode", "LeafSpec", "log_every_n_steps"):
        assert not [w for w in warned if noise in w], noise
    assert "Tip" not in caplog.text
    out = capsys.readouterr().out
    assert "Weights: none (random init)" in out and "lr" in out.split("Trainable")[0]
    assert f"Run folder: {Path(cfg.paths.output_dir)}" in out
    assert f"test accuracy {100 * metrics['test_acc']:.1f}%" in out
    # A fresh run is no resume (test() reloads the history's state from best.ckpt).
    assert " s in all, " in out and "resume" not in out.split("Run folder:")[-1]


def test_help_is_an_answer_not_an_error(capsys) -> None:
    with pytest.raises(SystemExit) as e:  # it used to answer "Unknown argument '--help'"
        parse_kv(["--help"], {"ckpt": None}, "python -m x ckpt=PATH")
    assert e.value.code == 0
    assert capsys.readouterr().out == "usage: python -m x ckpt=PATH\n"


def test_closing_summary_names_what_exists_and_a_resume(tmp_path: Path) -> None:
    from pytorch_lightning.loggers import CSVLogger

    from tl_experiments.run.console import closing_summary
    from tl_experiments.run.loggers import logger_outputs

    metrics = {"train_seconds": 184.0, "test_size": 13, "analysis_seconds": 2.0}
    csv = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    mlflow = "MLflow run 0a1b in sqlite:////abs/logs/mlflow.db"
    outputs = [*logger_outputs([csv], tmp_path), mlflow]
    assert outputs[0] == "csv/"
    line = closing_summary(metrics, str(tmp_path), 133.0, 51.0, outputs).splitlines()[-1]
    assert "tb/" not in line and "test_report.csv and csv/ are in the run folder" in line
    assert line.endswith(f"; {mlflow}.")
    # A resumed run: this session's seconds are not "in all" beside a longer training time.
    assert "133 s since the resume, 184 s training in all (51 s of it before the resume)" in line
    fresh = closing_summary(metrics, str(tmp_path), 190.0, 0.0, []).splitlines()[-1]
    assert "190 s in all, 184 s training" in fresh and "test_report.csv are in" in fresh


def test_mlflow_output_is_its_run_id_and_uri(tmp_path: Path) -> None:
    from tl_experiments.run.loggers import create_loggers, logger_outputs

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    conf = {
        "_target_": "pytorch_lightning.loggers.MLFlowLogger",
        "experiment_name": "t",
        "run_name": None,
        "tracking_uri": store,
    }
    (logger,) = create_loggers({"mlflow": conf}, "seed=0")
    assert logger_outputs([logger], tmp_path) == [f"MLflow run {logger.run_id} in {store}"]


def test_what_trains_is_said_once_and_when_it_changes(caplog) -> None:
    from types import SimpleNamespace

    from tl_experiments.strategies.apply import ApplyPlan

    stages = [SimpleNamespace(name=n, index=i) for i, n in enumerate(["stem", "stage1", "head"])]
    trainer = SimpleNamespace(optimizers=[])
    module = SimpleNamespace(stages=stages, loggers=[], global_step=0, trainer=trainer)
    schedule = ApplyPlan()
    with caplog.at_level("INFO"):
        for epoch, trainable in enumerate([{2}, {2}, {2}, {1, 2}, {1, 2}]):
            schedule._announce(module, epoch, frozenset(trainable))
    said = [r.getMessage() for r in caplog.records if "training" in r.getMessage()]
    assert said == [
        "epoch 0: training head",  # was printed again at every epoch
        "[schedule] epoch 3: unfreeze stage1 -> training stage1, head",
    ]


def test_lightnings_lines_about_nothing_are_dropped(caplog, recwarn) -> None:
    import warnings

    from PIL import Image

    from tl_experiments.run.console import quiet_third_party

    quiet_third_party()
    bomb = Image.DecompressionBombWarning
    warnings.warn("Image size (100000000 pixels) exceeds limit", bomb, stacklevel=1)
    assert not recwarn.list  # a large photo of the user's own is no attack
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level("INFO"):
        for line in (
            "GPU available: False, used: False",
            "TPU available: False, using: 0 TPU cores",
            "Loading `train_dataloader` to estimate number of stepping batches.",
            "💡 Tip: For seamless cloud logging ... litlogger",
            "`Trainer.fit` stopped: `max_epochs=1` reached.",
        ):
            lightning.info(line)
    assert [r.getMessage() for r in caplog.records] == [
        "`Trainer.fit` stopped: `max_epochs=1` reached."
    ]


def test_resuming_does_not_warn_that_its_checkpoint_folder_is_not_empty(tmp_path: Path) -> None:
    import os
    import warnings

    import torch

    from tl_experiments.run.resume import resume_path

    (tmp_path / "checkpoints").mkdir()
    torch.save({"epoch": 0}, tmp_path / "checkpoints" / "last.ckpt")
    folder = os.path.realpath(tmp_path / "checkpoints")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resume_path("last", tmp_path).endswith("last.ckpt")
        warnings.warn(f"Checkpoint directory {folder} exists and is not empty.", stacklevel=1)
        warnings.warn(f"Checkpoint directory {folder}-other exists and is not empty.", stacklevel=1)
    assert [str(w.message) for w in caught] == [
        f"Checkpoint directory {folder}-other exists and is not empty."
    ]


def test_a_run_on_cached_features_does_not_warn_about_its_logging_interval(
    make_cfg, recwarn
) -> None:
    cfg = make_cfg(  # trainer=cpu (no batch limits): the cache is used
        "model=test_resnet",
        "strategy=feature_extraction",
        "data.samples_per_class=5",
        "data.batch_size=4",
        "trainer.max_epochs=1",
        "analysis.enabled=false",
        tiny=False,
    )
    metrics = run(cfg)
    assert metrics["feature_cache"]  # one batch an epoch, where 50 images made 13 batches
    assert not [w for w in recwarn if "log_every_n_steps" in str(w.message)]
