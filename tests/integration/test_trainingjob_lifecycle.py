"""A TrainingJob's life beyond start and finish, against the real control plane and operator.

Real: the apiserver (RBAC on a real ServiceAccount token, the status subresource, garbage
collection), the Job controller and the operator run in-process. Simulated: kwok runs the pods;
the trainer's progress reports are written by the test with the same sink the trainer uses
(`kubeforge.progress.ConfigMapSink`), authenticated as the job's ServiceAccount.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from kubeforge.api.trainingjob import ProgressStatus, TrainingJobStatus, ValidationProgress
from kubeforge.progress import ConfigMapSink
from tests.conftest import Rig
from tests.integration.conftest import OperatorThread
from tests.integration.trainingjobs import Jobs, condition, spec_with
from tests.kube import kubeforge_status
from tests.polling import wait_for
from tests.resources import read_or_none

pytestmark = pytest.mark.integration
LOST_COUNT = "kubeforge_trainingjob_restart_lost_seconds_count"


def trainer_sink(rig: Rig, jobs: Jobs, name: str, config_map: str) -> ConfigMapSink:
    """A progress sink that authenticates as the job's ServiceAccount, as rank 0 does in a pod."""
    wait_for(
        lambda: read_or_none(
            lambda: jobs.core.read_namespaced_service_account(f"{name}-trainer", jobs.namespace)
        ),
        "the trainer's ServiceAccount",
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    token = jobs.core.create_namespaced_service_account_token(
        f"{name}-trainer", jobs.namespace, request
    ).status.token
    kubeconfig = yaml.safe_load(Path(rig.kubeconfig).read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    return ConfigMapSink(
        api_url=cluster["server"],
        namespace=jobs.namespace,
        name=config_map,
        token=token,
        ca_file=Path(cluster["certificate-authority"]),
    )


def test_rank_zero_reports_progress_with_least_privilege(
    rig: Rig, jobs: Jobs, operator: OperatorThread
) -> None:
    jobs.create("reporting", spec_with())
    jobs.running_pods("reporting", 1)
    sink = trainer_sink(rig, jobs, "reporting", "reporting-progress")
    now = datetime.now(UTC).replace(microsecond=0)
    sink.write(
        ProgressStatus(
            step=120,
            total_steps=1000,
            loss=1.25,
            samples_per_second=512.0,
            updated_at=now,
            validation=ValidationProgress(
                step=100, loss=1.5, perplexity=4.48, bits_per_byte=0.75, tokens=65536
            ),
        )
    )
    status = jobs.wait(
        "reporting", "progress step 120", lambda s: (s.get("progress") or {}).get("step") == 120
    )["status"]
    assert status["progress"]["loss"] == 1.25
    assert status["progress"]["samplesPerSecond"] == 512.0
    assert status["progress"]["totalSteps"] == 1000
    assert status["progress"]["validation"] == {
        "step": 100,
        "loss": 1.5,
        "perplexity": 4.48,
        "bitsPerByte": 0.75,
        "tokens": 65536,
    }

    # The same token may write nothing else: not the job's config, not the TrainingJob.
    other = ConfigMapSink(
        sink.api_url, sink.namespace, "reporting-config", sink.token, sink.ca_file
    )
    with pytest.raises(urllib.error.HTTPError) as denied:
        other.write(ProgressStatus(step=1))
    denied.value.close()
    assert denied.value.code == 403
    read_job = urllib.request.Request(  # noqa: S310
        f"{sink.api_url}/apis/kubeforge.dev/v1alpha1/namespaces/{sink.namespace}/trainingjobs",
        headers={"Authorization": f"Bearer {sink.token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        urllib.request.urlopen(  # noqa: S310
            read_job, context=ssl.create_default_context(cafile=str(sink.ca_file))
        )
    forbidden.value.close()
    assert forbidden.value.code == 403


def test_no_progress_for_the_deadline_restarts_the_group_as_hung(
    rig: Rig, jobs: Jobs, operator: OperatorThread
) -> None:
    jobs.create("stuck", spec_with(progressDeadlineSeconds=3, failurePolicy={"maxRestarts": 5}))
    first = jobs.running_pods("stuck", 1)[0]
    jobs.wait_phase("stuck", "Running")
    sink = trainer_sink(rig, jobs, "stuck", "stuck-progress")
    sink.write(ProgressStatus(step=5, updated_at=datetime.now(UTC)))
    status = jobs.wait(
        "stuck",
        "a restart as Hung",
        lambda s: any(r["cause"] == "Hung" for r in s.get("restarts", {}).get("history", [])),
        timeout=30,
    )["status"]
    assert status["restarts"]["count"] >= 1
    # The group is replaced by a new worker Job and runs again.
    jobs.running_pods("stuck", 1, replacing=[first])
    jobs.wait_event("stuck", "Hung")


def test_goodput_shows_what_a_restart_cost(rig: Rig, jobs: Jobs, operator: OperatorThread) -> None:
    lost_before = REGISTRY.get_sample_value(LOST_COUNT)
    jobs.create("measured", spec_with(failurePolicy={"maxRestarts": 2}))
    (first,) = jobs.running_pods("measured", 1)
    sink = trainer_sink(rig, jobs, "measured", "measured-progress")
    began = datetime.now(UTC)
    sink.write(ProgressStatus(step=10, updated_at=began, started_at=began, first_step_at=began))
    jobs.wait(
        "measured",
        "the first attempt's first step",
        lambda s: "firstStepAt" in (s.get("goodput") or {}).get("attempts", [{}])[0],
    )
    jobs.end_pod(first, 3)
    jobs.wait("measured", "a restart", lambda s: s.get("restarts", {}).get("count") == 1)
    jobs.running_pods("measured", 1, replacing=[first])
    resumed = datetime.now(UTC)
    sink.write(
        ProgressStatus(step=11, updated_at=resumed, started_at=resumed, first_step_at=resumed)
    )

    def restart_settled(status: dict[str, Any]) -> bool:
        attempts = (status.get("goodput") or {}).get("attempts", [])
        return len(attempts) == 2 and "lostSeconds" in attempts[1]

    status = jobs.wait("measured", "the restart's lost time", restart_settled)["status"]
    goodput = TrainingJobStatus.model_validate(status).goodput
    assert goodput is not None
    failure = status["restarts"]["history"][0]["time"]
    first_attempt, restarted = goodput.attempts
    assert first_attempt.first_step_at == began
    assert restarted.began_at == datetime.fromisoformat(failure)
    assert restarted.started_at == restarted.first_step_at == resumed
    assert restarted.time_to_first_step_seconds == round(
        (resumed - restarted.began_at).total_seconds(), 1
    )
    # No checkpoint: all the first attempt trained, from its first step to the failure, is redone.
    # (The failure's time has whole seconds: it may read as before the first step.)
    assert restarted.rework_seconds == max(
        0, round((restarted.began_at - began).total_seconds(), 1)
    )
    assert restarted.lost_seconds == pytest.approx(
        restarted.time_to_first_step_seconds + restarted.rework_seconds
    )
    assert goodput.ratio is None or 0 <= goodput.ratio <= 1
    assert goodput.productive_seconds == max(
        0, goodput.wall_seconds - goodput.startup_seconds - goodput.lost_seconds
    )
    shown = kubeforge_status(rig.kubeconfig, jobs.namespace, "measured")
    assert "GOODPUT" in shown, shown
    began_at = f"{restarted.began_at:%Y-%m-%d %H:%M:%S}"
    assert f"restart at {began_at}: first step after " in shown, shown
    # The operator observes its metrics after it wrote the status.
    wait_for(
        lambda: (REGISTRY.get_sample_value(LOST_COUNT) or 0) >= (lost_before or 0) + 1,
        "the restart's lost time in the metrics",
    )


def test_active_deadline_fails_the_job(jobs: Jobs, operator: OperatorThread) -> None:
    jobs.create("bounded", spec_with(activeDeadlineSeconds=3))
    jobs.running_pods("bounded", 1)
    status = jobs.wait_phase("bounded", "Failed", timeout=30)["status"]
    assert condition(status, "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: jobs.worker_job("bounded").spec.suspend, "the workers to be stopped")
    wait_for(lambda: not jobs.pods("bounded"), "the workers to be removed")


def test_finished_job_is_deleted_after_its_ttl(jobs: Jobs, operator: OperatorThread) -> None:
    jobs.create("ephemeral", spec_with(ttlSecondsAfterFinished=2))
    for pod in jobs.running_pods("ephemeral", 1):
        jobs.end_pod(pod, 0)
    jobs.wait_phase("ephemeral", "Succeeded")
    wait_for(lambda: read_or_none(lambda: jobs.get("ephemeral")) is None, "the TTL deletion", 30)


def test_preemption_is_recorded_but_not_charged(jobs: Jobs, operator: OperatorThread) -> None:
    jobs.create("preempted", spec_with(failurePolicy={"maxRestarts": 0}))
    (pod,) = jobs.running_pods("preempted", 1)
    # What the scheduler does to a preempted pod: a DisruptionTarget condition, then the kill.
    jobs.core.patch_namespaced_pod(
        pod.metadata.name,
        jobs.namespace,
        {"metadata": {"annotations": {"kubeforge.dev/test-disruption": "PreemptionByScheduler"}}},
    )
    status = jobs.wait(
        "preempted", "a disruption", lambda s: s.get("restarts", {}).get("disruptions") == 1
    )["status"]
    assert status["restarts"].get("count", 0) == 0
    assert status["restarts"]["history"][0]["cause"] == "Preempted"
    # maxRestarts 0 and still going: the Job's podFailurePolicy ignored it too.
    jobs.running_pods("preempted", 1)
    assert jobs.wait_phase("preempted", "Running")


def test_kueue_queue_name_creates_the_job_suspended(jobs: Jobs, operator: OperatorThread) -> None:
    """The operator's side of a queue: the worker Job is created suspended with Kueue's label,
    and the operator never suspends it again once it runs. Kueue itself is not in the rig: the
    test unsuspends the Job where Kueue's controller would, so the integration with Kueue (its
    admission, its Workload, a restart's new Job admitted again) is unproven here."""
    jobs.create("queued", spec_with(scheduling={"queueName": "team-a"}))
    job = wait_for(lambda: read_or_none(lambda: jobs.worker_job("queued")), "the worker Job")
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job.spec.suspend is True
    status = jobs.wait_reason("queued", "Queued")["status"]
    assert status["phase"] == "Pending"
    # Admission, as Kueue would do it (a stand-in): unsuspend the Job.
    jobs.batch.patch_namespaced_job("queued", jobs.namespace, {"spec": {"suspend": False}})
    jobs.running_pods("queued", 1)
    jobs.wait_phase("queued", "Running")
    assert jobs.worker_job("queued").spec.suspend is False


@pytest.fixture
def volcano_pod_groups(api_client: client.ApiClient) -> None:
    """A minimal PodGroup CRD of Volcano's group, so that the operator can create PodGroups."""
    extensions = client.ApiextensionsV1Api(api_client)
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "podgroups.scheduling.volcano.sh"},
        "spec": {
            "group": "scheduling.volcano.sh",
            "scope": "Namespaced",
            "names": {"plural": "podgroups", "singular": "podgroup", "kind": "PodGroup"},
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    try:
        extensions.create_custom_resource_definition(crd)  # type: ignore[arg-type]
    except ApiException as error:
        if error.status != 409:
            raise
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in extensions.read_custom_resource_definition(
                crd["metadata"]["name"]
            ).status.conditions
            or []
        ),
        "the PodGroup CRD",
    )


def test_gang_scheduling_creates_a_pod_group(
    jobs: Jobs, volcano_pod_groups: None, start_operator: Any
) -> None:
    start_operator()  # after the PodGroup CRD exists, so that the operator watches PodGroups
    jobs.create("gang", spec_with(replicas=2, minReplicas=2, scheduling={"gang": "volcano"}))
    objects = jobs.objects

    def pod_group() -> Any:
        return read_or_none(
            lambda: objects.get_namespaced_custom_object(
                "scheduling.volcano.sh", "v1beta1", jobs.namespace, "podgroups", "gang"
            )
        )

    group = wait_for(pod_group, "the PodGroup")
    assert group["spec"]["minMember"] == 2
    job = wait_for(lambda: read_or_none(lambda: jobs.worker_job("gang")), "the worker Job")
    template = job.spec.template
    assert template.spec.scheduler_name == "volcano"
    assert template.metadata.annotations["scheduling.k8s.io/group-name"] == "gang"
