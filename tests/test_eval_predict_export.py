"""From a trained run to use: eval reproduces its test, predict names its classes, exports match.

One tiny run of ``train.py`` (a subprocess, as a user runs it, ``RUNS["partial_ft"]`` in
conftest.py, shared with test_train_e2e.py) serves every test here. Its test split is small
and untruncated (2% of the data, no ``limit_test_batches``), so eval sees exactly the images
the run was tested on.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from tl_experiments.commands.evaluate import evaluate
from tl_experiments.commands.export import export
from tl_experiments.commands.export import main as export_main
from tl_experiments.commands.predict import main as predict_main
from tl_experiments.data import load_image_set, to_pil
from tl_experiments.errors import UserError
from tl_experiments.models.checkpoint import eval_transform, load_checkpoint, module_from_checkpoint
from tl_experiments.models.export_formats import WRITERS

from .conftest import CONF, ROOT, RUNS

pytestmark = pytest.mark.slow

RUN_ARGS = RUNS["partial_ft"]  # the run's own arguments: eval draws the same splits
MNIST_CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def run_dir(trained_run) -> Path:
    trained = trained_run("partial_ft")  # shared with test_train_e2e.py
    assert trained.returncode == 0, trained.stderr[-2000:]
    return trained.dir


@pytest.fixture(scope="module")
def ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """Six real MNIST digits as PNG files, two each of classes 0, 3 and 7."""
    out = tmp_path_factory.mktemp("images")
    images = load_image_set("mnist_sample")
    for c in (0, 3, 7):
        for i in np.flatnonzero(images.labels == c)[:2]:
            to_pil(images.items[i]).save(out / f"digit{c}_{i}.png")
    return out


def test_eval_reproduces_the_runs_test(run_dir: Path, ckpt: Path, tmp_path: Path) -> None:
    # In this process (eval.py itself, as a user runs it, is the next test).
    out = tmp_path / "eval"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="eval", overrides=[*RUN_ARGS, f"ckpt={ckpt}", f"paths.output_dir={out}"]
        )
    assert evaluate(cfg) == json.loads((out / "eval_metrics.json").read_text())
    trained = json.loads((run_dir / "metrics.json").read_text())
    evaluated = json.loads((out / "eval_metrics.json").read_text())
    assert evaluated["num_images"] == trained["test_size"] == 100
    assert evaluated["split"] == "test"
    assert evaluated["test_acc"] == pytest.approx(trained["test_acc"], abs=1e-6)
    assert evaluated["test_f1_macro"] == pytest.approx(trained["test_f1_macro"], abs=1e-6)
    # Same per-class report, class by class: the same images, predicted the same way.
    assert (out / "test_report.csv").read_text() == (run_dir / "test_report.csv").read_text()
    assert (out / "confusion_matrix.png").stat().st_size > 0


def test_plain_eval_retests_on_the_checkpoints_own_data(
    run_dir: Path, ckpt: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    proc = subprocess.run(  # no data overrides at all, as the README shows it
        [
            sys.executable,
            str(ROOT / "eval.py"),
            "trainer=debug",
            "trainer.limit_test_batches=null",
            f"ckpt={ckpt}",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained = json.loads((run_dir / "metrics.json").read_text())
    evaluated = json.loads((out / "eval_metrics.json").read_text())
    # eval's own defaults would test 20% of the data (1000 images), not the run's 2%.
    assert (evaluated["split"], evaluated["num_images"]) == ("test", trained["test_size"])
    assert evaluated["test_acc"] == pytest.approx(trained["test_acc"], abs=1e-6)


def test_eval_scores_a_whole_folder_of_some_classes(
    ckpt: Path, image_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "folder"
    for png in image_dir.glob("*.png"):  # root/<class>/<file>, classes 0, 3, 7 only
        (root / png.name[5]).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, root / png.name[5] / png.name)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="eval",
            overrides=[
                *RUN_ARGS,
                f"ckpt={ckpt}",
                "data=image_folder",
                f"data.root={root}",
                f"paths.output_dir={tmp_path / 'out'}",
            ],
        )
    metrics = evaluate(cfg)
    assert (metrics["split"], metrics["num_images"], metrics["num_classes"]) == ("all", 6, 10)
    with open(tmp_path / "out" / "test_report.csv") as f:
        support = {row["class"]: int(row["support"]) for row in csv.DictReader(f)}
    # Folder classes land on the checkpoint's ids by name, not by folder position.
    assert support == {c: (2 if c in "037" else 0) for c in MNIST_CLASSES}


def test_predict_prints_the_training_class_names(
    ckpt: Path, image_dir: Path, tmp_path: Path, capsys
) -> None:
    out_csv = tmp_path / "pred.csv"
    assert predict_main([f"ckpt={ckpt}", f"images={image_dir}", "topk=3", f"csv={out_csv}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith(str(image_dir)) for line in lines)
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 3
    assert {r["class"] for r in rows} <= set(load_image_set("mnist_sample").class_names)
    for image in {r["image"] for r in rows}:
        probs = [float(r["probability"]) for r in rows if r["image"] == image]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt=/no/such.ckpt", "images=."], "does not exist"),
        (["ckpt={ckpt}", "images={empty}"], "No image files found"),
        (["ckpt={ckpt}", "images={bad}"], "Cannot read image"),
        (["ckpt={ckpt}"], "Missing images="),
        (["ckpt={bad}", "images={bad}"], "weights_only=True"),
    ],
)
def test_predict_errors_are_one_sentence(args, message, ckpt: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_text("not an image")
    paths = {"ckpt": ckpt, "empty": tmp_path / "empty", "bad": tmp_path / "bad.png"}
    assert predict_main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and message in err and "\n" not in err


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    torch.save(
        {"tl_experiments": {}, "state_dict": {}, "obj": torch.nn.Linear(1, 1)},
        tmp_path / "pickled.ckpt",
    )
    with pytest.raises(UserError, match="weights_only=True"):
        load_checkpoint(tmp_path / "pickled.ckpt")


def test_onnx_matches_pytorch_on_real_images(ckpt: Path, image_dir: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is needed")
    info = export(ckpt, "onnx", tmp_path / "model.onnx")  # checks the training test split
    assert info["check"]["images"] == 16 and info["check"]["max_abs_diff"] <= 1e-4
    sidecar = json.loads((tmp_path / "model.json").read_text())
    assert sidecar["class_names"] == MNIST_CLASSES and sidecar["format"] == "onnx"
    # Independently: other real images, a batch size (6) other than the traced one (2).
    loaded = load_checkpoint(ckpt)
    tf = eval_transform(loaded)
    batch = torch.stack([tf(to_pil(p)) for p in sorted(image_dir.glob("*.png"))])
    with torch.no_grad():
        expected = module_from_checkpoint(loaded)(batch).numpy()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": batch.numpy()})[0]
    assert got.shape == (6, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_onnx_failure_falls_back_to_torchscript(
    ckpt: Path, image_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    def cannot_express(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::magic' to ONNX is not supported.")

    monkeypatch.setitem(WRITERS, "onnx", cannot_express)
    info = export(ckpt, "onnx", tmp_path / "model.onnx", images=str(image_dir))
    assert info["format"] == "torchscript" and Path(info["path"]).suffix == ".pt"
    assert Path(info["path"]).is_file() and info["check"]["max_abs_diff"] <= 1e-4


def test_export_of_a_sweep_picks_its_best_run(
    run_dir: Path, image_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is needed")
    sweep = tmp_path / "sweep"
    shutil.copytree(run_dir, sweep / "0", ignore=shutil.ignore_patterns("tb"))
    failed = sweep / "1"
    failed.mkdir()
    (failed / "error.json").write_text('{"status": "failed", "error": "x", "type": "E"}')
    assert export_main([f"sweep={sweep}", f"images={image_dir}"]) == 0
    sidecar = json.loads((sweep / "best_model.json").read_text())
    assert sidecar["ckpt"] == str((sweep / "0" / "checkpoints" / "best.ckpt").resolve())
    assert (sweep / "best_model.onnx").is_file()
