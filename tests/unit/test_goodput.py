"""Goodput of jobs hours old: the pure function, fed as the operator's reconciles feed it, and
the Prometheus observations of what each reconcile settled.

Each test replays a job's life as a series of `measure` calls, each with what a reconcile at that
instant would see (the restarts' failure times, rank 0's latest report), and checks the split of
the wall time into startup, time lost per restart and productive time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from kubeforge.api.trainingjob import (
    CheckpointRecord,
    GoodputStatus,
    ProgressStatus,
    TrainingJob,
    TrainingJobStatus,
)
from kubeforge.goodput import ATTEMPTS_KEPT, STATUS_CLOCK_SECONDS, measure, measure_status
from kubeforge_operator.trainingjob import metrics
from kubeforge_operator.trainingjob.status import Decision
from tests.trainingjob_cases import MINIMAL_SPEC

START = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
"""When the workers were first created; every job here is hours old."""


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return START + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def report(
    step: int,
    stepped: datetime,
    *,
    process: datetime | None,
    first_step: datetime | None,
    checkpoint: datetime | None = None,
) -> ProgressStatus:
    """Rank 0's report; process and first_step None is a trainer older than goodput."""
    return ProgressStatus(
        step=step,
        total_steps=100_000,
        updated_at=stepped,
        started_at=process,
        first_step_at=first_step,
        last_checkpoint=(
            None
            if checkpoint is None
            else CheckpointRecord(step=step, uri="s3://ckpt/step", time=checkpoint)
        ),
    )


class Job:
    """A job's goodput as successive reconciles fold it."""

    def __init__(self) -> None:
        self.goodput: GoodputStatus | None = None
        self.failures: list[datetime] = []

    def reconcile(self, now: datetime, progress: ProgressStatus | None) -> GoodputStatus:
        self.goodput = measure(
            self.goodput, started=START, failures=self.failures, progress=progress, now=now
        )
        return self.goodput


def test_a_restart_in_hour_three_costs_its_downtime_and_the_training_since_the_checkpoint() -> None:
    job = Job()
    first = report(
        900,
        at(hours=2, minutes=55),
        process=at(minutes=1),
        first_step=at(minutes=2),
        checkpoint=at(hours=2, minutes=50),
    )
    before = job.reconcile(at(hours=2, minutes=55), first)
    assert before.startup_seconds == 120
    assert before.lost_seconds == 0
    assert before.ratio == pytest.approx(
        (2 * 3600 + 55 * 60 - 120) / (2 * 3600 + 55 * 60), abs=1e-4
    )

    job.failures.append(at(hours=3))
    # The channel still holds the failed attempt's report while the group re-forms.
    during = job.reconcile(at(hours=3, minutes=1), first)
    restart = during.attempts[1]
    assert restart.began_at == at(hours=3)
    assert restart.rework_seconds == 600  # trained from 2:50 (checkpoint) to 3:00, redone
    assert restart.lost_seconds is None  # under way
    assert during.lost_seconds == 60 + 600

    second = report(
        901,
        at(hours=3, minutes=4),
        process=at(hours=3, minutes=1),
        first_step=at(hours=3, minutes=3),
    )
    after = job.reconcile(at(hours=5), second)
    restart = after.attempts[1]
    assert restart.started_at == at(hours=3, minutes=1)
    assert restart.time_to_first_step_seconds == 180
    assert restart.lost_seconds == 180 + 600
    assert after.wall_seconds == 5 * 3600
    assert after.startup_seconds == 120
    assert after.lost_seconds == 780
    assert after.productive_seconds == 5 * 3600 - 120 - 780
    assert after.ratio == pytest.approx(after.productive_seconds / after.wall_seconds, abs=1e-4)
    # Later reconciles fold nothing twice.
    assert job.reconcile(at(hours=5), second) == after


def test_several_restarts_one_before_any_step_and_one_nobody_recorded() -> None:
    job = Job()
    job.reconcile(at(hours=1), report(10, at(hours=1), process=at(), first_step=at(minutes=5)))
    job.failures.append(at(hours=1, minutes=30))  # no checkpoint yet: all its training is redone
    job.reconcile(at(hours=1, minutes=31), None)
    job.failures.append(at(hours=1, minutes=40))  # the replacement fails before its first step
    second_process = at(hours=1, minutes=45)
    job.reconcile(
        at(hours=2),
        report(20, at(hours=2), process=second_process, first_step=at(hours=1, minutes=50)),
    )
    # torchrun restarts its workers in place: a new process, and no failure recorded.
    third_process = at(hours=3, minutes=2)
    goodput = job.reconcile(
        at(hours=4),
        report(30, at(hours=4), process=third_process, first_step=at(hours=3, minutes=5)),
    )
    first, crashed, recovered, in_place = goodput.attempts
    assert first.time_to_first_step_seconds == 300
    assert crashed.rework_seconds == 85 * 60  # from the first step (0:05) to the failure (1:30)
    assert crashed.time_to_first_step_seconds is None
    assert crashed.lost_seconds == 10 * 60 + 85 * 60  # its whole life, and the rework
    assert recovered.time_to_first_step_seconds == 10 * 60
    assert recovered.lost_seconds == 10 * 60
    # The unrecorded failure stands at the last step seen of the attempt before (2:00).
    assert in_place.began_at == at(hours=2)
    assert in_place.started_at == third_process
    assert in_place.lost_seconds == in_place.rework_seconds + 65 * 60
    assert goodput.lost_seconds == crashed.lost_seconds + recovered.lost_seconds + (
        in_place.lost_seconds
    )
    assert goodput.productive_seconds == 4 * 3600 - 300 - goodput.lost_seconds
    # The pod's failure, seen after the new process reported, is the same restart.
    job.failures.append(at(hours=3))
    assert job.reconcile(at(hours=4), None).attempts == goodput.attempts


def test_a_job_with_no_step_yet_has_spent_all_its_time_starting() -> None:
    job = Job()
    goodput = job.reconcile(at(hours=2), None)
    assert goodput.wall_seconds == 7200
    assert goodput.startup_seconds == 7200
    assert goodput.productive_seconds == 0
    assert goodput.ratio == 0
    assert goodput.attempts[0].time_to_first_step_seconds is None


def test_the_clock_stops_at_completion() -> None:
    status = TrainingJobStatus(
        start_time=START,
        completion_time=at(hours=6),
        progress=report(500, at(hours=6), process=at(), first_step=at(minutes=10)),
    )
    finished = measure_status(status, now=at(hours=6, minutes=1))
    days_later = measure_status(status, now=at(hours=80))
    assert finished == days_later
    assert finished is not None
    assert finished.wall_seconds == 6 * 3600
    assert finished.ratio == pytest.approx(1 - 600 / (6 * 3600), abs=1e-4)


def test_no_goodput_before_the_workers_exist() -> None:
    assert measure_status(TrainingJobStatus(), now=at(hours=1)) is None


def test_reports_of_trainers_older_than_goodput_still_count() -> None:
    old = ProgressStatus.model_validate_json(
        '{"step": 40, "updatedAt": "2026-11-28T07:00:00Z", "loss": 2.5}'
    )
    job = Job()
    first = job.reconcile(at(hours=1), old)
    assert first.attempts[0].first_step_at == at(hours=1)  # the first report seen stands for it
    job.failures.append(at(hours=2))
    # The failed attempt's report is still in the channel: it is not the new attempt's step.
    during = job.reconcile(at(hours=2, minutes=10), old)
    assert during.attempts[1].first_step_at is None
    later = report(41, at(hours=2, minutes=20), process=None, first_step=None)
    assert job.reconcile(at(hours=3), later).attempts[1].time_to_first_step_seconds == 1200


def test_attempts_beyond_the_list_still_count() -> None:
    job = Job()
    goodput = job.reconcile(at(minutes=1), None)
    restarts = ATTEMPTS_KEPT + 3
    for index in range(restarts):
        job.failures.append(at(hours=index + 1))
        goodput = job.reconcile(at(hours=index + 1, minutes=30), None)
    assert len(goodput.attempts) == ATTEMPTS_KEPT
    assert goodput.attempts[0].began_at == START
    # Nothing ever stepped: all the wall time is startup or lost to restarts.
    assert goodput.startup_seconds + goodput.lost_seconds == goodput.wall_seconds
    dropped = restarts + 1 - ATTEMPTS_KEPT  # the attempts after the first restarts, each 1 h
    assert goodput.earlier_lost_seconds == dropped * 3600


def test_the_status_reads_the_clock_in_steps_so_its_own_write_changes_nothing() -> None:
    status = TrainingJobStatus(
        start_time=START, progress=report(50, at(hours=2), process=at(), first_step=at(minutes=1))
    )
    status.goodput = measure_status(status, now=at(hours=2))
    assert measure_status(status, now=at(hours=2, seconds=STATUS_CLOCK_SECONDS - 1)) == (
        status.goodput
    )
    later = measure_status(status, now=at(hours=2, seconds=STATUS_CLOCK_SECONDS))
    assert later is not None
    assert later.wall_seconds == 2 * 3600 + STATUS_CLOCK_SECONDS


def test_a_failure_in_the_same_second_as_the_start_is_still_a_restart() -> None:
    """Pods' times have whole seconds; a process's start and steps have microseconds."""
    job = Job()
    job.reconcile(
        at(seconds=1),
        report(1, at(seconds=0.5), process=at(seconds=0.2), first_step=at(seconds=0.5)),
    )
    job.failures.append(START)  # really at 0.7 s, after the first step
    job.reconcile(at(seconds=2), None)
    resumed = report(2, at(seconds=9), process=at(seconds=4), first_step=at(seconds=9))
    first, restarted = job.reconcile(at(seconds=10), resumed).attempts
    assert first.first_step_at == at(seconds=0.5)
    assert restarted.began_at == START
    assert restarted.started_at == at(seconds=4)
    assert restarted.time_to_first_step_seconds == 9


def test_prometheus_observes_each_attempt_once_even_when_it_began_in_the_start_second() -> None:
    job = Job()
    job.reconcile(
        at(seconds=1), report(1, at(seconds=0.5), process=at(), first_step=at(seconds=0.5))
    )
    job.failures.append(START)
    before = TrainingJob.model_validate(
        {"spec": MINIMAL_SPEC, "status": {"goodput": job.reconcile(at(seconds=2), None)}}
    )
    resumed = report(2, at(seconds=9), process=at(seconds=4), first_step=at(seconds=9))
    after = TrainingJobStatus(
        start_time=START, progress=resumed, goodput=job.reconcile(at(seconds=10), resumed)
    )
    lost = "kubeforge_trainingjob_restart_lost_seconds_count"
    first_step = "kubeforge_trainingjob_time_to_first_step_seconds_count"
    counts = (REGISTRY.get_sample_value(lost) or 0, REGISTRY.get_sample_value(first_step) or 0)
    metrics.observe(("ns", "measured"), before, Decision(status=after))
    assert REGISTRY.get_sample_value(lost) == counts[0] + 1
    assert REGISTRY.get_sample_value(first_step) == counts[1] + 1
    settled = before.model_copy(update={"status": after})
    metrics.observe(("ns", "measured"), settled, Decision(status=after))
    assert REGISTRY.get_sample_value(lost) == counts[0] + 1
    assert REGISTRY.get_sample_value(first_step) == counts[1] + 1
    # The gauge measures the job at the scrape's clock, days after this job's last report.
    labels = {"namespace": "ns", "name": "measured"}
    ratio = REGISTRY.get_sample_value("kubeforge_trainingjob_goodput_ratio", labels)
    assert ratio is not None
    assert 0 < ratio <= 1
    metrics.forget(("ns", "measured"))
    assert REGISTRY.get_sample_value("kubeforge_trainingjob_goodput_ratio", labels) is None
