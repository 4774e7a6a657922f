"""Test helpers for TrainingJobs on the cluster: create, read, wait, and end worker pods."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.polling import wait_for
from tests.trainingjob_cases import MINIMAL_SPEC

GROUP, VERSION, PLURAL = "kubeforge.dev", "v1alpha1", "trainingjobs"
EXIT_CODE = "kubeforge.dev/test-exit-code"
JOB_LABEL = "kubeforge.dev/training-job"


class Jobs:
    """The test's view of TrainingJobs and their children in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": spec,
        }
        created = self.objects.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return cast(dict[str, Any], created)

    def get(self, name: str) -> dict[str, Any]:
        found = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return cast(dict[str, Any], found)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def wait(
        self, name: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            job = self.get(name)
            return job if check(job.get("status") or {}) else None

        return wait_for(probe, f"TrainingJob {name}: {what}", timeout)

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait(name, f"phase {phase}", lambda s: s.get("phase") == phase, timeout)

    def pods(self, name: str) -> list[client.V1Pod]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_LABEL}={name}")
        return sorted(pods.items, key=lambda pod: pod.metadata.name)

    def running_pods(self, name: str, count: int) -> list[client.V1Pod]:
        def probe() -> list[client.V1Pod] | None:
            running = [
                pod
                for pod in self.pods(name)
                if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp
            ]
            return running if len(running) == count else None

        return wait_for(probe, f"{count} running workers of {name}")

    def end_pod(self, pod: client.V1Pod, exit_code: int) -> None:
        self.core.patch_namespaced_pod(
            pod.metadata.name,
            self.namespace,
            {"metadata": {"annotations": {EXIT_CODE: str(exit_code)}}},
        )

    def worker_job(self, name: str) -> client.V1Job:
        return self.batch.read_namespaced_job(name, self.namespace)

    def events(self, name: str) -> list[client.CoreV1Event]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return list(events.items)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL_SPEC)
    spec.update(changes)
    return spec


def read_or_none(read: Callable[[], Any]) -> Any:
    """The result of a read, or None while the object does not exist."""
    try:
        return read()
    except ApiException as error:
        if error.status == 404:
            return None
        raise
