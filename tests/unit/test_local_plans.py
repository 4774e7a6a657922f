"""The local runner executes the plan the operator materialises: for the same resource, the same
command, arguments, environment and config as the pods get. The only differences are the ones a
place of execution decides (the rendezvous host and port, the config file's path, the progress
channel) and, without an S3 endpoint, the storage locations, which move into the state directory.

Pure: plans and builders, compared as data; nothing is started.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.api.dataingest import DataIngest
from kubeforge.api.trainingjob import StoragePolicy, TrainingJob
from kubeforge.cli.demo import demo_file
from kubeforge.cli.local_ingest import plan_ingest
from kubeforge.cli.local_state import PublishedDataset, StateDir
from kubeforge.cli.local_training import TrainingFailed, plan_local_training
from kubeforge.cli.resources import load_resources
from kubeforge.progress import CONFIGMAP_ENV, FILE_ENV, NAMESPACE_ENV
from kubeforge_operator.dataingest import builders as ingest_builders
from kubeforge_operator.trainingjob import builders

ENDPOINT = "http://127.0.0.1:28333"
ENVIRON = {"PATH": "/usr/bin", "AWS_ENDPOINT_URL": ENDPOINT}


def _gpt_demo() -> tuple[DataIngest, TrainingJob]:
    ingest, job = load_resources(demo_file("gpt"))
    assert isinstance(ingest, DataIngest)
    assert isinstance(job, TrainingJob)
    return (
        ingest.model_copy(
            update={"metadata": ingest.metadata.model_copy(update={"namespace": "ns"})}
        ),
        job.model_copy(update={"metadata": job.metadata.model_copy(update={"namespace": "ns"})}),
    )


def _container(job_object: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job_object["spec"]["template"]["spec"]["containers"][0]
    return container


def test_training_agents_and_their_store_run_the_pods_commands_and_environment(
    tmp_path: Path,
) -> None:
    _, job = _gpt_demo()
    dataset = PublishedDataset(
        uri="s3://kubeforge-demo/datasets/demo-docs/v1", documents=1, bytes=1, endpoint=ENDPOINT
    )
    local = plan_local_training(job, StateDir(tmp_path), ENVIRON, dataset, rendezvous_port=29999)
    children = builders.build_children(job, dataset_uri=dataset.uri)
    pod_job = next(child for child in children if child["kind"] == "Job")
    container = _container(pod_job)

    def without_place(command: list[str]) -> list[str]:
        """The command but where it runs: the store's address, the rendezvous run (the job's
        uid locally, each worker Job's in the cluster) and the config file's path."""
        placed = ("--rdzv-endpoint=", "--rdzv-id=")
        return [
            next((f"{flag}*" for flag in placed if part.startswith(flag)), part)
            for part in command
            if not part.endswith("trainer.yaml")
        ]

    assert without_place(local.plan.command) == without_place(container["command"])
    store = next(child for child in children if child["kind"] == "Deployment")
    store_command = _container(store)["command"]
    assert local.plan.rendezvous_command == [*store_command[:-1], "--port=29999"]
    pod_env = {var["name"]: var["value"] for var in container["env"] if "value" in var}
    assert pod_env.pop(CONFIGMAP_ENV) == f"{job.metadata.name}-progress"
    assert {name: local.env[name] for name in pod_env} == pod_env
    assert local.env[FILE_ENV] == str(local.progress_file)
    assert NAMESPACE_ENV not in local.env
    config_map = next(child for child in children if child["metadata"]["name"].endswith("-config"))
    pod_config = yaml.safe_load(config_map["data"][builders.CONFIG_FILE])
    assert local.plan.worker_config is not None
    local_config = local.plan.worker_config.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    assert local_config == pod_config


def test_without_an_endpoint_only_the_locations_move_into_the_state_directory(
    tmp_path: Path,
) -> None:
    _, job = _gpt_demo()
    dataset = PublishedDataset(
        uri=(tmp_path / "objects" / "kubeforge-demo" / "datasets").as_uri(), documents=1, bytes=1
    )
    local = plan_local_training(job, StateDir(tmp_path), {"PATH": ""}, dataset, 29999)
    assert local.checkpoint_uri == (
        (tmp_path / "objects" / "kubeforge-demo" / "checkpoints" / "demo-gpt").resolve().as_uri()
    )
    assert local.plan.env["KUBEFORGE_CHECKPOINT_URI"] == local.checkpoint_uri
    assert local.plan.worker_config is not None
    assert local.plan.worker_config.trainer == job.spec.trainer
    assert local.plan.worker_config.dataset_uri == dataset.uri


def test_crawler_shards_and_publish_run_the_pods_commands_and_config(tmp_path: Path) -> None:
    ingest, _ = _gpt_demo()
    local = plan_ingest(ingest, StateDir(tmp_path), ENVIRON)
    crawl = _container(ingest_builders.build_crawl_job(ingest))
    publish = _container(ingest_builders.build_publish_job(ingest))
    assert local.crawl_command[0] == sys.executable
    # python -m kubeforge_crawler --config PATH [--stage publish]: all but the interpreter and
    # the config's path are the pods'.
    assert local.crawl_command[1:4] == crawl["command"][1:4]
    assert local.crawl_command[5:] == crawl["command"][5:] == []
    assert local.publish_command[1:4] == publish["command"][1:4]
    assert local.publish_command[5:] == publish["command"][5:] == ["--stage", "publish"]
    config_map = ingest_builders.build_config_map(ingest)
    pod_config = yaml.safe_load(config_map["data"][ingest_builders.CONFIG_FILE])
    assert local.config.model_dump(mode="json", by_alias=True) == pod_config
    pod_env = {var["name"]: var["value"] for var in crawl["env"] if "value" in var}
    shard_env = local.shard_env(1, tmp_path / "p.json")
    assert {name: shard_env[name] for name in pod_env} == pod_env
    # The pod's Indexed Job sets the shard; the environment names the S3 store here.
    assert shard_env["JOB_COMPLETION_INDEX"] == "1"
    assert shard_env["AWS_ENDPOINT_URL"] == ENDPOINT


def test_a_local_run_verifies_s3_with_the_ca_file_of_its_environment(tmp_path: Path) -> None:
    _, job = _gpt_demo()
    storage = StoragePolicy.model_validate({"caBundle": {"configMapKeyRef": {"name": "s3-ca"}}})
    job = job.model_copy(update={"spec": job.spec.model_copy(update={"storage": storage})})
    with pytest.raises(TrainingFailed, match="set AWS_CA_BUNDLE to a PEM file of the CA"):
        plan_local_training(job, StateDir(tmp_path), ENVIRON, None, 29999)
    environ = {**ENVIRON, "AWS_CA_BUNDLE": "/etc/ssl/s3-ca.pem"}
    local = plan_local_training(job, StateDir(tmp_path), environ, None, 29999)
    assert local.env["AWS_CA_BUNDLE"] == "/etc/ssl/s3-ca.pem"
