"""Faults on a run older than its deadlines, on real pods: the job must resume and finish.

Each scenario starts the TrainingJob sample (the MLP, 2 workers, checkpoints in the tests'
SeaweedFS) with shortened startDeadlineSeconds and progressDeadlineSeconds, waits until the job
has run past both and committed a checkpoint, then breaks one worker:

- its pod is deleted (what a user's `kubectl delete pod` or a controller does): a disruption,
  recorded as PodDeleted and not charged to failurePolicy.maxRestarts;
- its training process is SIGKILLed inside the container (`kubectl exec ... kill -9`), as the
  kernel or a crash would end it: the launcher exits with the signal's code (137), a retryable
  code, so the restart is RetryableExitCode and charged.

Each asserts the final phase, the one restart with its cause and charge, the final step equal to
spec.trainer.steps, that the group resumed from its checkpoint (no step reported after the fault
is below it), and that no object is left whose owner is gone. The seconds from the fault to the
first step reported after the resume are printed (`pytest -rP` shows them), never asserted. One
control plane and one worker (hack/kind.sh's default) suffice: neither fault touches a node.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from kubernetes import client

from tests.e2e.conftest import PodS3
from tests.e2e.jobs import TIMEOUT_S, Jobs, new_bucket, s3_env, small_sample
from tests.helm import tool_binary
from tests.polling import wait_for
from tests.resources import GROUP, VERSION

pytestmark = pytest.mark.timeout(2 * TIMEOUT_S)
STEPS = 8000
CHECKPOINT_EVERY = 500
START_DEADLINE_S = 30
PROGRESS_DEADLINE_S = 60
# The job's age at the fault: past both deadlines, with 10 s to spare.
PAST_DEADLINES = timedelta(seconds=max(START_DEADLINE_S, PROGRESS_DEADLINE_S) + 10)
# Every process of the container whose command line runs the trainer module but is not the
# launcher (whose own arguments name the module too, after its rendezvous flags).
KILL_TRAINING_PROCESSES = """
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" = "$$" ] && continue
  command=$(tr '\\0' ' ' <"$dir/cmdline" 2>/dev/null) || continue
  case $command in
    *--rdzv*) ;;
    *kubeforge_trainer*) kill -KILL "$pid" && echo "$pid" ;;
  esac
done
"""


def checkpointed_job(s3: PodS3, bucket: str) -> dict[str, Any]:
    """The sample with checkpoints in `bucket` and both deadlines shortened."""
    job = small_sample(steps=STEPS)
    spec = job["spec"]
    name = job["metadata"]["name"]
    spec["checkpoint"] = {
        "uri": f"s3://{bucket}/checkpoints/{name}",
        "intervalSteps": CHECKPOINT_EVERY,
    }
    spec["env"] = s3_env(s3)
    spec["startDeadlineSeconds"] = START_DEADLINE_S
    spec["progressDeadlineSeconds"] = PROGRESS_DEADLINE_S
    return job


def running_worker(jobs: Jobs, name: str) -> client.V1Pod:
    pods = jobs.core.list_namespaced_pod(
        jobs.namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
    ).items
    return next(
        p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    )


def delete_pod(jobs: Jobs, pod: client.V1Pod) -> None:
    jobs.core.delete_namespaced_pod(pod.metadata.name, jobs.namespace)


def kill_training_process(jobs: Jobs, pod: client.V1Pod) -> None:
    """`kubectl exec` of the kill into the worker's container, as an operator of the cluster
    would type it."""
    killed = subprocess.run(
        [tool_binary("kubectl"), "--kubeconfig", os.environ["KUBEFORGE_KUBECONFIG"], "exec",
         "-n", jobs.namespace, pod.metadata.name, "--", "sh", "-c", KILL_TRAINING_PROCESSES],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert killed.split(), f"no training process found in {pod.metadata.name}: {killed!r}"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def orphans(jobs: Jobs) -> list[str]:
    """The objects of the jobs' namespace that name an owner which is gone."""
    core, namespace = jobs.core, jobs.namespace
    apps = client.AppsV1Api(core.api_client)
    listed: dict[str, list[Any]] = {
        "Pod": core.list_namespaced_pod(namespace).items,
        "Job": jobs.batch.list_namespaced_job(namespace).items,
        # The rendezvous store: its Deployment's ReplicaSet owns its pod.
        "Deployment": apps.list_namespaced_deployment(namespace).items,
        "ReplicaSet": apps.list_namespaced_replica_set(namespace).items,
        "Service": core.list_namespaced_service(namespace).items,
        "ConfigMap": core.list_namespaced_config_map(namespace).items,
        "ServiceAccount": core.list_namespaced_service_account(namespace).items,
    }
    live = {item.metadata.uid for items in listed.values() for item in items}
    trainingjobs = jobs.objects.list_namespaced_custom_object(
        GROUP, VERSION, namespace, jobs.plural
    )
    live |= {item["metadata"]["uid"] for item in cast(dict[str, Any], trainingjobs)["items"]}
    return [
        f"{kind}/{item.metadata.name}"
        for kind, items in listed.items()
        for item in items
        if any(ref.uid not in live for ref in item.metadata.owner_references or [])
    ]


@pytest.mark.parametrize(
    ("fault", "cause", "charged"),
    [
        pytest.param(delete_pod, "PodDeleted", False, id="worker-pod-deleted"),
        pytest.param(kill_training_process, "RetryableExitCode", True, id="worker-sigkilled"),
    ],
)
def test_a_run_past_its_deadlines_survives_losing_a_worker(
    e2e_api: client.ApiClient,
    restricted_namespace: str,
    pod_s3: PodS3,
    fault: Callable[[Jobs, client.V1Pod], None],
    cause: str,
    charged: bool,
) -> None:
    jobs = Jobs(e2e_api, restricted_namespace)
    bucket = new_bucket(jobs.core, restricted_namespace, pod_s3)
    pod_s3.client.create_bucket(Bucket=bucket)
    created = jobs.create_object(checkpointed_job(pod_s3, bucket))
    name = created["metadata"]["name"]
    born = parse_time(created["metadata"]["creationTimestamp"])

    def past_deadlines_with_a_checkpoint() -> int | None:
        status = jobs.status(name)
        checkpoint = ((status.get("progress") or {}).get("lastCheckpoint") or {}).get("step")
        old_enough = datetime.now(UTC) - born > PAST_DEADLINES
        running = status.get("phase") == "Running"
        return int(checkpoint) if checkpoint and old_enough and running else None

    checkpoint_step = wait_for(
        past_deadlines_with_a_checkpoint, f"{name} running past its deadlines", TIMEOUT_S
    )
    victim = running_worker(jobs, name)
    faulted_at = datetime.now(UTC)
    fault(jobs, victim)

    # Each report once the restart is recorded: (when its step advanced, the step).
    resumed: list[tuple[datetime, int]] = []

    def restarted_and_finished() -> bool:
        status = jobs.status(name)
        progress = status.get("progress") or {}
        if status.get("restarts", {}).get("history") and progress.get("updatedAt"):
            resumed.append((parse_time(progress["updatedAt"]), progress["step"]))
        return status.get("phase") in ("Succeeded", "Failed")

    wait_for(restarted_and_finished, f"{name} to finish after the fault", TIMEOUT_S)
    status = jobs.wait_succeeded(name, STEPS)
    restarts = status["restarts"]
    assert [(r["pod"], r["cause"], r["charged"]) for r in restarts["history"]] == [
        (victim.metadata.name, cause, charged)
    ], restarts
    assert (restarts["count"], restarts["disruptions"]) == (int(charged), int(not charged))
    after_fault = [(when, step) for when, step in resumed if when > faulted_at]
    assert after_fault, resumed
    assert min(step for _, step in after_fault) >= checkpoint_step, after_fault
    # The replaced group's Job and pods go by garbage collection, a while after the restart.
    left: list[str] = []

    def collected() -> bool:
        left[:] = orphans(jobs)
        return not left

    try:
        wait_for(collected, "the objects whose owners are gone to be collected")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}: still there: {left}") from None
    seconds = (after_fault[0][0] - faulted_at).total_seconds()
    print(f"kubeforge: chaos: {cause} at age {PAST_DEADLINES}: first step {seconds:.1f} s after it")
