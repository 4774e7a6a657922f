"""The pure status decision of the TrainingJob operator: children and clock in, status out.

Nothing is faked but the inputs: pods and Jobs are the dicts the API server would return.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeforge.api.trainingjob import ProgressStatus, TrainerStage, TrainingJob
from kubeforge_operator.trainingjob.status import Action, Observed, classify_failure, decide
from tests.trainingjob_cases import MINIMAL_SPEC

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
JOB_UID = "job-uid"


def training_job(status: dict[str, Any] | None = None, **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "metadata": {"name": "tj", "namespace": "ns", "uid": "tj-uid", "generation": 3},
            "spec": {**copy.deepcopy(MINIMAL_SPEC), **spec},
            "status": status or {},
        }
    )


def worker_job(*conditions: dict[str, Any], created: datetime = NOW, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "tj", "uid": JOB_UID, "creationTimestamp": created.isoformat()},
        "spec": spec,
        "status": {"conditions": list(conditions)},
    }


def pod(
    name: str,
    phase: str = "Running",
    *,
    ready: bool = True,
    created: datetime = NOW,
    terminated: dict[str, Any] | None = None,
    waiting: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if terminated is not None:
        state = {"terminated": terminated}
    elif waiting is not None:
        state = {"waiting": {"reason": waiting, "message": "back-off"}}
    all_conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": {
            "name": name,
            "uid": f"{name}-uid",
            "creationTimestamp": created.isoformat(),
            "ownerReferences": [{"uid": JOB_UID}],
            "annotations": annotations or {},
        },
        "status": {
            "phase": phase,
            "conditions": all_conditions + (conditions or []),
            "containerStatuses": [{"name": "trainer", "state": state}],
        },
    }


def running_status(since: datetime) -> dict[str, Any]:
    """A status whose Running condition became True at `since`."""
    job = training_job()
    decision = decide(job, Observed(since, worker_job(), [pod("tj-0")]))
    return decision.status.model_dump(mode="json", by_alias=True, exclude_none=True)


def condition(decision_status: Any, kind: str) -> Any:
    return next(c for c in decision_status.conditions if c.type == kind)


def test_no_worker_job_yet_is_pending_and_reconciling() -> None:
    decision = decide(training_job(), Observed(NOW))
    assert decision.status.phase == "Pending"
    assert condition(decision.status, "Reconciling").status == "True"
    assert condition(decision.status, "Ready").status == "False"
    assert decision.status.observed_generation == 3
    assert decision.action is None


def test_all_workers_ready_is_running_and_ready() -> None:
    job = training_job(replicas=2)
    decision = decide(job, Observed(NOW, worker_job(), [pod("tj-0"), pod("tj-1")]))
    status = decision.status
    assert status.phase == "Running"
    assert condition(status, "Ready").status == "True"
    assert condition(status, "Reconciling").status == "False"
    assert (status.replicas.desired, status.replicas.current, status.replicas.ready) == (2, 2, 2)
    assert status.start_time == NOW
    assert [event.reason for event in decision.events] == ["WorkersRunning"]


def test_a_pod_of_a_replaced_job_is_not_counted() -> None:
    stale = pod("old-0")
    stale["metadata"]["ownerReferences"] = [{"uid": "previous-job"}]
    decision = decide(training_job(replicas=2), Observed(NOW, worker_job(), [pod("tj-0"), stale]))
    assert decision.status.phase == "Starting"
    assert decision.status.replicas.ready == 1


def test_complete_job_succeeds_with_its_completion_time() -> None:
    done = worker_job({"type": "Complete", "status": "True"})
    done["status"]["completionTime"] = (NOW - timedelta(seconds=5)).isoformat()
    decision = decide(training_job(), Observed(NOW, done, []))
    assert decision.status.phase == "Succeeded"
    assert decision.status.completion_time == NOW - timedelta(seconds=5)
    assert condition(decision.status, "Succeeded").status == "True"


def test_a_finished_job_takes_the_last_progress_report_that_arrives_after_it() -> None:
    done = worker_job({"type": "Complete", "status": "True"})
    stale = ProgressStatus(step=90, updated_at=NOW - timedelta(seconds=10))
    first = decide(training_job(), Observed(NOW, done, [], progress=stale))
    assert first.status.phase == "Succeeded"
    finished = training_job(status=first.status.model_dump(mode="json", by_alias=True))
    last = ProgressStatus(step=100, updated_at=NOW - timedelta(seconds=5))
    later = decide(finished, Observed(NOW + timedelta(seconds=1), done, [], progress=last))
    assert later.status.phase == "Succeeded"
    assert later.status.progress == last
    assert later.events == []


def test_retryable_failure_is_charged_once_and_marks_the_pod() -> None:
    failed = pod("tj-0", "Failed", terminated={"exitCode": 3, "reason": "Error"})
    job = training_job(replicas=2, status=running_status(NOW - timedelta(minutes=5)))
    decision = decide(job, Observed(NOW, worker_job(), [failed, pod("tj-1")]))
    restarts = decision.status.restarts
    assert (restarts.count, restarts.disruptions) == (1, 0)
    assert restarts.history[0].cause == "RetryableExitCode"
    assert restarts.history[0].exit_code == 3
    assert decision.recorded_pods == ["tj-0"]
    assert decision.status.phase == "Restarting"
    # Marked pods are not counted again.
    failed["metadata"]["annotations"]["kubeforge.dev/restart-recorded"] = "true"
    again = decide(
        training_job(replicas=2, status=decision.status.model_dump(mode="json", by_alias=True)),
        Observed(NOW, worker_job(), [failed, pod("tj-1")]),
    )
    assert again.status.restarts.count == 1
    assert again.recorded_pods == []


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("PreemptionByScheduler", "Preempted"),
        ("EvictionByEvictionAPI", "Evicted"),
        ("DeletionByTaintManager", "NodeLost"),
    ],
)
def test_disruptions_are_recorded_but_not_charged(reason: str, cause: str) -> None:
    disrupted = pod(
        "tj-0",
        "Failed",
        terminated={"exitCode": 137, "reason": "Error"},
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": reason}],
    )
    decision = decide(training_job(), Observed(NOW, worker_job(), [disrupted]))
    restarts = decision.status.restarts
    assert (restarts.count, restarts.disruptions) == (0, 1)
    assert restarts.history[0].cause == cause
    assert restarts.history[0].charged is False


def failed_at(name: str, at: datetime, *, created: datetime, **metadata: Any) -> dict[str, Any]:
    """A worker pod whose trainer exited with 1 at `at` (how a worker that lost its peers ends)."""
    terminated = {"exitCode": 1, "reason": "Error", "finishedAt": at.isoformat()}
    failed = pod(name, "Failed", created=created, terminated=terminated)
    failed["metadata"].update(metadata)
    return failed


def test_workers_that_stop_with_a_broken_group_are_one_restart() -> None:
    """Worker 0 fails; worker 1 loses its rendezvous and exits too: one restart, charged once."""
    started = NOW - timedelta(minutes=5)
    job = training_job(replicas=2, status=running_status(started))
    first = failed_at("tj-0", NOW - timedelta(seconds=2), created=started)
    second = failed_at("tj-1", NOW - timedelta(seconds=1), created=started)
    decision = decide(job, Observed(NOW, worker_job(), [second, first]))
    restarts = decision.status.restarts
    assert (restarts.count, len(restarts.history)) == (1, 1)
    assert restarts.history[0].pod == "tj-0"
    assert sorted(decision.recorded_pods) == ["tj-0", "tj-1"]
    assert [e.reason for e in decision.events].count("RetryableExitCode") == 1


def test_a_cause_of_its_own_names_the_restart_over_a_peers_plain_exit() -> None:
    """Worker 1 is OOM-killed; worker 0 loses its peer and its plain exit reaches the kubelet's
    status first (an earlier finishedAt, by the second's rounding): the restart is OOMKilled."""
    started = NOW - timedelta(minutes=5)
    job = training_job(replicas=2, status=running_status(started))
    peer = failed_at("tj-0", NOW - timedelta(seconds=2), created=started)
    terminated = {"exitCode": 137, "reason": "OOMKilled", "finishedAt": NOW.isoformat()}
    killed = pod("tj-1", "Failed", created=started, terminated=terminated)
    decision = decide(job, Observed(NOW, worker_job(), [peer, killed]))
    restarts = decision.status.restarts
    assert [(r.pod, r.cause) for r in restarts.history] == [("tj-1", "OOMKilled")]
    assert restarts.count == 1
    assert sorted(decision.recorded_pods) == ["tj-0", "tj-1"]


def test_a_worker_stopping_after_its_group_broke_is_not_charged_again() -> None:
    started = NOW - timedelta(minutes=5)
    job = training_job(replicas=2, status=running_status(started))
    first = failed_at("tj-0", NOW - timedelta(seconds=2), created=started)
    broken = decide(job, Observed(NOW, worker_job(), [first, pod("tj-1", created=started)]))
    assert broken.status.phase == "Restarting"
    first["metadata"]["annotations"]["kubeforge.dev/restart-recorded"] = "true"
    later = NOW + timedelta(seconds=1)
    second = failed_at("tj-1", later, created=started)
    status = broken.status.model_dump(mode="json", by_alias=True)
    again = decide(training_job(replicas=2, status=status), Observed(later, worker_job(), [second]))
    assert again.status.restarts.count == 1
    assert again.recorded_pods == ["tj-1"]


def test_a_replacement_that_fails_while_the_group_re_forms_is_charged() -> None:
    """A crash loop is not hidden: a pod created after the restart began counts on its own."""
    started = NOW - timedelta(minutes=5)
    job = training_job(replicas=2, status=running_status(started))
    first = failed_at("tj-0", NOW - timedelta(seconds=30), created=started)
    broken = decide(job, Observed(NOW, worker_job(), [first, pod("tj-1", created=started)]))
    replacement = failed_at("tj-0-b", NOW + timedelta(seconds=5), created=NOW)
    status = broken.status.model_dump(mode="json", by_alias=True)
    later = decide(
        training_job(replicas=2, status=status),
        Observed(NOW + timedelta(seconds=6), worker_job(), [replacement, pod("tj-1")]),
    )
    assert later.status.restarts.count == 2


def test_a_deleted_worker_is_a_disruption() -> None:
    started = NOW - timedelta(minutes=5)
    job = training_job(replicas=2, status=running_status(started))
    deleted = failed_at(
        "tj-0", NOW - timedelta(seconds=1), created=started, deletionTimestamp=NOW.isoformat()
    )
    decision = decide(job, Observed(NOW, worker_job(), [deleted, pod("tj-1", created=started)]))
    restarts = decision.status.restarts
    assert (restarts.count, restarts.disruptions) == (0, 1)
    assert restarts.history[0].cause == "PodDeleted"
    assert restarts.history[0].charged is False


def test_workers_finishing_one_by_one_are_not_a_restart() -> None:
    """The last step is done and worker 0 exits first: still running, no Restarting event."""
    started = NOW - timedelta(minutes=5)
    history = {
        "restarts": {
            "count": 1,
            "history": [
                {"time": started.isoformat(), "cause": "RetryableExitCode", "charged": True}
            ],
        }
    }
    status = {**running_status(started), **history}
    job = training_job(replicas=2, status=status)
    done = pod("tj-0", "Succeeded", ready=False, terminated={"exitCode": 0})
    decision = decide(job, Observed(NOW, worker_job(), [done, pod("tj-1")]))
    assert decision.status.phase == "Running"
    assert decision.events == []


def test_oom_killed_is_its_own_cause() -> None:
    oom = {"exitCode": 137, "reason": "OOMKilled"}
    cause, _ = classify_failure(training_job(), pod("tj-0", "Failed", terminated=oom))
    assert cause == "OOMKilled"


def test_permanent_exit_code_fails_and_stops_the_workers() -> None:
    job = training_job(failurePolicy={"permanentExitCodes": [2]})
    failed = pod("tj-0", "Failed", terminated={"exitCode": 2})
    decision = decide(job, Observed(NOW, worker_job(), [failed]))
    assert decision.status.phase == "Failed"
    assert condition(decision.status, "Failed").reason == "PermanentExitCode"
    assert decision.action is Action.STOP
    assert decision.status.restarts.count == 0


def test_retryable_list_makes_other_codes_permanent() -> None:
    job = training_job(failurePolicy={"retryableExitCodes": [3]})
    assert classify_failure(job, pod("a", "Failed", terminated={"exitCode": 3}))[0] is not None
    assert classify_failure(job, pod("b", "Failed", terminated={"exitCode": 4}))[0] is None


def test_budget_spent_fails_with_backoff_limit_exceeded() -> None:
    job = training_job(
        failurePolicy={"maxRestarts": 1},
        status={"restarts": {"count": 1, "history": []}},
    )
    failed = pod("tj-0", "Failed", terminated={"exitCode": 1})
    decision = decide(job, Observed(NOW, worker_job(), [failed]))
    assert decision.status.phase == "Failed"
    assert condition(decision.status, "Failed").reason == "BackoffLimitExceeded"
    assert decision.action is Action.STOP


def test_image_pull_back_off_is_surfaced_then_fails_after_the_start_deadline() -> None:
    job = training_job(startDeadlineSeconds=60)
    stuck = pod("tj-0", "Pending", ready=False, waiting="ImagePullBackOff")
    early = decide(job, Observed(NOW + timedelta(seconds=10), worker_job(), [stuck]))
    assert early.status.phase == "Starting"
    assert condition(early.status, "Ready").reason == "ImagePullBackOff"
    assert condition(early.status, "Stalled").status == "True"
    assert early.requeue_after == pytest.approx(50)
    assert early.events[0].type == "Warning"
    late = decide(job, Observed(NOW + timedelta(seconds=61), worker_job(), [stuck]))
    assert late.status.phase == "Failed"
    assert condition(late.status, "Failed").reason == "StartDeadlineExceeded"
    assert late.action is Action.STOP


def test_the_start_deadline_names_the_last_blocker_seen() -> None:
    """The pod that could not pull its image is gone from view when the deadline passes: the
    failure still says why the workers never started."""
    job = training_job(startDeadlineSeconds=60)
    stuck = pod("tj-0", "Pending", ready=False, waiting="ImagePullBackOff")
    early = decide(job, Observed(NOW + timedelta(seconds=10), worker_job(), [stuck]))
    status = early.status.model_dump(mode="json", by_alias=True)
    late = decide(
        training_job(status, startDeadlineSeconds=60),
        Observed(NOW + timedelta(seconds=61), worker_job(), []),
    )
    failed = condition(late.status, "Failed")
    assert failed.reason == "StartDeadlineExceeded"
    assert "ImagePullBackOff" in failed.message


def test_unschedulable_pod_is_surfaced() -> None:
    unschedulable = pod(
        "tj-0",
        "Pending",
        ready=False,
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    unschedulable["status"]["containerStatuses"] = []
    decision = decide(training_job(), Observed(NOW, worker_job(), [unschedulable]))
    ready = condition(decision.status, "Ready")
    assert ready.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in ready.message


def test_no_progress_for_the_deadline_restarts_the_group_as_hung() -> None:
    job = training_job(
        progressDeadlineSeconds=300, status=running_status(NOW - timedelta(minutes=10))
    )
    report = ProgressStatus(step=40, updated_at=NOW - timedelta(seconds=301))
    decision = decide(job, Observed(NOW, worker_job(), [pod("tj-0")], progress=report))
    assert decision.action is Action.RESTART
    assert decision.status.phase == "Restarting"
    assert decision.status.restarts.history[-1].cause == "Hung"
    assert decision.status.restarts.count == 1
    fresh = ProgressStatus(step=41, updated_at=NOW - timedelta(seconds=30))
    healthy = decide(job, Observed(NOW, worker_job(), [pod("tj-0")], progress=fresh))
    assert healthy.action is None
    assert healthy.status.progress == fresh
    assert healthy.requeue_after == pytest.approx(270)


def test_a_run_waiting_for_its_object_store_past_the_deadline_is_not_hung() -> None:
    """Hours in, the store has been away for longer than progressDeadlineSeconds: the report
    says so, and the group is left to wait (its store retries bound the wait)."""
    job = training_job(progressDeadlineSeconds=300, status=running_status(NOW - timedelta(hours=3)))
    report = ProgressStatus(
        step=4000,
        updated_at=NOW - timedelta(seconds=400),
        storage_waiting_since=NOW - timedelta(seconds=390),
    )
    decision = decide(job, Observed(NOW, worker_job(), [pod("tj-0")], progress=report))
    assert decision.action is None
    assert decision.status.phase == "Running"
    assert decision.status.progress == report


def test_a_restart_hours_in_whose_start_outlasts_the_deadline_is_timed_stage_by_stage() -> None:
    """Two hours in, torchrun restarted the workers in place (no pod failed, Running stays true
    since long ago): the new attempt started 14 minutes ago and has loaded for 4 minutes, restored
    for 5 and has been on its first step (compiling) for 4 — longer than the 5-minute deadline in
    all, never that long in one stage. Counting from the last step (10 minutes ago) would restart
    it as hung, and its next attempt too, every one charged."""
    job = long_running(progressDeadlineSeconds=300)
    peers = [pod("tj-0", created=HOURS_AGO), pod("tj-1", created=HOURS_AGO)]
    starting = ProgressStatus(
        step=9000,
        updated_at=NOW - timedelta(minutes=10),
        started_at=NOW - timedelta(minutes=14),
        stage=TrainerStage.FIRST_STEP,
        stage_since=NOW - timedelta(minutes=4),
    )
    decision = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), peers, progress=starting))
    assert decision.action is None
    assert decision.status.phase == "Running"
    assert decision.requeue_after == pytest.approx(60)
    stalled = starting.model_copy(update={"stage_since": NOW - timedelta(seconds=301)})
    hung = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), peers, progress=stalled))
    assert hung.action is Action.RESTART
    assert hung.status.restarts.history[-1].cause == "Hung"
    assert "in stage FirstStep" in condition(hung.status, "Ready").message


def test_the_final_save_after_the_last_step_has_a_deadline_of_its_own() -> None:
    """The last step was 8 minutes ago; the final checkpoint and the model's upload began 4
    minutes ago: not hung. Stalled in that stage for longer than the deadline: hung."""
    job = long_running(progressDeadlineSeconds=300)
    peers = [pod("tj-0", created=HOURS_AGO), pod("tj-1", created=HOURS_AGO)]
    saving = ProgressStatus(
        step=10000,
        updated_at=NOW - timedelta(minutes=8),
        stage=TrainerStage.FINISHING,
        stage_since=NOW - timedelta(minutes=4),
    )
    decision = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), peers, progress=saving))
    assert decision.action is None
    stalled = saving.model_copy(update={"stage_since": NOW - timedelta(seconds=301)})
    hung = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), peers, progress=stalled))
    assert hung.action is Action.RESTART
    assert "in stage Finishing" in condition(hung.status, "Ready").message


def test_active_deadline_fails_the_job() -> None:
    job = training_job(
        activeDeadlineSeconds=60,
        status={"startTime": (NOW - timedelta(seconds=61)).isoformat()},
    )
    decision = decide(job, Observed(NOW, worker_job(), [pod("tj-0")]))
    assert decision.status.phase == "Failed"
    assert condition(decision.status, "Failed").reason == "DeadlineExceeded"


def test_suspended_job_has_no_desired_workers() -> None:
    decision = decide(training_job(suspend=True), Observed(NOW, worker_job(suspend=True), []))
    assert decision.status.phase == "Suspended"
    assert decision.status.replicas.desired == 0
    assert condition(decision.status, "Suspended").status == "True"


def test_queued_job_waits_for_admission() -> None:
    job = training_job(scheduling={"queueName": "team-a"})
    decision = decide(job, Observed(NOW, worker_job(suspend=True), []))
    assert decision.status.phase == "Pending"
    assert condition(decision.status, "Ready").reason == "Queued"


def test_waiting_for_dataset_is_pending_with_the_reason() -> None:
    decision = decide(training_job(), Observed(NOW, waiting_for_dataset="DataIngest web not found"))
    assert decision.status.phase == "Pending"
    ready = condition(decision.status, "Ready")
    assert (ready.reason, ready.message) == ("WaitingForDataset", "DataIngest web not found")


def test_finished_job_is_deleted_after_its_ttl() -> None:
    finished = {
        "phase": "Succeeded",
        "completionTime": (NOW - timedelta(seconds=30)).isoformat(),
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Completed",
                "message": "all workers completed",
                "lastTransitionTime": (NOW - timedelta(seconds=30)).isoformat(),
            }
        ],
    }
    soon = decide(training_job(finished, ttlSecondsAfterFinished=60), Observed(NOW))
    assert soon.action is None
    assert soon.requeue_after == pytest.approx(30)
    due = decide(training_job(finished, ttlSecondsAfterFinished=20), Observed(NOW))
    assert due.action is Action.DELETE
    assert due.status.phase == "Succeeded"


def test_an_unchanged_world_gives_an_unchanged_status() -> None:
    job = training_job(status=running_status(NOW - timedelta(minutes=1)))
    decision = decide(job, Observed(NOW, worker_job(), [pod("tj-0")]))
    dump = decision.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dump == job.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert decision.events == []


# Long runs: every deadline and budget on a job that is already older than it. The worker Job
# was created two hours ago, the group has run since; startDeadlineSeconds is one minute.
HOURS_AGO = NOW - timedelta(hours=2)
LOST_AT = NOW - timedelta(seconds=1)


def long_running(**spec: Any) -> TrainingJob:
    """A two-worker job whose workers were created two hours ago and have run since."""
    status = running_status(HOURS_AGO + timedelta(minutes=1))
    return training_job(status, replicas=2, startDeadlineSeconds=60, **spec)


def disrupted(reason: str, phase: str = "Failed", **metadata: Any) -> dict[str, Any]:
    terminated = {"exitCode": 143, "reason": "Error", "finishedAt": LOST_AT.isoformat()}
    condition = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": reason,
        "lastTransitionTime": LOST_AT.isoformat(),
    }
    lost = pod(
        "tj-0",
        phase,
        created=HOURS_AGO,
        terminated=terminated if phase == "Failed" else None,
        conditions=[condition],
    )
    lost["metadata"].update(metadata)
    return lost


def on_lost_node(name: str = "tj-0", since: datetime = LOST_AT) -> dict[str, Any]:
    """A started worker whose node stopped answering: the node lifecycle controller marked the
    pod not Ready; its container keeps the kubelet's last report (running, ready)."""
    lost = pod(name, created=HOURS_AGO)
    lost["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "lastTransitionTime": since.isoformat()}
    ]
    lost["status"]["containerStatuses"][0]["ready"] = True
    return lost


LOSSES = {
    "retryable exit code": (
        lambda: failed_at("tj-0", LOST_AT, created=HOURS_AGO),
        "RetryableExitCode",
    ),
    "preemption": (lambda: disrupted("PreemptionByScheduler"), "Preempted"),
    "eviction": (lambda: disrupted("EvictionByEvictionAPI"), "Evicted"),
    "node lost, evicted": (
        lambda: disrupted("DeletionByTaintManager", "Running", deletionTimestamp=NOW.isoformat()),
        "NodeLost",
    ),
    "node lost, not yet evicted": (on_lost_node, "NodeLost"),
    "deleted pod": (
        lambda: failed_at("tj-0", LOST_AT, created=HOURS_AGO, deletionTimestamp=NOW.isoformat()),
        "PodDeleted",
    ),
}


@pytest.mark.parametrize(("make_lost", "cause"), LOSSES.values(), ids=LOSSES.keys())
def test_a_worker_lost_hours_into_a_run_restarts_the_group(make_lost: Any, cause: str) -> None:
    """Before the fix, a loss two hours in failed the job as StartDeadlineExceeded at once: the
    start deadline counted from the Job's creation."""
    peer = pod("tj-1", created=HOURS_AGO)
    decision = decide(
        long_running(), Observed(NOW, worker_job(created=HOURS_AGO), [make_lost(), peer])
    )
    assert decision.status.phase == "Restarting", condition(decision.status, "Ready").message
    assert decision.action is None
    assert decision.status.restarts.history[-1].cause == cause
    assert decision.status.restarts.history[-1].time == LOST_AT


@pytest.mark.parametrize(
    ("make_lost", "cause"),
    [value for key, value in LOSSES.items() if key != "node lost, not yet evicted"],
    ids=[key for key in LOSSES if key != "node lost, not yet evicted"],
)
def test_the_start_deadline_counts_from_the_loss_not_from_the_job(
    make_lost: Any, cause: str
) -> None:
    """After a loss two hours in, the replacement may take startDeadlineSeconds from its creation
    (the Job controller creates it once the lost pod is gone), and no longer."""
    peer = pod("tj-1", created=HOURS_AGO)
    lost = decide(long_running(), Observed(NOW, worker_job(created=HOURS_AGO), [make_lost(), peer]))
    status = lost.status.model_dump(mode="json", by_alias=True)
    created = NOW + timedelta(seconds=5)
    replacement = pod("tj-0-r", "Pending", ready=False, created=created, waiting="ErrImagePull")
    replacement["status"]["containerStatuses"] = []
    observed = [replacement, pod("tj-1", "Pending", ready=False, created=created)]

    def at(seconds: float) -> Any:
        moment = created + timedelta(seconds=seconds)
        job = training_job(status, replicas=2, startDeadlineSeconds=60)
        return decide(job, Observed(moment, worker_job(created=HOURS_AGO), observed))

    waiting = at(59)
    assert waiting.status.phase == "Restarting"
    assert waiting.requeue_after == pytest.approx(1)
    failed = at(61)
    assert failed.status.phase == "Failed"
    assert condition(failed.status, "Failed").reason == "StartDeadlineExceeded"


def test_a_worker_on_a_lost_node_is_not_starting_and_is_recorded_once() -> None:
    """A pod whose node stopped answering waits for its eviction (unreachableNodeSeconds), not
    for the start deadline, however long the node has been gone."""
    peer = pod("tj-1", created=HOURS_AGO)
    first = decide(
        long_running(), Observed(NOW, worker_job(created=HOURS_AGO), [on_lost_node(), peer])
    )
    assert (first.status.restarts.count, first.status.restarts.disruptions) == (0, 1)
    assert first.recorded_pods == ["tj-0"]
    assert condition(first.status, "Ready").reason == "NodeLost"
    marked = on_lost_node()
    marked["metadata"]["annotations"]["kubeforge.dev/restart-recorded"] = "true"
    status = first.status.model_dump(mode="json", by_alias=True)
    much_later = decide(
        training_job(status, replicas=2, startDeadlineSeconds=60),
        Observed(NOW + timedelta(hours=1), worker_job(created=HOURS_AGO), [marked, peer]),
    )
    assert much_later.status.phase == "Restarting"
    assert much_later.status.restarts.disruptions == 1
    assert much_later.recorded_pods == []


@pytest.mark.parametrize(("seen_after_s", "charged"), [(20, False), (120, True)])
def test_a_peers_exit_before_its_node_is_seen_lost_is_the_node_loss(
    seen_after_s: int, charged: bool
) -> None:
    """A stopped node takes worker 0 silently; worker 1 loses its collective and exits with a
    plain code at once, 20 s before the node lifecycle controller marks worker 0 not Ready. The
    restart is the node loss, not charged; a node seen lost long after the exit is not."""
    exited_at = LOST_AT - timedelta(seconds=seen_after_s)
    peer = failed_at("tj-1", exited_at, created=HOURS_AGO)
    first = decide(long_running(), Observed(exited_at, worker_job(created=HOURS_AGO), [peer]))
    assert [(r.cause, r.charged) for r in first.status.restarts.history] == [
        ("RetryableExitCode", True)
    ]
    peer["metadata"]["annotations"]["kubeforge.dev/restart-recorded"] = "true"
    status = first.status.model_dump(mode="json", by_alias=True)
    seen = decide(
        training_job(status, replicas=2, startDeadlineSeconds=60),
        Observed(NOW, worker_job(created=HOURS_AGO), [on_lost_node(), peer]),
    )
    restarts = seen.status.restarts
    if charged:
        # Worker 0 stopped with the group that worker 1's exit broke: not counted again.
        assert [(r.cause, r.pod) for r in restarts.history] == [("RetryableExitCode", "tj-1")]
        assert (restarts.count, restarts.disruptions) == (1, 0)
    else:
        assert [(r.cause, r.pod, r.time) for r in restarts.history] == [
            ("NodeLost", "tj-0", exited_at)
        ]
        assert (restarts.count, restarts.disruptions) == (0, 1)
    assert seen.recorded_pods == ["tj-0"]


def test_a_pod_stuck_terminating_on_a_lost_node_is_force_deleted() -> None:
    """Evicted from a node that no longer answers, the pod stays Terminating: the Job controller
    (podReplacementPolicy Failed) would wait for it forever."""
    evicted = disrupted("DeletionByTaintManager", "Running", deletionTimestamp=NOW.isoformat())
    peer = pod("tj-1", created=HOURS_AGO)
    job = long_running(failurePolicy={"stuckTerminationSeconds": 30})
    soon = decide(job, Observed(NOW + timedelta(seconds=29), worker_job(), [evicted, peer]))
    assert soon.force_delete == []
    assert soon.requeue_after == pytest.approx(1)
    due = decide(job, Observed(NOW + timedelta(seconds=31), worker_job(), [evicted, peer]))
    assert due.force_delete == ["tj-0"]


def test_a_hung_group_hours_in_restarts_and_its_new_job_gets_a_full_start() -> None:
    job = long_running(progressDeadlineSeconds=300)
    stalled = ProgressStatus(step=9000, updated_at=NOW - timedelta(seconds=301))
    peers = [pod("tj-0", created=HOURS_AGO), pod("tj-1", created=HOURS_AGO)]
    hung = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), peers, progress=stalled))
    assert hung.action is Action.RESTART
    status = hung.status.model_dump(mode="json", by_alias=True)
    new_job = worker_job(created=NOW + timedelta(seconds=2))
    pending = [
        pod(f"tj-{i}", "Pending", ready=False, created=NOW + timedelta(seconds=3)) for i in (0, 1)
    ]
    later = decide(
        training_job(status, replicas=2, startDeadlineSeconds=60),
        Observed(NOW + timedelta(seconds=50), new_job, pending, progress=stalled),
    )
    assert later.status.phase == "Restarting"
    assert later.action is None


def test_a_peer_that_stops_with_its_group_never_fails_the_job_by_its_exit_code() -> None:
    """Worker 0 fails with a retryable code; worker 1, in the group since the start, exits with
    a code on the permanent list (its collective broke): one restart, the job goes on."""
    job = long_running(failurePolicy={"permanentExitCodes": [1]})
    first = pod(
        "tj-0",
        "Failed",
        created=HOURS_AGO,
        terminated={"exitCode": 3, "finishedAt": (NOW - timedelta(seconds=2)).isoformat()},
    )
    second = failed_at("tj-1", NOW - timedelta(seconds=1), created=HOURS_AGO)
    decision = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), [second, first]))
    assert decision.status.phase == "Restarting"
    assert decision.status.restarts.count == 1


def test_the_active_deadline_counts_from_admission_not_from_the_queue() -> None:
    """A Job queued by Kueue for two hours starts when admitted (the Job's status.startTime)."""
    admitted = NOW - timedelta(seconds=30)
    queued = worker_job(created=HOURS_AGO)
    queued["status"]["startTime"] = admitted.isoformat()
    job = training_job(activeDeadlineSeconds=60, scheduling={"queueName": "team-a"})
    decision = decide(job, Observed(NOW, queued, [pod("tj-0", created=admitted)]))
    assert decision.status.start_time == admitted
    assert decision.status.phase == "Running"
    assert decision.requeue_after == pytest.approx(30)


def test_scaling_a_running_group_is_reported_as_scaling() -> None:
    job = training_job(running_status(HOURS_AGO), replicas=2, minReplicas=1, maxReplicas=3)
    new = pod("tj-1", "Pending", ready=False, created=NOW)
    decision = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), [pod("tj-0"), new]))
    assert decision.status.phase == "Running"  # elastic: it trains on while the new one joins
    assert condition(decision.status, "Ready").reason == "Scaling"
    rigid = training_job(running_status(HOURS_AGO), replicas=2)
    replaced = decide(rigid, Observed(NOW, worker_job(created=NOW), [new]))
    assert replaced.status.phase == "Starting"
    assert condition(replaced.status, "Ready").reason == "Scaling"


def test_an_elastic_group_trains_below_its_size_while_a_replacement_cannot_start() -> None:
    """replicas 2, minReplicas 1: the replacement of a worker lost hours in cannot be scheduled
    (its node is gone); the group re-forms with one worker and trains, past any start deadline."""
    job = long_running(minReplicas=1, maxReplicas=2)
    lost = decide(
        job,
        Observed(
            NOW,
            worker_job(created=HOURS_AGO),
            [failed_at("tj-0", LOST_AT, created=HOURS_AGO), pod("tj-1", created=HOURS_AGO)],
        ),
    )
    assert lost.status.phase == "Restarting"
    # The peer that was in the broken group is not a member of the new one.
    status = lost.status.model_dump(mode="json", by_alias=True)
    still_up = decide(
        training_job(status, replicas=2, startDeadlineSeconds=60, minReplicas=1, maxReplicas=2),
        Observed(
            NOW + timedelta(seconds=1),
            worker_job(created=HOURS_AGO),
            [pod("tj-1", created=HOURS_AGO)],
        ),
    )
    assert still_up.status.phase == "Restarting"
    created = NOW + timedelta(seconds=5)
    unschedulable = pod("tj-0-r", "Pending", ready=False, created=created)
    unschedulable["status"]["conditions"].append(
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available",
        }
    )
    unschedulable["status"]["containerStatuses"] = []
    later = decide(
        training_job(status, replicas=2, startDeadlineSeconds=60, minReplicas=1, maxReplicas=2),
        Observed(
            NOW + timedelta(minutes=30),
            worker_job(created=HOURS_AGO),
            [pod("tj-1-r", created=created), unschedulable],
        ),
    )
    assert later.status.phase == "Running"
    assert later.action is None
    assert "1/2 workers running (elastic, at least 1)" in condition(later.status, "Ready").message
    assert "Unschedulable" not in condition(later.status, "Ready").reason


def test_a_broken_group_of_eight_gets_a_new_worker_job_not_ten_minutes_of_back_off() -> None:
    """Hours in, worker 3 of eight fails and the seven others stop with the group: the Job
    controller would hold their replacements back for ten minutes (10 s doubled for each failed
    pod, at most 600 s). One restart is charged and the worker Job is replaced at once."""
    job = training_job(
        running_status(HOURS_AGO + timedelta(minutes=1)), replicas=8, startDeadlineSeconds=60
    )
    broken = [
        failed_at(f"tj-{i}", NOW - timedelta(seconds=1 if i == 3 else 0.5), created=HOURS_AGO)
        for i in range(8)
    ]
    decision = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), broken))
    assert decision.action is Action.RESTART
    assert decision.status.phase == "Restarting"
    assert (decision.status.restarts.count, len(decision.status.restarts.history)) == (1, 1)
    assert decision.status.restarts.history[0].pod == "tj-3"
    message = condition(decision.status, "Ready").message
    assert "replacing the worker Job" in message
    assert "8 failed pods back for 600 s" in message


def test_no_worker_job_is_replaced_while_one_of_its_workers_still_runs() -> None:
    """Two of three workers exited at once; the third still reads Running: its node may have
    stopped without a word, to be marked lost only node-monitor-grace-period later. The Job is
    kept (its deletion would orphan that pod on the lost node and lose the NodeLost record)."""
    job = training_job(
        running_status(HOURS_AGO + timedelta(minutes=1)), replicas=3, startDeadlineSeconds=60
    )
    peers = [failed_at(f"tj-{i}", NOW - timedelta(seconds=1), created=HOURS_AGO) for i in (1, 2)]
    silent = pod("tj-0", created=HOURS_AGO)
    decision = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), [silent, *peers]))
    assert decision.action is None
    assert decision.status.phase == "Restarting"


def test_one_failed_pod_is_replaced_in_place_by_the_job_controller() -> None:
    """Ten seconds of back-off for one failed pod: the Job is kept, and so is its other worker,
    which waits in the rendezvous for the replacement."""
    job = long_running()
    lost = failed_at("tj-0", NOW - timedelta(seconds=1), created=HOURS_AGO)
    peer = pod("tj-1", created=HOURS_AGO)
    decision = decide(job, Observed(NOW, worker_job(created=HOURS_AGO), [lost, peer]))
    assert decision.action is None
    assert decision.status.phase == "Restarting"
    assert decision.status.restarts.count == 1


def test_the_start_deadline_waits_out_the_job_controllers_back_off() -> None:
    """At a run's third restart, hours in, the Job controller holds the replacement back for
    40 s (10 s, doubled for each of the Job's two earlier failed pods). The other worker still
    runs (its node may be lost and not yet seen so), so the Job is kept, and a start deadline of
    60 s counts from the end of that wait, not from the failure."""
    earlier = [
        failed_at(f"tj-0-{n}", HOURS_AGO + timedelta(hours=n / 2), created=HOURS_AGO)
        for n in (1, 2)
    ]
    for counted in earlier:
        counted["metadata"]["annotations"]["kubeforge.dev/restart-recorded"] = "true"
    third = failed_at("tj-0", NOW, created=HOURS_AGO + timedelta(hours=1))
    peer = pod("tj-1", created=HOURS_AGO)
    broken = decide(
        long_running(), Observed(NOW, worker_job(created=HOURS_AGO), [*earlier, third, peer])
    )
    assert broken.action is None
    third["metadata"]["annotations"]["kubeforge.dev/restart-recorded"] = "true"
    status = broken.status.model_dump(mode="json", by_alias=True)

    def at(seconds: float) -> Any:
        job = training_job(status, replicas=2, startDeadlineSeconds=60)
        observed = Observed(NOW + timedelta(seconds=seconds), worker_job(created=HOURS_AGO), [
            *earlier, third, pod("tj-1", "Running", ready=False, created=HOURS_AGO)
        ])  # fmt: skip
        return decide(job, observed)

    waiting = at(90)
    assert waiting.status.phase == "Restarting", condition(waiting.status, "Ready").message
    assert waiting.requeue_after == pytest.approx(10)
    assert at(101).status.phase == "Failed"
