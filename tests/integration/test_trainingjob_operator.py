"""The TrainingJob operator against the real control plane.

Real: kube-apiserver (CRD schema, CEL rules, status and scale subresources, RBAC objects), the Job
controller (pods, podFailurePolicy, completion), the scheduler, the garbage collector, and the
operator itself, run in-process. Simulated: the kubelet; kwok runs the pods, and a test ends a
pod with the annotation `kubeforge.dev/test-exit-code` (hack/kwok/test-stages.yaml). That code
stands for the worker's own, as `kubeforge.launch` passes it through torchrun; that path is proven
with real processes in tests/workloads/test_launch.py and test_local_run.py, not here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import REPO_ROOT, Rig
from tests.integration.conftest import OperatorThread
from tests.integration.trainingjobs import (
    GROUP,
    JOB_LABEL,
    PLURAL,
    VERSION,
    Jobs,
    condition,
    spec_with,
)
from tests.kube import status_message
from tests.polling import wait_for
from tests.resources import read_or_none
from tests.trainingjob_cases import INVALID_SPECS, InvalidSpec

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda case: case.id)
def test_invalid_spec_is_refused_naming_the_field(
    jobs: Jobs, crds: list[str], case: InvalidSpec
) -> None:
    with pytest.raises(ApiException) as refused:
        jobs.create("invalid", case.spec)
    assert refused.value.status == 422
    message = status_message(refused.value)
    assert case.field in message, message
    assert case.message.lower() in message.lower(), message


def test_children_carry_the_plan(jobs: Jobs, operator: OperatorThread) -> None:
    spec = spec_with(
        replicas=2,
        minReplicas=1,
        maxReplicas=4,
        nprocPerNode=8,
        resources={"limits": {"nvidia.com/gpu": 8, "memory": "64Gi"}},
        env=[{"name": "WANDB_MODE", "value": "offline"}],
        storage={"caBundle": {"secretKeyRef": {"name": "s3-ca"}}},
        failurePolicy={"maxRestarts": 5, "permanentExitCodes": [2]},
    )
    created = jobs.create("gpt", spec)
    uid = created["metadata"]["uid"]
    job = wait_for(lambda: read_or_none(lambda: jobs.worker_job("gpt")), "the worker Job")

    assert job.spec.completion_mode == "Indexed"
    # backoffLimit: replicas x (maxRestarts + 1), a backstop to the budget the operator keeps.
    assert (job.spec.completions, job.spec.parallelism, job.spec.backoff_limit) == (2, 2, 12)
    assert job.metadata.owner_references[0].uid == uid
    assert job.metadata.labels["app.kubernetes.io/managed-by"] == "kubeforge-operator"
    rules = job.spec.pod_failure_policy.rules
    assert (rules[0].action, rules[0].on_pod_conditions[0].type) == ("Ignore", "DisruptionTarget")
    assert (rules[1].action, rules[1].on_exit_codes.values) == ("FailJob", [2])

    pod_spec = job.spec.template.spec
    container = pod_spec.containers[0]
    namespace = jobs.namespace
    assert container.command[:10] == [
        "python",
        "-m",
        "kubeforge.launch",
        "--nnodes=1:4",
        "--nproc-per-node=8",
        "--rdzv-backend=kubeforge",
        f"--rdzv-endpoint=gpt-rendezvous.{namespace}.svc:29400",
        "--rdzv-conf=is_host=false,read_timeout=600",
        "--rdzv-id=$(KUBEFORGE_WORKER_JOB_UID)",
        "--max-restarts=0",
    ]
    assert container.command[10:] == [
        "-m",
        "kubeforge_trainer",
        "--config",
        "/etc/kubeforge/trainer.yaml",
    ]
    env = {var.name: var for var in container.env}
    assert env["WANDB_MODE"].value == "offline"
    assert env["KUBEFORGE_PROGRESS_CONFIGMAP"].value == "gpt-progress"
    assert env["POD_NAMESPACE"].value_from.field_ref.field_path == "metadata.namespace"
    assert env["AWS_CA_BUNDLE"].value == "/etc/kubeforge-ca/storage/ca.crt"
    (ca_volume,) = [volume for volume in pod_spec.volumes if volume.name == "storage-ca"]
    assert ca_volume.secret.secret_name == "s3-ca"
    assert container.resources.limits == {"nvidia.com/gpu": "8", "memory": "64Gi"}
    assert pod_spec.subdomain == "gpt"
    assert pod_spec.service_account_name == "gpt-trainer"
    assert pod_spec.security_context.run_as_non_root is True

    service = jobs.core.read_namespaced_service("gpt", namespace)
    assert service.spec.cluster_ip == "None"
    assert service.spec.publish_not_ready_addresses is True
    # The rendezvous store: a pod of its own behind its own Service, the workers' endpoint.
    store = client.AppsV1Api(jobs.core.api_client).read_namespaced_deployment(
        "gpt-rendezvous", namespace
    )
    assert store.metadata.owner_references[0].uid == uid
    assert store.spec.replicas == 1
    store_container = store.spec.template.spec.containers[0]
    assert store_container.command == ["python", "-m", "kubeforge.rendezvous", "--port=29400"]
    assert store_container.image == container.image
    assert JOB_LABEL not in store.spec.template.metadata.labels  # not counted as a worker
    store_service = jobs.core.read_namespaced_service("gpt-rendezvous", namespace)
    assert store_service.spec.selector == store.spec.selector.match_labels
    assert store_service.spec.ports[0].port == 29400
    config = jobs.core.read_namespaced_config_map("gpt-config", namespace)
    assert "architecture: mlp" in config.data["trainer.yaml"]
    role = client.RbacAuthorizationV1Api(jobs.core.api_client).read_namespaced_role(
        "gpt-progress-writer", namespace
    )
    assert role.rules[0].resource_names == ["gpt-progress"]
    assert sorted(role.rules[0].verbs) == ["get", "patch"]

    # The GPU pods land on GPU nodes (the ExtendedResourceToleration plugin tolerates the taint).
    pods = jobs.running_pods("gpt", 2)
    assert {pod.spec.node_name.startswith("kwok-gpu") for pod in pods} == {True}
    status = jobs.wait_phase("gpt", "Running")["status"]
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Running")["reason"] == "WorkersRunning"
    assert status["replicas"] == {"desired": 2, "current": 2, "ready": 2}
    assert status["worldSize"] == 16
    assert status["observedGeneration"] == created["metadata"]["generation"]
    assert status["selector"] == f"{JOB_LABEL}=gpt"


def test_all_workers_succeed(jobs: Jobs, operator: OperatorThread) -> None:
    jobs.create("done", spec_with(replicas=2))
    for pod in jobs.running_pods("done", 2):
        jobs.end_pod(pod, 0)
    status = jobs.wait_phase("done", "Succeeded")["status"]
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Running")["status"] == "False"
    assert status["completionTime"] >= status["startTime"]
    jobs.wait_event("done", "Completed")
    # Nothing meets in the rendezvous store again: its pod goes, its Deployment stays with the job.
    apps = client.AppsV1Api(jobs.core.api_client)
    wait_for(
        lambda: (
            apps.read_namespaced_deployment("done-rendezvous", jobs.namespace).spec.replicas == 0
        ),
        "the finished job's rendezvous store to be scaled to no pod",
    )


def test_retryable_failure_is_counted_and_the_job_goes_on(
    jobs: Jobs, operator: OperatorThread
) -> None:
    jobs.create("flaky", spec_with(replicas=2, failurePolicy={"maxRestarts": 2}))
    first = jobs.running_pods("flaky", 2)
    jobs.end_pod(first[0], 3)
    status = jobs.wait("flaky", "a restart", lambda s: s.get("restarts", {}).get("count") == 1)
    record = status["status"]["restarts"]["history"][0]
    assert record["cause"] == "RetryableExitCode"
    assert record["exitCode"] == 3
    assert record["pod"] == first[0].metadata.name
    assert record["charged"] is True
    # The Job controller replaces the pod, and the group runs again.
    again = jobs.running_pods("flaky", 2)
    assert first[0].metadata.name not in {pod.metadata.name for pod in again}
    jobs.wait_phase("flaky", "Running")
    jobs.wait_event("flaky", "RetryableExitCode")


def test_permanent_exit_code_fails_the_job(jobs: Jobs, operator: OperatorThread) -> None:
    jobs.create("broken", spec_with(failurePolicy={"permanentExitCodes": [42]}))
    (pod,) = jobs.running_pods("broken", 1)
    jobs.end_pod(pod, 42)
    status = jobs.wait_phase("broken", "Failed")["status"]
    failed = condition(status, "Failed")
    assert failed["reason"] == "PermanentExitCode"
    assert condition(status, "Stalled")["status"] == "True"
    assert status.get("restarts", {}).get("count", 0) == 0


def test_bad_image_is_surfaced_then_fails_after_start_deadline(
    jobs: Jobs, operator: OperatorThread
) -> None:
    jobs.create(
        "badimage",
        spec_with(image="kubeforge.test/image-pull-backoff", startDeadlineSeconds=8),
    )
    status = jobs.wait_reason("badimage", "ImagePullBackOff")["status"]
    assert status["phase"] == "Starting"
    assert "kubeforge.test/image-pull-backoff" in condition(status, "Ready")["message"]
    assert condition(status, "Stalled")["status"] == "True"
    status = jobs.wait_phase("badimage", "Failed", timeout=60)["status"]
    assert condition(status, "Failed")["reason"] == "StartDeadlineExceeded"
    assert "ImagePullBackOff" in condition(status, "Failed")["message"]
    jobs.wait_event("badimage", "ImagePullBackOff")
    jobs.wait_event("badimage", "StartDeadlineExceeded")
    wait_for(lambda: jobs.worker_job("badimage").spec.suspend, "the workers to be stopped")


def test_scale_updates_the_worker_job(jobs: Jobs, operator: OperatorThread) -> None:
    jobs.create("elastic", spec_with(replicas=2, minReplicas=1, maxReplicas=4))
    jobs.running_pods("elastic", 2)
    jobs.objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, jobs.namespace, PLURAL, "elastic", {"spec": {"replicas": 4}}
    )
    wait_for(lambda: jobs.worker_job("elastic").spec.parallelism == 4, "parallelism 4")
    job = jobs.worker_job("elastic")
    assert job.spec.completions == 4
    jobs.running_pods("elastic", 4)
    status = jobs.wait("elastic", "4 ready", lambda s: s.get("replicas", {}).get("ready") == 4)
    assert status["status"]["phase"] == "Running"
    scale = cast(
        dict[str, Any],
        jobs.objects.get_namespaced_custom_object_scale(
            GROUP, VERSION, jobs.namespace, PLURAL, "elastic"
        ),
    )
    assert scale["spec"]["replicas"] == 4
    assert scale["status"]["replicas"] == 4


def test_suspend_removes_workers_and_resume_brings_them_back(
    jobs: Jobs, operator: OperatorThread
) -> None:
    jobs.create("pausable", spec_with(replicas=2))
    jobs.running_pods("pausable", 2)
    jobs.patch_spec("pausable", {"suspend": True})
    status = jobs.wait_phase("pausable", "Suspended")["status"]
    assert condition(status, "Suspended")["status"] == "True"
    wait_for(lambda: not jobs.pods("pausable"), "the workers to be removed")
    jobs.patch_spec("pausable", {"suspend": False})
    jobs.running_pods("pausable", 2)
    jobs.wait_phase("pausable", "Running")


def test_deleting_the_job_collects_its_children(jobs: Jobs, operator: OperatorThread) -> None:
    jobs.create("doomed", spec_with())
    jobs.running_pods("doomed", 1)
    jobs.objects.delete_namespaced_custom_object(GROUP, VERSION, jobs.namespace, PLURAL, "doomed")

    def children() -> list[str]:
        selector = f"{JOB_LABEL}=doomed"
        names = [
            j.metadata.name
            for j in jobs.batch.list_namespaced_job(jobs.namespace, label_selector=selector).items
        ]
        names += [
            c.metadata.name
            for c in jobs.core.list_namespaced_config_map(
                jobs.namespace, label_selector=selector
            ).items
        ]
        names += [
            s.metadata.name
            for s in jobs.core.list_namespaced_service(
                jobs.namespace, label_selector=selector
            ).items
        ]
        names += [
            d.metadata.name
            for d in client.AppsV1Api(jobs.core.api_client)
            .list_namespaced_deployment(jobs.namespace, label_selector=selector)
            .items
        ]
        names += [p.metadata.name for p in jobs.pods("doomed")]
        return names

    wait_for(lambda: not children(), "the garbage collector to delete every child")


def test_operator_restart_mid_reconcile_leaves_no_duplicate_or_orphan(
    jobs: Jobs, start_operator: Callable[[], OperatorThread]
) -> None:
    first = start_operator()
    jobs.create("survivor", spec_with(replicas=2))
    # Stop the operator as soon as it has begun creating children, before it has finished.
    wait_for(
        lambda: (
            jobs.core.list_namespaced_service_account(
                jobs.namespace, label_selector=f"{JOB_LABEL}=survivor"
            ).items
        ),
        "the first child",
        timeout=30,
    )
    first.stop()
    start_operator()
    jobs.running_pods("survivor", 2)
    jobs.wait_phase("survivor", "Running")
    selector = f"{JOB_LABEL}=survivor"
    assert len(jobs.batch.list_namespaced_job(jobs.namespace, label_selector=selector).items) == 1
    services = jobs.core.list_namespaced_service(jobs.namespace, label_selector=selector)
    assert sorted(service.metadata.name for service in services.items) == [
        "survivor",
        "survivor-rendezvous",
    ]
    apps = client.AppsV1Api(jobs.core.api_client)
    deployments = apps.list_namespaced_deployment(jobs.namespace, label_selector=selector)
    assert [deployment.metadata.name for deployment in deployments.items] == ["survivor-rendezvous"]
    config_maps = jobs.core.list_namespaced_config_map(jobs.namespace, label_selector=selector)
    assert sorted(c.metadata.name for c in config_maps.items) == [
        "survivor-config",
        "survivor-progress",
    ]
    uid = jobs.get("survivor")["metadata"]["uid"]
    for child in config_maps.items:
        assert [ref.uid for ref in child.metadata.owner_references] == [uid]


def test_sample_runs_on_the_rig(jobs: Jobs, operator: OperatorThread) -> None:
    sample = yaml.safe_load((REPO_ROOT / "manifests/samples/trainingjob.yaml").read_text())
    jobs.create(sample["metadata"]["name"], sample["spec"])
    jobs.running_pods("digits-mlp", 2)
    status = jobs.wait_phase("digits-mlp", "Running")["status"]
    assert status["worldSize"] == 2


def test_command_line_operator_serves_metrics_and_health(
    jobs: Jobs, rig: Rig, crds: list[str]
) -> None:
    metrics_port, health_port = free_port(), free_port()
    command = [sys.executable, "-m", "kubeforge_operator", "--namespace", jobs.namespace,
               "--metrics-port", str(metrics_port), "--health-port", str(health_port)]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(rig.kubeconfig)}
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as operator:
        try:
            jobs.create("observed", spec_with())
            for pod in jobs.running_pods("observed", 1):
                jobs.end_pod(pod, 0)
            jobs.wait_phase("observed", "Succeeded")
            succeeded = 'kubeforge_trainingjobs{phase="Succeeded"} 1.0'

            def scrape() -> str | None:
                text = http_text(f"http://127.0.0.1:{metrics_port}/metrics")
                return text if text and succeeded in text else None

            metrics = wait_for(scrape, "the metrics to count the job as Succeeded")
            assert "kubeforge_reconcile_duration_seconds_count" in metrics
            assert 'kubeforge_api_requests_total{verb="apply"}' in metrics
            health = http_text(f"http://127.0.0.1:{health_port}/healthz")
            assert health is not None
            assert '"queue"' in health
        finally:
            operator.terminate()
            _, errors = operator.communicate(timeout=30)
    assert "Traceback" not in errors, errors


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_text(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return str(response.read().decode())
    except OSError:
        return None
