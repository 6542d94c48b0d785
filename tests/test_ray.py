"""hydra/launcher=ray_cluster (Hydra's Ray launcher) on a local Ray cluster of two simulated
nodes, one CPU each (Ray's own ray.cluster_utils.Cluster): a 2-job sweep runs one job per
node, and both run folders land in the sweep folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from .conftest import CONF, TINY, run_train


def test_ray_cluster_config_composes_for_the_plugin() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["hydra/launcher=ray_cluster"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address == "auto" and launcher.ray.init.object_store_memory is None
    assert launcher.ray.remote.num_cpus == 1


@pytest.mark.slow
def test_a_sweep_runs_on_a_two_node_ray_cluster(tmp_path: Path, monkeypatch) -> None:
    from ray.cluster_utils import Cluster

    # A busy 2-core machine can take longer than Ray's default 10 s to start a node.
    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "300")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        sweep = tmp_path / "sweep"
        proc = run_train(
            [
                "-m",
                *TINY,
                "data.samples_per_class=3",
                "analysis.enabled=false",
                "seed=0,1",
                "hydra/launcher=ray_cluster",
                f"hydra.launcher.ray.init.address={cluster.address}",
                f"hydra.sweep.dir={sweep}",
            ],
            cwd=tmp_path,
            timeout=900,
        )
        logs = Path(cluster.head_node.get_logs_dir_path())
        nodes = {node.node_id for node in cluster.list_all_nodes()}
    finally:
        cluster.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray Launcher is launching 2 jobs" in proc.stdout + proc.stderr
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert sorted(m["seed"] for m in runs) == [0, 1]
    # Each job asks for 1 CPU and each node has 1: Ray places the two jobs, submitted
    # together, one per node. Where each ran is in Ray's log of the worker (its pid).
    ran_on = {_ray_node(m["pid"], logs) for m in runs}
    assert len(ran_on) == 2 and ran_on <= nodes


def _ray_node(pid: int, logs: Path) -> str:
    """The node of the Ray worker process ``pid``, from its core-worker log."""
    (log,) = logs.glob(f"python-core-worker-*_{pid}.log")
    return re.search(r"node_id=(\w+)", log.read_text()).group(1)
