"""Loggers as a config group: one run with all four, each read back with its own tool
(TensorBoard's event reader, the CSV files, MLflow's client, the W&B offline run folder),
and a sweep with logger=[tensorboard,mlflow] seen as one TensorBoard view."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from tl_experiments.paths import job_dirname

from .conftest import ANALYSIS, CONF, TINY, run_train

STAGES_TRAINED = ("stage2", "stage3", "stage4", "head")  # partial_ft on test_resnet


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> tuple[Path, dict, str]:
    """One tiny partial_ft run with logger=[tensorboard,csv,mlflow,wandb]."""
    from tl_experiments.train import run

    tmp = tmp_path_factory.mktemp("loggers")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    overrides = [
        *TINY,
        "strategy=partial_ft",
        "logger=[tensorboard,csv,mlflow,wandb]",
        f"logger.mlflow.tracking_uri={store}",
        f"logger.mlflow.artifact_location={tmp / 'artifacts'}",
        ANALYSIS,  # drift is logged too
        "analysis.shifts=false",
        "analysis.max_images=32",
        f"paths.output_dir={tmp / 'run'}",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TL_CACHE_DIR", str(tmp / "weights-cache"))
        mp.setenv("WANDB_MODE", "offline")  # belt and braces: the config says offline too
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        metrics = run(cfg)
    return tmp / "run", metrics, store


def test_logger_group_takes_one_or_several() -> None:
    def loggers(*overrides: str) -> dict:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=["paths.output_dir=/x", *overrides])
        return {k: v["_target_"].rsplit(".", 1)[-1] for k, v in cfg.logger.items()}

    assert loggers() == {"tensorboard": "RunLogger"}  # the default: tb/ in the run folder
    assert loggers("logger=csv") == {"csv": "CSVLogger"}
    assert loggers("logger=[tensorboard,mlflow,wandb]") == {
        "tensorboard": "RunLogger",
        "mlflow": "MLFlowLogger",
        "wandb": "WandbLogger",
    }


def _events(tb: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb), size_guidance={"images": 0, "tensors": 0})  # every file
    acc.Reload()
    return acc


def _session_hparams(acc) -> dict:
    """The hparams TensorBoard's HPARAMS tab shows for this run."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    hparams = data.session_start_info.hparams
    return {k: v.string_value or v.number_value for k, v in hparams.items()}


def test_tensorboard_gets_lrs_hparams_final_metrics_confusion_and_layout(logged_run) -> None:
    run, metrics, _ = logged_run
    acc = _events(run / "tb")
    scalars = set(acc.Tags()["scalars"])
    assert {f"lr-AdamW/{s}" for s in STAGES_TRAINED} <= scalars, sorted(scalars)
    assert acc.Scalars("hp/test_acc")[-1].value == pytest.approx(metrics["test_acc"])
    assert "drift/stage2" in scalars
    assert "test/confusion_matrix" in acc.Tags()["images"]
    hp = _session_hparams(acc)
    assert hp["strategy"] == "partial_ft" and hp["run"] == "seed=0,strategy=partial_ft"
    assert "custom_scalars__config__" in acc.Tags()["tensors"]


def test_csv_gets_lrs_hparams_final_metrics_and_confusion(logged_run) -> None:
    run, metrics, _ = logged_run
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    assert {f"lr-AdamW/{s}" for s in STAGES_TRAINED} <= columns
    final = [float(r["hp/test_acc"]) for r in rows if r.get("hp/test_acc")]
    assert final == [pytest.approx(metrics["test_acc"])]
    hparams = yaml.safe_load((run / "csv" / "hparams.yaml").read_text())
    assert hparams["strategy"] == "partial_ft"
    assert hparams["lr"] == metrics["settings"]["strategy.lr"]
    with open(run / "csv" / "confusion_matrix.csv") as f:
        matrix = list(csv.reader(f))
    with open(run / "test_report.csv") as f:
        support = sum(int(r["support"]) for r in csv.DictReader(f))  # the images tested
    assert sum(int(v) for row in matrix[1:] for v in row[1:]) == support


def test_mlflow_client_reads_the_run_back(logged_run) -> None:
    from mlflow import MlflowClient

    run, metrics, store = logged_run
    client = MlflowClient(tracking_uri=store)
    (found,) = client.search_runs([client.get_experiment_by_name("tl-experiments").experiment_id])
    assert found.info.run_name == "seed=0,strategy=partial_ft"
    assert found.info.status == "FINISHED"
    assert found.data.params["strategy"] == "partial_ft"
    assert found.data.metrics["hp/test_acc"] == pytest.approx(metrics["test_acc"])
    for stage in STAGES_TRAINED:
        assert client.get_metric_history(found.info.run_id, f"lr-AdamW/{stage}")
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"confusion_matrix.png", "test_report.csv", "model_summary.txt"} <= artifacts


def _wandb_records(path: Path):
    """The records of a W&B offline run file (``run-<id>.wandb``), parsed with W&B's own
    protobuf schema. The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic,
    version), then 32 KiB blocks of records (crc32, length, type: full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, chunk = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            yield wandb_internal_pb2.Record.FromString(chunk)
            chunk = b""


def test_wandb_offline_run_folder_has_the_run(logged_run) -> None:
    run, metrics, _ = logged_run
    (folder,) = (run / "wandb").glob("offline-run-*")
    config, history, name = {}, {}, None
    for record in _wandb_records(next(folder.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name = record.run.display_name
        elif kind == "config":
            config |= {i.key: json.loads(i.value_json) for i in record.config.update}
        elif kind == "history":
            for item in record.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(item)
    assert name == "seed=0,strategy=partial_ft"
    assert config["strategy"] == "partial_ft"
    assert {f"lr-AdamW/{s}" for s in STAGES_TRAINED} <= set(history)
    assert json.loads(history["hp/test_acc"][-1].value_json) == pytest.approx(metrics["test_acc"])
    assert list((folder / "files" / "media" / "images").rglob("confusion_matrix*.png"))


@pytest.mark.slow
def test_a_sweep_logs_to_tensorboard_and_mlflow_and_is_one_tensorboard_view(tmp_path) -> None:
    sweep, store = tmp_path / "sweep", f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}"  # default
    proc = run_train(
        [
            "-m",
            "model=test_resnet",
            "trainer=debug",
            "data.samples_per_class=3",
            "strategy=feature_extraction",
            "seed=0,1",
            "analysis.enabled=false",
            "logger=[tensorboard,mlflow]",  # not in the job folders' names: where, not what
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    client = MlflowClient(tracking_uri=store)
    found = client.search_runs([client.get_experiment_by_name("tl-experiments").experiment_id])
    names = sorted(r.info.run_name for r in found)
    assert len(names) == 2 and all("strategy=feature_extraction" in n for n in names)

    view = EventMultiplexer().AddRunsFromDirectory(str(sweep))  # tensorboard --logdir <sweep>
    view.Reload()
    runs = sorted(view.Runs())
    # Each run under its job folder (a safe name made from its overrides: paths.job_dirname),
    # no version; MLflow keeps the overrides themselves as the run name.
    assert runs == sorted(f"{job_dirname(n)}/tb" for n in names)
    for r in runs:
        acc = view.GetAccumulator(r)
        assert _session_hparams(acc)["seed"] in (0, 1)  # a row of the hparams table...
        assert acc.Scalars("hp/test_acc")  # ...with the final metrics
        assert "custom_scalars__config__" in acc.Tags()["tensors"]


def test_a_new_logger_gets_the_confusion_matrix_without_a_branch(tmp_path: Path) -> None:
    # Any Lightning logger: an image where it takes one (log_image), else a CSV in its folder.
    from pytorch_lightning.loggers import Logger

    from tl_experiments.run.loggers import log_confusion_matrix

    class _Bare(Logger):
        name, version = "bare", 0

        def log_hyperparams(self, params, *args, **kwargs) -> None: ...

        def log_metrics(self, metrics, step=None) -> None: ...

    class Imaging(_Bare):
        def __init__(self) -> None:
            super().__init__()
            self.images: list = []

        def log_image(self, key, images, step=None) -> None:
            self.images.append((key, images, step))

    class Folder(_Bare):
        log_dir = str(tmp_path / "folder")

    imaging, folder = Imaging(), Folder()
    for logger in (imaging, folder):
        log_confusion_matrix(logger, tmp_path, [[2, 0], [1, 3]], ["a", "b"], 7)
    assert imaging.images == [
        ("test/confusion_matrix", [str(tmp_path / "confusion_matrix.png")], 7)
    ]
    with open(tmp_path / "folder" / "confusion_matrix.csv") as f:
        assert list(csv.reader(f)) == [
            ["true \\ predicted", "a", "b"],
            ["a", "2", "0"],
            ["b", "1", "3"],
        ]
