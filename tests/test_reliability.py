"""Bad input costs one clear sentence and writes nothing; killed runs resume; same seed,
same result; non-finite losses stop the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from tl_experiments.errors import UserError
from tl_experiments.train import run

from .conftest import ANALYSIS, CONF, ROOT, TINY, run_train

# Measurements of the machine and the run folder, not results: they differ between two runs.
TIMING = {"train_seconds", "history", "pid", "started_at", "finished_at", "peak_memory_mb",
          "checkpoint_bytes"}  # fmt: skip


def _folder(root: Path, classes: dict[str, int], bad: dict[str, bytes] | None = None) -> Path:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    for rel, data in (bad or {}).items():
        (root / rel).write_bytes(data)
    return root


def _truncated_png(tmp: Path) -> bytes:
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 77).save(tmp / "full.png")
    return (tmp / "full.png").read_bytes()[:120]


CASES = {
    "unknown source": (["data.source=nope"], "Unknown data source 'nope'"),
    "samples_per_class too large": (
        ["data.samples_per_class=400"],
        "data.samples_per_class=400 is more than class",
    ),
    "more stages than the model has": (["strategy.trainable=[9]"], "Stage index 9 is out of range"),
    "non-positive lr": (["strategy.lr=0"], "strategy.lr=0 must be positive"),
    "zero epochs": (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be positive"),
    "unknown timm model": (["model.arch=nope_net"], "Unknown timm model 'nope_net'"),
    "weights of another model": (
        ["model.weights=file", "model.weights_file=@effnet"],
        "do not fit 'test_resnet'",
    ),
    "missing weights file": (
        ["model.weights=file", "model.weights_file=/nope.pth"],
        "Weights file '/nope.pth' does not exist",
    ),
    "missing folder": (["data=image_folder", "data.root=/nope/dir"], "Data folder '/nope/dir'"),
    "empty folder": (["data=image_folder", "data.root=@empty"], "has no images"),
    "one class": (["data=image_folder", "data.root=@one"], "has 1 class folder(s)"),
    "splits disagree": (["data=image_folder", "data.root=@splits"], "differ from"),
    "unreadable image": (["data=image_folder", "data.root=@broken"], "Cannot read image"),
    "truncated image": (["data=image_folder", "data.root=@truncated"], "Cannot read image"),
    "unreadable image in the test split": (
        ["data=image_folder", "data.root=@badtest"],
        "Cannot read image",
    ),
    "empty class folder": (["data=image_folder", "data.root=@emptyclass"], "has no images (it"),
    "class folder named train": (["data=image_folder", "data.root=@trainclass"], "mixes split"),
    "zero image size": (["model.img_size=0"], "model.img_size=0 must be positive"),
    "corrupt safetensors": (
        ["model.weights=file", "model.weights_file=@corrupt"],
        "Cannot read weights file",
    ),
    "data.root is a file": (["data=image_folder", "data.root=@file"], "is a file, not a folder"),
    "same image in train and test, refused": (
        ["data=image_folder", "data.root=@copies", "data.refuse_duplicates=true"],
        "test image(s) copy train images",
    ),
}


@pytest.fixture
def fixtures(tmp_path: Path) -> dict[str, str]:
    import timm

    (tmp_path / "empty" / "a").mkdir(parents=True)
    _folder(tmp_path / "one", {"a": 4})
    _folder(tmp_path / "splits" / "train", {"a": 4, "b": 4})
    _folder(tmp_path / "splits" / "test", {"a": 4, "c": 4})
    _folder(tmp_path / "broken", {"a": 6, "b": 6}, {"b/bad.png": b"not an image"})
    _folder(tmp_path / "truncated", {"a": 6, "b": 6}, {"a/cut.png": _truncated_png(tmp_path)})
    _folder(tmp_path / "badtest" / "train", {"a": 4, "b": 4})
    _folder(tmp_path / "badtest" / "test", {"a": 2, "b": 2}, {"a/bad.png": b"not an image"})
    _folder(tmp_path / "emptyclass", {"a": 4, "b": 4, "c": 0})
    _folder(tmp_path / "trainclass", {"train": 4, "cat": 4})
    _folder(tmp_path / "copies" / "train", {"a": 4, "b": 4})
    _folder(tmp_path / "copies" / "test", {"a": 4, "b": 4})  # the same pixels: copies
    torch.save(timm.create_model("test_efficientnet").state_dict(), tmp_path / "effnet.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{")
    return {
        "@badtest": str(tmp_path / "badtest"),
        "@emptyclass": str(tmp_path / "emptyclass"),
        "@trainclass": str(tmp_path / "trainclass"),
        "@file": str(tmp_path / "effnet.pth"),
        "@corrupt": str(tmp_path / "cut.safetensors"),
        "@copies": str(tmp_path / "copies"),
        "@empty": str(tmp_path / "empty"),
        "@one": str(tmp_path / "one"),
        "@splits": str(tmp_path / "splits"),
        "@broken": str(tmp_path / "broken"),
        "@truncated": str(tmp_path / "truncated"),
        "@effnet": str(tmp_path / "effnet.pth"),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_sentence_and_writes_nothing(make_cfg, fixtures, case: str) -> None:
    args, needle = CASES[case]
    args = [
        a.split("=")[0] + "=" + fixtures.get(a.split("=", 1)[1], a.split("=", 1)[1]) for a in args
    ]
    if "data=image_folder" in args:
        args += ["data.samples_per_class=null", "data.val_fraction=0.25", "data.test_fraction=0.25"]
    cfg = make_cfg(*args)
    with pytest.raises(UserError) as e:
        run(cfg)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)
    out = Path(cfg.paths.output_dir)
    assert not (out / "metrics.json").exists()
    assert not (out / "checkpoints").exists()


# The cached path (feature_extraction on whole epochs) drops the image before extracting.
@pytest.mark.parametrize(
    "extra",
    [
        ["strategy=partial_ft"],
        ["strategy=feature_extraction", "trainer.limit_train_batches=1.0"]
        + [f"trainer.limit_{s}_batches=1.0" for s in ("val", "test")],
    ],
)
def test_unreadable_images_can_be_skipped_and_counted(make_cfg, fixtures, extra) -> None:
    cfg = make_cfg(
        *extra,
        "data=image_folder",
        f"data.root={fixtures['@broken']}",
        "data.samples_per_class=null",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "data.skip_bad_images=true",
    )
    metrics = run(cfg)
    assert sum(metrics["skipped_images"].values()) == 1
    assert metrics["feature_cache"] is (extra[0] == "strategy=feature_extraction")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["strategy.lrr=1"], "Could not override 'strategy.lrr'"),
        (["paths.log_dir=/proc/nope"], "set paths.log_dir to a writable folder"),
        (["hydra.run.dir=/proc/nope/run"], "set hydra.run.dir to a writable folder"),
        (["data=image_folder"], "data.root is not set; pass data.root=/path/to/images"),
        (["data.root=/x"], "add data=image_folder before data.root="),
        (["strategy.lr=fast"], "strategy.lr=fast is not a number; set strategy.lr to a number"),
    ],
)
def test_cli_config_mistakes(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = run_train([*TINY, *args], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr


# Refused while Hydra composes (the schemas of tl_experiments/config_schema.py): preflight
# turns Hydra's error into the sentence, before any import of torch.
TYPED = [
    (["strategy.lr=abc"], "strategy.lr=abc is not a number; set strategy.lr to a number such as"),
    (["strategy.lr=fast"], "strategy.lr=fast is not a number; set strategy.lr to a number"),
    (["data.samples_per_class=ten"], "data.samples_per_class=ten is not a whole number; set"),
    (["strategy.pretrained=maybe"], "strategy.pretrained=maybe is not true or false; set"),
    (["analysis.photos=1.5"], "analysis.photos=1.5 is not a whole number; set analysis.photos"),
    (["analysis.foo=1"], "Could not override 'analysis.foo'; check the spelling against"),
    (["data.batchsize=8"], "Could not override 'data.batchsize'; check the spelling"),
    (["strategy=lp_ft", "strategy.phases=3"], "strategy.phases: "),
]


@pytest.mark.parametrize(("args", "needle"), TYPED)
def test_a_key_or_type_the_schema_refuses_is_one_sentence(args, needle, capsys) -> None:
    from tl_experiments.commands.preflight import preflight

    with pytest.raises(SystemExit) as e:
        preflight(args, "train")
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("Error: ") and needle in err and err.count("\n") == 1, err


def test_an_unset_mandatory_value_exits_2_in_a_multirun_job_too(make_cfg, capsys) -> None:
    from tl_experiments.commands.guard import guarded

    with pytest.raises(SystemExit) as e:  # what preflight does not see (-m) guarded does
        guarded(run, make_cfg("data=image_folder"))
    assert e.value.code == 2
    assert "Error: data.root is not set; pass data.root=" in capsys.readouterr().err


def _bare_trainer(max_epochs: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )


def test_non_finite_loss_stops_the_run(make_cfg) -> None:
    from tl_experiments.train import create_module

    module = create_module(make_cfg(), 2, ["a", "b"])
    x = torch.full((8, 3, 32, 32), float("nan"))
    loader = DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    trainer = _bare_trainer(max_epochs=1)
    with pytest.raises(UserError, match=r"loss became nan at epoch 0, step 0; lower the learning"):
        trainer.fit(module, train_dataloaders=loader)


def test_non_finite_loss_stops_a_run_on_cached_features(make_cfg) -> None:
    from tl_experiments.feature_cache import CachedHeadModule
    from tl_experiments.feature_cache.data import FeatureSplit, WholeEpochSampler
    from tl_experiments.train import create_module

    module = create_module(make_cfg("strategy=feature_extraction"), 2, ["a", "b"])
    module = CachedHeadModule(
        module.backbone, module.plan, module.class_names, batch_size=4, frozen_digest="test"
    )
    features = torch.full((8, module.backbone.num_features), float("nan"))
    split = FeatureSplit(features, torch.zeros(8, dtype=torch.long))
    loader = DataLoader(split, batch_size=None, sampler=WholeEpochSampler(8, 0, shuffle=True))
    trainer = _bare_trainer(max_epochs=2)
    # Checked once per epoch of features: the run stops in its first epoch, after 2 steps.
    with pytest.raises(UserError, match=r"loss became nan at epoch 0, step 2; lower the learning"):
        trainer.fit(module, train_dataloaders=loader)


def test_same_seed_same_metrics(make_cfg, tmp_path: Path) -> None:
    # The analysis too (drift, CKA, shifted sets, the WiSE-FT curve): seeded draws.
    a = run(make_cfg("strategy=full_ft", ANALYSIS, f"paths.output_dir={tmp_path / 'a'}"))
    b = run(make_cfg("strategy=full_ft", ANALYSIS, f"paths.output_dir={tmp_path / 'b'}"))

    def strip(m: dict) -> dict:
        return {k: v for k, v in m.items() if k not in TIMING and not k.endswith("_seconds")}

    assert strip(a) == strip(b)
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]


def test_resume_refuses_a_checkpoint_that_carries_code(make_cfg, tmp_path: Path) -> None:
    import pickle

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": os.system}))
    with pytest.raises(UserError, match="Refused to resume"):
        run(make_cfg(f"ckpt_path={evil}"))


RESUME = [
    *TINY,
    "strategy=gradual_unfreeze",
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=null",
    "data.samples_per_class=40",
    "data.batch_size=8",
    "trainer.limit_val_batches=null",
    "trainer.limit_test_batches=null",
    "data.val_fraction=0.02",
    "data.test_fraction=0.02",
]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    full = tmp_path / "full"
    assert run_train([*RESUME, f"hydra.run.dir={full}"], cwd=tmp_path).returncode == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "train.py"), *RESUME, f"hydra.run.dir={killed}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline:  # end of epoch 0 ...
        time.sleep(0.05)
    time.sleep(1.0)  # ... and into epoch 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (killed / "metrics.json").exists()

    resumed = run_train([*RESUME, f"hydra.run.dir={killed}", "ckpt_path=last"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    for key in ("test_acc", "best_val_acc", "val_acc", "train_acc", "epochs", "trainable_params"):
        assert a[key] == b[key], key
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]


def test_eval_on_the_runs_own_folder_tests_only_its_test_split(make_cfg, tmp_path: Path) -> None:
    from tl_experiments.commands.evaluate import evaluate

    root = _folder(tmp_path / "photos", {"a": 12, "b": 12})
    folder = [f"data.root={root}", "data.samples_per_class=null", "data.test_fraction=0.25"]
    trained = run(make_cfg("data=image_folder", *folder, "analysis.enabled=false"))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="eval",
            overrides=[
                *TINY,
                "data=image_folder",
                f"data.root={root}",
                f"ckpt={ckpt}",
                f"paths.output_dir={tmp_path / 'eval'}",
                "trainer.limit_test_batches=null",
            ],
        )
    metrics = evaluate(cfg)  # the run's fractions, not eval's defaults, draw the test split
    assert trained["test_size"] == 6  # 25% of 24; eval's default 20% would give 4
    assert (metrics["split"], metrics["num_images"]) == ("test", 6)


def test_eval_given_a_run_folder_names_its_checkpoint(tmp_path: Path) -> None:
    from tl_experiments.models.checkpoint import load_checkpoint

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"")
    with pytest.raises(UserError, match=r"is a folder, not a checkpoint file; pass ckpt=.*best"):
        load_checkpoint(tmp_path)


def test_ctrl_c_in_the_analysis_keeps_the_results(make_cfg, monkeypatch, capsys) -> None:
    import tl_experiments.train as train
    from tl_experiments.commands.guard import guarded

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "analyze", interrupted)
    cfg = make_cfg(ANALYSIS)
    with pytest.raises(SystemExit) as e:
        guarded(run, cfg)
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert "Stopped: Interrupted during the analysis;" in err and "Traceback" not in err
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["analysis_interrupted"] is True and metrics["test_acc"] is not None


def test_ctrl_c_in_training_says_how_to_resume(make_cfg, monkeypatch) -> None:
    from tl_experiments.callbacks import EpochHistory

    def interrupted(self, trainer, module):
        if trainer.current_epoch == 1:  # epoch 0 wrote its checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochHistory, "on_train_epoch_start", interrupted)
    cfg = make_cfg("trainer.max_epochs=2")
    with pytest.raises(KeyboardInterrupt) as e:
        run(cfg)
    out = Path(cfg.paths.output_dir)
    assert str(e.value) == (
        f"Interrupted during training; resume with: python train.py hydra.run.dir={out} "
        "ckpt_path=last"
    )
    assert not (out / "metrics.json").exists()


def test_train_seconds_of_a_resumed_run_include_the_time_before_it() -> None:
    from tl_experiments.callbacks import EpochHistory

    first = EpochHistory()
    first.on_fit_start(None, None)
    time.sleep(0.2)
    resumed = EpochHistory()
    resumed.load_state_dict(first.state_dict())  # what the checkpoint carries
    assert resumed.resumed_seconds >= 0.2
    assert EpochHistory().resumed_seconds == 0.0
