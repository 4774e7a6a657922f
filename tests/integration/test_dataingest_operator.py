"""The DataIngest operator against the real control plane and the real S3 server.

Real: kube-apiserver (CRD, status subresource, finalizers, PodSecurity admission at the
`restricted` level), the Job controller (Indexed Jobs, completed indexes), the garbage collector,
SeaweedFS (buckets, versioning, encryption, lifecycle rules, and its NotImplemented answer to
PutPublicAccessBlock), the local test web (`tests.testweb`), and the operator itself, run
in-process. Simulated: the kubelet. kwok pods do not execute, so the crawler shards and the
publish stage run as local processes with exactly the command, config and environment the
operator put into the pods (`tests.integration.dataingests`); when a process has finished, the
test ends its kwok pod with the same exit code.
"""

from __future__ import annotations

import json
import logging
import pydoc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import pytest
import yaml
from kubernetes import client

from kubeforge.api.dataingest import DataIngest
from kubeforge.crawlconfig import CrawlerConfig, crawl_command, crawler_config, publish_command
from kubeforge.dataset import read_manifest
from kubeforge.storage import S3Store
from tests.conftest import REPO_ROOT, Rig
from tests.integration.conftest import OperatorThread
from tests.integration.dataingests import Ingests, PodProcesses, remove_bucket
from tests.integration.trainingjobs import Jobs, spec_with
from tests.polling import wait_for
from tests.resources import condition, read_or_none
from tests.testweb import PRODUCT, SAMPLE_PORT, LocalWeb, build_web, stop_web
from tests.tlsproxy import TlsEndpoint
from tests.workloads.crawls import FILTERS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

CONFIG_PATH = "/etc/kubeforge/crawler.yaml"
SAMPLE = REPO_ROOT / "manifests" / "samples" / "dataingest.yaml"


@pytest.fixture
def ingests(api_client: client.ApiClient, namespace: str) -> Iterator[Ingests]:
    helper = Ingests(api_client, namespace)
    yield helper
    helper.release_all()


@pytest.fixture
def buckets(s3: S3Client) -> Iterator[Callable[[str], str]]:
    """Claims a bucket name for the test: any leftover is removed now, the bucket afterwards."""
    claimed: list[str] = []

    def claim(name: str) -> str:
        remove_bucket(s3, name)
        claimed.append(name)
        return name

    yield claim
    for name in claimed:
        remove_bucket(s3, name)


@pytest.fixture
def restricted(core: client.CoreV1Api, namespace: str) -> str:
    """The test's namespace, enforcing the restricted PodSecurity profile."""
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    return namespace


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[PodProcesses]:
    started = PodProcesses(tmp_path)
    yield started
    started.stop()


def bucket_exists(s3: S3Client, name: str) -> bool:
    try:
        s3.head_bucket(Bucket=name)
    except botocore.exceptions.ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise
    return True


def ingest_spec(bucket: str, endpoint: str, **storage: Any) -> dict[str, Any]:
    """A spec with a bucket on the rig's S3 server; no crawl of it ever gets anywhere."""
    return {
        "sources": {"seeds": ["http://127.0.0.2:9/"]},
        "crawl": {"userAgent": {"product": PRODUCT, "contact": "https://kubeforge.invalid"}},
        "shards": 3,
        "storage": {"bucket": bucket, "endpoint": endpoint, "region": "us-east-1", **storage},
    }


def test_bucket_is_provisioned_and_an_unsupported_setting_is_named(
    rig: Rig,
    s3: S3Client,
    ingests: Ingests,
    buckets: Callable[[str], str],
    restricted: str,
    start_operator: Callable[[], OperatorThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No credentialsSecretRef: the operator uses its own environment, as with workload identity.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rig.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rig.s3_secret_key)
    start_operator()
    bucket = buckets(f"kf-di-{uuid.uuid4().hex[:12]}")
    spec = ingest_spec(bucket, rig.s3_endpoint, rawDataExpirationDays=7, deletionPolicy="Delete")
    ingests.create("provisioned", spec)

    status = ingests.wait(
        "provisioned",
        "storage ready",
        lambda s: condition(s, "StorageReady").get("status") == "True",
    )["status"]
    storage = condition(status, "StorageReady")
    assert storage["reason"] == "StorageFeatureUnsupported"
    assert "public access block (PutPublicAccessBlock): NotImplemented" in storage["message"]
    assert status["storage"] == {"bucket": bucket, "ready": True}
    warning = ingests.wait_event("provisioned", "StorageFeatureUnsupported")
    assert warning.type == "Warning"
    assert "PutPublicAccessBlock" in warning.message

    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {rule["Filter"]["Prefix"] for rule in rules} == {
        "datasets/provisioned/v1/state/",
        "datasets/provisioned/v1/exchange/",
    }
    assert {rule["Expiration"]["Days"] for rule in rules} == {7}

    # The crawl: an Indexed Job of 3 shards running the crawler's own command, admitted under
    # the restricted PodSecurity profile, with the config the crawler library derives.
    job = ingests.job("provisioned-crawl")
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == (
        "Indexed",
        3,
        3,
    )
    assert job.metadata.labels["kubeforge.dev/data-ingest"] == "provisioned"
    assert job.metadata.owner_references[0].kind == "DataIngest"
    (container,) = job.spec.template.spec.containers
    assert container.command == crawl_command(CONFIG_PATH)
    env = {var.name: var.value for var in container.env}
    assert env["AWS_ENDPOINT_URL"] == rig.s3_endpoint
    assert "AWS_SECRET_ACCESS_KEY" not in env
    config = ingests.core.read_namespaced_config_map("provisioned-crawler", restricted)
    written = CrawlerConfig.model_validate(yaml.safe_load(config.data["crawler.yaml"]))
    assert written == crawler_config(DataIngest.model_validate(ingests.get("provisioned")), 1)
    ingests.running_pods("provisioned-crawl", 3)
    # The reconcile that creates the Job says ShardsStarting; a later one sees the pods run.
    status = ingests.wait_reason("provisioned", "ShardsRunning", of="Crawling")["status"]
    assert status["phase"] == "Crawling"
    assert condition(status, "Reconciling")["status"] == "True"
    assert "kubeforge.dev/delete-data" in ingests.get("provisioned")["metadata"]["finalizers"]

    # deletionPolicy Delete: the Jobs go, then the data and the bucket, then the ingest.
    s3.put_object(Bucket=bucket, Key="datasets/provisioned/v1/state/00000.json.gz", Body=b"x")
    ingests.delete("provisioned")
    wait_for(lambda: read_or_none(lambda: ingests.get("provisioned")) is None, "the deletion", 60)
    assert not bucket_exists(s3, bucket)
    deleted = ingests.wait_event("provisioned", "DataDeleted")
    assert f"bucket {bucket} removed" in deleted.message


def test_an_https_endpoint_is_verified_with_the_ca_bundle_of_a_config_map(
    rig: Rig,
    s3: S3Client,
    ingests: Ingests,
    buckets: Callable[[str], str],
    namespace: str,
    tls_s3: TlsEndpoint,
    start_operator: Callable[[], OperatorThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rig.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rig.s3_secret_key)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)  # the operator's own: none
    start_operator()
    ingests.core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="s3-ca"),
            data={"ca.crt": tls_s3.ca_file.read_text()},
        ),
    )
    trusted = buckets(f"kf-di-{uuid.uuid4().hex[:12]}")
    untrusted = buckets(f"kf-di-{uuid.uuid4().hex[:12]}")
    bundle = {"configMapKeyRef": {"name": "s3-ca"}}
    ingests.create("trusted", ingest_spec(trusted, tls_s3.url, caBundle=bundle))
    ingests.create("untrusted", ingest_spec(untrusted, tls_s3.url))

    ingests.wait(
        "trusted", "storage ready", lambda s: condition(s, "StorageReady").get("status") == "True"
    )
    assert bucket_exists(s3, trusted)
    pod = ingests.job("trusted-crawl").spec.template.spec
    env = {var.name: var.value for var in pod.containers[0].env}
    assert env["AWS_CA_BUNDLE"] == "/etc/kubeforge-ca/storage/ca.crt"
    (volume,) = [volume for volume in pod.volumes if volume.name == "storage-ca"]
    assert volume.config_map.name == "s3-ca"

    refused = ingests.wait(
        "untrusted",
        "storage refused",
        lambda s: condition(s, "StorageReady").get("reason") == "StorageError",
    )["status"]
    assert "CERTIFICATE_VERIFY_FAILED" in condition(refused, "StorageReady")["message"]
    assert not bucket_exists(s3, untrusted)


def test_a_crawl_pod_that_cannot_pull_its_image_stalls_the_ingest_with_the_reason(
    rig: Rig,
    ingests: Ingests,
    buckets: Callable[[str], str],
    start_operator: Callable[[], OperatorThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rig.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rig.s3_secret_key)
    start_operator()
    bucket = buckets(f"kf-di-{uuid.uuid4().hex[:12]}")
    # kwok's stages answer this image with ImagePullBackOff, as a kubelet would.
    spec = {**ingest_spec(bucket, rig.s3_endpoint), "image": "kubeforge.test/image-pull-backoff"}
    ingests.create("unpullable", spec)
    status = ingests.wait_reason("unpullable", "ImagePullBackOff", of="Crawling")["status"]
    assert status["phase"] == "Crawling"
    assert "kubeforge.test/image-pull-backoff" in condition(status, "Crawling")["message"]
    assert condition(status, "Stalled")["status"] == "True"
    warning = ingests.wait_event("unpullable", "ImagePullBackOff")
    assert warning.type == "Warning"


def test_bad_credentials_are_named_without_leaking_the_secret(
    rig: Rig,
    ingests: Ingests,
    operator: OperatorThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything the operator logs, to check none has the secret
    secret_value = f"kf-not-the-key-{uuid.uuid4().hex}"
    ingests.core.create_namespaced_secret(
        ingests.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="wrong-s3"),
            string_data={
                "AWS_ACCESS_KEY_ID": rig.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": secret_value,
            },
        ),
    )
    bucket = f"kf-di-{uuid.uuid4().hex[:12]}"
    cases = {
        "wrong": ("wrong-s3", {}, "StorageError", "SignatureDoesNotMatch"),
        "absent": ("no-such-secret", {}, "CredentialsMissing", "Secret no-such-secret not found"),
        "keyless": (
            "wrong-s3",
            {"secretAccessKeyKey": "S3_SECRET"},
            "CredentialsMissing",
            "Secret wrong-s3 has no key S3_SECRET",
        ),
    }
    for name, (secret, keys, _, _) in cases.items():
        ref = {"name": secret, **keys}
        ingests.create(name, ingest_spec(bucket, rig.s3_endpoint, credentialsSecretRef=ref))
    for name, (_, _, reason, words) in cases.items():
        status = ingests.wait_reason(name, reason)["status"]
        storage = condition(status, "StorageReady")
        assert (storage["status"], storage["reason"]) == ("False", reason)
        assert words in storage["message"], storage["message"]
        assert status["phase"] == "Provisioning"
        assert condition(status, "Stalled")["status"] == "True"
        assert status["storage"] == {"bucket": bucket, "ready": False}
        assert secret_value not in json.dumps(status)
        assert ingests.wait_event(name, reason).type == "Warning"
        assert all(secret_value not in (e.message or "") for e in ingests.events(name))
    assert (
        read_or_none(lambda: ingests.batch.read_namespaced_job("wrong-crawl", ingests.namespace))
        is None
    )
    logged = {record.name.split(".")[0] for record in caplog.records}
    assert {"kopf", "botocore"} <= logged  # the operator's logs, boto3's request signing among them
    assert secret_value not in caplog.text


@pytest.fixture
def sample_web() -> Iterator[LocalWeb]:
    """The test web where the sample crawls it: every host on SAMPLE_PORT."""
    web = build_web(SAMPLE_PORT)
    yield web
    stop_web(web)


def test_sample_crawls_publishes_and_releases_a_waiting_training_job(
    rig: Rig,
    s3: S3Client,
    sample_web: LocalWeb,
    ingests: Ingests,
    jobs: Jobs,
    buckets: Callable[[str], str],
    restricted: str,
    operator: OperatorThread,
    processes: PodProcesses,
) -> None:
    sample = yaml.safe_load(SAMPLE.read_text())
    name, spec = sample["metadata"]["name"], sample["spec"]
    spec["storage"]["endpoint"] = rig.s3_endpoint  # the one setting that depends on the rig
    bucket = buckets(spec["storage"]["bucket"])
    ingests.core.create_namespaced_secret(
        restricted,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=spec["storage"]["credentialsSecretRef"]["name"]),
            string_data={
                "AWS_ACCESS_KEY_ID": rig.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
            },
        ),
    )
    secrets = {"rig-s3": ingests.secret_data("rig-s3")}
    ingests.create(name, spec)
    jobs.create("trainer", spec_with(dataset={"datasetRef": {"name": name}}))
    waiting = jobs.wait_reason("trainer", "WaitingForDataset")["status"]
    assert waiting["phase"] == "Pending"

    # The crawl: each shard as its pod would run it, then the pod ends as the process did.
    crawl = ingests.job(f"{name}-crawl")
    config = ingests.core.read_namespaced_config_map(f"{name}-crawler", restricted).data
    pods = ingests.running_pods(f"{name}-crawl", 2)
    shards = [processes.start(crawl, config, secrets, index=shard) for shard in range(2)]
    processes.wait(shards)
    for pod in pods:
        ingests.end_pod(pod, 0)
    status = ingests.wait_phase(name, "Deduplicating")["status"]
    assert status["counters"]["documentsKept"] > 0
    assert status["counters"]["pagesByStatus"]["2xx"] > 0
    assert condition(status, "Deduplicating")["reason"] == "DeduplicationRunning"
    assert condition(jobs.get("trainer")["status"], "Ready")["reason"] == "WaitingForDataset"

    # The publish stage: global deduplication, then the manifest.
    publish = ingests.job(f"{name}-publish")
    assert publish.spec.template.spec.containers[0].command == publish_command(CONFIG_PATH)
    (publisher,) = ingests.running_pods(f"{name}-publish", 1)
    processes.wait([processes.start(publish, config, secrets)])
    status = ingests.wait_phase(name, "Publishing", timeout=30)["status"]
    dataset = status["dataset"]
    location = f"datasets/{name}/v1"
    assert dataset["uri"] == f"s3://{bucket}/{location}"
    assert dataset["manifest"] == f"s3://{bucket}/{location}/manifest.json"
    assert dataset["version"] == 1

    # The waiting TrainingJob starts, on the published dataset.
    worker = wait_for(lambda: read_or_none(lambda: jobs.worker_job("trainer")), "the trainer")
    env = {var.name: var.value for var in worker.spec.template.spec.containers[0].env}
    assert env["KUBEFORGE_DATASET_URI"] == dataset["uri"]

    ingests.end_pod(publisher, 0)
    status = ingests.wait_phase(name, "Succeeded")["status"]
    manifest = read_manifest(S3Store(bucket, location, s3))
    assert (status["dataset"]["documents"], status["dataset"]["bytes"]) == (
        manifest.documents,
        manifest.bytes,
    )
    assert status["counters"]["documentsKept"] == manifest.documents
    assert status["counters"]["duplicatesRemoved"] > 0
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Published")["status"] == "True"
    # Each transition posts an Event "PHASE: message".
    wait_for(
        lambda: (
            {"Crawling", "Deduplicating", "Publishing", "Succeeded"}
            <= {event.message.split(":")[0] for event in ingests.events(name)}
        ),
        "an Event for every phase",
    )

    # deletionPolicy Retain: the ingest goes at once and the dataset stays.
    ingests.delete(name)
    wait_for(lambda: read_or_none(lambda: ingests.get(name)) is None, "the deletion")
    assert read_manifest(S3Store(bucket, location, s3)) == manifest


def partner_record(module: str) -> bytes:
    """One partner document (JSON lines): pydoc's text of a standard-library module."""
    text = pydoc.plain(pydoc.render_doc(module))
    return (json.dumps({"text": text, "url": f"https://partner.example/{module}"}) + "\n").encode()


def test_a_schedule_crawls_each_run_into_the_next_version_and_keeps_the_last(
    rig: Rig,
    s3: S3Client,
    ingests: Ingests,
    jobs: Jobs,
    buckets: Callable[[str], str],
    restricted: str,
    operator: OperatorThread,
    processes: PodProcesses,
) -> None:
    # Every minute, so that the second run falls due within a minute of the first; the crawl
    # imports a partner's prefix, to which the partner adds a document between the runs.
    name = "nightly"
    bucket = buckets(f"kf-di-{uuid.uuid4().hex[:12]}")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="partner/a.jsonl", Body=partner_record("json"))
    credentials = {
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
    }
    ingests.core.create_namespaced_secret(
        restricted,
        client.V1Secret(metadata=client.V1ObjectMeta(name="rig-s3"), string_data=credentials),
    )
    spec = {
        **ingest_spec(
            bucket,
            rig.s3_endpoint,
            credentialsSecretRef={"name": "rig-s3"},
            rawDataExpirationDays=7,
        ),
        "sources": {"objectPrefixes": [f"s3://{bucket}/partner/"]},
        "processing": {"filters": FILTERS},  # pydoc's text is not prose
        "shards": 1,
        "schedule": "* * * * *",
    }
    ingests.create(name, spec)

    def job_of(stage: str, version: int) -> client.V1Job:
        """The Job of a stage (crawl or publish) once it is the one of this version."""

        def probe() -> client.V1Job | None:
            job = ingests.job(f"{name}-{stage}")
            labels = job.metadata.labels or {}
            return job if labels.get("kubeforge.dev/dataset-version") == str(version) else None

        return wait_for(probe, f"the {stage} Job of version {version}")

    def run(version: int) -> dict[str, Any]:
        """Runs the crawl and publish pods of `version` as processes; the status once published."""
        for stage in ("crawl", "publish"):
            job = job_of(stage, version)
            config = ingests.core.read_namespaced_config_map(f"{name}-crawler", restricted).data
            written = CrawlerConfig.model_validate(yaml.safe_load(config["crawler.yaml"]))
            assert written.dataset_uri == f"s3://{bucket}/datasets/{name}/v{version}"
            (pod,) = ingests.running_pods(f"{name}-{stage}", 1)
            index = 0 if stage == "crawl" else None
            processes.wait([processes.start(job, config, {"rig-s3": credentials}, index=index)])
            ingests.end_pod(pod, 0)
        status: dict[str, Any] = ingests.wait(
            name,
            f"version {version} published",
            lambda s: (s.get("dataset") or {}).get("version") == version,
        )["status"]
        return status

    first = run(1)
    jobs.create("early", spec_with(dataset={"datasetRef": {"name": name}}))
    assert first["dataset"]["uri"] == f"s3://{bucket}/datasets/{name}/v1"
    assert first["dataset"]["documents"] == 1
    # When the first run took over a minute, the next one is due as it publishes, and the status
    # that says version 1 is published may already be the one that starts version 2.
    assert first["currentVersion"] in (1, 2)
    if first["currentVersion"] == 1:
        assert "nextScheduleTime" in first
        assert "lastScheduleTime" not in first
    early = wait_for(lambda: read_or_none(lambda: jobs.worker_job("early")), "a worker Job")

    # The next run falls due within a minute: version 2 is crawled while version 1 stays the
    # published one.
    s3.put_object(Bucket=bucket, Key="partner/b.jsonl", Body=partner_record("csv"))
    crawling = ingests.wait(
        name, "the scheduled run", lambda s: s.get("currentVersion") == 2, timeout=150
    )["status"]
    assert crawling["dataset"]["version"] == 1
    assert "lastScheduleTime" in crawling
    scheduled = ingests.wait_event(name, "ScheduledRun")
    assert "dataset version 2" in scheduled.message

    second = run(2)
    location = f"datasets/{name}/v2"
    assert second["dataset"]["uri"] == f"s3://{bucket}/{location}"
    assert second["dataset"]["documents"] == 2
    assert read_manifest(S3Store(bucket, location, s3)).documents == second["dataset"]["documents"]
    # Every version stays in storage, and each run's raw state has its lifecycle rule.
    assert (
        read_manifest(S3Store(bucket, f"datasets/{name}/v1", s3)).documents
        == (first["dataset"]["documents"])
    )
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {f"datasets/{name}/v{v}/state/" for v in (1, 2)} <= {
        rule["Filter"]["Prefix"] for rule in rules
    }

    # A TrainingJob naming the DataIngest without a version trains on the latest version
    # published when it starts, and keeps it while it runs.
    def dataset_of(worker: client.V1Job) -> str:
        env = {var.name: var.value for var in worker.spec.template.spec.containers[0].env}
        return env["KUBEFORGE_DATASET_URI"]

    jobs.create("late", spec_with(dataset={"datasetRef": {"name": name}}))
    late = wait_for(lambda: read_or_none(lambda: jobs.worker_job("late")), "a worker Job")
    assert dataset_of(late) == second["dataset"]["uri"]
    assert dataset_of(early) == first["dataset"]["uri"]
    # The running one was reconciled when version 2 was published, and left alone.
    still = jobs.worker_job("early")
    assert (still.metadata.uid, dataset_of(still)) == (early.metadata.uid, first["dataset"]["uri"])
