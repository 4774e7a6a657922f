"""Faults on a TrainingJob that has already run past its start deadline, on the real control plane.

Every fault here is injected only once the job is older than its (shortened)
`startDeadlineSeconds`, so a deadline that counted from the job's creation would fail it.

Real: kube-apiserver, the Job controller, the real kube-scheduler preempting a worker for a
higher-priority pod, the node lifecycle and taint-eviction controllers noticing a node whose
heartbeats stopped, and the operator in-process. Simulated: the kubelet (kwok). A node is "lost"
by taking it out of kwok's hands: neither its status nor its lease is renewed any more, exactly
what a dead kubelet looks like to the control plane. Each test brings its own tainted nodes, so
no other test's pods land there and the shared rig's nodes are never lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import OperatorThread
from tests.integration.trainingjobs import Jobs, spec_with
from tests.polling import wait_for

pytestmark = pytest.mark.integration

POOL = "kubeforge.test/pool"
KWOK_MANAGED = "kwok.x-k8s.io/node"
NODE_LOSS_TIMEOUT = 180.0
"""The node lifecycle controller's grace for a silent node (about 50 s), eviction, and slack."""


def older_than_start_deadline(jobs: Jobs, name: str, seconds: int) -> None:
    """Waits until the job has run for longer than `seconds` since its workers started."""

    def age() -> float:
        started = (jobs.get(name).get("status") or {}).get("startTime")
        if not started:
            return 0.0
        return (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds()

    wait_for(lambda: age() > seconds + 1, f"{name} to be older than {seconds} s", seconds + 30)


def never_failed(jobs: Jobs, name: str) -> None:
    status = jobs.get(name)["status"]
    assert status["phase"] != "Failed", status
    assert all(e.reason != "StartDeadlineExceeded" for e in jobs.events(name))


@pytest.fixture
def pool(api_client: client.ApiClient, namespace: str) -> Iterator[Callable[[int], list[str]]]:
    """Makes kwok nodes of one CPU each, labelled and tainted for this test only."""
    core = client.CoreV1Api(api_client)
    made: list[str] = []

    def make(count: int) -> list[str]:
        names = [f"kf-pool-{uuid.uuid4().hex[:8]}" for _ in range(count)]
        capacity = {"cpu": "1", "memory": "8Gi", "pods": "10"}
        for name in names:
            core.create_node(
                client.V1Node(
                    metadata=client.V1ObjectMeta(
                        name=name,
                        labels={"kubernetes.io/hostname": name, "type": "kwok", POOL: namespace},
                        annotations={KWOK_MANAGED: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    ),
                    spec=client.V1NodeSpec(
                        taints=[client.V1Taint(key=POOL, value=namespace, effect="NoSchedule")]
                    ),
                    status=client.V1NodeStatus(capacity=capacity, allocatable=capacity),
                )
            )
            made.append(name)

        def ready() -> bool:
            nodes = [core.read_node(name) for name in names]
            return all(
                any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
                and not any(t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or [])
                for node in nodes
            )

        wait_for(ready, f"nodes {names} to be ready")
        return names

    yield make
    for name in made:
        core.delete_node(name)


def on_pool(namespace: str, **changes: Any) -> dict[str, Any]:
    """A spec whose workers take a whole pool node each."""
    return spec_with(
        nodeSelector={POOL: namespace},
        tolerations=[
            {"key": POOL, "operator": "Equal", "value": namespace, "effect": "NoSchedule"}
        ],
        resources={"requests": {"cpu": "1"}},
        **changes,
    )


def test_a_worker_failing_after_the_start_deadline_restarts_the_group(
    jobs: Jobs, operator: OperatorThread
) -> None:
    jobs.create("late", spec_with(replicas=2, startDeadlineSeconds=15))
    first = jobs.running_pods("late", 2)
    jobs.wait_phase("late", "Running")
    older_than_start_deadline(jobs, "late", 15)
    jobs.end_pod(first[0], 3)
    jobs.wait("late", "a restart", lambda s: s.get("restarts", {}).get("count") == 1)
    jobs.running_pods("late", 2, replacing=first[:1])
    status = jobs.wait_phase("late", "Running")["status"]
    assert status["restarts"]["history"][-1]["cause"] == "RetryableExitCode"
    never_failed(jobs, "late")


def test_restarts_late_in_a_run_never_wait_out_the_job_controllers_growing_back_off(
    jobs: Jobs, operator: OperatorThread
) -> None:
    """Three retryable failures, each past a start deadline of 15 s, on the real Job controller.
    Its back-off doubles with every failed pod of a Job and is never reset while the Job runs:
    the first failed pod is replaced in place after 10 s (its peer runs on, as kwok's pods do);
    at the second, both workers stop (as a broken group's do under torchrun) and the Job
    controller would wait 40 s, so the operator replaces the worker Job and both workers start
    anew at once; the third is the new Job's first failure, replaced in place again. The job
    restarts three times without failing.
    The exit codes come from kwok's test annotation: the Job controller's side is what is proven
    here, torchrun's is in the workloads and e2e tiers."""
    jobs.create("thrice", spec_with(replicas=2, startDeadlineSeconds=15))
    pods = jobs.running_pods("thrice", 2)
    jobs.wait_phase("thrice", "Running")
    first_job = jobs.worker_job("thrice").metadata.uid
    older_than_start_deadline(jobs, "thrice", 15)

    jobs.end_pod(pods[0], 3)
    jobs.wait("thrice", "restart 1", partial(restarts_counted, 1))
    pods = jobs.running_pods("thrice", 2, replacing=pods[:1], timeout=120)
    jobs.wait_phase("thrice", "Running")
    assert jobs.worker_job("thrice").metadata.uid == first_job

    jobs.end_pod(pods[0], 3)
    jobs.end_pod(pods[1], 1)
    status = jobs.wait("thrice", "restart 2", partial(restarts_counted, 2))["status"]
    pods = jobs.running_pods("thrice", 2, replacing=pods, timeout=120)
    jobs.wait_phase("thrice", "Running")
    second_job = jobs.worker_job("thrice")
    assert second_job.metadata.uid != first_job
    assert all(
        owner.uid == second_job.metadata.uid for p in pods for owner in p.metadata.owner_references
    )

    jobs.end_pod(pods[0], 3)
    jobs.wait("thrice", "restart 3", partial(restarts_counted, 3))
    jobs.running_pods("thrice", 2, replacing=pods[:1], timeout=120)
    status = jobs.wait_phase("thrice", "Running")["status"]
    assert jobs.worker_job("thrice").metadata.uid == second_job.metadata.uid
    assert jobs.worker_job("thrice").status.failed == 1
    assert [r["cause"] for r in status["restarts"]["history"]] == ["RetryableExitCode"] * 3
    never_failed(jobs, "thrice")


def restarts_counted(count: int, status: dict[str, Any]) -> bool:
    return bool(status.get("restarts", {}).get("count") == count)


def test_preemption_by_the_scheduler_after_the_start_deadline_is_not_charged(
    jobs: Jobs,
    operator: OperatorThread,
    namespace: str,
    pool: Callable[[int], list[str]],
    api_client: client.ApiClient,
) -> None:
    """The real kube-scheduler preempts the worker for a pod of a higher priority that needs its
    node; the worker comes back once the node is free again."""
    (node,) = pool(1)
    scheduling = client.SchedulingV1Api(api_client)
    priority = f"kf-urgent-{uuid.uuid4().hex[:6]}"
    scheduling.create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name=priority), value=1_000_000)
    )
    try:
        jobs.create("preempted", on_pool(namespace, startDeadlineSeconds=20))
        (worker,) = jobs.running_pods("preempted", 1)
        assert worker.spec.node_name == node
        older_than_start_deadline(jobs, "preempted", 20)
        urgent = client.V1Container(
            name="c",
            image="busybox",
            resources=client.V1ResourceRequirements(requests={"cpu": "1"}),
        )
        jobs.core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="urgent"),
                spec=client.V1PodSpec(
                    priority_class_name=priority,
                    node_selector={POOL: namespace},
                    tolerations=[
                        client.V1Toleration(key=POOL, operator="Exists", effect="NoSchedule")
                    ],
                    containers=[urgent],
                ),
            ),
        )
        status = jobs.wait(
            "preempted", "a disruption", lambda s: s.get("restarts", {}).get("disruptions") == 1
        )["status"]
        record = status["restarts"]["history"][-1]
        assert (record["cause"], record["charged"]) == ("Preempted", False)
        jobs.core.delete_namespaced_pod("urgent", namespace, grace_period_seconds=0)
        jobs.running_pods("preempted", 1, replacing=[worker])
        status = jobs.wait_phase("preempted", "Running")["status"]
        assert status["restarts"].get("count", 0) == 0
        never_failed(jobs, "preempted")
    finally:
        scheduling.delete_priority_class(priority)


def silence(api_client: client.ApiClient, node: str) -> None:
    """Makes a kwok node's kubelet go silent: kwok stops posting its status (the annotation) and
    stops renewing its lease (another holder has it, for an hour), so its last heartbeat ages
    like a dead kubelet's."""
    client.CoreV1Api(api_client).patch_node(
        node, {"metadata": {"annotations": {KWOK_MANAGED: None}}}
    )
    client.CoordinationV1Api(api_client).patch_namespaced_lease(
        node,
        "kube-node-lease",
        {"spec": {"holderIdentity": "silent-kubelet", "leaseDurationSeconds": 3600}},
    )


def test_a_lost_node_after_the_start_deadline_is_recorded_and_its_worker_replaced(
    jobs: Jobs,
    operator: OperatorThread,
    namespace: str,
    pool: Callable[[int], list[str]],
    api_client: client.ApiClient,
) -> None:
    """The node's kubelet goes silent: the node lifecycle controller marks the worker not Ready
    and taints the node; the operator records NodeLost at once; the taint-eviction controller
    evicts the worker after unreachableNodeSeconds; nobody confirms its end, so the operator
    force-deletes it after stuckTerminationSeconds; the Job controller replaces it on the other
    node."""
    nodes = pool(2)
    spec = on_pool(
        namespace,
        startDeadlineSeconds=15,
        terminationGracePeriodSeconds=1,
        failurePolicy={"maxRestarts": 0, "unreachableNodeSeconds": 5, "stuckTerminationSeconds": 5},
    )
    jobs.create("lost", spec)
    (worker,) = jobs.running_pods("lost", 1)
    jobs.wait_phase("lost", "Running")
    older_than_start_deadline(jobs, "lost", 15)
    silent = worker.spec.node_name
    silence(api_client, silent)
    status = jobs.wait(
        "lost",
        "the lost node recorded",
        lambda s: s.get("restarts", {}).get("disruptions") == 1,
        timeout=NODE_LOSS_TIMEOUT,
    )["status"]
    record = status["restarts"]["history"][-1]
    assert (record["cause"], record["charged"], record["pod"]) == (
        "NodeLost",
        False,
        worker.metadata.name,
    )
    jobs.wait_event("lost", "NodeLost")
    (replacement,) = jobs.running_pods("lost", 1, replacing=[worker], timeout=90)
    assert replacement.spec.node_name == next(node for node in nodes if node != silent)
    status = jobs.wait_phase("lost", "Running")["status"]
    assert status["restarts"].get("count", 0) == 0
    # The worker stuck terminating on the silent node was force-deleted.
    assert worker.metadata.name not in {pod.metadata.name for pod in jobs.pods("lost")}
    never_failed(jobs, "lost")
