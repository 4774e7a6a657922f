"""Prometheus metrics of the operator: jobs by phase, reconcile time, restarts, time to first step.

Served by `prometheus_client` on the port given to `python -m kubeforge_operator`.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from kubeforge.api.trainingjob import TrainingJob, TrainingJobPhase
from kubeforge_operator.status import Decision

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
API_REQUESTS = Counter(
    "kubeforge_api_requests_total",
    "Requests the reconcile sent to the API server (kopf's watches aside), by verb.",
    ["verb"],
)
TIME_TO_FIRST_STEP = Histogram(
    "kubeforge_trainingjob_time_to_first_step_seconds",
    "Seconds from a TrainingJob's workers being created to its first reported training step.",
    buckets=(5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

_phases: dict[tuple[str, str], TrainingJobPhase] = {}


class _PhaseCollector(Collector):
    """kubeforge_trainingjobs{phase}: counted when scraped, from the last reconcile of each job."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kubeforge_trainingjobs",
            "TrainingJobs known to the operator, by phase.",
            labels=["phase"],
        )
        tally = Tally(_phases.values())
        for phase in TrainingJobPhase:
            family.add_metric([phase.value], tally.get(phase, 0))
        yield family


REGISTRY.register(_PhaseCollector())


def observe(key: tuple[str, str], job: TrainingJob, decision: Decision) -> None:
    """Records what one reconcile decided."""
    status = decision.status
    if status.phase is not None:
        _phases[key] = status.phase
    for cause in decision.new_restarts:
        RESTARTS.labels(cause=cause.value).inc()
    before = job.status.progress
    after = status.progress
    first_step = after is not None and after.step and not (before and before.step)
    if first_step and status.start_time is not None and after is not None and after.updated_at:
        TIME_TO_FIRST_STEP.observe((after.updated_at - status.start_time).total_seconds())


def forget(key: tuple[str, str]) -> None:
    _phases.pop(key, None)
