"""cluster.yaml through Ray's own AWS launcher code, with moto's in-process AWS in place of AWS.

``ray up`` resolves a cluster config with ``_bootstrap_config`` (prepare, detect node
resources, validate, ``bootstrap_aws``) and then asks the node provider to create the head;
the autoscaler later creates workers from their node type's ``node_config``. These tests run
exactly that code, then read back what EC2 received. The updater, which would SSH to the
made-up addresses moto hands out, is never run.
"""

from __future__ import annotations

import copy
import re
import time
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

from ray.autoscaler._private.aws import config as aws_config  # noqa: E402
from ray.autoscaler._private.aws.node_provider import AWSNodeProvider  # noqa: E402
from ray.autoscaler._private.commands import _bootstrap_config  # noqa: E402
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE  # noqa: E402

pytestmark = pytest.mark.slow  # Ray, processes or servers: not in the fast tier

RAY_VERSION = "2.60.0"
SSM_AMI = "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"


def cluster_config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture
def aws(monkeypatch, tmp_path: Path):
    """moto's AWS in this process; HOME in a temporary folder (the bootstrap writes an SSH key there)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # AWS's own policies, which Ray attaches
    # The bootstrap waits 15 s twice for IAM to propagate; moto's IAM is immediate.
    monkeypatch.setattr(aws_config, "time", types.SimpleNamespace(sleep=lambda s: None, time=time.time))
    with moto.mock_aws():
        yield


def launch(config: dict) -> tuple[dict, dict[str, dict]]:
    """What ``ray up`` and the autoscaler do up to EC2: the resolved config, then one instance per node type."""
    resolved = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    provider = AWSNodeProvider(resolved["provider"], resolved["cluster_name"])
    head_type = resolved["head_node_type"]
    for name, node_type in resolved["available_node_types"].items():
        node_config = copy.deepcopy(node_type["node_config"])
        if name == head_type:  # commands.get_or_create_head_node: the head_node fields, then the node type's
            node_config = {**copy.deepcopy(resolved.get("head_node", {})), **node_config}
        tags = {
            TAG_RAY_NODE_KIND: "head" if name == head_type else "worker",
            TAG_RAY_USER_NODE_TYPE: name,
            TAG_RAY_CLUSTER_NAME: resolved["cluster_name"],
        }
        provider.create_node(node_config, tags, 1)
    ec2 = boto3.client("ec2", region_name=resolved["provider"]["region"])
    launched = {}
    for reservation in ec2.describe_instances()["Reservations"]:
        for inst in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            launched[tags[TAG_RAY_USER_NODE_TYPE]] = {**inst, "tags": tags}
    return resolved, launched


def test_every_node_type_gets_an_image_an_instance_type_and_s3_access(aws) -> None:
    resolved, launched = launch(cluster_config())
    assert set(launched) == {"head", "gpu_worker", "cpu_worker"}
    expected = {"head": "m7i.xlarge", "gpu_worker": "g6.xlarge", "cpu_worker": "c7i.2xlarge"}
    assert {k: v["InstanceType"] for k, v in launched.items()} == expected
    assert {v["ImageId"] for v in launched.values()} == {SSM_AMI}  # not Ray's stale latest_dlami (Ubuntu 18.04)
    iam = boto3.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName="ray-autoscaler-v1")["InstanceProfile"]
    for name, inst in launched.items():  # Ray gives its profile to the head only; cluster.yaml to every worker
        assert inst["IamInstanceProfile"]["Arn"] == profile["Arn"], name
    role = profile["Roles"][0]["RoleName"]
    policies = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]}
    assert "arn:aws:iam::aws:policy/AmazonS3FullAccess" in policies
    groups = {tuple(g["GroupName"] for g in inst["SecurityGroups"]) for inst in launched.values()}
    assert groups == {(f"ray-autoscaler-{resolved['cluster_name']}",)}  # one group, open within itself
    assert {inst["tags"][TAG_RAY_CLUSTER_NAME] for inst in launched.values()} == {"spec-ray"}
    assert {inst["tags"][TAG_RAY_NODE_KIND] for inst in launched.values()} == {"head", "worker"}
    key_files = list((Path.home() / ".ssh").glob("ray-autoscaler_*.pem"))
    assert key_files and all(f.is_relative_to(Path.home()) for f in key_files)


def test_trials_never_land_on_the_head_and_workers_offer_what_the_sweep_asks(aws) -> None:
    resolved, _ = launch(cluster_config())
    types_ = resolved["available_node_types"]
    assert types_["head"]["resources"]["CPU"] == 0
    assert types_["gpu_worker"]["resources"]["GPU"] == 1 and types_["gpu_worker"]["resources"]["CPU"] == 4
    assert types_["cpu_worker"]["resources"]["CPU"] == 8 and not types_["cpu_worker"]["resources"].get("GPU")
    polarity_packs = 4  # multi 1, 2, 5, 10: one pack each at the default pack memory
    assert types_["gpu_worker"]["max_workers"] >= polarity_packs  # --gpus-per-trial 1: a GPU per pack
    assert types_["cpu_worker"]["resources"]["CPU"] * types_["cpu_worker"]["max_workers"] >= 2 * polarity_packs


def test_images_setup_and_file_sync_are_pinned_and_filtered() -> None:
    config = prepare_config(cluster_config())
    validate_config(config)
    docker = config["docker"]
    assert docker["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"  # CUDA, Python 3.11 >= 3.10
    assert docker["head_image"] == f"rayproject/ray:{RAY_VERSION}-py311-cpu"
    types_ = config["available_node_types"]
    assert types_["cpu_worker"]["docker"]["worker_image"] == f"rayproject/ray:{RAY_VERSION}-py311-cpu"
    gpu_setup = " && ".join(types_["gpu_worker"]["worker_setup_commands"])
    assert "torch==2.13.0" in gpu_setup and "download.pytorch.org/whl/cpu" not in gpu_setup  # PyPI's CUDA wheel
    assert "torch.cuda.is_available()" in gpu_setup  # a GPU node without CUDA fails its setup
    assert "whl/cpu" in " ".join(types_["cpu_worker"]["worker_setup_commands"])
    assert any("[aws]" in c for c in config["head_setup_commands"])  # boto3 on the head for the autoscaler
    assert config["rsync_filter"] == [".gitignore"] and "**/.git" in config["rsync_exclude"]
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".venv/" in ignored and "results/" in ignored
    assert config["file_mounts"] == {"~/spec-ray": "."}


def test_a_broken_cluster_yaml_is_refused_by_rays_validation() -> None:
    broken = cluster_config()
    broken["available_node_types"]["gpu_worker"]["max_workers"] = "many"
    with pytest.raises(Exception, match="many"):
        validate_config(prepare_config(broken))


def test_the_readme_installs_boto3_before_ray_up() -> None:
    readme = (ROOT / "README.md").read_text()
    aws = readme[readme.index("## On AWS") :]
    install, up = aws.index("pip install -e '.[aws]'"), aws.index("ray up cluster.yaml")
    assert install < up
    extras = re.search(r"aws = \[(.*)\]", (ROOT / "pyproject.toml").read_text()).group(1)
    assert "boto3" in extras and "ray[default]" in extras
