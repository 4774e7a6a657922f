"""kubeforge's resources in one namespace of the e2e cluster, and the samples made small for it."""

from __future__ import annotations

import copy
from typing import Any, cast

import yaml

from tests.conftest import REPO_ROOT
from tests.resources import CustomResources

SAMPLE = REPO_ROOT / "manifests" / "samples" / "trainingjob.yaml"
STEPS = 100
# Long enough for something to happen mid-run (a deletion, a chart upgrade) before the end.
LONG_STEPS = 3000
# Pulling nothing, two workers of the MLP on a 2-4 core runner finish in a few minutes.
TIMEOUT_S = 900.0
SMALL_WORKER = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


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
        return cast(int | None, (self.status(name).get("progress") or {}).get("step"))

    def wait_done(self, name: str, what: str = "") -> dict[str, Any]:
        return self.wait_finished(name, what, timeout=TIMEOUT_S)

    def pod_uids(self) -> set[str]:
        return {pod.metadata.uid for pod in self.core.list_namespaced_pod(self.namespace).items}


class Ingests(CustomResources):
    """DataIngests in one namespace of the e2e cluster."""

    kind = "DataIngest"
    plural = "dataingests"
