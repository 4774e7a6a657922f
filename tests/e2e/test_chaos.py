"""Faults on a run older than its deadlines, on real pods: the job must resume and finish.

Each scenario starts the TrainingJob sample (the MLP, 2 workers, checkpoints in the tests'
SeaweedFS) with shortened startDeadlineSeconds and progressDeadlineSeconds, waits until the job
has run past both and committed a checkpoint, then breaks one worker:

- its pod is deleted (what a user's `kubectl delete pod` or a controller does): a disruption,
  recorded as PodDeleted and not charged to failurePolicy.maxRestarts;
- its training process is SIGKILLed inside the container (`kubectl exec ... kill -9`), as the
  kernel or a crash would end it: the launcher exits with the signal's code (137), a retryable
  code, so the restart is RetryableExitCode and charged;
- its node is taken by a pod of a higher PriorityClass that fits only without one worker: real
  kube-scheduler preemption, recorded as Preempted and not charged (the preemptor ends after a
  few seconds, so the replacement finds room);
- its container runs out of memory under its limit (its /dev/shm is filled, and the kernel kills
  the trainer): OOMKilled, charged.

Each asserts the final phase, the one restart with its cause and charge, the final step equal to
spec.trainer.steps, that the group resumed from its checkpoint (no step reported by the new group
is below it), that the samples consumed (the trainer's sample log, followed in every pod,
`tests/e2e/sample_logs.py`) are those of an uninterrupted run, position for position, and that
no object is left whose owner is gone. The seconds from the fault to the new group's first step
are printed (`pytest -rP` shows them), never asserted.

A program of the user's own (spec.command) that exits, past the same deadlines, with a code of
failurePolicy.permanentExitCodes fails the job (PermanentExitCode) without a restart: the code
reaches the operator through torchrun, in the launcher's exit status and termination message.

Two more faults take a worker's whole node (a kind node is a Docker container): it is stopped
(`docker stop`), or paused (`docker pause`) until the worker is replaced and then resumed, its
kubelet and the old worker coming back to a group that went on without them. The node turns
NotReady after kube-controller-manager's node-monitor grace period (hack/kind.sh shortens it to
20 s), the worker is recorded as NodeLost (not charged), evicted after
failurePolicy.unreachableNodeSeconds, force-deleted by the operator once it has stayed
terminating stuckTerminationSeconds past its grace period, and replaced on the other worker
node. They need two worker nodes (KUBEFORGE_KIND_WORKERS=2 hack/e2e-kind.sh) and Docker on this
machine, and skip without them; the other faults need one worker node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.utils import parse_quantity

from kubeforge.api.trainingjob import TrainerConfig
from kubeforge_trainer.digits import DigitsSource
from kubeforge_trainer.order import GlobalOrder, SampleIds
from tests.e2e.conftest import PodS3
from tests.e2e.jobs import SMALL_WORKER, TIMEOUT_S, Jobs, new_bucket, s3_env, small_sample
from tests.e2e.sample_logs import SAMPLE_LOG_ENV, SampleLogs
from tests.helm import tool_binary
from tests.polling import wait_for
from tests.resources import GROUP, VERSION, condition
from tests.workloads.trainer_runs import ConsumedSamples

pytestmark = pytest.mark.timeout(2 * TIMEOUT_S)
STEPS = 8000
CHECKPOINT_EVERY = 500
START_DEADLINE_S = 30
PROGRESS_DEADLINE_S = 60
# The job's age at the fault: past both deadlines, with 10 s to spare.
PAST_DEADLINES = timedelta(seconds=max(START_DEADLINE_S, PROGRESS_DEADLINE_S) + 10)
# The pids of the container's processes that run the trainer module: not the launcher (whose
# own arguments name the module too, after its rendezvous flags), nor this script (both).
TRAINER_PIDS = r"""
trainer_pids() {
  for dir in /proc/[0-9]*; do
    command=$(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null) || continue
    case $command in
      *--rdzv*) ;;
      *kubeforge_trainer*) echo "${dir#/proc/}" ;;
    esac
  done
}
pids=$(trainer_pids)
"""
KILL_TRAINING_PROCESSES = TRAINER_PIDS + "kill -KILL $pids && echo $pids\n"
# More than the worker's memory limit, written to its shared-memory emptyDir.
EXHAUST_MEMORY = "head -c 8G /dev/zero >/dev/shm/kubeforge-e2e-fill"
PREEMPTOR = "kubeforge-e2e-preemptor"
# A program of the user's own (spec.command), run by torchrun as given (--no-python): rank 0
# reports a step a second through the progress contract, and every rank goes on until the file
# EXIT_NOW appears in its container, then exits with the code its argument names.
EXIT_NOW = "/tmp/kubeforge-e2e-exit"
CUSTOM_PROGRAM = [
    "--no-python",
    "python",
    "-c",
    f"""
import os, pathlib, sys, time
from datetime import UTC, datetime
from kubeforge.api.trainingjob import ProgressStatus
from kubeforge.progress import ProgressReporter, sink_from_env
reporter = ProgressReporter(sink_from_env())
step = 0
while not pathlib.Path("{EXIT_NOW}").exists():
    step += 1
    if os.environ["RANK"] == "0":
        reporter.report(ProgressStatus(step=step, updated_at=datetime.now(UTC)))
    time.sleep(1)
sys.exit(int(sys.argv[1]))
""",
]
PERMANENT_EXIT_CODE = 2
# A lost node's worker: evicted 5 s after its node turns NotReady, given 15 s to stop (its kubelet
# is gone, so it never does), then force-deleted 5 s later.
NODE_LOSS_POLICY = {"unreachableNodeSeconds": 5, "stuckTerminationSeconds": 5}
NODE_LOSS_GRACE_S = 15


def checkpointed_job(jobs: Jobs, s3: PodS3) -> dict[str, Any]:
    """The sample with checkpoints in a new bucket of `s3` and both deadlines shortened."""
    bucket = new_bucket(jobs.core, jobs.namespace, s3)
    s3.client.create_bucket(Bucket=bucket)
    job = small_sample(steps=STEPS)
    spec = job["spec"]
    name = job["metadata"]["name"]
    spec["checkpoint"] = {
        "uri": f"s3://{bucket}/checkpoints/{name}",
        "intervalSteps": CHECKPOINT_EVERY,
    }
    spec["env"] = [*s3_env(s3), SAMPLE_LOG_ENV]
    spec["startDeadlineSeconds"] = START_DEADLINE_S
    spec["progressDeadlineSeconds"] = PROGRESS_DEADLINE_S
    return job


def worker_pods(jobs: Jobs, name: str) -> list[client.V1Pod]:
    selector = f"batch.kubernetes.io/job-name={name}"
    pods: list[client.V1Pod] = jobs.core.list_namespaced_pod(
        jobs.namespace, label_selector=selector
    ).items
    return pods


def running_worker(jobs: Jobs, name: str) -> client.V1Pod:
    """A running worker, on a node without kubeforge's operator where there is one: losing that
    node would also stop the operator for Kubernetes' 300 s before its pod is evicted and
    replaced (the chart's `tolerations` shorten that), a fault of the operator, not the job."""
    operator_namespace = os.environ.get("KUBEFORGE_HELM_NAMESPACE", "kubeforge-system")
    operator_nodes = {
        pod.spec.node_name for pod in jobs.core.list_namespaced_pod(operator_namespace).items
    }
    running = [
        p
        for p in worker_pods(jobs, name)
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    ]
    return min(running, key=lambda pod: pod.spec.node_name in operator_nodes)


def delete_pod(jobs: Jobs, pod: client.V1Pod) -> None:
    jobs.core.delete_namespaced_pod(pod.metadata.name, jobs.namespace)


def run_in(
    jobs: Jobs, pod: client.V1Pod, script: str, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`kubectl exec` of a shell script into the worker's container, as an operator of the
    cluster would type it."""
    return subprocess.run(
        [tool_binary("kubectl"), "--kubeconfig", os.environ["KUBEFORGE_KUBECONFIG"], "exec",
         "-n", jobs.namespace, pod.metadata.name, "--", "sh", "-c", script],
        capture_output=True, text=True, timeout=120, check=check,
    )  # fmt: skip


def kill_training_process(jobs: Jobs, pod: client.V1Pod) -> None:
    """The kill, typed into the worker's container."""
    killed = run_in(jobs, pod, KILL_TRAINING_PROCESSES).stdout
    assert killed.split(), f"no training process found in {pod.metadata.name}: {killed!r}"


def preempt(jobs: Jobs, victim: client.V1Pod) -> None:
    """A pod of a higher PriorityClass that fits the worker's node only without one worker, as
    a production job would take the node. kube-scheduler picks the victim (the worker started
    last) and marks it PreemptionByScheduler; the preemptor sleeps a few seconds and ends, so
    the replacement finds room again."""
    node = jobs.core.read_node(victim.spec.node_name)
    on_node = jobs.core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node.metadata.name}"
    ).items
    requested = sum(
        parse_quantity((c.resources.requests or {}).get("cpu", "0"))
        for pod in on_node
        if pod.status.phase not in ("Succeeded", "Failed")
        for c in pod.spec.containers
    )
    worker_cpu = parse_quantity(SMALL_WORKER["requests"]["cpu"])
    cpu = parse_quantity(node.status.allocatable["cpu"]) - requested + worker_cpu
    scheduling = client.SchedulingV1Api(jobs.core.api_client)
    try:
        scheduling.create_priority_class(
            client.V1PriorityClass(metadata=client.V1ObjectMeta(name=PREEMPTOR), value=1000000)
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    container = victim.spec.containers[0]
    preemptor = client.V1Pod(
        metadata=client.V1ObjectMeta(name=PREEMPTOR),
        spec=client.V1PodSpec(
            priority_class_name=PREEMPTOR,
            restart_policy="Never",
            node_selector={"kubernetes.io/hostname": node.metadata.name},
            security_context=victim.spec.security_context,
            containers=[
                client.V1Container(
                    name="preemptor",
                    image=container.image,
                    image_pull_policy="IfNotPresent",
                    command=["sleep", "5"],
                    security_context=container.security_context,
                    resources=client.V1ResourceRequirements(
                        requests={"cpu": f"{int(cpu * 1000)}m", "memory": "16Mi"},
                        limits={"memory": "16Mi"},
                    ),
                )
            ],
        ),
    )
    jobs.core.create_namespaced_pod(jobs.namespace, preemptor)


@pytest.fixture(scope="module", autouse=True)
def preemptor_class(e2e_api: client.ApiClient) -> Iterator[None]:
    """The PriorityClass `preempt` makes is cluster-wide: gone after the module."""
    yield
    try:
        client.SchedulingV1Api(e2e_api).delete_priority_class(PREEMPTOR)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def exhaust_memory(jobs: Jobs, victim: client.V1Pod) -> None:
    """Fills the worker's memory limit through its /dev/shm (a memory-backed emptyDir, whose
    pages count against the container as DataLoader workers' shared tensors do): the kernel's
    OOM killer ends the container's largest process, the trainer, and the kubelet reports the
    container OOMKilled. The exec ends with the container, so its exit status says nothing."""
    run_in(jobs, victim, EXHAUST_MEMORY, check=False)


def uninterrupted_order(job: dict[str, Any]) -> SampleIds:
    """The samples an uninterrupted run of the job consumes, by stream position: the global
    order of its seed over the MLP's dataset, for all its steps."""
    trainer = TrainerConfig.model_validate(job["spec"]["trainer"])
    order = GlobalOrder(DigitsSource("train").block_sizes, trainer.seed)
    return order.samples(0, trainer.steps * trainer.batch.global_size)


def assert_consumed_as_uninterrupted(
    consumed: ConsumedSamples, job: dict[str, Any], unread_before: int = 0
) -> None:
    """Every position of the run consumed once, with the sample an uninterrupted run has there.
    A stopped node takes its worker's log with it: the lines the follower had not read yet are
    lost, so with `unread_before` positions of steps below it may be missing, where another rank's
    line shows that the step was trained (its gradients were averaged over every rank)."""
    expected = uninterrupted_order(job)
    assert consumed.steps == list(range(1, STEPS + 1)), "steps missing from the sample logs"
    batch = TrainerConfig.model_validate(job["spec"]["trainer"]).batch.global_size
    missing = set(range(len(expected))) - set(consumed.by_position)
    unread = sorted({p // batch + 1 for p in missing})
    assert all(step < unread_before for step in unread), f"positions missing, of steps {unread}"
    differ = [
        p
        for p, sample in enumerate(expected.tolist())
        if p not in missing and consumed.by_position[p] != sample
    ]
    assert not differ, f"{len(differ)} positions hold other samples, from {differ[0]}"


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


def assert_no_orphans(jobs: Jobs) -> None:
    """Waits for the objects whose owners are gone to be collected: a replaced group's Job and
    pods go by garbage collection, a while after the restart."""
    left: list[str] = []

    def collected() -> bool:
        left[:] = orphans(jobs)
        return not left

    try:
        wait_for(collected, "the objects whose owners are gone to be collected")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}: still there: {left}") from None


def running_past_deadlines(status: dict[str, Any], born: datetime) -> bool:
    return status.get("phase") == "Running" and datetime.now(UTC) - born > PAST_DEADLINES


def worker_nodes(core: client.CoreV1Api) -> list[str]:
    nodes = core.list_node().items
    return [
        node.metadata.name
        for node in nodes
        if "node-role.kubernetes.io/control-plane" not in (node.metadata.labels or {})
    ]


def docker_node(action: str, node: str) -> None:
    """`docker <action>` of a kind node: its container bears the node's name."""
    subprocess.run(
        ["docker", action, node], check=True, capture_output=True, text=True, timeout=120
    )


def node_state(node: str) -> str | None:
    """The Docker state of a kind node's container (running, paused, exited), or None where
    Docker does not know the node."""
    found = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Status}}", node],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return found.stdout.strip() if found.returncode == 0 else None


def node_ready(core: client.CoreV1Api, node: str) -> bool:
    conditions = core.read_node(node).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def stop_node(jobs: Jobs, victim: client.V1Pod) -> None:
    """The worker's node is switched off: its kubelet and containers are gone until the test
    ends (`nodes_restored` starts it again)."""
    docker_node("stop", victim.spec.node_name)


def pause_node(jobs: Jobs, victim: client.V1Pod) -> None:
    """The worker's node freezes (its kubelet, runtime and the worker's processes) until the
    worker has been evicted and force-deleted, then resumes: its kubelet comes back, and the old
    worker runs again for the moment the kubelet takes to kill it."""
    node, name = victim.spec.node_name, victim.metadata.name
    docker_node("pause", node)

    def worker_gone() -> bool:
        pods = jobs.core.list_namespaced_pod(jobs.namespace, field_selector=f"metadata.name={name}")
        return not pods.items

    try:
        wait_for(worker_gone, f"{victim.metadata.name} on the paused node {node} to be deleted")
    finally:
        docker_node("unpause", node)


@pytest.fixture
def nodes_restored(e2e_api: client.ApiClient) -> Iterator[list[str]]:
    """The worker nodes, skipping the test where there are fewer than two or Docker does not run
    them; after the test, every one that is stopped or paused runs again and is Ready."""
    core = client.CoreV1Api(e2e_api)
    nodes = worker_nodes(core)
    if len(nodes) < 2 or shutil.which("docker") is None or None in map(node_state, nodes):
        pytest.skip(
            "losing a node needs a kind cluster with two worker nodes, run by Docker on this "
            f"machine (KUBEFORGE_KIND_WORKERS=2 hack/e2e-kind.sh); worker nodes here: {nodes}"
        )
    yield nodes
    for node in nodes:
        state = node_state(node)
        if state == "paused":
            docker_node("unpause", node)
        elif state == "exited":
            docker_node("start", node)
    for node in nodes:
        wait_for(partial(node_ready, core, node), f"the node {node} to be Ready again", TIMEOUT_S)


@pytest.mark.parametrize(
    ("fault", "cause", "charged"),
    [
        pytest.param(delete_pod, "PodDeleted", False, id="worker-pod-deleted"),
        pytest.param(kill_training_process, "RetryableExitCode", True, id="worker-sigkilled"),
        pytest.param(preempt, "Preempted", False, id="worker-preempted"),
        pytest.param(exhaust_memory, "OOMKilled", True, id="worker-oom-killed"),
    ],
)
def test_a_run_past_its_deadlines_survives_losing_a_worker(
    e2e_api: client.ApiClient,
    restricted_namespace: str,
    pod_s3: PodS3,
    fault: Callable[[Jobs, client.V1Pod], None],
    cause: str,
    charged: bool,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    jobs = Jobs(e2e_api, restricted_namespace)
    job = checkpointed_job(jobs, pod_s3)
    survives(jobs, job, fault, (cause, charged), tmp_path / "samples", request)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(stop_node, id="worker-node-stopped"),
        pytest.param(pause_node, id="worker-node-paused"),
    ],
)
def test_a_run_past_its_deadlines_survives_losing_a_node(
    e2e_api: client.ApiClient,
    restricted_namespace: str,
    pod_s3: PodS3,
    nodes_restored: list[str],
    fault: Callable[[Jobs, client.V1Pod], None],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    jobs = Jobs(e2e_api, restricted_namespace)
    job = checkpointed_job(jobs, pod_s3)
    job["spec"]["failurePolicy"].update(NODE_LOSS_POLICY)
    job["spec"]["terminationGracePeriodSeconds"] = NODE_LOSS_GRACE_S
    survives(jobs, job, fault, ("NodeLost", False), tmp_path / "samples", request)


def survives(
    jobs: Jobs,
    job: dict[str, Any],
    fault: Callable[[Jobs, client.V1Pod], None],
    restart: tuple[str, bool],
    samples: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Runs `job` past its deadlines with a checkpoint, breaks one running worker with `fault`,
    and asserts that the job finishes as an uninterrupted run would, after the one `restart`
    (its cause, and whether it was charged)."""
    cause, charged = restart
    created = jobs.create_object(job)
    name = created["metadata"]["name"]
    born = parse_time(created["metadata"]["creationTimestamp"])
    logs = SampleLogs(jobs.core, jobs.namespace, name, samples)
    request.addfinalizer(logs.stop)  # also when the test fails before reading them

    def past_deadlines_with_a_checkpoint() -> int | None:
        logs.follow()
        status = jobs.status(name)
        checkpoint = ((status.get("progress") or {}).get("lastCheckpoint") or {}).get("step")
        return int(checkpoint) if checkpoint and running_past_deadlines(status, born) else None

    checkpoint_step = wait_for(
        past_deadlines_with_a_checkpoint, f"{name} running past its deadlines", TIMEOUT_S
    )
    victim = running_worker(jobs, name)
    group = {pod.metadata.name for pod in worker_pods(jobs, name)}
    # Under a heavy load the first step can come after progressDeadlineSeconds: the group is then
    # restarted as Hung before the fault. Only the restarts recorded after the fault are its own.
    before: dict[str, Any] = jobs.status(name).get("restarts") or {}
    faulted_at = datetime.now(UTC)
    fault(jobs, victim)

    # Each report once the restart is recorded: (when its step advanced, the step); and when the
    # last worker of the new group was created (the old group had stopped by then).
    resumed: list[tuple[datetime, int]] = []
    regrouped: list[datetime] = []

    def restarted_and_finished() -> bool:
        logs.follow()
        status = jobs.status(name)
        progress = status.get("progress") or {}
        if status.get("restarts", {}).get("history") and progress.get("updatedAt"):
            resumed.append((parse_time(progress["updatedAt"]), progress["step"]))
        if not regrouped:
            live = [
                pod.metadata.creation_timestamp
                for pod in worker_pods(jobs, name)
                if pod.status.phase not in ("Succeeded", "Failed")
                and not pod.metadata.deletion_timestamp
            ]
            if live and min(live) > faulted_at:
                regrouped.append(max(live))
        return status.get("phase") in ("Succeeded", "Failed")

    wait_for(restarted_and_finished, f"{name} to finish after the fault", TIMEOUT_S)
    status = jobs.wait_succeeded(name, STEPS)
    restarts = status["restarts"]
    history = restarts["history"][len(before.get("history") or []) :]
    assert [(r["cause"], r["charged"]) for r in history] == [(cause, charged)], restarts
    # A cause of its own names its pod. A plain exit code does not: the killed worker's peer
    # loses the collective and exits within the same moment, with a plain code too, and either
    # stop may reach the operator first.
    blamed = history[0]["pod"]
    # kube-scheduler, not the test, chooses whom to preempt.
    known = cause not in ("RetryableExitCode", "Preempted")
    assert blamed == victim.metadata.name if known else blamed in group, restarts
    added = (
        restarts["count"] - before.get("count", 0),
        restarts["disruptions"] - before.get("disruptions", 0),
    )
    assert added == (int(charged), int(not charged)), (before, restarts)
    assert regrouped, "no new group of workers was seen"
    after_fault = [(when, step) for when, step in resumed if when > regrouped[0]]
    assert after_fault, (regrouped, resumed)
    assert min(step for _, step in after_fault) >= checkpoint_step, after_fault
    assert_no_orphans(jobs)
    # A lost node's log lines of the steps before the group resumed may never have been read.
    lost_log = min(step for _, step in after_fault) if cause == "NodeLost" else 0
    assert_consumed_as_uninterrupted(logs.consumed(), job, unread_before=lost_log)
    seconds = (after_fault[0][0] - faulted_at).total_seconds()
    print(
        f"kubeforge: chaos: {cause} at age {PAST_DEADLINES}: first step {seconds:.1f} s after it "
        f"(restarts before the fault: {before.get('history') or 'none'})"
    )


def test_a_permanent_exit_code_of_a_custom_command_fails_a_run_past_its_deadlines(
    e2e_api: client.ApiClient, restricted_namespace: str
) -> None:
    """The code reaches the operator through torchrun: kubeforge.launch exits with the failed
    rank's code and writes it to the container's termination message."""
    jobs = Jobs(e2e_api, restricted_namespace)
    job = small_sample()
    spec = job["spec"]
    del spec["trainer"]
    spec["command"] = [*CUSTOM_PROGRAM, str(PERMANENT_EXIT_CODE)]
    spec["failurePolicy"]["permanentExitCodes"] = [PERMANENT_EXIT_CODE]
    spec["startDeadlineSeconds"] = START_DEADLINE_S
    spec["progressDeadlineSeconds"] = PROGRESS_DEADLINE_S
    created = jobs.create_object(job)
    name = created["metadata"]["name"]
    born = parse_time(created["metadata"]["creationTimestamp"])

    def past_deadlines_with_progress() -> bool:
        status = jobs.status(name)
        return bool(jobs.step_of(status)) and running_past_deadlines(status, born)

    wait_for(past_deadlines_with_progress, f"{name} running past its deadlines", TIMEOUT_S)
    victim = running_worker(jobs, name)
    group = {pod.metadata.name for pod in worker_pods(jobs, name)}
    faulted_at = datetime.now(UTC)
    run_in(jobs, victim, f"touch {EXIT_NOW}")

    status = jobs.wait_done(name)
    seconds = (datetime.now(UTC) - faulted_at).total_seconds()
    assert status["phase"] == "Failed", status
    failed = condition(status, "Failed")
    assert failed["reason"] == "PermanentExitCode", status
    assert f"exit code {PERMANENT_EXIT_CODE}" in failed["message"], status
    restarts = status.get("restarts") or {}
    assert not restarts.get("history"), restarts
    assert (restarts.get("count", 0), restarts.get("disruptions", 0)) == (0, 0), restarts
    ended = jobs.core.read_namespaced_pod(victim.metadata.name, jobs.namespace)
    terminated = ended.status.container_statuses[0].state.terminated
    assert terminated.exit_code == PERMANENT_EXIT_CODE, terminated
    assert f"exited with {PERMANENT_EXIT_CODE}" in terminated.message, terminated
    assert {pod.metadata.name for pod in worker_pods(jobs, name)} <= group, "a worker was replaced"
    assert_no_orphans(jobs)
    print(
        f"kubeforge: chaos: PermanentExitCode at age {PAST_DEADLINES}: Failed {seconds:.1f} s later"
    )
