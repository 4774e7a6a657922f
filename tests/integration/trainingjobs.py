"""Test helpers for TrainingJobs on the cluster: their pods and worker Job, and specs."""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

from kubernetes import client

from tests.polling import wait_for

# GROUP, VERSION and condition are re-exported: the TrainingJob tests import them from here.
from tests.resources import GROUP as GROUP
from tests.resources import VERSION as VERSION
from tests.resources import CustomResources
from tests.resources import condition as condition
from tests.trainingjob_cases import MINIMAL_SPEC

PLURAL = "trainingjobs"
JOB_LABEL = "kubeforge.dev/training-job"


class Jobs(CustomResources):
    """The test's view of TrainingJobs and their children in one namespace."""

    kind = "TrainingJob"
    plural = PLURAL

    def pods(self, name: str) -> list[client.V1Pod]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_LABEL}={name}")
        return sorted(pods.items, key=lambda pod: pod.metadata.name)

    def running_pods(
        self,
        name: str,
        count: int,
        replacing: Collection[client.V1Pod] = (),
        timeout: float = 60,
    ) -> list[client.V1Pod]:
        """Waits for `count` running workers, none of them one of `replacing` (a restart's old
        pods are deleted by the garbage collector a while after their Job)."""
        old = {pod.metadata.uid for pod in replacing}

        def probe() -> list[client.V1Pod] | None:
            running = [
                pod
                for pod in self.pods(name)
                if pod.status.phase == "Running"
                and not pod.metadata.deletion_timestamp
                and pod.metadata.uid not in old
            ]
            return running if len(running) == count else None

        return wait_for(probe, f"{count} running workers of {name}", timeout)

    def worker_job(self, name: str) -> client.V1Job:
        return self.batch.read_namespaced_job(name, self.namespace)


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL_SPEC)
    spec.update(changes)
    return spec
