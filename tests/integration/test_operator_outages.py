"""Outages of the control plane: the operator and the apiserver killed mid-work, and convergence.

Real: kube-apiserver (SIGKILLed and started again with its own flags and state by
`hack/dev_cluster.py kill|restart`), the Job controller, the garbage collector, and the operator:
as the process it is in its pod (`python -m kubeforge_operator`), SIGKILLed and started again
three times while 100 TrainingJobs are created, 30 of them scaled and 30 deleted; or in-process
while the apiserver is away. Simulated: the kubelet (kwok). The moments of the operator's kills
come from a seeded random generator, so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubeforge_operator.k8s import Kube
from kubeforge_operator.workqueue import Stale
from tests.conftest import REPO_ROOT, Rig
from tests.integration.conftest import OperatorThread
from tests.integration.trainingjobs import GROUP, JOB_LABEL, PLURAL, VERSION, Jobs, spec_with
from tests.polling import wait_for

pytestmark = pytest.mark.integration

JOBS, SCALED, DELETED, KILLS = 100, 30, 30, 3
SEED = 20261206


class KilledOperator:
    """The operator as a process, SIGKILLed and started again on request."""

    def __init__(self, rig: Rig, namespace: str) -> None:
        self.command = [sys.executable, "-m", "kubeforge_operator", "--namespace", namespace,
                        "--metrics-port", "0", "--health-port", "0"]  # fmt: skip
        self.env = {**os.environ, "KUBECONFIG": str(rig.kubeconfig)}
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, env=self.env, stderr=subprocess.DEVNULL)

    def kill_and_start(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = self._start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def killed_operator(rig: Rig, crds: list[str], namespace: str) -> Iterator[KilledOperator]:
    operator = KilledOperator(rig, namespace)
    yield operator
    operator.stop()


def children_by_job(jobs: Jobs, api_client: client.ApiClient) -> dict[str, Counter[str]]:
    """Every child of every TrainingJob in the namespace, counted by kind, by its job's name."""
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    rbac, apps = client.RbacAuthorizationV1Api(api_client), client.AppsV1Api(api_client)
    namespace, selector = jobs.namespace, JOB_LABEL
    listings: dict[str, list[Any]] = {
        "Job": batch.list_namespaced_job(namespace, label_selector=selector).items,
        "Deployment": apps.list_namespaced_deployment(namespace, label_selector=selector).items,
        "Service": core.list_namespaced_service(namespace, label_selector=selector).items,
        "ConfigMap": core.list_namespaced_config_map(namespace, label_selector=selector).items,
        "ServiceAccount": core.list_namespaced_service_account(
            namespace, label_selector=selector
        ).items,
        "Role": rbac.list_namespaced_role(namespace, label_selector=selector).items,
        "RoleBinding": rbac.list_namespaced_role_binding(namespace, label_selector=selector).items,
    }
    found: dict[str, Counter[str]] = {}
    for kind, items in listings.items():
        for item in items:
            if item.metadata.deletion_timestamp is None:
                found.setdefault(item.metadata.labels[JOB_LABEL], Counter())[kind] += 1
    return found


# The workers' Job and headless Service, and the rendezvous store's Deployment and Service.
EXPECTED_CHILDREN = Counter(
    {
        "Job": 1,
        "Deployment": 1,
        "Service": 2,
        "ConfigMap": 2,
        "ServiceAccount": 1,
        "Role": 1,
        "RoleBinding": 1,
    }
)


def test_an_operator_killed_in_a_burst_converges_with_no_orphan_or_duplicate(
    jobs: Jobs, api_client: client.ApiClient, killed_operator: KilledOperator
) -> None:
    chance = random.Random(SEED)  # noqa: S311 (test schedule, not security)
    names = [f"burst-{index:03d}" for index in range(JOBS)]
    scaled = set(chance.sample(names, SCALED))
    deleted = set(chance.sample(sorted(set(names) - scaled), DELETED))
    kill_after = sorted(chance.sample(range(JOBS + SCALED + DELETED), KILLS))
    done = threading.Event()

    def work() -> None:
        actions = [("create", name) for name in names]
        actions += [("scale", name) for name in sorted(scaled)]
        actions += [("delete", name) for name in sorted(deleted)]
        for index, (action, name) in enumerate(actions):
            if action == "create":
                jobs.create(name, spec_with(replicas=1, minReplicas=1, maxReplicas=3))
            elif action == "scale":
                jobs.patch_spec(name, {"replicas": 2})
            else:
                jobs.delete(name)
            if index in kill_after:
                killed_operator.kill_and_start()
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=240)
    assert done.is_set(), "the burst did not finish"

    survivors = set(names) - deleted

    def converged() -> bool:
        found = children_by_job(jobs, api_client)
        if set(found) != survivors or any(found[n] != EXPECTED_CHILDREN for n in survivors):
            return False
        for name in survivors:
            body = jobs.get(name)
            status = body.get("status") or {}
            if status.get("observedGeneration") != body["metadata"]["generation"]:
                return False
            worker_job = jobs.worker_job(name)
            if worker_job.spec.parallelism != (2 if name in scaled else 1):
                return False
        return True

    wait_for(converged, "every survivor with exactly its children, the deleted with none", 300)
    assert sorted(jobs.names()) == sorted(survivors)


def rig_command(*args: str) -> None:
    subprocess.run([sys.executable, str(REPO_ROOT / "hack" / "dev_cluster.py"), *args], check=True)


def test_the_apiserver_killed_mid_run_comes_back_and_the_operator_converges(
    rig: Rig, jobs: Jobs, operator: OperatorThread, api_client: client.ApiClient
) -> None:
    """kube-apiserver SIGKILLed while a job runs and started again 10 s later: the operator's
    watches resume, a worker failure during the outage is counted once, a scale made after it
    reaches the worker Job, and no child is doubled."""
    if not rig.local:
        pytest.skip("stops a process of the local rig; this cluster is not one")
    jobs.create("steady", spec_with(replicas=2, minReplicas=1, maxReplicas=3))
    first = jobs.running_pods("steady", 2)
    jobs.wait_phase("steady", "Running")
    rig_command("kill", "kube-apiserver")
    try:
        time.sleep(10)  # the outage itself: nothing answers, nothing to wait for
    finally:
        rig_command("restart", "kube-apiserver")
    jobs.end_pod(first[0], 3)
    jobs.wait("steady", "a restart", lambda s: s.get("restarts", {}).get("count") == 1, 120)
    jobs.running_pods("steady", 2, replacing=first[:1], timeout=120)
    jobs.patch_spec("steady", {"replicas": 3})
    wait_for(lambda: jobs.worker_job("steady").spec.parallelism == 3, "the scale to arrive", 120)
    jobs.running_pods("steady", 3, timeout=120)
    status = jobs.wait_phase("steady", "Running", 120)["status"]
    assert status["restarts"]["count"] == 1
    assert children_by_job(jobs, api_client) == {"steady": EXPECTED_CHILDREN}


def test_a_status_decided_from_a_stale_copy_never_overwrites_a_newer_one(
    rig: Rig, jobs: Jobs, crds: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a lagging watch (after an apiserver restart) can hand a reconcile: a copy older than
    the server's. Its status patch is refused, so it cannot undo a restart a newer reconcile
    counted; the work queue tries again with a fresher copy."""
    monkeypatch.setenv("KUBECONFIG", str(rig.kubeconfig))
    stale = jobs.create("stale", spec_with())
    counted = {"phase": "Restarting", "restarts": {"count": 1, "disruptions": 0, "history": []}}
    jobs.objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, jobs.namespace, PLURAL, "stale", {"status": counted}
    )

    async def patch_from_the_stale_copy() -> None:
        kube = Kube()
        try:
            await kube.patch_status(stale, {"phase": "Running", "restarts": {"count": 0}})
        finally:
            await kube.close()

    with pytest.raises(Stale):
        asyncio.run(patch_from_the_stale_copy())
    assert jobs.get("stale")["status"]["restarts"]["count"] == 1
