"""kubeforge's resources in one namespace of the e2e cluster, and the samples made small for it."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any, cast
from urllib.parse import urlsplit

import yaml
from kubernetes import client

from kubeforge.cli.demo import demo_file
from kubeforge.cli.localweb import DemoWeb
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import S3_REGION, PodS3
from tests.resources import CustomResources

SAMPLE = REPO_ROOT / "manifests" / "samples" / "trainingjob.yaml"
STEPS = 100
# Long enough for something to happen mid-run (a deletion, a chart upgrade) before the end.
LONG_STEPS = 3000
# Pulling nothing, two workers of the MLP on a 2-4 core runner finish in a few minutes.
TIMEOUT_S = 900.0
SMALL_WORKER = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
SMALL_CRAWLER = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
SECRET = "s3"
"""The Secret with the S3 store's credentials that the demo's resources name."""


def small_sample(steps: int = STEPS) -> dict[str, Any]:
    """The TrainingJob sample with fewer steps, smaller requests and no checkpoint store."""
    job: dict[str, Any] = copy.deepcopy(yaml.safe_load(SAMPLE.read_text()))
    spec = job["spec"]
    spec["trainer"]["steps"] = steps
    spec["resources"] = SMALL_WORKER
    del spec["checkpoint"]
    return job


class Jobs(CustomResources):
    """TrainingJobs in one namespace of the e2e cluster, and their pods."""

    kind = "TrainingJob"
    plural = "trainingjobs"

    def step(self, name: str) -> int | None:
        """The last step reported in status.progress, if any."""
        return self.step_of(self.status(name))

    @staticmethod
    def step_of(status: dict[str, Any]) -> int | None:
        return cast(int | None, (status.get("progress") or {}).get("step"))

    def wait_done(self, name: str, what: str = "") -> dict[str, Any]:
        return self.wait_finished(name, what, timeout=TIMEOUT_S)

    def wait_succeeded(self, name: str, steps: int, what: str = "") -> dict[str, Any]:
        """The status of a job that must succeed, once it shows the trainer's last report (step
        `steps`): the report and the Job's end reach the operator by two watches, in either
        order, so the phase can come first."""
        status = self.wait_done(name, what)
        assert status["phase"] == "Succeeded", status
        found = self.wait(name, f"the last step, {steps}", lambda s: self.step_of(s) == steps)
        return cast(dict[str, Any], found["status"])

    def pod_uids(self) -> set[str]:
        return {pod.metadata.uid for pod in self.core.list_namespaced_pod(self.namespace).items}


class Ingests(CustomResources):
    """DataIngests in one namespace of the e2e cluster."""

    kind = "DataIngest"
    plural = "dataingests"


def new_bucket(core: client.CoreV1Api, namespace: str, s3: PodS3) -> str:
    """A fresh bucket name, and the namespace's Secret (SECRET) with the store's credentials."""
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET), string_data=s3.secret_data()
    )
    core.create_namespaced_secret(namespace, secret)
    return f"kf-e2e-{uuid.uuid4().hex[:12]}"


def demo_pipeline(
    web: DemoWeb, s3: PodS3, bucket: str, *, steps: int, checkpoint_every: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo's DataIngest and TrainingJob, crawling `web` into `bucket` of `s3`."""
    ingest, job = yaml.safe_load_all(demo_file("gpt").read_text())
    host = urlsplit(web.seed()).hostname
    crawl = ingest["spec"]
    crawl["sources"].update(seeds=[web.seed()], allowedDomains=[host])
    # The web is on a private address: allowlisted, as an intranet would be.
    crawl["crawl"]["allowedNetworks"] = [f"{host}/32"]
    crawl["storage"].update(
        bucket=bucket,
        endpoint=s3.endpoint,
        region=S3_REGION,
        credentialsSecretRef={"name": SECRET},
        deletionPolicy="Retain",
    )
    crawl["resources"] = SMALL_CRAWLER
    train = job["spec"]
    train["trainer"]["steps"] = steps
    train["checkpoint"].update(
        uri=f"s3://{bucket}/checkpoints/{job['metadata']['name']}", intervalSteps=checkpoint_every
    )
    train["env"] = s3_env(s3)
    train["resources"] = SMALL_WORKER
    return ingest, job


def s3_env(s3: PodS3) -> list[dict[str, Any]]:
    """The workers' environment for the store: its endpoint, and credentials from SECRET."""
    return [
        {"name": "AWS_ENDPOINT_URL", "value": s3.endpoint},
        {"name": "AWS_REGION", "value": S3_REGION},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}
            for key in s3.secret_data()
        ),
    ]


def s3_json(s3: PodS3, uri: str) -> Any:
    """The JSON object at an s3:// URI of the store."""
    parts = urlsplit(uri)
    return json.loads(s3.client.get_object(Bucket=parts.netloc, Key=parts.path[1:])["Body"].read())
