"""Pure status computation of a DataIngest: what is observed of its bucket and Jobs in, a decision
out.

`decide` maps the last storage check, the crawl and publish Jobs, the counters of the shards that
finished and the published manifest to the new status (phase, kstatus conditions with typed
reasons, counters, dataset, storage), the Events of the transition, which children should exist
and when to look again. The phases follow the work:

    Provisioning   the bucket is not ready (its condition says why; retried)
    Crawling       the crawl Job's shards run (or cannot start: the reason says why, e.g.
                   ImagePullBackOff or Unschedulable, and Stalled is True meanwhile)
    Deduplicating  every shard succeeded; the publish Job deduplicates across them
    Publishing     the manifest is written (status.dataset is set); the publish Job finishes
    Succeeded      the publish Job completed
    Failed         a shard or the publish Job failed for good: BackoffLimitExceeded when its pod
                   failed on every try, ShardFailed or PublishFailed when it exited with a code
                   that a retry cannot fix

With `spec.schedule`, a finished run (Succeeded or Failed) is followed by the next one when the
schedule has fired since the last one fell due (or, before the first, since the first crawl
started): `currentVersion` goes up by one, the counters and times start again, `lastScheduleTime`
records when the run fell due, an Event says so, and the phases follow the work again while
`status.dataset` stays on the latest published version until the new one is. A finished run asks
to be woken when `nextScheduleTime` comes (the periodic resync catches a missed wake-up);
meanwhile its `Reconciling` condition is False with reason WaitingForSchedule.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from kubeforge.api.dataingest import (
    CrawlCounters,
    DataIngest,
    DataIngestConditionType,
    DataIngestPhase,
    DataIngestReason,
    DataIngestStatus,
    DatasetStatus,
    StorageStatus,
)
from kubeforge.api.meta import Condition, ConditionStatus, find_condition, set_conditions
from kubeforge_operator.base import jobs
from kubeforge_operator.base.outcome import Outcome, condition_writer, transition_event
from kubeforge_operator.base.pods import is_start_blocker, start_blocker
from kubeforge_operator.dataingest.schedule import latest_time, next_time
from kubeforge_operator.objects import Event, Object

Phase = DataIngestPhase
Reason = DataIngestReason
ConditionType = DataIngestConditionType
IngestOutcome = Outcome[Phase, Reason]

TERMINAL = {Phase.SUCCEEDED, Phase.FAILED}
STORAGE_RETRY_SECONDS = 30.0
"""How soon a bucket that is not ready is provisioned again."""
MANIFEST_POLL_SECONDS = 3.0
"""How often the manifest is looked for while the publish Job deduplicates."""
SCHEDULE_SLACK_SECONDS = 0.5
"""How long after the next run falls due a finished ingest is looked at again."""


class Stage(enum.Enum):
    """Which children should exist."""

    NONE = "none"  # not yet (no bucket) or no more (finished)
    CRAWL = "crawl"  # the config and the crawl Job
    PUBLISH = "publish"  # and the publish Job


RETRIES_USED_UP = frozenset({"BackoffLimitExceeded", "MaxFailedIndexesExceeded", "FailedIndexes"})
"""The Job's reasons for failing once a pod (of a shard, for the Indexed crawl Job) failed on
every try its backoff limit allows."""
COMPONENT_LABEL = "app.kubernetes.io/component"


@dataclass(frozen=True)
class StorageCheck:
    """The outcome of the last provisioning of the bucket."""

    ready: bool
    reason: Reason
    message: str
    generation: int | None
    """The metadata.generation of the spec the bucket was provisioned for."""


@dataclass(frozen=True)
class Published:
    """What the manifest of the published dataset says."""

    dataset: DatasetStatus
    counters: CrawlCounters


@dataclass(frozen=True)
class Observed:
    """What the reconcile saw of the ingest's world, at one instant."""

    now: datetime
    storage: StorageCheck
    crawl_job: Object | None = None
    publish_job: Object | None = None
    shard_counters: CrawlCounters | None = None  # summed over the finished shards' markers
    published: Published | None = None
    pods: Sequence[Object] = ()  # the crawl and publish pods (summaries with labels and status)


@dataclass(frozen=True)
class Decision:
    status: DataIngestStatus
    stage: Stage
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def storage_ready(ingest: DataIngest, created: bool, unsupported: Sequence[str]) -> StorageCheck:
    """The check of a bucket that is ready, naming the requested settings the server lacks."""
    bucket, generation = ingest.spec.storage.bucket, ingest.metadata.generation
    state = "created" if created else "exists"
    if unsupported:
        message = f"bucket {bucket} {state}, but this S3 server does not support: " + "; ".join(
            unsupported
        )
        return StorageCheck(True, Reason.STORAGE_FEATURE_UNSUPPORTED, message, generation)
    reason = Reason.BUCKET_CREATED if created else Reason.BUCKET_FOUND
    message = f"bucket {bucket} {state} with the requested settings"
    return StorageCheck(True, reason, message, generation)


def last_storage_check(ingest: DataIngest) -> StorageCheck | None:
    """The storage check recorded in status, None when the bucket was never provisioned."""
    condition = find_condition(ingest.status.conditions, ConditionType.STORAGE_READY)
    if condition is None:
        return None
    return StorageCheck(
        condition.status == ConditionStatus.TRUE,
        Reason(condition.reason),
        condition.message,
        condition.observed_generation,
    )


def needs_provisioning(ingest: DataIngest, last: StorageCheck | None) -> bool:
    """Whether to provision now: never done, not ready, or the spec changed since."""
    if ingest.status.phase in TERMINAL:
        return False
    return last is None or not last.ready or last.generation != ingest.metadata.generation


def next_schedule_time(ingest: DataIngest) -> datetime | None:
    """When the next scheduled run falls due: the schedule's first time after the last run fell
    due (or the first crawl started). None without a schedule, or before the first crawl."""
    schedule, status = ingest.spec.schedule, ingest.status
    anchor = status.last_schedule_time or status.start_time or status.completion_time
    if schedule is None or anchor is None:
        return None
    return next_time(schedule, anchor)


def scheduled_run(ingest: DataIngest, now: datetime) -> datetime | None:
    """When the run that should start now fell due; None unless one is due and the last run has
    finished (a run never overlaps the previous one)."""
    due = next_schedule_time(ingest)
    if ingest.spec.schedule is None or due is None or due > now:
        return None
    if ingest.status.phase not in TERMINAL:
        return None
    return latest_time(ingest.spec.schedule, due, now)


def _next_run(ingest: DataIngest, due: datetime) -> DataIngest:
    """The ingest as its next run starts: the next version, its counters and times anew."""
    status = ingest.status.model_copy(
        update={
            "phase": None,
            "current_version": ingest.status.current_version + 1,
            "counters": CrawlCounters(),
            "last_schedule_time": due,
            "start_time": None,
            "completion_time": None,
        }
    )
    return ingest.model_copy(update={"status": status})


def completed_shards(crawl_job: Object | None) -> set[int]:
    """The shards whose pod succeeded, from the Job's `status.completedIndexes` ("0-2,5")."""
    text = ((crawl_job or {}).get("status") or {}).get("completedIndexes") or ""
    shards: set[int] = set()
    for interval in filter(None, text.split(",")):
        first, _, last = interval.partition("-")
        shards.update(range(int(first), int(last or first) + 1))
    return shards


def pod_blocker(pods: Sequence[Object], component: str) -> tuple[Reason, str] | None:
    """Why a pod of a stage (`crawl` or `publish`) cannot start, or None."""
    of_stage = (
        p for p in pods if (p["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == component
    )
    return start_blocker(of_stage, Reason)


def _failure_reason(failed: Object, permanent: Reason) -> Reason:
    """BackoffLimitExceeded when the Job's retries ran out, else `permanent` (a pod failure
    policy failed it at once)."""
    return Reason.BACKOFF_LIMIT_EXCEEDED if failed.get("reason") in RETRIES_USED_UP else permanent


def _outcome(ingest: DataIngest, observed: Observed) -> tuple[IngestOutcome, Stage]:
    previous = ingest.status
    if previous.phase in TERMINAL:
        condition = find_condition(previous.conditions, ConditionType.READY)
        reason = Reason(condition.reason) if condition else Reason.PUBLISHED
        return Outcome(previous.phase, reason, condition.message if condition else ""), Stage.NONE
    storage = observed.storage
    if not storage.ready:
        return Outcome(Phase.PROVISIONING, storage.reason, storage.message), Stage.NONE
    shards = ingest.spec.shards
    crawl, publish = observed.crawl_job, observed.publish_job
    failed = jobs.failed(crawl)
    if failed is not None:
        failed_shards = ((crawl or {}).get("status") or {}).get("failedIndexes")
        detail = f" (shards {failed_shards})" if failed_shards else ""
        message = f"the crawl failed{detail}: {failed.get('message') or failed.get('reason')}"
        reason = _failure_reason(failed, Reason.SHARD_FAILED)
        return Outcome(Phase.FAILED, reason, message), Stage.NONE
    if crawl is None:
        starting = f"starting {shards} shards"
        return Outcome(Phase.CRAWLING, Reason.SHARDS_STARTING, starting), Stage.CRAWL
    if not jobs.complete(crawl):
        blocked = pod_blocker(observed.pods, "crawl")
        if blocked is not None:
            return Outcome(Phase.CRAWLING, *blocked), Stage.CRAWL
        done = f"{len(completed_shards(crawl))}/{shards} shards done"
        return Outcome(Phase.CRAWLING, Reason.SHARDS_RUNNING, done), Stage.CRAWL
    failed = jobs.failed(publish)
    if failed is not None:
        message = f"publishing failed: {failed.get('message') or failed.get('reason')}"
        reason = _failure_reason(failed, Reason.PUBLISH_FAILED)
        return Outcome(Phase.FAILED, reason, message), Stage.NONE
    published = observed.published
    if published is None:
        blocked = pod_blocker(observed.pods, "publish")
        if blocked is not None:
            return Outcome(Phase.DEDUPLICATING, *blocked), Stage.PUBLISH
        message = f"removing duplicates across the {shards} shards, then writing the manifest"
        return Outcome(Phase.DEDUPLICATING, Reason.DEDUPLICATION_RUNNING, message), Stage.PUBLISH
    dataset = published.dataset
    summary = f"dataset {dataset.uri}: {dataset.documents} documents"
    if not jobs.complete(publish):
        message = f"{summary} written; waiting for the publish Job to finish"
        return Outcome(Phase.PUBLISHING, Reason.PUBLISHED, message), Stage.PUBLISH
    return Outcome(Phase.SUCCEEDED, Reason.PUBLISHED, f"published {summary}"), Stage.NONE


def _conditions(
    ingest: DataIngest,
    outcome: IngestOutcome,
    storage: StorageCheck,
    status: DataIngestStatus,
    now: datetime,
) -> list[Condition]:
    generation = ingest.metadata.generation
    phase = outcome.phase
    stalled = phase == Phase.FAILED or not storage.ready or is_start_blocker(outcome.reason)
    condition = condition_writer(outcome, generation, now)

    reconciling = condition(ConditionType.RECONCILING, phase not in TERMINAL and not stalled)
    if phase in TERMINAL and status.next_schedule_time is not None:
        due = status.next_schedule_time.isoformat()
        waiting = f"the run of dataset version {status.current_version + 1} falls due at {due}"
        reconciling = condition(
            ConditionType.RECONCILING, False, Reason.WAITING_FOR_SCHEDULE, waiting
        )

    # Stamped with the generation the bucket was provisioned for: a newer spec is provisioned anew.
    storage_condition = replace(condition, generation=storage.generation)(
        ConditionType.STORAGE_READY, storage.ready, storage.reason, storage.message
    )

    published = status.dataset is not None
    wanted = [
        condition(ConditionType.READY, phase == Phase.SUCCEEDED),
        reconciling,
        condition(ConditionType.STALLED, stalled),
        storage_condition,
        condition(ConditionType.CRAWLING, phase == Phase.CRAWLING),
        condition(ConditionType.DEDUPLICATING, phase == Phase.DEDUPLICATING),
        condition(
            ConditionType.PUBLISHED, published, Reason.PUBLISHED if published else outcome.reason
        ),
        condition(ConditionType.FAILED, phase == Phase.FAILED),
    ]
    return set_conditions(ingest.status.conditions, wanted)


def _events(ingest: DataIngest, outcome: IngestOutcome, storage: StorageCheck) -> list[Event]:
    previous = ingest.status
    events = []
    last = last_storage_check(ingest)
    stored = last is not None and (last.reason, last.message) == (storage.reason, storage.message)
    if storage.ready and not stored:
        unsupported = storage.reason == Reason.STORAGE_FEATURE_UNSUPPORTED
        kind = "Warning" if unsupported else "Normal"
        events.append(Event(kind, storage.reason.value, storage.message))
    blocked = is_start_blocker(outcome.reason)
    warning = outcome.phase == Phase.FAILED or not storage.ready or blocked
    transition = transition_event(previous.phase, previous.conditions, outcome, warning)
    return events if transition is None else [*events, transition]


def decide(ingest: DataIngest, observed: Observed) -> Decision:
    """The new status of `ingest` given what is observed, and which children it needs.

    When a scheduled run starts, `observed` is of the new run: its Jobs, none yet.
    """
    now, storage = observed.now, observed.storage
    events = []
    due = scheduled_run(ingest, now)
    if due is not None:
        ingest = _next_run(ingest, due)
        version = ingest.status.current_version
        message = f"run of dataset version {version}, due at {due.isoformat()}"
        events.append(Event("Normal", Reason.SCHEDULED_RUN.value, message))
    outcome, stage = _outcome(ingest, observed)
    status = ingest.status.model_copy(deep=True)
    # What the run found, until it has finished (then it is kept): a run whose publish Job is
    # seen complete with its manifest in one look goes to Succeeded with its dataset.
    if ingest.status.phase not in TERMINAL:
        status.storage = StorageStatus(bucket=ingest.spec.storage.bucket, ready=storage.ready)
        if observed.published is not None:
            status.dataset = observed.published.dataset
            status.counters = observed.published.counters
        elif observed.shard_counters is not None:
            status.counters = observed.shard_counters
    crawl_job = observed.crawl_job
    if crawl_job is not None:
        jobs.stamp_start(status, jobs.created_at(crawl_job, now))
    jobs.stamp_completion(status, outcome.phase in TERMINAL, observed.publish_job, now)
    status.phase = outcome.phase
    status.observed_generation = ingest.metadata.generation
    status.next_schedule_time = next_schedule_time(ingest.model_copy(update={"status": status}))
    status.conditions = _conditions(ingest, outcome, storage, status, now)
    requeue = None
    if outcome.phase == Phase.PROVISIONING:
        requeue = STORAGE_RETRY_SECONDS
    elif outcome.phase == Phase.DEDUPLICATING:
        requeue = MANIFEST_POLL_SECONDS
    elif outcome.phase in TERMINAL and status.next_schedule_time is not None:
        # Woken when the next run falls due (a moment late, so that the schedule has fired).
        requeue = (
            max((status.next_schedule_time - now).total_seconds(), 0.0) + SCHEDULE_SLACK_SECONDS
        )
    return Decision(status, stage, [*events, *_events(ingest, outcome, storage)], requeue)
