"""Fixtures of the integration tier: kubeforge's CRDs installed, and the operator run in-process.

The operator under test is the real one (`kubeforge_operator.__main__.run`, kopf and all) in a
thread of the test process, watching only the test's namespace, against the real apiserver.
"""

from __future__ import annotations

import functools
import gc
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import REPO_ROOT, Rig
from tests.integration.trainingjobs import Jobs
from tests.polling import wait_for

CRD_DIR = REPO_ROOT / "manifests" / "crds"


@pytest.fixture(scope="session")
def crds(api_client: client.ApiClient) -> list[str]:
    """Installs (or updates) the generated CRDs and waits until they are served."""
    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd: dict[str, Any] = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        try:
            current = extensions.read_custom_resource_definition(name)
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(name, crd)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status != 404:
                raise
            extensions.create_custom_resource_definition(crd)  # type: ignore[arg-type]
        names.append(name)

    def established(name: str) -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    for name in names:
        wait_for(functools.partial(established, name), f"CRD {name} to be established")
    return names


class OperatorThread:
    """The operator running in a thread; stop() ends it as a pod's SIGTERM would."""

    def __init__(self, namespace: str, **settings: Any) -> None:
        """settings: run()'s keyword arguments from the command line (crawler_image)."""
        from kubeforge_operator.__main__ import run

        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.thread = threading.Thread(
            target=run,
            args=([namespace],),
            kwargs={"stop_flag": self.stop_flag, "ready_flag": self.ready_flag, **settings},
            name=f"operator-{namespace}",
            daemon=True,
        )

    def start(self) -> OperatorThread:
        self.thread.start()
        assert self.ready_flag.wait(60), "the operator did not become ready"
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the operator did not stop"
        # The stopped operator's event loop is closed, and a connection its HTTP clients had open
        # when it stopped is only reclaimed by the garbage collector, with a ResourceWarning
        # that would otherwise land on whichever later test the collector happens to run in.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@pytest.fixture
def start_operator(
    rig: Rig, crds: list[str], namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], OperatorThread]]:
    """Starts the operator for the test's namespace (again after a stop); stops it at the end."""
    monkeypatch.setenv("KUBECONFIG", str(Path(rig.kubeconfig)))
    running: list[OperatorThread] = []

    def start() -> OperatorThread:
        operator = OperatorThread(namespace).start()
        running.append(operator)
        return operator

    yield start
    for operator in running:
        if operator.thread.is_alive():
            operator.stop()


@pytest.fixture
def jobs(api_client: client.ApiClient, namespace: str) -> Jobs:
    return Jobs(api_client, namespace)


@pytest.fixture
def operator(start_operator: Callable[[], OperatorThread]) -> OperatorThread:
    return start_operator()
