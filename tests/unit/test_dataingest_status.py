"""The pure status decision of a DataIngest: storage check, Jobs and dataset in, status out.

Nothing is faked but the inputs: Jobs are the dicts the API server would return.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeforge.api.dataingest import CrawlCounters, DataIngest, DatasetStatus
from kubeforge_operator.dataingest.status import (
    MANIFEST_POLL_SECONDS,
    STORAGE_RETRY_SECONDS,
    Decision,
    Observed,
    Published,
    Reason,
    Stage,
    StorageCheck,
    completed_shards,
    decide,
    last_storage_check,
    needs_provisioning,
    storage_ready,
)
from tests.dataingest_cases import MINIMAL_SPEC

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DATASET = DatasetStatus(
    uri="s3://acme-datasets/datasets/web/v1",
    version=1,
    documents=40,
    bytes=9000,
    manifest="s3://acme-datasets/datasets/web/v1/manifest.json",
)
COUNTERS = CrawlCounters(pages_by_status={"2xx": 50}, documents_kept=40, duplicates_removed=3)


def ingest(status: dict[str, Any] | None = None, generation: int = 2, **spec: Any) -> DataIngest:
    return DataIngest.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "u", "generation": generation},
            "spec": {**copy.deepcopy(MINIMAL_SPEC), "shards": 4, **spec},
            "status": status or {},
        }
    )


def job(*conditions: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-crawl", "creationTimestamp": NOW.isoformat()},
        "status": {
            "conditions": [{"type": kind, "status": "True"} for kind in conditions],
            **status,
        },
    }


def ready(built: DataIngest, *, created: bool = True, unsupported: tuple[str, ...] = ()) -> Any:
    return storage_ready(built, created, unsupported)


def condition(decision: Decision | DataIngest, kind: str) -> Any:
    return next(c for c in decision.status.conditions if c.type == kind)


def then(decision: Decision, generation: int = 2) -> DataIngest:
    """The ingest with the decided status, as the next reconcile reads it."""
    return ingest(decision.status.model_dump(mode="json", by_alias=True), generation)


def test_a_storage_failure_stalls_in_provisioning_and_is_retried() -> None:
    built = ingest()
    check = StorageCheck(False, Reason.CREDENTIALS_MISSING, "Secret s3 not found", 2)
    decision = decide(built, Observed(NOW, check))
    assert decision.status.phase == "Provisioning"
    assert decision.stage is Stage.NONE
    assert decision.requeue_after == STORAGE_RETRY_SECONDS
    assert condition(decision, "Stalled").status == "True"
    assert condition(decision, "Reconciling").status == "False"
    storage = condition(decision, "StorageReady")
    assert (storage.status, storage.reason, storage.message) == (
        "False",
        "CredentialsMissing",
        "Secret s3 not found",
    )
    assert condition(decision, "Ready").reason == "CredentialsMissing"
    assert decision.status.storage is not None
    assert not decision.status.storage.ready
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "CredentialsMissing")]


def test_a_ready_bucket_starts_the_crawl() -> None:
    built = ingest()
    decision = decide(built, Observed(NOW, ready(built)))
    assert decision.status.phase == "Crawling"
    assert decision.stage is Stage.CRAWL
    assert condition(decision, "Crawling").reason == "ShardsStarting"
    assert condition(decision, "StorageReady").reason == "BucketCreated"
    assert [(e.type, e.reason) for e in decision.events] == [
        ("Normal", "BucketCreated"),
        ("Normal", "ShardsStarting"),
    ]
    # Nothing changed: nothing to tell.
    assert decide(then(decision), Observed(NOW, ready(built))).events == []


def test_an_unsupported_setting_is_named_in_a_warning_and_does_not_block() -> None:
    built = ingest()
    unsupported = ("public access block (PutPublicAccessBlock): NotImplemented",)
    decision = decide(built, Observed(NOW, ready(built, unsupported=unsupported)))
    storage = condition(decision, "StorageReady")
    assert (storage.status, storage.reason) == ("True", "StorageFeatureUnsupported")
    assert unsupported[0] in storage.message
    assert ("Warning", "StorageFeatureUnsupported") in [(e.type, e.reason) for e in decision.events]
    assert decision.stage is Stage.CRAWL


def test_running_shards_report_the_finished_shards_counters() -> None:
    built = ingest()
    running = job(completedIndexes="0,2-3")
    decision = decide(built, Observed(NOW, ready(built), running, shard_counters=COUNTERS))
    assert decision.status.phase == "Crawling"
    assert condition(decision, "Crawling").message == "3/4 shards done"
    assert decision.status.counters == COUNTERS
    assert decision.status.start_time == NOW


@pytest.mark.parametrize(
    ("text", "shards"), [("", set()), ("1", {1}), ("0-2,5", {0, 1, 2, 5}), ("3,7-8", {3, 7, 8})]
)
def test_completed_shards_read_the_indexes_of_the_job(text: str, shards: set[int]) -> None:
    assert completed_shards(job(completedIndexes=text)) == shards


def failed_job(job_reason: str, **status: Any) -> dict[str, Any]:
    """A Job the Job controller failed with `job_reason`."""
    failed = job("FailureTarget", "Failed", **status)
    for kind in failed["status"]["conditions"]:
        kind.update(reason=job_reason, message="Job has failed")
    return failed


@pytest.mark.parametrize(
    ("job_reason", "reason"),
    [
        ("MaxFailedIndexesExceeded", "BackoffLimitExceeded"),  # a shard failed on every try
        ("FailedIndexes", "BackoffLimitExceeded"),
        ("PodFailurePolicy", "ShardFailed"),  # an exit code that a retry cannot fix
    ],
)
def test_a_failed_shard_fails_the_ingest(job_reason: str, reason: str) -> None:
    built = ingest()
    failed = failed_job(job_reason, failedIndexes="2")
    decision = decide(built, Observed(NOW, ready(built), failed))
    assert decision.status.phase == "Failed"
    assert decision.stage is Stage.NONE
    failure = condition(decision, "Failed")
    assert (failure.status, failure.reason) == ("True", reason)
    assert failure.message == "the crawl failed (shards 2): Job has failed"
    assert [(e.type, e.reason) for e in decision.events][-1] == ("Warning", reason)
    assert "shards 2" in failure.message
    assert condition(decision, "Stalled").status == "True"
    assert decision.status.completion_time == NOW


def test_finished_shards_start_the_deduplication_and_look_for_the_manifest() -> None:
    built = ingest()
    decision = decide(built, Observed(NOW, ready(built), job("Complete")))
    assert decision.status.phase == "Deduplicating"
    assert decision.stage is Stage.PUBLISH
    assert condition(decision, "Deduplicating").reason == "DeduplicationRunning"
    assert decision.requeue_after == MANIFEST_POLL_SECONDS


def test_a_written_manifest_publishes_the_dataset_then_the_job_finishes_it() -> None:
    built = ingest()
    published = Published(DATASET, COUNTERS)
    publishing = decide(
        built, Observed(NOW, ready(built), job("Complete"), job(), published=published)
    )
    assert publishing.status.phase == "Publishing"
    assert publishing.status.dataset == DATASET
    assert publishing.status.counters == COUNTERS
    assert condition(publishing, "Published").status == "True"
    assert condition(publishing, "Ready").status == "False"
    done_job = job("Complete", completionTime=(NOW + timedelta(seconds=4)).isoformat())
    later = NOW + timedelta(seconds=5)
    done = decide(
        then(publishing),
        Observed(later, ready(built), job("Complete"), done_job, published=published),
    )
    assert done.status.phase == "Succeeded"
    assert done.stage is Stage.NONE
    assert condition(done, "Ready").status == "True"
    assert condition(done, "Reconciling").status == "False"
    assert done.status.completion_time == NOW + timedelta(seconds=4)
    assert [e.reason for e in done.events] == ["Published"]
    # A finished ingest stays finished, whatever its Jobs do afterwards.
    after = decide(then(done), Observed(later, ready(built)))
    assert after.status.phase == "Succeeded"
    assert after.status.dataset == DATASET
    assert after.stage is Stage.NONE


@pytest.mark.parametrize(
    ("job_reason", "reason"),
    [("BackoffLimitExceeded", "BackoffLimitExceeded"), ("PodFailurePolicy", "PublishFailed")],
)
def test_a_failed_publish_job_fails_the_ingest(job_reason: str, reason: str) -> None:
    built = ingest()
    failed = failed_job(job_reason)
    decision = decide(built, Observed(NOW, ready(built), job("Complete"), failed))
    assert decision.status.phase == "Failed"
    failure = condition(decision, "Failed")
    assert (failure.reason, failure.message) == (reason, "publishing failed: Job has failed")
    # The failure stays as it was decided on every later look.
    assert condition(decide(then(decision), Observed(NOW, ready(built))), "Failed") == failure


def test_the_bucket_is_provisioned_again_only_when_needed() -> None:
    built = ingest()
    assert needs_provisioning(built, None)
    decision = decide(built, Observed(NOW, ready(built)))
    same = then(decision)
    last = last_storage_check(same)
    assert last is not None
    assert (last.ready, last.generation) == (True, 2)
    assert not needs_provisioning(same, last)
    edited = then(decision, generation=3)
    assert needs_provisioning(edited, last_storage_check(edited))
    failing = StorageCheck(False, Reason.STORAGE_ERROR, "AccessDenied", 2)
    stalled = then(decide(built, Observed(NOW, failing)))
    assert needs_provisioning(stalled, last_storage_check(stalled))


def pod(component: str, **status: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": component, "kubeforge.dev/data-ingest": "web"}
    return {"metadata": {"name": f"web-{component}-0-x", "labels": labels}, "status": status}


PULL_BACK_OFF = {
    "containerStatuses": [
        {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "image acme/crawl:9"}}}
    ]
}
UNSCHEDULABLE = {
    "conditions": [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory.",
        }
    ]
}


@pytest.mark.parametrize(
    ("status", "reason", "detail"),
    [
        (PULL_BACK_OFF, "ImagePullBackOff", "image acme/crawl:9"),
        (UNSCHEDULABLE, "Unschedulable", "Insufficient memory"),
    ],
)
def test_a_crawl_pod_that_cannot_start_stalls_the_ingest_with_the_reason(
    status: dict[str, Any], reason: str, detail: str
) -> None:
    built = ingest()
    observed = Observed(NOW, ready(built), crawl_job=job(), pods=[pod("crawl", **status)])
    decision = decide(built, observed)
    assert decision.status.phase == "Crawling"
    assert decision.stage is Stage.CRAWL
    crawling = condition(decision, "Crawling")
    assert (crawling.status, crawling.reason) == ("True", reason)
    assert "web-crawl-0-x" in crawling.message
    assert detail in crawling.message
    assert condition(decision, "Stalled").status == "True"
    assert condition(decision, "Reconciling").status == "False"
    assert [(event.type, event.reason) for event in decision.events][-1] == ("Warning", reason)
    # Once the pod runs, the ingest is crawling again and no longer stalled.
    running = decide(then(decision), Observed(NOW, ready(built), crawl_job=job(), pods=[]))
    assert condition(running, "Crawling").reason == "ShardsRunning"
    assert condition(running, "Stalled").status == "False"


def test_a_blocked_publish_pod_is_reported_while_deduplicating() -> None:
    built = ingest()
    pods = [pod("crawl"), pod("publish", **PULL_BACK_OFF)]
    observed = Observed(NOW, ready(built), crawl_job=job("Complete"), pods=pods)
    decision = decide(built, observed)
    assert decision.status.phase == "Deduplicating"
    assert condition(decision, "Deduplicating").reason == "ImagePullBackOff"
    assert condition(decision, "Stalled").status == "True"


HOURLY = "0 * * * *"


def scheduled(decision: Decision, schedule: str = HOURLY) -> DataIngest:
    """The ingest with the decided status and a schedule, as the next reconcile reads it."""
    return ingest(decision.status.model_dump(mode="json", by_alias=True), schedule=schedule)


def finished(schedule: str = HOURLY) -> DataIngest:
    """A scheduled ingest whose first run (started at NOW) published version 1 at NOW + 4 s."""
    built = ingest(schedule=schedule)
    published = Published(DATASET, COUNTERS)
    done_job = job("Complete", completionTime=(NOW + timedelta(seconds=4)).isoformat())
    observed = Observed(
        NOW + timedelta(seconds=5), ready(built), job("Complete"), done_job, published=published
    )
    return scheduled(decide(built, observed), schedule)


def test_a_publish_job_seen_done_with_its_manifest_at_once_publishes_the_dataset() -> None:
    done = finished()
    assert done.status.phase == "Succeeded"
    assert (done.status.dataset, done.status.counters) == (DATASET, COUNTERS)


def test_a_finished_run_is_woken_when_the_next_one_falls_due() -> None:
    done = finished()
    assert done.status.phase == "Succeeded"
    assert done.status.next_schedule_time == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    assert done.status.last_schedule_time is None
    later = NOW + timedelta(minutes=20)
    waiting = decide(done, Observed(later, ready(done)))
    assert waiting.status.phase == "Succeeded"
    assert waiting.stage is Stage.NONE
    assert waiting.events == []
    assert waiting.requeue_after is not None
    assert waiting.requeue_after == pytest.approx(40 * 60, abs=1)
    assert waiting.requeue_after >= 40 * 60  # never before the schedule fires
    for decision in (done, waiting):
        reconciling = condition(decision, "Reconciling")
        assert (reconciling.status, reconciling.reason) == ("False", "WaitingForSchedule")
        assert reconciling.message == (
            "the run of dataset version 2 falls due at 2026-11-28T13:00:00+00:00"
        )
    assert condition(waiting, "Ready").reason == "Published"
    # Without a schedule a finished ingest never needs another look.
    once = decide(then(decide(done, Observed(later, ready(done)))), Observed(later, ready(done)))
    assert (once.status.next_schedule_time, once.requeue_after) == (None, None)
    assert condition(once, "Reconciling").reason == "Published"


def test_a_due_run_crawls_the_next_version_and_keeps_the_published_one() -> None:
    done = finished()
    due = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    run = decide(done, Observed(due + timedelta(seconds=1), ready(done)))
    status = run.status
    assert (status.phase, status.current_version) == ("Crawling", 2)
    assert run.stage is Stage.CRAWL
    assert condition(run, "Crawling").reason == "ShardsStarting"
    assert (condition(run, "Reconciling").status, condition(run, "Reconciling").reason) == (
        "True",
        "ShardsStarting",
    )
    assert status.last_schedule_time == due
    assert status.next_schedule_time == due + timedelta(hours=1)
    assert status.counters == CrawlCounters()
    assert (status.start_time, status.completion_time) == (None, None)
    # TrainingJobs keep reading version 1 until version 2 is published.
    assert status.dataset == DATASET
    assert condition(run, "Published").status == "True"
    assert condition(run, "Ready").status == "False"
    assert [(e.type, e.reason) for e in run.events] == [
        ("Normal", "ScheduledRun"),
        ("Normal", "ShardsStarting"),
    ]
    assert "version 2" in run.events[0].message
    # The next reconcile sees the run going: no second start.
    again = decide(scheduled(run), Observed(due + timedelta(seconds=2), ready(done)))
    assert again.status.current_version == 2
    assert [e.reason for e in again.events] == []


def test_version_2_is_published_in_place_of_version_1() -> None:
    done = finished()
    due = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    run = scheduled(decide(done, Observed(due, ready(done))))
    second = DATASET.model_copy(update={"uri": DATASET.uri[:-1] + "2", "version": 2})
    published = Published(second, COUNTERS)
    publishing = decide(run, Observed(due, ready(run), job("Complete"), job(), published=published))
    assert publishing.status.phase == "Publishing"
    assert publishing.status.dataset == second


def test_no_run_starts_while_the_previous_one_is_going_then_missed_runs_make_one() -> None:
    every_minute = "* * * * *"
    built = ingest(schedule=every_minute)
    crawling = decide(built, Observed(NOW, ready(built), job()))
    assert crawling.status.next_schedule_time == NOW + timedelta(minutes=1)
    late = NOW + timedelta(minutes=10, seconds=30)
    still = decide(scheduled(crawling, every_minute), Observed(late, ready(built), job()))
    assert (still.status.phase, still.status.current_version) == ("Crawling", 1)
    assert "ScheduledRun" not in [e.reason for e in still.events]
    failed = job("Failed", failedIndexes="0")
    over = decide(scheduled(still, every_minute), Observed(late, ready(built), failed))
    assert over.status.phase == "Failed"
    assert over.requeue_after == pytest.approx(0.5)  # overdue: looked at again at once
    # Ten missed times start one run, due at the latest of them; a failed run is no obstacle.
    run = decide(scheduled(over, every_minute), Observed(late, ready(built)))
    assert (run.status.phase, run.status.current_version) == ("Crawling", 2)
    assert run.status.last_schedule_time == NOW + timedelta(minutes=10)
    assert run.status.next_schedule_time == NOW + timedelta(minutes=11)


def test_a_schedule_that_never_fires_never_starts_a_run() -> None:
    done = finished("0 0 31 2 *")
    assert done.status.next_schedule_time is None
    later = decide(done, Observed(NOW + timedelta(days=400), ready(done)))
    assert (later.status.phase, later.requeue_after) == ("Succeeded", None)
    assert condition(later, "Reconciling").reason == "Published"
