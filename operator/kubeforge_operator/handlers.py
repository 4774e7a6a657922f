"""kopf registrations: what the operator watches, indexes, and hands to the one reconcile.

Watches keep in-memory indexes of TrainingJobs, their children (by the `kubeforge.dev/training-job`
label) and DataIngests; kopf starts handlers only once every index is filled. Every watch event,
of a job or of any child, and a periodic resync add the job's key to one work queue, whose
workers call `Reconciler.reconcile`. No handler writes anything itself, and kopf keeps its own
bookkeeping in annotations under `kopf.kubeforge.dev`, never in `status`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import kopf

from kubeforge.api.meta import GROUP, VERSION
from kubeforge.api.trainingjob import TRAINING_JOB
from kubeforge.progress import PROGRESS_KEY
from kubeforge_operator.builders import DESIRED_HASH, JOB_LABEL, MANAGED_BY
from kubeforge_operator.k8s import Kube
from kubeforge_operator.reconcile import Cache, JobKey, Reconciler
from kubeforge_operator.workqueue import WorkQueue

RESYNC_SECONDS = 60.0
"""Every job is reconciled at least this often, so that a missed event is recovered."""

CHILD_LABELS: dict[str, Any] = {
    JOB_LABEL: kopf.PRESENT,
    "app.kubernetes.io/managed-by": MANAGED_BY,
}
OWNED_KINDS = [
    ("", "v1", "services", "Service"),
    ("", "v1", "serviceaccounts", "ServiceAccount"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ("scheduling.volcano.sh", "v1beta1", "podgroups", "PodGroup"),
    ("scheduling.x-k8s.io", "v1alpha1", "podgroups", "PodGroup"),
]
PREFIX = f"kopf.{GROUP}"
logger = logging.getLogger(__name__)


def _job_key(namespace: str | None, labels: Mapping[str, str]) -> JobKey:
    return (namespace or "", labels[JOB_LABEL])


# --- indexes ------------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, TRAINING_JOB.plural)
def training_jobs(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[JobKey, Any]:
    return {(namespace or "", name): dict(body)}


@kopf.index("batch", "v1", "jobs", labels=CHILD_LABELS)
def worker_jobs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    summary = {"metadata": _meta(body), "spec": {"suspend": body.spec.get("suspend")}}
    return {_job_key(namespace, labels): {**summary, "status": dict(body.status)}}


@kopf.index("", "v1", "pods", labels=CHILD_LABELS)
def worker_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    summary = {"metadata": _meta(body), "spec": {"nodeName": body.spec.get("nodeName")}}
    return {_job_key(namespace, labels): {**summary, "status": dict(body.status)}}


@kopf.index(
    "", "v1", "configmaps", labels={**CHILD_LABELS, "app.kubernetes.io/component": "progress"}
)
def progress_reports(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    return {_job_key(namespace, labels): {PROGRESS_KEY: body.get("data", {}).get(PROGRESS_KEY)}}


@kopf.index(GROUP, VERSION, "dataingests")
def dataingests(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace or "", name): {"status": dict(body.status)}}


def _meta(body: kopf.Body) -> dict[str, Any]:
    keep = ("name", "uid", "creationTimestamp", "deletionTimestamp", "annotations")
    meta = {key: body.metadata.get(key) for key in keep}
    meta["ownerReferences"] = list(body.metadata.get("ownerReferences") or [])
    return meta


def _register_owned_index(group: str, version: str, plural: str, kind: str) -> None:
    def index(
        namespace: str | None,
        name: str,
        labels: kopf.Labels,
        annotations: kopf.Annotations,
        **_: Any,
    ) -> Any:
        return {_job_key(namespace, labels): (kind, name, annotations.get(DESIRED_HASH))}

    kopf.index(group, version, plural, labels=CHILD_LABELS, id=f"owned_{group}_{plural}")(index)


for _owned in OWNED_KINDS:
    _register_owned_index(*_owned)


class _Merged(Mapping[JobKey, Iterable[Any]]):
    """Several kopf indexes with the same keys, read as one."""

    def __init__(self, indexes: list[Mapping[JobKey, Iterable[Any]]]) -> None:
        self.indexes = indexes

    def __getitem__(self, key: JobKey) -> Iterable[Any]:
        found = [list(index[key]) for index in self.indexes if key in index]
        if not found:
            raise KeyError(key)
        return [value for values in found for value in values]

    def __iter__(self) -> Iterator[JobKey]:
        return iter({key for index in self.indexes for key in index})

    def __len__(self) -> int:
        return len(set(self))


def _cache(kwargs: Mapping[str, Any]) -> Cache:
    owned = [kwargs[name] for name in kwargs if name.startswith("owned_")]
    return Cache(
        training_jobs=kwargs["training_jobs"],
        worker_jobs=kwargs["worker_jobs"],
        pods=kwargs["worker_pods"],
        owned=_Merged(owned),
        progress=kwargs["progress_reports"],
        datasets=kwargs["dataingests"],
    )


# --- lifecycle ----------------------------------------------------------------------------------


class Runtime:
    """What one run of the operator shares between handlers (kopf copies `memo` per object, so
    the memo holds this one object rather than the queue itself)."""

    def __init__(self) -> None:
        self.kube = Kube()
        self._queue: WorkQueue[JobKey] | None = None
        self._resync: asyncio.Task[None] | None = None

    def queue(self, indexes: Mapping[str, Any]) -> WorkQueue[JobKey]:
        """The work queue, made on the first event: kopf passes the filled indexes only then."""
        if self._queue is None:
            cache = _cache(indexes)
            self._queue = WorkQueue(Reconciler(cache, self.kube).reconcile)
            self._queue.start()
            self._resync = asyncio.create_task(_resync(self._queue, cache))
        return self._queue

    def depth(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    async def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
        if self._queue is not None:
            await self._queue.stop()
        await self.kube.close()


async def _resync(queue: WorkQueue[JobKey], cache: Cache) -> None:
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        queue.add_all(list(cache.training_jobs))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    memo.runtime = Runtime()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster first; then the official client (exec plugins, OIDC); then kopf's reader of
    $KUBECONFIG, which reads the variable when called (the client reads it when imported)."""
    for method in (
        kopf.login_with_service_account,
        kopf.login_via_client,
        kopf.login_with_kubeconfig,
    ):
        try:
            info = method(**kwargs)
        except kopf.LoginError:
            continue
        if info is not None:
            return info
    return None


@kopf.on.cleanup()
async def shut_down(memo: kopf.Memo, **_: Any) -> None:
    await memo.runtime.close()


@kopf.on.probe(id="queue")
def queue_depth(memo: kopf.Memo, **_: Any) -> int:
    """Keys waiting for a reconcile; served on the liveness endpoint."""
    depth: int = memo.runtime.depth()
    return depth


# --- triggers -----------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, TRAINING_JOB.plural)
async def training_job_changed(
    namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    memo.runtime.queue(kwargs).add((namespace or "", name))


async def _child_changed(
    namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any
) -> None:
    memo.runtime.queue(kwargs).add(_job_key(namespace, labels))


for _group, _version, _plural in [
    ("batch", "v1", "jobs"),
    ("", "v1", "pods"),
    *[(group, version, plural) for group, version, plural, _ in OWNED_KINDS],
]:
    kopf.on.event(_group, _version, _plural, labels=CHILD_LABELS, id=f"child_{_group}_{_plural}")(
        _child_changed
    )


@kopf.on.event(GROUP, VERSION, "dataingests")
async def dataingest_changed(
    namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A published dataset releases the TrainingJobs that wait for it."""
    queue: WorkQueue[JobKey] = memo.runtime.queue(kwargs)
    for key, bodies in kwargs["training_jobs"].items():
        for body in bodies:
            ref = ((body.get("spec") or {}).get("dataset") or {}).get("datasetRef") or {}
            if key[0] == namespace and ref.get("name") == name:
                queue.add(key)
