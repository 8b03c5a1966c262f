"""Multi-node: a sweep on Ray's in-process two-node test cluster (loopback), and cluster.yaml
checked by Ray's own autoscaler config preparation and validation (what `ray up` runs)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.cluster_utils import Cluster
from sweep_helpers import REPO, TINY_SPACE, write_space

from cl_core.errors import ClsweepError
from sweep.runner import Options, run_sweep
from sweep.space import load_space

CLUSTER_YAML = REPO / "cluster.yaml"


def commented_block(name: str) -> dict:
    prefix = f"#{name}|"
    text = CLUSTER_YAML.read_text()
    return yaml.safe_load(
        "\n".join(line[len(prefix) + 1 :] for line in text.splitlines() if line.startswith(prefix))
    )


def test_cluster_yaml_passes_ray_validation():
    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    config = prepare_config(raw)
    validate_config(config)
    assert raw["provider"]["type"] == "aws"
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert config["available_node_types"]["gpu_worker"]["max_workers"] >= 1
    # the sweep extra: the base install is the analysis alone (no torch, no Ray)
    assert any("pip install" in c and "clsweep[sweep]" in c for c in raw["setup_commands"])


def test_commented_gcp_and_onprem_blocks_are_valid_too():
    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    validate_config(prepare_config({**raw, **commented_block("gcp")}))
    local = {k: v for k, v in raw.items() if k not in ("available_node_types", "head_node_type")}
    validate_config(prepare_config({**local, **commented_block("local")}))


def test_cluster_yaml_with_a_typo_is_refused():
    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    raw["available_node_types"]["gpu_worker"]["max_wrkers"] = 2
    with pytest.raises(Exception, match="max_wrkers"):
        validate_config(prepare_config(raw))


@pytest.fixture(scope="module")
def two_nodes():
    """Head and one worker, one CPU each, both on loopback, in this process."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_sweep_spreads_trials_over_two_nodes(two_nodes, tmp_path):
    # trials long enough (about 2 s) to overlap: a trial of a fraction of a second can end
    # before the next one is asked for, and the head node, free again, takes every trial
    text = (
        TINY_SPACE.replace('"32", epochs: 2', '"32", epochs: 40') + "final: {top_k: 1, seeds: 2}\n"
    )
    spec = load_space(write_space(tmp_path, text, "two_nodes.yaml"))
    folder = run_sweep(spec, Options(out=tmp_path / "out", address=two_nodes.address))
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 6 and set(trials.status) == {"completed"}
    assert trials.node.nunique() == 2  # both nodes ran trials (data from the object store)
    assert (trials.tasks_completed == 3).all()


def test_gpus_the_cluster_lacks_are_waited_for_then_refused(two_nodes, tmp_path, capsys):
    text = TINY_SPACE.replace("resources: {cpus: 1}", "resources: {cpus: 1, gpus: 1}")
    spec = load_space(write_space(tmp_path, text, "gpus.yaml"))
    options = Options(out=tmp_path / "out", address=two_nodes.address, wait_for_resources_s=1)
    with pytest.raises(ClsweepError, match="resources.gpus: each trial asks for 1 GPU but the "
                       "cluster has none.*waited 1 s"):  # fmt: skip
        run_sweep(spec, options)
    assert "waiting up to 1 s for the cluster" in capsys.readouterr().err
    assert not list((tmp_path / "out" / "gpus").rglob("*.parquet"))
