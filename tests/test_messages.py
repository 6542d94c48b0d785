"""Messages that name the real cause and the fix, exit 2; each command's own help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from tl_experiments.commands.guard import guarded
from tl_experiments.commands.preflight import preflight
from tl_experiments.data.split import make_splits
from tl_experiments.errors import UserError

from .conftest import CONF


def test_a_negative_seed_is_a_user_error(make_cfg, capsys) -> None:
    from tl_experiments.train import run

    with pytest.raises(SystemExit) as e:
        guarded(run, make_cfg("seed=-1"))
    assert e.value.code == 2  # was numpy's ValueError, exit 1
    err = capsys.readouterr().err
    assert "seed=-1 is not a seed; set seed to a whole number from 0 to 4294967295." in err


def test_classes_too_small_for_a_split_are_named() -> None:
    labels = np.arange(1000)  # 1000 classes of one image each
    with pytest.raises(UserError) as e:
        make_splits(labels, {}, 0.1, 0.1, None, split_seed=0)
    message = str(e.value)
    assert "none below 6" in message and "1000 classes has 1 image(s)" in message
    assert "raise data" not in message  # more of a 1-image class would leave no training image


def test_a_run_folder_under_a_file_says_it_is_a_file(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as e:
        preflight([f"hydra.run.dir={blocker}/run"], "train")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"'{blocker}' is a file; set hydra.run.dir to a folder" in err
    assert "not writable" not in err


@pytest.mark.parametrize(
    ("config", "command", "header"),
    [
        ("advise", "tl-advise", "advise: measure a dataset"),
        ("eval", "python eval.py", "eval.py: test a trained checkpoint"),
        ("train", "python train.py", "train.py: train one timm backbone"),
    ],
)
def test_each_command_has_its_own_help(config: str, command: str, header: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True, overrides=["hydra.job.name=x"])
    assert cfg.hydra.help.header.startswith(header)
    assert cfg.hydra.help.footer.strip() == f"Every key and its value: {command} --cfg job"


def test_the_seed_major_sweeper_is_the_default_without_hydras_schema_warning() -> None:
    """A warning filter would not reach the joblib workers of a parallel sweep: no warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("SeedMajorSweeper")
    assert not [w for w in caught if "ConfigStore schema" in str(w.message)]
