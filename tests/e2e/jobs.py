"""TrainingJobs for the e2e tier: the sample made small, created and awaited on a real cluster."""

from __future__ import annotations

import copy
from typing import Any, cast

import yaml
from kubernetes import client

from tests.conftest import REPO_ROOT
from tests.polling import wait_for

GROUP, VERSION, PLURAL = "kubeforge.dev", "v1alpha1", "trainingjobs"
SAMPLE = REPO_ROOT / "manifests" / "samples" / "trainingjob.yaml"
STEPS = 100
# Long enough for something to happen mid-run (a deletion, a chart upgrade) before the end.
LONG_STEPS = 3000
# Pulling nothing, two workers of the MLP on a 2-4 core runner finish in a few minutes.
TIMEOUT_S = 900.0


def small_sample(namespace: str, steps: int = STEPS) -> dict[str, Any]:
    """The TrainingJob sample with fewer steps, smaller requests and no checkpoint store."""
    job: dict[str, Any] = copy.deepcopy(yaml.safe_load(SAMPLE.read_text()))
    job["metadata"]["namespace"] = namespace
    spec = job["spec"]
    spec["trainer"]["steps"] = steps
    spec["resources"] = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    del spec["checkpoint"]
    return job


class Jobs:
    """TrainingJobs in one namespace of the e2e cluster."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create(self, job: dict[str, Any]) -> str:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, job)
        return cast(str, job["metadata"]["name"])

    def status(self, name: str) -> dict[str, Any]:
        job = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return cast(dict[str, Any], cast(dict[str, Any], job).get("status", {}))

    def step(self, name: str) -> int | None:
        """The last step reported in status.progress, if any."""
        return cast(int | None, (self.status(name).get("progress") or {}).get("step"))

    def wait_finished(self, name: str, what: str = "") -> dict[str, Any]:
        """The status once the phase is Succeeded or Failed."""

        def finished() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        return wait_for(finished, f"TrainingJob {name} to finish{what}", timeout=TIMEOUT_S)

    def pod_uids(self) -> set[str]:
        return {pod.metadata.uid for pod in self.core.list_namespaced_pod(self.namespace).items}
