"""Fixtures of the e2e tier: a real cluster whose kubelets run kubeforge's images.

The tier runs only when KUBEFORGE_KUBECONFIG names such a cluster, with the chart already
installed (`make e2e-kind` does both). The local rig cannot stand in: its kwok nodes run no
containers, so every test here is skipped without it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.kube import kube_client


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
