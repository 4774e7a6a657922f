"""The one reconcile of a TrainingJob, on the shared skeleton (base.reconcile): read, decide, act,
report.

`TrainingJobReconcile.reconcile(key)` reads the job and its children from the operator's in-memory
indexes (kept current by watches, see handlers.py), so a reconcile that finds everything as desired
makes no API call at all. It applies only the children whose desired hash differs from what is
there, recreates the worker Job when an immutable part of it changed, acts on the status decision
(restart, stop, delete), patches status only when it changed, then marks counted pod failures,
force-deletes workers stuck terminating and posts the Events of the transition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from kubeforge import progress
from kubeforge.api.trainingjob import TrainingJob
from kubeforge_operator.base.reconcile import Key, Reconcile, apply_drifted, first
from kubeforge_operator.k8s import Kube
from kubeforge_operator.objects import Object
from kubeforge_operator.trainingjob import builders, metrics
from kubeforge_operator.trainingjob.status import (
    RESTART_RECORDED,
    TERMINAL,
    Action,
    Decision,
    Observed,
    decide,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainingJobCache:
    """Read-only views of the operator's indexes, keyed by (namespace, TrainingJob name).

    training_jobs: the TrainingJob bodies; worker_jobs, pods: summaries of those children;
    owned: (kind, name) -> desired hash of every other child, progress: the reports' data;
    datasets: DataIngest bodies by (namespace, name).
    """

    training_jobs: Mapping[Key, Iterable[Object]]
    worker_jobs: Mapping[Key, Iterable[Object]]
    pods: Mapping[Key, Iterable[Object]]
    owned: Mapping[Key, Iterable[tuple[str, str, str | None]]]
    progress: Mapping[Key, Iterable[dict[str, str]]]
    datasets: Mapping[Key, Iterable[Object]]


def _current_worker_job(jobs: Iterable[Object]) -> Object | None:
    """The worker Job that is not being deleted (a restart leaves the old one going away)."""
    return next((j for j in jobs if not j["metadata"].get("deletionTimestamp")), None)


def resolve_dataset(
    job: TrainingJob, datasets: Mapping[Key, Iterable[Object]]
) -> tuple[str | None, str | None]:
    """(dataset URI, None) when the data is ready, or (None, why the job waits)."""
    source = job.spec.dataset
    if source is None:
        return None, None
    if source.uri:
        return source.uri, None
    assert source.dataset_ref is not None  # the model allows exactly one of the two
    ref = source.dataset_ref
    ingest = first(datasets.get((job.metadata.namespace or "", ref.name)))
    if ingest is None:
        return None, f"DataIngest {ref.name} not found"
    dataset = (ingest.get("status") or {}).get("dataset") or {}
    if not dataset.get("uri"):
        phase = (ingest.get("status") or {}).get("phase") or "Pending"
        return None, f"DataIngest {ref.name} has not published a dataset yet (phase {phase})"
    if ref.version is not None and dataset.get("version") != ref.version:
        return None, f"DataIngest {ref.name} has not published version {ref.version} yet"
    return str(dataset["uri"]), None


@dataclass(frozen=True)
class TrainingJobRead:
    """What a reconcile read of a job: what `decide` sees, and what acting on it needs."""

    observed: Observed
    dataset_uri: str | None
    departed: dict[str, Object]
    """Failed pods deleted before a reconcile saw them, by name (see TrainingJobReconcile)."""


class TrainingJobReconcile(Reconcile[TrainingJob, TrainingJobRead, Decision]):
    def __init__(
        self,
        cache: TrainingJobCache,
        kube: Kube,
        departed_pods: dict[Key, dict[str, Object]] | None = None,
    ) -> None:
        """departed_pods: failed pods deleted before a reconcile saw them (the pod watch adds
        them); a reconcile decides on them with the others, then forgets them."""
        super().__init__(kube, "TrainingJob", TrainingJob.model_validate, cache.training_jobs)
        self.cache = cache
        self.departed_pods = {} if departed_pods is None else departed_pods

    async def reconcile(self, key: Key) -> float | None:
        started = time.perf_counter()
        try:
            return await super().reconcile(key)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def forget(self, key: Key) -> None:
        metrics.forget(key)

    async def deleting(self, key: Key, body: Object, resource: TrainingJob) -> float | None:
        metrics.forget(key)  # its children go with it (owner references): nothing to do
        return None

    async def read(self, key: Key, body: Object, resource: TrainingJob) -> TrainingJobRead:
        worker_job = _current_worker_job(self.cache.worker_jobs.get(key) or ())
        dataset_uri, waiting = resolve_dataset(resource, self.cache.datasets)
        started_on = ((worker_job or {}).get("metadata", {}).get("annotations") or {}).get(
            builders.DATASET_ANNOTATION
        )
        if started_on:
            # A running job keeps its dataset when a DataIngest publishes a newer version.
            dataset_uri, waiting = started_on, None
        pods = list(self.cache.pods.get(key) or ())
        departed = dict(self.departed_pods.get(key) or {})
        present = {pod["metadata"]["name"] for pod in pods}
        pods += [pod for pod_name, pod in departed.items() if pod_name not in present]
        observed = Observed(
            now=datetime.now(UTC),
            worker_job=worker_job,
            pods=pods,
            progress=progress.decode(next(iter(self.cache.progress.get(key) or ()), None)),
            waiting_for_dataset=waiting,
        )
        return TrainingJobRead(observed, dataset_uri, departed)

    def decide(self, resource: TrainingJob, observed: TrainingJobRead) -> Decision:
        return decide(resource, observed.observed)

    async def act(
        self,
        key: Key,
        body: Object,
        resource: TrainingJob,
        observed: TrainingJobRead,
        decision: Decision,
    ) -> bool:
        namespace, name = key
        worker_job = observed.observed.worker_job
        if decision.action is Action.DELETE:
            await self.kube.delete_training_job(namespace, name)
            return False
        if decision.action is Action.RESTART and worker_job is not None:
            await self.kube.delete_job(namespace, name)
        elif (
            decision.status.phase not in TERMINAL and observed.observed.waiting_for_dataset is None
        ):
            await self._apply_children(resource, observed.dataset_uri, worker_job)
        elif decision.status.phase in TERMINAL:
            await self._stop_rendezvous(resource, observed.dataset_uri)
        running = worker_job is not None and not (worker_job.get("spec") or {}).get("suspend")
        if decision.action is Action.STOP and running:
            await self.kube.suspend_worker_job(namespace, name)
        return True

    async def after_status(self, key: Key, observed: TrainingJobRead, decision: Decision) -> None:
        """Marks the pods whose failure the stored status counts (a mark made before it is stored
        would lose the count if the patch failed), then force-deletes the stuck ones."""
        namespace = key[0]
        for pod in decision.recorded_pods:
            if pod not in observed.departed:
                await self.kube.annotate_pod(namespace, pod, {RESTART_RECORDED: "true"})
        for pod in decision.force_delete:
            logger.warning("force-deleting worker pod %s/%s, stuck terminating", namespace, pod)
            await self.kube.force_delete_pod(namespace, pod)
        # Recorded in status now (status.restarts keeps what it counted), or of an older Job.
        remaining = self.departed_pods.get(key, {})
        for pod_name in observed.departed:
            remaining.pop(pod_name, None)
        if not remaining:
            self.departed_pods.pop(key, None)

    def measure(self, key: Key, resource: TrainingJob, decision: Decision) -> None:
        metrics.observe(key, resource, decision)

    async def _stop_rendezvous(self, job: TrainingJob, dataset_uri: str | None) -> None:
        """Scales a finished job's rendezvous store to no pod, once (its hash then matches)."""
        key = (job.metadata.namespace or "", job.metadata.name or "")
        owned = list(self.cache.owned.get(key) or ())
        name = builders.rendezvous_name(job)
        if any(kind == "Deployment" and child == name for kind, child, _ in owned):
            stopped = builders.build_finished_rendezvous(job, dataset_uri)
            await apply_drifted(self.kube, [stopped], owned, {})

    async def _apply_children(
        self, job: TrainingJob, dataset_uri: str | None, worker_job: Object | None
    ) -> None:
        key = (job.metadata.namespace or "", job.metadata.name or "")
        jobs = {}
        observed_suspend = None
        if worker_job is not None:
            jobs[worker_job["metadata"]["name"]] = worker_job
            observed_suspend = bool((worker_job.get("spec") or {}).get("suspend"))
        children = builders.build_children(
            job, dataset_uri=dataset_uri, observed_suspend=observed_suspend
        )
        await apply_drifted(self.kube, children, self.cache.owned.get(key) or (), jobs)
