"""Fixtures for every test tier: the cluster, a namespace per test, S3 (also over HTTPS, behind
a TLS proxy with a test CA) and a bucket per test.

The cluster is real. When KUBEFORGE_KUBECONFIG names a kubeconfig (kind, a real cluster), the
suite runs against it and takes its S3 store from the AWS_* variables. Otherwise the suite starts
the local rig (`hack/dev_cluster.py up`: kube-apiserver, etcd, controller-manager, scheduler, kwok
and SeaweedFS) unless one is already running, and stops it at the end if it started it (set
KUBEFORGE_KEEP_CLUSTER=1 to keep it). Fixtures that need no cluster never start it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from kubernetes import client

from tests.kube import kube_client
from tests.tlsproxy import TlsEndpoint, tls_endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_CLUSTER = [sys.executable, str(REPO_ROOT / "hack" / "dev_cluster.py")]


@dataclass(frozen=True)
class Rig:
    """Where the cluster and the S3 store under test are, and whether they are the local rig."""

    kubeconfig: Path
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    local: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, local: bool) -> Rig:
        """The rig named by AWS_* and KUBECONFIG-style variables (`.dev-cluster/env`'s names)."""
        return cls(
            kubeconfig=Path(env["KUBECONFIG"]),
            s3_endpoint=env["AWS_ENDPOINT_URL"],
            s3_access_key=env["AWS_ACCESS_KEY_ID"],
            s3_secret_key=env["AWS_SECRET_ACCESS_KEY"],
            s3_region=env.get("AWS_REGION", "us-east-1"),
            local=local,
        )


def local_rig() -> Rig:
    """The rig `make dev-cluster` started, from its `.dev-cluster/env`."""
    return Rig.from_env(read_env_file(REPO_ROOT / ".dev-cluster" / "env"), local=True)


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of `.dev-cluster/env` (PATH, which refers to $PATH, aside)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and not line.startswith("export PATH="):
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = value
    return values


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    external = os.environ.get("KUBEFORGE_KUBECONFIG")
    if external:
        yield Rig.from_env({**os.environ, "KUBECONFIG": external}, local=False)
        return
    already_up = subprocess.run([*DEV_CLUSTER, "status"], capture_output=True).returncode == 0
    subprocess.run([*DEV_CLUSTER, "up"], check=True)
    yield local_rig()
    if not already_up and not os.environ.get("KUBEFORGE_KEEP_CLUSTER"):
        subprocess.run([*DEV_CLUSTER, "down"], check=True)


@pytest.fixture(scope="session")
def api_client(rig: Rig) -> Iterator[client.ApiClient]:
    api = kube_client(rig.kubeconfig)
    yield api
    api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    stem = request.node.name.removeprefix("test_").replace("_", "-").lower()[:40].strip("-")
    name = f"kf-{stem}-{uuid.uuid4().hex[:6]}"
    core_api = client.CoreV1Api(api_client)
    core_api.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/part-of": "kubeforge-tests"}
            )
        )
    )
    yield name
    core_api.delete_namespace(name)


@pytest.fixture(scope="session")
def s3(rig: Rig) -> S3Client:
    s3_client: S3Client = boto3.client(
        "s3",
        endpoint_url=rig.s3_endpoint,
        aws_access_key_id=rig.s3_access_key,
        aws_secret_access_key=rig.s3_secret_key,
        region_name=rig.s3_region,
    )
    return s3_client


@pytest.fixture(scope="session")
def tls_s3(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEndpoint]:
    """The rig's S3 over HTTPS, its certificate signed by a CA the tests made."""
    with tls_endpoint(rig.s3_endpoint, tmp_path_factory.mktemp("s3-ca")) as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3: S3Client) -> Iterator[str]:
    """A fresh, empty bucket, emptied and deleted afterwards."""
    name = f"kf-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)
