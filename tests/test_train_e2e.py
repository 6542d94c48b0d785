"""End to end: ``python train.py`` in a subprocess, and what it leaves in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import ANALYSIS, TINY, run_train

FIELDS = {
    "status",
    "model",
    "arch",
    "strategy",
    "data",
    "samples_per_class",
    "img_size",
    "seed",
    "num_classes",
    "train_size",
    "val_size",
    "test_size",
    "trainable_params",
    "total_params",
    "train_seconds",
    "epochs",
    "best_val_acc",
    "val_acc",
    "train_acc",
    "train_val_gap",
    "test_acc",
    "test_f1_macro",
    "history",
}


def _tags(run: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in (run / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        for kind in ("scalars", "images", "tensors"):
            tags |= set(acc.Tags().get(kind, []))
    return tags


@pytest.mark.slow
def test_train_writes_the_run_folder(trained_run) -> None:
    trained = trained_run("partial_ft")  # shared with test_eval_predict_export.py
    run, epochs = trained.dir, 2
    assert f"trainer.max_epochs={epochs}" in trained.args
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Trainable parameters:" in trained.stdout  # the model summary is printed

    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= FIELDS
    assert metrics["strategy"] == "partial_ft" and metrics["model"] == "test_resnet"
    assert metrics["epochs"] == epochs and len(metrics["history"]) == epochs
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert metrics["train_val_gap"] == pytest.approx(
        metrics["train_acc"] - metrics["val_acc"], abs=1e-5
    )
    assert not list(run.glob(".metrics.json.*"))  # no temp file left behind

    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "frozen" in (run / "summary.txt").read_text()
    assert (run / "confusion_matrix.png").stat().st_size > 0
    assert (run / "test_report.csv").read_text().startswith("class,precision,recall,f1,support")

    tags = _tags(run)
    for tag in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "lr-AdamW/head",
        "lr-AdamW/stem",
        "test/confusion_matrix",
        "hp/test_acc",
    ):
        assert tag in tags, f"{tag} not in {sorted(tags)}"


# As the user meets them: train.py in a subprocess, for each way a mistake reaches the user
# (the config check before Hydra starts, and an error raised inside the run).
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["strategy=no_such_strategy"], "no_such_strategy"),
        (["model=no_such_model"], "no_such_model"),
        (["model=resnet50", "model.img_size=32"], "cannot be downloaded: no network"),
    ],
)
def test_user_errors_exit_nonzero_with_one_sentence(tmp_path: Path, args, needle) -> None:
    run = tmp_path / "run"
    proc = run_train([*TINY, f"hydra.run.dir={run}", *args], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run / "metrics.json").exists()


# The other mistakes raised inside the run take the same way out (commands.guard.guarded, which
# train.py's main calls), checked in this process: no interpreter start for each.
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["model.arch=resnet_nope"], "Unknown timm model 'resnet_nope'"),
        (
            ["data=image_folder", "data.root=/nonexistent/images"],
            "Data folder '/nonexistent/images' does not exist",
        ),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be positive"),
        (["strategy.lr=-1"], "strategy.lr=-1 must be positive"),
    ],
)
def test_errors_inside_a_run_exit_2_with_one_sentence(make_cfg, capsys, args, needle) -> None:
    from tl_experiments.commands.guard import guarded
    from tl_experiments.train import run

    cfg = make_cfg(*args)
    with pytest.raises(SystemExit) as e:
        guarded(run, cfg)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_a_finished_run_leaves_no_tensorboard_writer_open(make_cfg) -> None:
    # A sweep's jobs run one after another in a long-lived worker process: each job closes
    # its event files (flushed, their writer threads ended) when it returns, not at exit.
    import gc
    import threading

    from tl_experiments.train import run

    before = threading.active_count()
    cfg = make_cfg()
    run(cfg)
    gc.collect()
    assert threading.active_count() == before, [t.name for t in threading.enumerate()]
    tags = _tags(Path(cfg.paths.output_dir))
    assert {"test/confusion_matrix", "hp/test_acc", "val/acc"} <= tags, sorted(tags)


def test_metrics_json_has_only_the_typed_records_fields(make_cfg) -> None:
    # schema.RunRecord is what the report reads: a field written but not declared there
    # (or misspelled) fails here, not silently in a report column.
    from tl_experiments.schema import RunRecord
    from tl_experiments.train import run

    metrics = run(make_cfg("strategy=full_ft", ANALYSIS))
    assert set(metrics) <= set(RunRecord.__annotations__)
    # Written by collect_metrics, by the analysis, and by train.py after both.
    assert {"best_val_acc", "settings", "history", "drift", "shift_acc", "pid"} <= set(metrics)
