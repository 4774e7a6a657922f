"""Prometheus metrics of the operator: jobs by phase, reconcile time, restarts, goodput per job,
seconds lost per restart and time to first step per attempt.

Served by `prometheus_client` on the port given to `python -m kubeforge_operator`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from kubeforge.api.trainingjob import TrainingJob, TrainingJobPhase, TrainingJobStatus
from kubeforge.goodput import measure_status
from kubeforge_operator.base.metrics import DecidedStatuses
from kubeforge_operator.base.reconcile import Key
from kubeforge_operator.trainingjob.status import Decision

RECONCILE_SECONDS = Histogram(
    "kubeforge_reconcile_duration_seconds",
    "Time one TrainingJob reconcile takes, API calls included.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RESTARTS = Counter(
    "kubeforge_trainingjob_restarts_total",
    "Restarts of TrainingJob worker groups, by cause.",
    ["cause"],
)
TIME_TO_FIRST_STEP = Histogram(
    "kubeforge_trainingjob_time_to_first_step_seconds",
    "Seconds from the beginning of each attempt of a worker group (the workers' first creation, "
    "or the failure that restarted them) to its first training step.",
    buckets=(5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
LOST_PER_RESTART = Histogram(
    "kubeforge_trainingjob_restart_lost_seconds",
    "Seconds each restart of a worker group cost: from the failure to the first training step "
    "after it, plus the training since the last checkpoint that it threw away.",
    buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)


def _goodput(statuses: Mapping[Key, TrainingJobStatus]) -> Iterator[Metric]:
    """kubeforge_trainingjob_goodput_ratio{namespace,name}, at the scrape's clock."""
    goodput = GaugeMetricFamily(
        "kubeforge_trainingjob_goodput_ratio",
        "Productive training time over wall time since the workers were first created, 0 to 1.",
        labels=["namespace", "name"],
    )
    now = datetime.now(UTC)
    for (namespace, name), status in statuses.items():
        measured = measure_status(status, now)
        if measured is not None and measured.ratio is not None:
            goodput.add_metric([namespace, name], measured.ratio)
    yield goodput


_STATUSES = DecidedStatuses[TrainingJobStatus](
    "kubeforge_trainingjobs", "TrainingJob", TrainingJobPhase, _goodput
)


def observe(key: Key, job: TrainingJob, decision: Decision) -> None:
    """Records what one reconcile decided."""
    status = decision.status
    for cause in decision.new_restarts:
        RESTARTS.labels(cause=cause.value).inc()
    _STATUSES.observe(key, status)
    before = job.status.goodput.attempts if job.status.goodput else []
    # The first attempt stays first; the later ones began at distinct failures.
    restarted = {attempt.began_at: attempt for attempt in before[1:]}
    for index, attempt in enumerate(status.goodput.attempts if status.goodput else []):
        previous = restarted.get(attempt.began_at) if index else next(iter(before), None)
        if attempt.time_to_first_step_seconds is not None and (
            previous is None or previous.time_to_first_step_seconds is None
        ):
            TIME_TO_FIRST_STEP.observe(attempt.time_to_first_step_seconds)
        settled = previous is not None and previous.lost_seconds is not None
        if index and attempt.lost_seconds is not None and not settled:
            LOST_PER_RESTART.observe(attempt.lost_seconds)


def forget(key: Key) -> None:
    """Drops a TrainingJob that is gone."""
    _STATUSES.forget(key)
