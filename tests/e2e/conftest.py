"""Fixtures of the e2e tier: a real cluster whose kubelets run kubeforge's images.

The tier runs only when KUBEFORGE_KUBECONFIG names such a cluster, with the chart already
installed (`make e2e-kind` does both). The local rig cannot stand in: its kwok nodes run no
containers, so every test here is skipped without it.

S3 for the pods is a SeaweedFS started here on this machine's address on kind's Docker network,
KUBEFORGE_KIND_HOST_IP (`hack/kind.sh` writes it): the pods, the operator and the tests all reach
it there. The web that crawler pods crawl is the demo's (`kubeforge.cli.localweb`), served here on
that address too, each host on a port of its own. Tests that need the address skip without it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from kubernetes import client

from kubeforge.cli.localweb import DEMO_ADDRESSES, DemoWeb, build_demo_web
from tests.kube import kube_client
from tests.polling import wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_REGION = "us-east-1"
# weed mini's port flags; each server's gRPC port is its port + 10000.
WEED_PORT_FLAGS = (
    "s3.port",
    "master.port",
    "volume.port",
    "filer.port",
    "admin.port",
    "s3.port.iceberg",
)


@dataclass(frozen=True)
class PodS3:
    """An S3 store that pods and this machine both reach, with a client for the tests."""

    endpoint: str
    access_key: str
    secret_key: str
    client: S3Client

    def secret_data(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@pytest.fixture(scope="session")
def e2e_api() -> Iterator[client.ApiClient]:
    kubeconfig = os.environ.get("KUBEFORGE_KUBECONFIG")
    if not kubeconfig:
        pytest.skip(
            "KUBEFORGE_KUBECONFIG is unset: the e2e tier needs a cluster that runs containers "
            "with the chart installed (make e2e-kind)"
        )
    api = kube_client(Path(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def restricted_namespace(
    e2e_api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace enforcing PodSecurity `restricted`, deleted afterwards."""
    stem = request.node.name.removeprefix("test_").replace("_", "-").lower()[:40].strip("-")
    name = f"kf-e2e-{stem}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(e2e_api)
    labels = {
        "app.kubernetes.io/part-of": "kubeforge-tests",
        "pod-security.kubernetes.io/enforce": "restricted",
    }
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    core.delete_namespace(name)


def free_ports(host: str, count: int) -> list[int]:
    """Ports free on `host` whose +10000 neighbours (weed's gRPC ports) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as neighbour:
            try:
                neighbour.bind((host, port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def s3_answers(host: str, port: int) -> bool:
    """Whether the S3 gateway answers HTTP at all (403 without credentials is an answer)."""
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/")
        connection.getresponse()
    except OSError:
        return False
    finally:
        connection.close()
    return True


def pod_reachable_host() -> str:
    """This machine's address where the cluster's pods reach it, or a skip."""
    host = os.environ.get("KUBEFORGE_KIND_HOST_IP")
    if not host:
        pytest.skip("KUBEFORGE_KIND_HOST_IP is unset: no address where pods reach this machine")
    return host


@pytest.fixture(scope="session")
def pod_web(e2e_api: client.ApiClient) -> Iterator[DemoWeb]:
    """The demo web, every host on a free port of the address that pods reach."""
    host = pod_reachable_host()
    web = build_demo_web(port=0, addresses=dict.fromkeys(DEMO_ADDRESSES, host))
    yield web
    web.stop()


@pytest.fixture(scope="session")
def pod_s3(e2e_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodS3]:
    host = pod_reachable_host()
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        pytest.fail("weed (SeaweedFS) is not installed: run `make venv` (it comes with .[dev])")
    state = tmp_path_factory.mktemp("pod-s3")
    ports = dict(zip(WEED_PORT_FLAGS, free_ports(host, len(WEED_PORT_FLAGS)), strict=True))
    access_key, secret_key = "kubeforge-e2e", uuid.uuid4().hex
    args = [weed, "mini", f"-dir={state}", f"-ip={host}", f"-ip.bind={host}", "-webdav=false"]
    args += ["-admin.ui=false", *(f"-{flag}={port}" for flag, port in ports.items())]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    with (state / "weed.log").open("wb") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://{host}:{ports['s3.port']}"
    try:
        wait_for(
            lambda: process.poll() is not None or s3_answers(host, ports["s3.port"]),
            "SeaweedFS to answer",
        )
        assert process.poll() is None, (state / "weed.log").read_text()[-2000:]
        s3_client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=S3_REGION,
        )
        yield PodS3(endpoint, access_key, secret_key, s3_client)
    finally:
        process.terminate()
        process.wait(timeout=30)
