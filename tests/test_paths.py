"""Job folder names that stay inside the sweep folder; a path passed back as it is printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tl_experiments.paths import job_dirname, quote_path_overrides, unquote

from .conftest import CONF

NASTY = [
    "data.root=../../x/photos,data=image_folder,seed=0",
    "data.root=/home/me/my photos/2024,seed=1",
    "data.root='a=b,c',seed=0",
    "data.root=..,seed=0",
    "strategy=full_ft," + ",".join(f"k{i}=/very/long/path/{i}" for i in range(20)),
]


@pytest.mark.parametrize("overrides", NASTY)
def test_job_folder_is_one_safe_name_inside_the_sweep(overrides: str, tmp_path: Path) -> None:
    name = job_dirname(overrides)
    assert name == job_dirname(overrides)  # deterministic: skip_finished finds it again
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert not name.startswith(".") and ".." not in name and len(name) <= 70
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_job_folder_names_are_readable_and_distinct() -> None:
    assert job_dirname("seed=0,strategy=full_ft").startswith("seed-0_strategy-full_ft_")
    # What a sweep varies (groups, seed) is read first, before long dotted settings.
    many = "data.batch_size=16,data.samples_per_class=3,model=test_resnet,seed=1,strategy=lp_ft"
    assert job_dirname(many + ",trainer.limit_val_batches=1").startswith(
        "model-test_resnet_seed-1_strategy-lp_ft_data.batch_size-16"
    )
    # Readable parts that agree (after cleaning or cutting) still give two folders.
    assert job_dirname("data.root=/a/b") != job_dirname("data.root=/a_b")
    long = "x" * 100
    assert job_dirname(f"a={long}1") != job_dirname(f"a={long}2")
    assert job_dirname("") == ""


def test_sweep_subdir_from_the_real_config_stays_inside() -> None:
    overrides = ["data=image_folder", "data.root=../../x/photos", "seed=0", "threads=1"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    subdir = str(cfg.hydra.sweep.subdir)
    assert "/" not in subdir and "=" not in subdir
    assert subdir.startswith("data-image_folder_seed-0_data.root-._._x_photos")
    assert subdir == job_dirname(cfg.hydra.job.override_dirname)  # threads: not in the name


def test_path_values_are_quoted_for_hydra_once() -> None:
    path = "logs/multirun/d/t/seed-0,lr=0.1/checkpoints/best.ckpt"
    keys = ("ckpt", "hydra.run.dir")
    assert quote_path_overrides([f"ckpt={path}"], keys) == [f"ckpt='{path}'"]
    assert quote_path_overrides([f"ckpt='{path}'"], keys) == [f"ckpt='{path}'"]
    plain = ["ckpt=runs/best.ckpt", "ckpt_path=null", "seed=0,1", "hydra.run.dir=${x}/y"]
    assert quote_path_overrides(plain, keys) == plain
    assert unquote(f"'{path}'") == unquote(f'"{path}"') == unquote(path) == path


@pytest.mark.parametrize("quoted", [False, True])
def test_every_command_takes_a_path_as_printed(quoted: bool, tmp_path: Path) -> None:
    """eval.py (through Hydra's parser), predict and export: one path, quoted or not."""
    from tl_experiments.commands.args import parse_kv

    path = str(tmp_path / "seed=0,lr=0.1 x" / "checkpoints" / "best.ckpt")
    arg = f"ckpt='{path}'" if quoted else f"ckpt={path}"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=quote_path_overrides([arg]))
    assert cfg.ckpt == path
    assert parse_kv([arg], {"ckpt": None}, "usage")["ckpt"] == path
    # A multirun's comma separates sweep values: left to Hydra.
    assert quote_path_overrides(["-m", "data.root=/a,/b"]) == ["-m", "data.root=/a,/b"]
