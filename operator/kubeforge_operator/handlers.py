"""kopf registrations: what the operator watches, indexes, and hands to the two reconciles.

Watches keep in-memory indexes of TrainingJobs and DataIngests and of their children (by the
`kubeforge.dev/training-job` and `kubeforge.dev/data-ingest` labels); kopf starts handlers only
once every index is filled. Every watch event, of a resource or of any of its children, and a
periodic resync add the resource's key to the work queue of its kind, whose workers call
`TrainingJobReconcile.reconcile` (TrainingJobs) or `DataIngestReconcile.reconcile` (DataIngests).
No handler writes anything itself, and kopf keeps its own bookkeeping in annotations under
`kopf.kubeforge.dev`, never in `status`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kubeforge.api.dataingest import DATA_INGEST
from kubeforge.api.meta import GROUP, VERSION
from kubeforge.api.trainingjob import TRAINING_JOB
from kubeforge.progress import PROGRESS_KEY
from kubeforge_operator.base.reconcile import Key
from kubeforge_operator.dataingest.builders import DEFAULT_IMAGE, INGEST_LABEL
from kubeforge_operator.dataingest.reconcile import DataIngestCache, DataIngestReconcile
from kubeforge_operator.k8s import Kube
from kubeforge_operator.objects import DESIRED_HASH, MANAGED_BY
from kubeforge_operator.trainingjob.builders import JOB_LABEL
from kubeforge_operator.trainingjob.reconcile import TrainingJobCache, TrainingJobReconcile
from kubeforge_operator.trainingjob.status import needs_record
from kubeforge_operator.workqueue import WorkQueue

RESYNC_SECONDS = 300.0
"""Every resource is reconciled at least this often, so that a missed event is recovered; each
key at a random moment within the period, so that a thousand resources are not reconciled at
once. Deadlines do not rely on it: a reconcile asks for its own next look."""

CHILD_LABELS: dict[str, Any] = {
    JOB_LABEL: kopf.PRESENT,
    "app.kubernetes.io/managed-by": MANAGED_BY,
}
INGEST_CHILD_LABELS: dict[str, Any] = {
    INGEST_LABEL: kopf.PRESENT,
    "app.kubernetes.io/managed-by": MANAGED_BY,
}
OWNED_KINDS = [
    ("", "v1", "services", "Service"),
    ("apps", "v1", "deployments", "Deployment"),
    ("", "v1", "serviceaccounts", "ServiceAccount"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ("scheduling.volcano.sh", "v1beta1", "podgroups", "PodGroup"),
    ("scheduling.x-k8s.io", "v1alpha1", "podgroups", "PodGroup"),
]
"""The kinds of TrainingJob children other than Jobs and pods."""
INGEST_OWNED_KINDS = [("", "v1", "configmaps", "ConfigMap")]
"""The kinds of DataIngest children other than Jobs."""
PREFIX = f"kopf.{GROUP}"
logger = logging.getLogger(__name__)


def _job_key(namespace: str | None, labels: Mapping[str, str]) -> Key:
    return (namespace or "", labels[JOB_LABEL])


# --- indexes ------------------------------------------------------------------------------------


def _resource(body: kopf.Body) -> dict[str, Any]:
    """A resource's body as reconcile reads it: all of it but the server's field-manager records,
    which are most of its size and which reconcile never reads."""
    meta = {key: value for key, value in body.metadata.items() if key != "managedFields"}
    return {**body, "metadata": meta}


def _meta(body: kopf.Body) -> dict[str, Any]:
    keep = ("name", "uid", "creationTimestamp", "deletionTimestamp", "annotations")
    meta = {key: body.metadata.get(key) for key in keep}
    meta["ownerReferences"] = list(body.metadata.get("ownerReferences") or [])
    return meta


def _pod_summary(body: kopf.Body) -> dict[str, Any]:
    """A pod as a status reads it: its labels (a DataIngest's tell crawl from publish), its node,
    its waiting reasons and scheduling (why it cannot start)."""
    meta = {**_meta(body), "labels": dict(body.metadata.get("labels") or {})}
    summary = {"metadata": meta, "spec": {"nodeName": body.spec.get("nodeName")}}
    return {**summary, "status": dict(body.status)}


def _job_summary(body: kopf.Body) -> dict[str, Any]:
    spec = {"suspend": body.spec.get("suspend")}
    return {"metadata": _meta(body), "spec": spec, "status": dict(body.status)}


def _index_resource(plural: str, index_id: str) -> None:
    """Indexes the bodies of one kind of resource by (namespace, name), as `index_id`."""

    async def index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
        return {(namespace or "", name): _resource(body)}

    kopf.index(GROUP, VERSION, plural, id=index_id)(index)


def _index_children(
    owner_label: str,
    labels_filter: dict[str, Any],
    prefix: str,
    owned_kinds: Iterable[tuple[str, str, str, str]],
) -> None:
    """Indexes a resource's children by their owner's key (its name in `owner_label`): its Jobs
    (`{prefix}jobs`) and pods (`{prefix}pods`) as summaries, and the (kind, name, desired hash)
    of each of `owned_kinds` (`{prefix}owned_GROUP_PLURAL`)."""

    def register(
        group: str, version: str, plural: str, summary: Callable[[kopf.Body], Any], index_id: str
    ) -> None:
        async def index(
            namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
        ) -> Any:
            return {(namespace or "", labels[owner_label]): summary(body)}

        kopf.index(group, version, plural, labels=labels_filter, id=index_id)(index)

    register("batch", "v1", "jobs", _job_summary, f"{prefix}jobs")
    register("", "v1", "pods", _pod_summary, f"{prefix}pods")
    for group, version, plural, kind in owned_kinds:

        def owned(body: kopf.Body, kind: str = kind) -> tuple[str, str, str | None]:
            return (kind, body.metadata.name, body.metadata.annotations.get(DESIRED_HASH))

        register(group, version, plural, owned, f"{prefix}owned_{group}_{plural}")


_index_resource(TRAINING_JOB.plural, "training_jobs")
_index_children(JOB_LABEL, CHILD_LABELS, "worker_", OWNED_KINDS)
_index_resource(DATA_INGEST.plural, "dataingests")
_index_children(INGEST_LABEL, INGEST_CHILD_LABELS, "ingest_", INGEST_OWNED_KINDS)


@kopf.index(
    "", "v1", "configmaps", labels={**CHILD_LABELS, "app.kubernetes.io/component": "progress"}
)
async def progress_reports(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> Any:
    return {_job_key(namespace, labels): {PROGRESS_KEY: body.get("data", {}).get(PROGRESS_KEY)}}


class _Merged(Mapping[Key, Iterable[Any]]):
    """Several kopf indexes with the same keys, read as one."""

    def __init__(self, indexes: list[Mapping[Key, Iterable[Any]]]) -> None:
        self.indexes = indexes

    def __getitem__(self, key: Key) -> Iterable[Any]:
        found = [list(index[key]) for index in self.indexes if key in index]
        if not found:
            raise KeyError(key)
        return [value for values in found for value in values]

    def __iter__(self) -> Iterator[Key]:
        return iter({key for index in self.indexes for key in index})

    def __len__(self) -> int:
        return len(set(self))


def _merged(kwargs: Mapping[str, Any], prefix: str) -> _Merged:
    return _Merged([kwargs[name] for name in kwargs if name.startswith(prefix)])


def _training_cache(kwargs: Mapping[str, Any]) -> TrainingJobCache:
    return TrainingJobCache(
        training_jobs=kwargs["training_jobs"],
        worker_jobs=kwargs["worker_jobs"],
        pods=kwargs["worker_pods"],
        owned=_merged(kwargs, "worker_owned_"),
        progress=kwargs["progress_reports"],
        datasets=kwargs["dataingests"],
    )


def _ingest_cache(kwargs: Mapping[str, Any]) -> DataIngestCache:
    return DataIngestCache(
        ingests=kwargs["dataingests"],
        jobs=kwargs["ingest_jobs"],
        owned=_merged(kwargs, "ingest_owned_"),
        pods=kwargs["ingest_pods"],
    )


# --- lifecycle ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queues:
    """One work queue per kind, each with its own reconcile."""

    training_jobs: WorkQueue[Key]
    data_ingests: WorkQueue[Key]

    def __iter__(self) -> Iterator[WorkQueue[Key]]:
        return iter((self.training_jobs, self.data_ingests))


@dataclass(frozen=True)
class Settings:
    """The operator's own settings, from its command line (`kubeforge_operator.__main__`)."""

    crawler_image: str = DEFAULT_IMAGE
    """The crawler image of DataIngests whose spec names none."""


class Runtime:
    """What one run of the operator shares between handlers (kopf copies `memo` per object, so
    the memo holds this one object rather than the queues themselves)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kube = Kube()
        self.departed_pods: dict[Key, dict[str, Any]] = {}
        """Failed worker pods deleted before a reconcile saw them, by job key and pod name."""
        self._queues: Queues | None = None
        self._resync: asyncio.Task[None] | None = None

    def queues(self, indexes: Mapping[str, Any]) -> Queues:
        """The work queues, made on the first event: kopf passes the filled indexes only then."""
        if self._queues is None:
            training, ingests = _training_cache(indexes), _ingest_cache(indexes)
            self._queues = Queues(
                WorkQueue(TrainingJobReconcile(training, self.kube, self.departed_pods).reconcile),
                WorkQueue(
                    DataIngestReconcile(
                        ingests, self.kube, crawler_image=self.settings.crawler_image
                    ).reconcile
                ),
            )
            for queue in self._queues:
                queue.start()
            self._resync = asyncio.create_task(_resync(self._queues, training, ingests))
        return self._queues

    def depth(self) -> int:
        return sum(len(queue) for queue in self._queues or ())

    async def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
        await asyncio.gather(*(queue.stop() for queue in self._queues or ()))
        await self.kube.close()


async def _resync(queues: Queues, training: TrainingJobCache, ingests: DataIngestCache) -> None:
    while True:
        for queue, keys in (
            (queues.training_jobs, list(training.training_jobs)),
            (queues.data_ingests, list(ingests.ingests)),
        ):
            for key in keys:
                queue.add_after(key, random.uniform(0, RESYNC_SECONDS))  # noqa: S311
        await asyncio.sleep(RESYNC_SECONDS)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base, for an operator without change handlers: nothing to build or store.

    kopf diffs every event's body against the last handled one to detect create/update/resume
    causes, and builds that "essence" with a deep copy of the body on every event. kubeforge
    registers no change handlers (every trigger is an event handler feeding a work queue), so the
    diff is never read, and the copy was a tenth of the operator's CPU under load.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    memo.runtime = Runtime(memo.get("settings") or Settings())


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
    memo.runtime.queues(kwargs).training_jobs.add((namespace or "", name))


def _queue_owner_on_change(
    owner_label: str,
    labels_filter: dict[str, Any],
    queue: Callable[[Queues], WorkQueue[Key]],
    id_prefix: str,
    kinds: Iterable[tuple[str, str, str]],
) -> None:
    """Adds the owner of every child of `kinds` that changes (its key from `owner_label`) to its
    work queue."""

    async def changed(
        namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        queue(memo.runtime.queues(kwargs)).add((namespace or "", labels[owner_label]))

    for group, version, plural in kinds:
        kopf.on.event(
            group, version, plural, labels=labels_filter, id=f"{id_prefix}{group}_{plural}"
        )(changed)


@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS, id="child__pods")
async def worker_pod_changed(
    type: str | None,
    namespace: str | None,
    labels: kopf.Labels,
    body: kopf.Body,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """A failed or lost worker pod can be gone before a reconcile saw it (the Job controller
    lets a deleted pod go once it has counted it; the operator force-deletes a pod stuck on a
    lost node): its last state is handed to the next reconcile."""
    key = _job_key(namespace, labels)
    if type == "DELETED" and needs_record(_pod_summary(body)):
        memo.runtime.departed_pods.setdefault(key, {})[body.metadata.name] = _pod_summary(body)
    memo.runtime.queues(kwargs).training_jobs.add(key)


_queue_owner_on_change(
    JOB_LABEL,
    CHILD_LABELS,
    lambda queues: queues.training_jobs,
    "child_",
    [
        ("batch", "v1", "jobs"),
        *[(group, version, plural) for group, version, plural, _ in OWNED_KINDS],
    ],
)


@kopf.on.event(GROUP, VERSION, DATA_INGEST.plural)
async def dataingest_changed(
    namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Reconciles the DataIngest; a published dataset releases the TrainingJobs that wait for it."""
    queues: Queues = memo.runtime.queues(kwargs)
    queues.data_ingests.add((namespace or "", name))
    for key, bodies in kwargs["training_jobs"].items():
        for body in bodies:
            ref = ((body.get("spec") or {}).get("dataset") or {}).get("datasetRef") or {}
            if key[0] == namespace and ref.get("name") == name:
                queues.training_jobs.add(key)


_queue_owner_on_change(
    INGEST_LABEL,
    INGEST_CHILD_LABELS,
    lambda queues: queues.data_ingests,
    "ingest_child_",
    [
        ("batch", "v1", "jobs"),
        ("", "v1", "pods"),
        *[(group, version, plural) for group, version, plural, _ in INGEST_OWNED_KINDS],
    ],
)
