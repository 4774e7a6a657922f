"""The pure builders of a DataIngest's children: config, crawl Job, publish Job."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from kubeforge.api.dataingest import DataIngest
from kubeforge.crawlconfig import CrawlerConfig, crawl_command, crawler_config, publish_command
from kubeforge_operator import objects
from kubeforge_operator.dataingest import builders
from tests.dataingest_cases import FULL_SPEC, MINIMAL_SPEC


def ingest(spec: dict[str, Any] | None = None, **changes: Any) -> DataIngest:
    return DataIngest.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "web-uid"},
            "spec": {**copy.deepcopy(spec or MINIMAL_SPEC), **changes},
        }
    )


def children(built: DataIngest, *, publish: bool = False) -> dict[str, dict[str, Any]]:
    return {
        f"{child['kind']}/{child['metadata']['name']}": child
        for child in builders.build_children(built, publish=publish)
    }


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = only
    return found


def test_every_child_is_owned_labelled_and_hashed() -> None:
    built = children(ingest(), publish=True)
    assert sorted(built) == ["ConfigMap/web-crawler", "Job/web-crawl", "Job/web-publish"]
    for child in built.values():
        meta = child["metadata"]
        assert meta["namespace"] == "ns"
        assert [
            (ref["kind"], ref["uid"], ref["controller"]) for ref in meta["ownerReferences"]
        ] == [("DataIngest", "web-uid", True)]
        assert meta["labels"]["kubeforge.dev/data-ingest"] == "web"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubeforge-operator"
        assert len(meta["annotations"][objects.DESIRED_HASH]) == 16


def test_publish_job_only_once_every_shard_succeeded() -> None:
    assert "Job/web-publish" not in children(ingest())


def test_config_map_holds_the_crawler_config_of_version_1() -> None:
    full = ingest(FULL_SPEC)
    data = children(full)["ConfigMap/web-crawler"]["data"]
    written = CrawlerConfig.model_validate(yaml.safe_load(data["crawler.yaml"]))
    assert written == crawler_config(full, 1)
    assert written.dataset_uri == "s3://acme-datasets/web/datasets/web/v1"


def test_crawl_job_is_indexed_with_one_pod_per_shard() -> None:
    job = children(ingest(shards=4))["Job/web-crawl"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (3, 0)
    assert spec["podReplacementPolicy"] == "Failed"
    ignore, fail = spec["podFailurePolicy"]["rules"]
    assert ignore["action"] == "Ignore"
    assert (fail["action"], fail["onExitCodes"]["values"]) == ("FailJob", [2])
    assert container(job)["command"] == crawl_command("/etc/kubeforge/crawler.yaml")
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_publish_job_runs_the_publish_stage() -> None:
    job = children(ingest(), publish=True)["Job/web-publish"]
    assert container(job)["command"] == publish_command("/etc/kubeforge/crawler.yaml")
    assert job["spec"]["completions"] == 1
    fail = job["spec"]["podFailurePolicy"]["rules"][1]
    assert fail["onExitCodes"]["values"] == [2, 3]


def test_pods_meet_the_restricted_pod_security_profile() -> None:
    job = children(ingest())["Job/web-crawl"]
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    security = container(job)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert {volume["name"]: set(volume) - {"name"} for volume in pod["volumes"]} == {
        "config": {"configMap"},
        "tmp": {"emptyDir"},
    }
    assert pod["automountServiceAccountToken"] is False
    assert container(job)["image"] == builders.DEFAULT_IMAGE


def test_credentials_come_from_the_secret_and_storage_from_the_spec() -> None:
    job = children(ingest(FULL_SPEC))["Job/web-crawl"]
    env = {var["name"]: var for var in container(job)["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == "https://s3.eu-central-1.amazonaws.com"
    assert env["AWS_REGION"]["value"] == "eu-central-1"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3-writer", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "crawler"
    assert "automountServiceAccountToken" not in pod
    assert container(job)["image"] == "registry.invalid/kubeforge/crawler:1"
    assert container(job)["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}}


def test_without_a_secret_no_credentials_are_passed() -> None:
    env = {var["name"] for var in container(children(ingest())["Job/web-crawl"])["env"]}
    assert not env & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}


def test_template_hash_changes_with_the_pod_template_only() -> None:
    def template_hash(built: DataIngest) -> str:
        job = children(built)["Job/web-crawl"]
        digest: str = job["metadata"]["annotations"][objects.TEMPLATE_HASH]
        return digest

    first = template_hash(ingest())
    assert template_hash(ingest()) == first
    assert template_hash(ingest(image="other:2")) != first
    # Other seeds change the config, which the pods read from the ConfigMap, not the template.
    other_seeds = ingest(sources={"seeds": ["https://other.example.com/"]})
    assert template_hash(other_seeds) == first
    config_hashes = {
        children(built)["ConfigMap/web-crawler"]["metadata"]["annotations"][objects.DESIRED_HASH]
        for built in (ingest(), other_seeds)
    }
    assert len(config_hashes) == 2


def test_the_children_are_of_the_version_being_built() -> None:
    second = ingest(FULL_SPEC).model_copy(deep=True)
    second.status.current_version = 2
    built = children(second, publish=True)
    written = yaml.safe_load(built["ConfigMap/web-crawler"]["data"]["crawler.yaml"])
    assert written["datasetUri"] == "s3://acme-datasets/web/datasets/web/v2"
    for name in ("Job/web-crawl", "Job/web-publish"):
        meta = built[name]["metadata"]
        assert meta["labels"][builders.DATASET_VERSION] == "2"
        assert builders.job_version(built[name]) == 2
    first = children(ingest(), publish=True)["Job/web-crawl"]
    assert builders.job_version(first) == 1
    # A Job from before versions were recorded is of version 1.
    assert builders.job_version({"metadata": {"name": "web-crawl"}}) == 1


def test_ca_bundles_are_mounted_for_the_crawl_config_and_for_boto3() -> None:
    spec = copy.deepcopy(MINIMAL_SPEC)
    spec["crawl"]["tls"] = {"caBundle": {"configMapKeyRef": {"name": "intranet-ca"}}}
    spec["storage"]["caBundle"] = {"secretKeyRef": {"name": "s3-ca", "key": "bundle.pem"}}
    built = children(ingest(spec))
    config = yaml.safe_load(built["ConfigMap/web-crawler"]["data"]["crawler.yaml"])
    assert config["caFile"] == "/etc/kubeforge-ca/crawl/ca.crt"
    job = built["Job/web-crawl"]
    env = {var["name"]: var.get("value") for var in container(job)["env"]}
    assert env["AWS_CA_BUNDLE"] == "/etc/kubeforge-ca/storage/ca.crt"
    volumes = {volume["name"]: volume for volume in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["crawl-ca"]["configMap"] == {
        "name": "intranet-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    assert volumes["storage-ca"]["secret"] == {
        "secretName": "s3-ca",
        "items": [{"key": "bundle.pem", "path": "ca.crt"}],
    }
    mounts = {mount["name"]: mount["mountPath"] for mount in container(job)["volumeMounts"]}
    assert mounts["crawl-ca"] == "/etc/kubeforge-ca/crawl"
    assert mounts["storage-ca"] == "/etc/kubeforge-ca/storage"


def test_without_ca_bundles_only_the_system_cas_are_trusted() -> None:
    built = children(ingest())
    config = yaml.safe_load(built["ConfigMap/web-crawler"]["data"]["crawler.yaml"])
    assert config["caFile"] is None
    job = built["Job/web-crawl"]
    assert "AWS_CA_BUNDLE" not in {var["name"] for var in container(job)["env"]}
    assert {volume["name"] for volume in job["spec"]["template"]["spec"]["volumes"]} == {
        "config",
        "tmp",
    }
