"""Pure status computation: a TrainingJob and what is observed of its children in, a decision out.

`decide` maps the worker Job, its pods, the trainer's progress report and the clock to the new
status (phase, conditions with typed reasons, replicas, restarts, progress), the Events to post,
what to do (restart the group, stop it, delete the finished job) and when to look again. It is
the one place where child state becomes conditions, so it is what the unit tests cover most.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kubeforge.api.meta import Condition, ConditionStatus, find_condition, set_conditions
from kubeforge.api.trainingjob import (
    RESTART_HISTORY_LIMIT,
    ProgressStatus,
    ReplicaStatus,
    RestartCause,
    RestartRecord,
    RestartStatus,
    TrainingJob,
    TrainingJobConditionType,
    TrainingJobPhase,
    TrainingJobReason,
    TrainingJobStatus,
)
from kubeforge.goodput import measure_status
from kubeforge_operator.base import jobs
from kubeforge_operator.base.outcome import Outcome, condition_writer, transition_event
from kubeforge_operator.base.pods import is_start_blocker, start_blocker
from kubeforge_operator.objects import Event, Object, job_condition, parse_time
from kubeforge_operator.trainingjob.builders import CONTAINER, worker_selector

Phase = TrainingJobPhase
Reason = TrainingJobReason
ConditionType = TrainingJobConditionType
JobOutcome = Outcome[Phase, Reason]

RESTART_RECORDED = "kubeforge.dev/restart-recorded"
"""Annotation on a failed worker pod once its failure is counted in status.restarts."""

DISRUPTION_CAUSES = {
    "PreemptionByScheduler": RestartCause.PREEMPTED,
    "EvictionByEvictionAPI": RestartCause.EVICTED,
    "TerminationByKubelet": RestartCause.EVICTED,
    "DeletionByTaintManager": RestartCause.NODE_LOST,
    "DeletionByPodGC": RestartCause.NODE_LOST,
}
TERMINAL = {Phase.SUCCEEDED, Phase.FAILED}
# kube-controller-manager's pod-failure back-off for Jobs (DefaultJobPodFailureBackOff and
# MaxJobPodFailureBackOff in pkg/controller/job), which no Job field changes.
JOB_POD_FAILURE_BACKOFF_S = 10
JOB_POD_FAILURE_BACKOFF_MAX_S = 600
# How long after a peer's exit a worker's node may be seen lost and still be what broke the
# group: the node lifecycle controller marks a node's pods not Ready only node-monitor-grace-period
# (50 s by default) after its last heartbeat, while its peers lose their collective at once.
NODE_LOSS_SEEN_WITHIN_S = 90


class Action(enum.Enum):
    """What the reconcile must do beyond applying the desired children."""

    RESTART = "restart"  # delete the worker Job; the next reconcile creates it anew
    STOP = "stop"  # the job failed: suspend the worker Job so no worker keeps running
    DELETE = "delete"  # ttlSecondsAfterFinished has passed: delete the TrainingJob


@dataclass(frozen=True)
class Observed:
    """What the reconcile saw of the job's world, at one instant."""

    now: datetime
    worker_job: Object | None = None
    pods: Sequence[Object] = ()
    progress: ProgressStatus | None = None
    waiting_for_dataset: str | None = None  # why the dataset is not ready, when it is not


@dataclass(frozen=True)
class Decision:
    status: TrainingJobStatus
    events: list[Event] = field(default_factory=list)
    action: Action | None = None
    recorded_pods: list[str] = field(default_factory=list)
    new_restarts: list[RestartCause] = field(default_factory=list)
    force_delete: list[str] = field(default_factory=list)
    """Worker pods stuck terminating on a node that no longer answers: delete with no grace."""
    requeue_after: float | None = None


def _current_pods(observed: Observed) -> list[Object]:
    """Pods of the current worker Job (a restart leaves the old Job's pods terminating)."""
    if observed.worker_job is None:
        return []
    uid = observed.worker_job["metadata"].get("uid")
    return [
        pod
        for pod in observed.pods
        if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])
    ]


def _is_active(pod: Object) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and pod.get("status", {}).get("phase") in {
        "Pending",
        "Running",
        None,
    }


def _is_ready(pod: Object) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return False  # terminating: it has left its group
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _ready_condition(pod: Object) -> Object:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _disruption(pod: Object) -> Object | None:
    """The pod's DisruptionTarget condition when it holds: preemption, eviction, node loss."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    held = (c for c in conditions if c.get("type") == "DisruptionTarget")
    return next((c for c in held if c.get("status") == "True"), None)


def lost_node_since(pod: Object) -> datetime | None:
    """When the node of a started worker stopped answering, or None while it answers.

    The node lifecycle controller marks every pod of a NotReady or unreachable node not Ready,
    and only the pod: its containers keep the last state the kubelet reported (running, ready).
    A kubelet that answers would report its containers not ready too, so a Running pod that is
    not Ready while its containers are is a pod whose node is gone, not a worker starting.
    """
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = _ready_condition(pod)
    if (
        status.get("phase") != "Running"
        or ready.get("status") != "False"
        or not containers
        or not all(c.get("ready") and "running" in (c.get("state") or {}) for c in containers)
    ):
        return None
    return parse_time(ready.get("lastTransitionTime"))


def needs_record(pod: Object) -> bool:
    """True when the pod is out of its group for good (failed, disrupted, or its node lost) and
    its loss is not yet counted in status.restarts."""
    if RESTART_RECORDED in (pod["metadata"].get("annotations") or {}):
        return False
    failed = (pod.get("status") or {}).get("phase") == "Failed"
    return failed or _disruption(pod) is not None or lost_node_since(pod) is not None


def _terminated(pod: Object) -> Object:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == CONTAINER and "terminated" in (container.get("state") or {}):
            terminated: Object = container["state"]["terminated"]
            return terminated
    return {}


def classify_failure(job: TrainingJob, pod: Object) -> tuple[RestartCause | None, Object]:
    """Why a worker pod failed: a restart cause, or None when the exit code is permanent."""
    status = pod.get("status") or {}
    disruption = _disruption(pod)
    if disruption is not None:
        return DISRUPTION_CAUSES.get(disruption.get("reason", ""), RestartCause.EVICTED), {}
    if lost_node_since(pod) is not None:
        return RestartCause.NODE_LOST, {}
    if status.get("reason") == "Evicted":
        return RestartCause.EVICTED, {}
    terminated = _terminated(pod)
    if terminated.get("reason") == "OOMKilled":
        return RestartCause.OOM_KILLED, terminated
    # Deleted from outside (kubectl delete, a controller): its exit code says only how it
    # stopped. The operator itself deletes whole worker Jobs, whose pods are no longer current.
    if pod["metadata"].get("deletionTimestamp"):
        return RestartCause.POD_DELETED, terminated
    if job.spec.failure_policy.is_permanent(terminated.get("exitCode")):
        return None, terminated
    return RestartCause.RETRYABLE_EXIT_CODE, terminated


def _pod_failure_backoff(failed_pods: int) -> float:
    """The Job controller's pod-failure back-off after this many failed pods, in seconds."""
    return float(
        min(JOB_POD_FAILURE_BACKOFF_S * 2 ** (failed_pods - 1), JOB_POD_FAILURE_BACKOFF_MAX_S)
    )


def _seconds_left(since: datetime | None, limit: int | None, now: datetime) -> float | None:
    if since is None or limit is None:
        return None
    return (since + timedelta(seconds=limit) - now).total_seconds()


class _Decider:
    """Builds one Decision; a class only to share the inputs between its small steps."""

    def __init__(self, job: TrainingJob, observed: Observed) -> None:
        self.job = job
        self.spec = job.spec
        self.previous = job.status
        self.observed = observed
        self.now = observed.now
        self.status = job.status.model_copy(deep=True)
        self.events: list[Event] = []
        self.recorded: list[str] = []
        self.new_restarts: list[RestartCause] = []
        self.waits: list[float] = []
        self.pods = _current_pods(observed)

    def wake_in(self, seconds: float | None) -> None:
        if seconds is not None and seconds > 0:
            self.waits.append(seconds)

    def record_failures(self) -> JobOutcome | None:
        """Records each newly failed pod once, in blame order; a permanent exit code ends the job.

        One failure breaks the whole group: the other workers lose their peers (or their
        rendezvous store is replaced) and stop too. So a failure starts a restart only when the pod
        joined the group after the last restart began; the pods that were in the group then
        stop with it, and are marked without being counted again.
        """
        restarts = self.status.restarts
        # A pod fails once (restartPolicy Never): its name is enough to know it is counted.
        seen = {r.pod for r in restarts.history if r.pod}
        re_forming = restarts.history and self.previous.phase == Phase.RESTARTING
        restart_began = restarts.history[-1].time if re_forming else None
        lost = [pod for pod in self.pods if needs_record(pod)]
        for pod in sorted(lost, key=self.blame_order):
            meta = pod["metadata"]
            self.recorded.append(meta["name"])
            when = self.failure_time(pod)
            if meta["name"] in seen:
                continue  # counted before the operator could mark the pod
            if self.reblame_on_node_loss(pod, when):
                continue
            created = parse_time(meta.get("creationTimestamp"))
            if restart_began is not None and created is not None and created <= restart_began:
                continue  # it stopped with its group: its exit code says nothing of the job
            cause, terminated = classify_failure(self.job, pod)
            code = terminated.get("exitCode")
            if cause is None:
                return Outcome(
                    Phase.FAILED,
                    Reason.PERMANENT_EXIT_CODE,
                    f"pod {meta['name']} exited with permanent exit code {code}",
                )
            self._count(cause, meta["name"], code, terminated.get("reason"), when)
            restart_began = when
        return None

    def reblame_on_node_loss(self, pod: Object, when: datetime) -> bool:
        """Whether the last restart, a peer's plain exit code, is this pod's lost node instead,
        and is now recorded so (NodeLost, not charged).

        A node that stops takes its worker without a word: the peers lose their collective and
        exit with a plain code at once, while the node lifecycle controller marks the lost
        worker not Ready only node-monitor-grace-period later. A worker of the broken group
        that never reported its own stop (its containers still running when its node was seen
        lost) within NODE_LOSS_SEEN_WITHIN_S of that exit was on the node that broke it."""
        history = self.status.restarts.history
        last = history[-1] if history else None
        created = parse_time(pod["metadata"].get("creationTimestamp"))
        if (
            last is None
            or last.cause != RestartCause.RETRYABLE_EXIT_CODE
            or lost_node_since(pod) is None
            or created is None
            or created > last.time
            or (when - last.time).total_seconds() > NODE_LOSS_SEEN_WITHIN_S
        ):
            return False
        restarts = self.status.restarts
        record = RestartRecord(
            time=last.time, cause=RestartCause.NODE_LOST, charged=False, pod=pod["metadata"]["name"]
        )
        self.status.restarts = RestartStatus(
            count=restarts.count - last.charged,
            disruptions=restarts.disruptions + last.charged,
            history=[*history[:-1], record],
        )
        self.events.append(
            Event(
                "Normal",
                RestartCause.NODE_LOST.value,
                f"the node of worker {record.pod} stopped answering: the restart after worker "
                f"{last.pod} exited is a disruption, not charged "
                f"({self.status.restarts.count}/{self.spec.failure_policy.max_restarts} charged)",
            )
        )
        return True

    def blame_order(self, pod: Object) -> tuple[bool, datetime]:
        """Which of the stopped pods names the restart: a cause of its own (a disruption, an
        OOM kill, a deletion, a lost node) before a plain exit code, since a plain exit code is
        also how the peers of a broken group end; then the earliest."""
        cause, _ = classify_failure(self.job, pod)
        plain_exit = cause in (None, RestartCause.RETRYABLE_EXIT_CODE)
        return plain_exit, self.failure_time(pod)

    def failure_time(self, pod: Object) -> datetime:
        """When the pod left its group: its container stopped, it was disrupted, its node stopped
        answering, or it was deleted (in that order of preference; now when none is known)."""
        disruption = _disruption(pod) or {}
        stopped = (
            parse_time(_terminated(pod).get("finishedAt"))
            or parse_time(disruption.get("lastTransitionTime"))
            or lost_node_since(pod)
            or parse_time(pod["metadata"].get("deletionTimestamp"))
        )
        return stopped or self.now

    def _count(
        self,
        cause: RestartCause,
        pod: str | None,
        exit_code: int | None,
        reason: str | None,
        when: datetime,
    ) -> None:
        restarts = self.status.restarts
        charged = not cause.is_disruption
        self.new_restarts.append(cause)
        record = RestartRecord(
            time=when, cause=cause, charged=charged, pod=pod, exit_code=exit_code, reason=reason
        )
        self.status.restarts = RestartStatus(
            count=restarts.count + charged,
            disruptions=restarts.disruptions + (not charged),
            history=[*restarts.history, record][-RESTART_HISTORY_LIMIT:],
        )
        detail = f" with exit code {exit_code}" if exit_code is not None else ""
        budget = f"{self.status.restarts.count}/{self.spec.failure_policy.max_restarts} charged"
        self.events.append(
            Event(
                "Warning",
                cause.value,
                f"worker {pod or 'group'} failed{detail}: restarting ({budget})",
            )
        )

    def job_outcome(self) -> JobOutcome | None:
        """What the worker Job itself says: complete or failed."""
        worker_job = self.observed.worker_job
        if jobs.complete(worker_job):
            return Outcome(Phase.SUCCEEDED, Reason.COMPLETED, "all workers completed")
        failed = jobs.failed(worker_job)
        if failed is None:
            return None
        reasons = {
            "BackoffLimitExceeded": Reason.BACKOFF_LIMIT_EXCEEDED,
            "DeadlineExceeded": Reason.DEADLINE_EXCEEDED,
            "PodFailurePolicy": Reason.PERMANENT_EXIT_CODE,
        }
        reason = reasons.get(failed.get("reason", ""), Reason.BACKOFF_LIMIT_EXCEEDED)
        return Outcome(Phase.FAILED, reason, failed.get("message") or reason.value)

    def deadlines(self) -> JobOutcome | None:
        spec, status = self.spec, self.status
        if status.restarts.count > spec.failure_policy.max_restarts:
            return Outcome(
                Phase.FAILED,
                Reason.BACKOFF_LIMIT_EXCEEDED,
                f"{status.restarts.count} restarts exceed failurePolicy.maxRestarts "
                f"({spec.failure_policy.max_restarts})",
            )
        left = _seconds_left(status.start_time, spec.active_deadline_seconds, self.now)
        if left is not None and left <= 0:
            return Outcome(
                Phase.FAILED,
                Reason.DEADLINE_EXCEEDED,
                f"running longer than activeDeadlineSeconds ({spec.active_deadline_seconds} s)",
            )
        self.wake_in(left)
        return None

    def start_began(self, waiting: Sequence[Object]) -> datetime | None:
        """When the current start of the group began: the latest of the worker Job's start (its
        creation, or its admission or resumption when it was suspended), the last restart, the
        moment the group was last seen leaving Running, and the creation of the newest waiting
        pod (a replacement is created only once the pod it replaces is gone). Never earlier: a
        group that ran for hours and lost a worker starts anew from that loss."""
        worker_job = self.observed.worker_job or {}
        marks = [
            parse_time((worker_job.get("status") or {}).get("startTime"))
            or parse_time(worker_job.get("metadata", {}).get("creationTimestamp")),
            *(parse_time(p["metadata"].get("creationTimestamp")) for p in waiting),
        ]
        if self.status.restarts.history:
            marks.append(self.status.restarts.history[-1].time)
        marks.append(self.replacements_due())
        running = find_condition(self.previous.conditions, ConditionType.RUNNING)
        if running is not None and running.status == ConditionStatus.TRUE:
            marks.append(self.now)  # leaving Running now
        elif running is not None and (self.status.restarts.history or self.status.progress):
            marks.append(running.last_transition_time)  # when it left Running (it has run)
        return max((mark for mark in marks if mark is not None), default=None)

    def replacements_due(self) -> datetime | None:
        """When the Job controller creates the replacements of the worker Job's failed pods.

        It holds them back by its pod-failure back-off: 10 s after the last failure, doubled for
        each further pod that failed since a pod of the Job last succeeded, up to 10 minutes. A
        training Job's pods succeed only at its end, so the back-off grows all run long (each
        broken group adds every worker's failure), and a start deadline that counted the wait
        would end a run at its third or fourth restart. The start counts from the end of it.
        """
        failed = self.failure_times()
        if not failed:
            return None
        return max(failed) + timedelta(seconds=_pod_failure_backoff(len(failed)))

    def failure_times(self) -> list[datetime]:
        """When each failed pod of the worker Job failed."""
        return [
            self.failure_time(pod)
            for pod in self.pods
            if (pod.get("status") or {}).get("phase") == "Failed"
        ]

    def backed_off(self) -> tuple[int, float] | None:
        """The failed pods and the seconds left of the Job controller's back-off, when it would
        hold their replacements for longer than its first step (10 s) from now: the worker Job
        is then replaced, as JobSet replaces its Jobs, since a new Job starts its pods at once.

        The back-off doubles with every failed pod of the Job and is never reset while its pods
        run, so waiting it out would cost a group of eight workers ten minutes at its first
        restart (all eight stop with the group) and any group minutes per restart in a run's
        third hour. A wait of 10 s or less, such as one failed pod's, is waited out in place, and
        so is any wait while a worker of the Job still runs: it may be one whose node stopped
        answering and is not yet seen lost (its peers exit at once, the node is marked only
        node-monitor-grace-period later), which must be recorded as NodeLost and replaced with
        its own Job, not orphaned on that node by the Job's deletion."""
        if any(_is_active(pod) for pod in self.pods):
            return None
        due = self.replacements_due()
        if due is None:
            return None
        left = (due - self.now).total_seconds()
        return (len(self.failure_times()), left) if left > JOB_POD_FAILURE_BACKOFF_S else None

    def stuck_terminating(self) -> list[str]:
        """Worker pods still terminating stuckTerminationSeconds past their grace period: their
        kubelet no longer answers, and the Job controller waits for them to be gone."""
        grace = self.spec.failure_policy.stuck_termination_seconds
        stuck = []
        for pod in self.pods:
            deadline = parse_time(pod["metadata"].get("deletionTimestamp"))
            finished = (pod.get("status") or {}).get("phase") in {"Failed", "Succeeded"}
            if deadline is None or finished:
                continue
            left = _seconds_left(deadline, grace, self.now)
            if left is not None and left <= 0:
                stuck.append(pod["metadata"]["name"])
            self.wake_in(left)
        return stuck

    def starting(self) -> tuple[JobOutcome, Action | None]:
        """Not all workers are ready: why, whether startDeadlineSeconds has passed, and whether
        the worker Job is replaced rather than waited for (`backed_off`).

        A worker whose node stopped answering is not starting: the group waits for Kubernetes to
        evict it (spec.failurePolicy.unreachableNodeSeconds) and for the operator to force-delete
        it if it is stuck terminating; the start deadline then counts from its replacement."""
        lost = [p["metadata"]["name"] for p in self.pods if lost_node_since(p) is not None]
        if lost:
            return Outcome(
                Phase.RESTARTING,
                Reason.NODE_LOST,
                f"the node of worker {', '.join(sorted(lost))} stopped answering: waiting for "
                "its eviction and replacement",
            ), None
        backed_off = self.backed_off()
        if backed_off is not None:
            return Outcome(
                Phase.RESTARTING,
                Reason.RESTARTING,
                f"replacing the worker Job: the Job controller would hold the replacements of "
                f"its {backed_off[0]} failed pods back for {backed_off[1]:.0f} s",
            ), Action.RESTART
        waiting = [p for p in self.pods if _is_active(p) and not _is_ready(p)]
        blocker = start_blocker(waiting, Reason)
        since = self.start_began(waiting)
        left = _seconds_left(since, self.spec.start_deadline_seconds, self.now)
        if left is not None and left <= 0:
            detail = blocker[1] if blocker else self.last_blocker() or "workers not running"
            return Outcome(
                Phase.FAILED,
                Reason.START_DEADLINE_EXCEEDED,
                f"workers not all running after startDeadlineSeconds "
                f"({self.spec.start_deadline_seconds} s): {detail}",
            ), Action.STOP
        self.wake_in(left)
        if blocker is not None:
            return Outcome(Phase.STARTING, blocker[0], blocker[1]), None
        was_running = self.previous.phase in {Phase.RUNNING, Phase.RESTARTING}
        if self.recorded or (self.status.restarts.history and was_running):
            return Outcome(
                Phase.RESTARTING, Reason.RESTARTING, "the worker group is re-forming"
            ), None
        ready = sum(_is_ready(p) for p in self.pods)
        if self.scaling():
            return Outcome(
                Phase.STARTING,
                Reason.SCALING,
                f"scaling to {self.spec.replicas} workers: {ready} running",
            ), None
        return Outcome(
            Phase.STARTING,
            Reason.WORKERS_STARTING,
            f"{ready}/{self.spec.replicas} workers running",
        ), None

    def scaling(self) -> bool:
        """True while a running group re-forms at a new size (the scale subresource changed
        spec.replicas)."""
        ready = find_condition(self.previous.conditions, ConditionType.READY)
        if ready is not None and ready.reason == Reason.SCALING.value:
            return True
        desired = self.previous.replicas.desired
        return self.previous.phase == Phase.RUNNING and desired not in {0, self.spec.replicas}

    def last_blocker(self) -> str | None:
        """What last kept a worker from starting, as the Ready condition said it."""
        ready = find_condition(self.previous.conditions, ConditionType.READY)
        return ready.message if ready is not None and is_start_blocker(ready.reason) else None

    def hung(self) -> bool:
        """True when progress has not advanced for progressDeadlineSeconds: no new step, and no
        new stage (status.progress.stage), since the later of the two or of the group becoming
        Running. A stage of the start (restoring a checkpoint, compiling) restarts the clock, as
        a step does, so a run hours old whose restore or first step takes longer than a step is
        not restarted as hung while that stage still ends within the deadline. A run that waits
        for its object store is not hung: restarting it would not bring the store back, and the
        store's retries bound the wait."""
        limit = self.spec.progress_deadline_seconds
        running = find_condition(self.previous.conditions, ConditionType.RUNNING)
        if limit is None or running is None or running.status != ConditionStatus.TRUE:
            return False
        progress = self.status.progress
        if progress is not None and progress.storage_waiting_since is not None:
            return False
        last = max(
            t
            for t in (
                running.last_transition_time,
                progress.updated_at if progress else None,
                progress.stage_since if progress else None,
            )
            if t
        )
        left = _seconds_left(last, limit, self.now)
        self.wake_in(left)
        return left is not None and left <= 0

    def hung_stage(self) -> str:
        """The stage a hung group was in, as its report says, for the message."""
        progress = self.status.progress
        stage = progress.stage if progress is not None else None
        return f" in stage {stage.value}" if stage is not None else ""

    def outcome(self) -> tuple[JobOutcome, Action | None]:
        spec = self.spec
        # Also once finished: the last report can reach the operator's cache after the Job's end.
        if self.observed.progress is not None:
            self.status.progress = self.observed.progress
        if self.previous.phase in TERMINAL:
            condition = find_condition(self.previous.conditions, self.previous.phase.value)
            reason = Reason(condition.reason) if condition else Reason.COMPLETED
            return Outcome(
                self.previous.phase, reason, condition.message if condition else ""
            ), None
        done = self.job_outcome()
        if done is not None:
            return done, None
        permanent = self.record_failures()
        if permanent is not None:
            return permanent, Action.STOP
        failed = self.deadlines()
        if failed is not None:
            return failed, Action.STOP
        if spec.suspend:
            return Outcome(Phase.SUSPENDED, Reason.SUSPENDED, "spec.suspend is true"), None
        if self.observed.waiting_for_dataset:
            return Outcome(
                Phase.PENDING, Reason.WAITING_FOR_DATASET, self.observed.waiting_for_dataset
            ), None
        worker_job = self.observed.worker_job
        if worker_job is None:
            return Outcome(Phase.PENDING, Reason.WORKERS_STARTING, "creating the workers"), None
        if spec.scheduling.queue_name and (worker_job.get("spec") or {}).get("suspend"):
            return Outcome(
                Phase.PENDING,
                Reason.QUEUED,
                f"waiting for admission by queue {spec.scheduling.queue_name}",
            ), None
        ready = sum(_is_ready(p) for p in self.pods)
        finished = sum(p.get("status", {}).get("phase") == "Succeeded" for p in self.pods)
        if finished and ready + finished >= spec.replicas:
            # The last step is done: workers exit one by one, and the Job completes after them.
            return Outcome(
                Phase.RUNNING,
                Reason.WORKERS_RUNNING,
                f"{finished}/{spec.replicas} workers finished",
            ), None
        elastic = self.elastic_group()
        if ready < spec.replicas and elastic is None:
            return self.starting()
        if self.hung():
            self._count(RestartCause.HUNG, None, None, None, self.now)
            if self.status.restarts.count > spec.failure_policy.max_restarts:
                return self.deadlines() or Outcome(
                    Phase.FAILED, Reason.BACKOFF_LIMIT_EXCEEDED, "restart budget spent"
                ), Action.STOP
            return Outcome(
                Phase.RESTARTING,
                Reason.HUNG,
                "no training step for progressDeadlineSeconds "
                f"({spec.progress_deadline_seconds} s){self.hung_stage()}",
            ), Action.RESTART
        message = f"{ready}/{spec.replicas} workers running"
        if ready < spec.replicas:
            message += f" (elastic, at least {spec.min_replicas}): {elastic}"
            if self.scaling():
                return Outcome(Phase.RUNNING, Reason.SCALING, f"scaling: {message}"), None
        return Outcome(Phase.RUNNING, Reason.WORKERS_RUNNING, message), None

    def elastic_group(self) -> str | None:
        """Why an elastic group trains below spec.replicas, when it does: at least minReplicas
        workers of the current group are ready (all created after the last restart began, so
        no worker of a broken group is counted) and the others cannot start yet. None when the
        group is not such a group; the others then get the start deadline as usual."""
        minimum = self.spec.min_replicas
        if minimum is None or minimum >= self.spec.replicas or self.recorded:
            return None
        if any(lost_node_since(pod) is not None for pod in self.pods):
            return None
        history = self.status.restarts.history
        began = history[-1].time if history else None
        members = [
            pod
            for pod in self.pods
            if _is_ready(pod)
            and (
                began is None
                or (parse_time(pod["metadata"].get("creationTimestamp")) or began) > began
            )
        ]
        if len(members) < minimum:
            return None
        waiting = [p for p in self.pods if _is_active(p) and not _is_ready(p)]
        blocker = start_blocker(waiting, Reason)
        return blocker[1] if blocker else "the others are starting"


def _conditions(
    previous: Sequence[Condition], outcome: JobOutcome, generation: int | None, now: datetime
) -> list[Condition]:
    phase = outcome.phase
    condition = condition_writer(outcome, generation, now)
    blocked = is_start_blocker(outcome.reason)
    wanted = [
        condition(ConditionType.READY, phase in {Phase.RUNNING, Phase.SUCCEEDED}),
        condition(
            ConditionType.RECONCILING,
            phase in {Phase.PENDING, Phase.STARTING, Phase.RESTARTING} and not blocked,
        ),
        condition(ConditionType.STALLED, phase == Phase.FAILED or blocked),
        condition(ConditionType.RUNNING, phase == Phase.RUNNING),
        condition(ConditionType.SUCCEEDED, phase == Phase.SUCCEEDED),
        condition(ConditionType.FAILED, phase == Phase.FAILED),
        condition(ConditionType.SUSPENDED, phase == Phase.SUSPENDED),
    ]
    return set_conditions(previous, wanted)


def _transition_event(previous: TrainingJobStatus, outcome: JobOutcome) -> Event | None:
    reason = outcome.reason
    warning = outcome.phase == Phase.FAILED or is_start_blocker(reason) or reason == Reason.HUNG
    return transition_event(previous.phase, previous.conditions, outcome, warning)


def decide(job: TrainingJob, observed: Observed) -> Decision:
    """The new status of `job` given what is observed, and what to do about it."""
    decider = _Decider(job, observed)
    status, now = decider.status, observed.now
    worker_job = observed.worker_job
    if worker_job is not None and status.start_time is None:
        # The Job controller sets startTime when it starts the Job, not while it is suspended
        # (queued by Kueue): activeDeadlineSeconds does not count the time in the queue.
        started = parse_time((worker_job.get("status") or {}).get("startTime"))
        if started is None and not (worker_job.get("spec") or {}).get("suspend"):
            started = jobs.created_at(worker_job, now)
        jobs.stamp_start(status, started)
    outcome, action = decider.outcome()
    pods = decider.pods
    jobs.stamp_completion(status, outcome.phase in TERMINAL, worker_job, now)
    status.goodput = measure_status(status, now)
    status.phase = outcome.phase
    status.observed_generation = job.metadata.generation
    status.conditions = _conditions(job.status.conditions, outcome, job.metadata.generation, now)
    desired = 0 if outcome.phase in TERMINAL | {Phase.SUSPENDED} else job.spec.replicas
    status.replicas = ReplicaStatus(
        desired=desired,
        current=sum(_is_active(p) for p in pods),
        ready=sum(_is_ready(p) for p in pods),
    )
    status.selector = worker_selector(job)
    status.world_size = job.spec.replicas * job.spec.nproc_per_node
    force_delete = [] if outcome.phase in TERMINAL else decider.stuck_terminating()
    events = decider.events
    transition = _transition_event(job.status, outcome)
    if transition is not None:
        events.append(transition)
    ttl = job.spec.ttl_seconds_after_finished
    if outcome.phase in TERMINAL and ttl is not None and status.completion_time is not None:
        left = _seconds_left(status.completion_time, ttl, now)
        if left is not None and left <= 0:
            action = Action.DELETE
        decider.wake_in(left)
    if (
        action is None
        and outcome.phase == Phase.FAILED
        and job_condition(worker_job, "Failed") is None
    ):
        action = Action.STOP
    return Decision(
        status=status,
        events=events,
        action=action,
        recorded_pods=decider.recorded,
        new_restarts=decider.new_restarts,
        force_delete=force_delete,
        requeue_after=min(decider.waits, default=None),
    )
