"""The one reconcile of a DataIngest, on the shared skeleton (base.reconcile): keep its finalizer,
provision its bucket, run its Jobs and report.

`DataIngestReconcile.reconcile(key)` reads the ingest and its children (the crawler ConfigMap, the
crawl and publish Jobs) from the operator's in-memory indexes, like the TrainingJob reconcile.
S3 is asked only when something there can have changed: the bucket is provisioned when it never
was, was not ready, the spec changed since, or a scheduled run starts (its lifecycle rule covers
the new version's raw state); a shard's completion marker is read once, after its
pod succeeded (markers never change); the manifest is looked for while the publish Job runs. S3
calls block, so they run in threads (asyncio.to_thread). Credentials are read from the Secret just
before each use and kept nowhere.

Scheduled runs: the reconcile works on one dataset version, `status.currentVersion`, or the next
one when `decide` will start a scheduled run now. Jobs of another version (the previous run's)
are deleted, with their pods, before the new run's Jobs (same names) are created.

Deletion: with `deletionPolicy: Delete` the ingest carries the finalizer
`kubeforge.dev/delete-data`. When the ingest is deleted, its Jobs go first, with their pods (so
nothing writes any more), then every object version under `PREFIX/NAME/`, then the bucket if
nothing else is left in it, and only then the finalizer. `Retain` keeps the data, so the ingest
carries no finalizer at all.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubeforge.api.dataingest import (
    CrawlCounters,
    DataIngest,
    DatasetStatus,
    DeletionPolicy,
)
from kubeforge.api.meta import GROUP
from kubeforge.crawlconfig import dataset_uri
from kubeforge.dataset import MANIFEST_KEY, RAW_PREFIXES, Manifest, total_counters
from kubeforge_operator.base.reconcile import Key, Reconcile, apply_drifted
from kubeforge_operator.dataingest import builders, metrics, provisioning
from kubeforge_operator.dataingest.provisioning import Credentials, StorageFailure
from kubeforge_operator.dataingest.status import (
    STORAGE_RETRY_SECONDS,
    TERMINAL,
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
    scheduled_run,
    storage_ready,
)
from kubeforge_operator.k8s import Kube
from kubeforge_operator.objects import Event, Object

FINALIZER = f"{GROUP}/delete-data"
logger = logging.getLogger(__name__)


@dataclass
class DataIngestCache:
    """Read-only views of the operator's indexes, keyed by (namespace, DataIngest name).

    ingests: the DataIngest bodies; jobs: summaries of its crawl and publish Jobs; owned: (kind,
    name, desired hash) of its other children; pods: summaries of its crawl and publish pods.
    """

    ingests: Mapping[Key, Iterable[Object]]
    jobs: Mapping[Key, Iterable[Object]]
    owned: Mapping[Key, Iterable[tuple[str, str, str | None]]]
    pods: Mapping[Key, Iterable[Object]]


@dataclass
class _Read:
    """What has been read from one version of a DataIngest's dataset: it does not change."""

    uid: str | None
    version: int
    markers: dict[int, CrawlCounters] = field(default_factory=dict)
    published: Published | None = None


def dataset_location(ingest: DataIngest, version: int) -> str:
    """The key prefix of a dataset version, in the bucket."""
    return f"{ingest.spec.storage.prefix}/{ingest.metadata.name}/v{version}"


def dataset_status(ingest: DataIngest, version: int, manifest: Manifest) -> DatasetStatus:
    """The published dataset as status.dataset shows it (and TrainingJobs read it)."""
    uri = dataset_uri(ingest.spec.storage, ingest.metadata.name or "", version)
    return DatasetStatus(
        uri=uri,
        version=version,
        documents=manifest.documents,
        bytes=manifest.bytes,
        manifest=f"{uri}/{MANIFEST_KEY}",
    )


@dataclass(frozen=True)
class DataIngestRead:
    """What a reconcile read of an ingest: what `decide` sees, and what acting on it needs."""

    observed: Observed
    live: dict[str, Object]
    """The Jobs of the version the reconcile works on, by name."""
    stale: list[str]
    """The Jobs of another version (the previous run's), to delete before the new run's."""


class DataIngestReconcile(Reconcile[DataIngest, DataIngestRead, Decision]):
    def __init__(
        self, cache: DataIngestCache, kube: Kube, *, crawler_image: str = builders.DEFAULT_IMAGE
    ) -> None:
        super().__init__(kube, "DataIngest", DataIngest.model_validate, cache.ingests)
        self.crawler_image = crawler_image
        self.cache = cache
        self._read: dict[Key, _Read] = {}

    def forget(self, key: Key) -> None:
        self._read.pop(key, None)
        metrics.forget(key)

    def _jobs(self, key: Key) -> dict[str, Object]:
        return {job["metadata"]["name"]: job for job in self.cache.jobs.get(key) or ()}

    async def deleting(self, key: Key, body: Object, ingest: DataIngest) -> float | None:
        return await self._finalize(key, body, ingest, self._jobs(key))

    async def read(self, key: Key, body: Object, ingest: DataIngest) -> DataIngestRead:
        """Also keeps the finalizer and provisions the bucket: the finalizer is there before
        anything can be written to the bucket, and the bucket's check is what `decide` reads."""
        await self._keep_finalizer(body, ingest)
        now = datetime.now(UTC)
        starting = scheduled_run(ingest, now) is not None
        version = ingest.status.current_version + (1 if starting else 0)
        storage = last_storage_check(ingest)
        if starting or storage is None or needs_provisioning(ingest, storage):
            storage = await self._provision(ingest, version)
        live, stale = {}, []
        for name, job in self._jobs(key).items():
            if job["metadata"].get("deletionTimestamp"):
                continue
            if builders.job_version(job) == version:
                live[name] = job
            else:
                stale.append(name)
        crawl_job = live.get(builders.crawl_job_name(ingest))
        publish_job = live.get(builders.publish_job_name(ingest))
        shard_counters, published = await self._read_dataset(
            key, ingest, version, crawl_job, publish_job
        )
        observed = Observed(
            now=now,
            storage=storage,
            crawl_job=crawl_job,
            publish_job=publish_job,
            shard_counters=shard_counters,
            published=published,
            pods=list(self.cache.pods.get(key) or ()),
        )
        return DataIngestRead(observed, live, stale)

    def decide(self, ingest: DataIngest, observed: DataIngestRead) -> Decision:
        return decide(ingest, observed.observed)

    async def act(
        self,
        key: Key,
        body: Object,
        ingest: DataIngest,
        observed: DataIngestRead,
        decision: Decision,
    ) -> bool:
        for name in observed.stale:
            # The previous run's Job: its deletion brings the ingest back here to create the new.
            await self.kube.delete_job(key[0], name)
        if decision.stage is not Stage.NONE and not observed.stale:
            spec = ingest.spec.model_copy(update={"image": ingest.spec.image or self.crawler_image})
            building = ingest.model_copy(update={"spec": spec, "status": decision.status})
            children = builders.build_children(building, publish=decision.stage is Stage.PUBLISH)
            owned = self.cache.owned.get(key) or ()
            await apply_drifted(self.kube, children, owned, observed.live)
        return True

    def measure(self, key: Key, ingest: DataIngest, decision: Decision) -> None:
        metrics.observe(key, decision.status)

    async def _credentials(self, ingest: DataIngest) -> Credentials | None:
        """From the Secret the storage names; None means boto3's own (environment, identity)."""
        ref = ingest.spec.storage.credentials_secret_ref
        if ref is None:
            return None
        data = await self.kube.read_secret(ingest.metadata.namespace or "", ref.name)
        return provisioning.credentials_from_secret(ref, data)

    async def _ca_file(self, ingest: DataIngest) -> str | None:
        """The file of the storage's CA bundle; None means boto3's default CAs."""
        bundle = ingest.spec.storage.ca_bundle
        if bundle is None:
            return None
        namespace = ingest.metadata.namespace or ""
        if bundle.config_map_key_ref is not None:
            data = await self.kube.read_config_map(namespace, bundle.config_map_key_ref.name)
        else:
            assert bundle.secret_key_ref is not None, "a CaBundle has exactly one source"
            data = await self.kube.read_secret(namespace, bundle.secret_key_ref.name)
        return provisioning.ca_file_from(bundle, data)

    async def _provision(self, ingest: DataIngest, version: int) -> StorageCheck:
        raw = [f"{dataset_location(ingest, version)}/{prefix}" for prefix in RAW_PREFIXES]
        try:
            credentials = await self._credentials(ingest)
            ca_file = await self._ca_file(ingest)
            done = await asyncio.to_thread(
                provisioning.provision, ingest.spec.storage, credentials, raw, ca_file
            )
        except StorageFailure as failure:
            return StorageCheck(False, failure.reason, failure.message, ingest.metadata.generation)
        return storage_ready(ingest, done.created, done.unsupported)

    async def _read_dataset(
        self,
        key: Key,
        ingest: DataIngest,
        version: int,
        crawl_job: Object | None,
        publish_job: Object | None,
    ) -> tuple[CrawlCounters | None, Published | None]:
        """The counters of the version's finished shards, and its manifest once it is written."""
        read = self._read.get(key)
        if read is None or (read.uid, read.version) != (ingest.metadata.uid, version):
            read = self._read[key] = _Read(ingest.metadata.uid, version)
        shards = completed_shards(crawl_job) - read.markers.keys()
        manifest_wanted = read.published is None and publish_job is not None
        if ingest.status.phase not in TERMINAL and (shards or manifest_wanted):
            try:
                credentials = await self._credentials(ingest)
                ca_file = await self._ca_file(ingest)
                markers, manifest = await asyncio.to_thread(
                    provisioning.read_dataset,
                    ingest.spec.storage,
                    credentials,
                    dataset_location(ingest, version),
                    sorted(shards),
                    manifest_wanted,
                    ca_file,
                )
            except StorageFailure as failure:
                logger.warning("DataIngest %s/%s: dataset not readable: %s", *key, failure.message)
            else:
                read.markers.update(markers)
                if manifest is not None:
                    dataset = dataset_status(ingest, version, manifest)
                    read.published = Published(dataset, total_counters(manifest))
        counters = (
            functools.reduce(CrawlCounters.plus, read.markers.values(), CrawlCounters())
            if read.markers
            else None
        )
        return counters, read.published

    async def _keep_finalizer(self, body: Object, ingest: DataIngest) -> None:
        """The finalizer is there exactly when deleting the ingest must delete its data."""
        finalizers = list(body["metadata"].get("finalizers") or [])
        wanted = ingest.spec.storage.deletion_policy is DeletionPolicy.DELETE
        if wanted == (FINALIZER in finalizers):
            return
        if wanted:
            await self.kube.set_finalizers(body, [*finalizers, FINALIZER])
        else:
            await self.kube.set_finalizers(body, [f for f in finalizers if f != FINALIZER])

    async def _finalize(
        self, key: Key, body: Object, ingest: DataIngest, jobs: Mapping[str, Object]
    ) -> float | None:
        finalizers = list(body["metadata"].get("finalizers") or [])
        self._read.pop(key, None)
        if FINALIZER not in finalizers:
            return None
        if ingest.spec.storage.deletion_policy is DeletionPolicy.DELETE:
            if jobs:
                # Nothing may write while the data goes: the Jobs go first, with their pods. The
                # Jobs' own deletion events bring the ingest back here.
                for name, job in jobs.items():
                    if not job["metadata"].get("deletionTimestamp"):
                        await self.kube.delete_job(key[0], name, foreground=True)
                return None
            storage = ingest.spec.storage
            prefix = f"{storage.prefix}/{ingest.metadata.name}/"
            try:
                credentials = await self._credentials(ingest)
                ca_file = await self._ca_file(ingest)
                deleted, bucket_gone = await asyncio.to_thread(
                    provisioning.delete_data, storage, credentials, prefix, ca_file
                )
            except StorageFailure as failure:
                message = f"cannot delete s3://{storage.bucket}/{prefix}: {failure.message}"
                await self.kube.post_event(body, Event("Warning", failure.reason.value, message))
                return STORAGE_RETRY_SECONDS
            fate = "removed" if bucket_gone else "kept: it holds other data"
            message = (
                f"deleted {deleted} object versions under s3://{storage.bucket}/{prefix}; "
                f"bucket {storage.bucket} {fate}"
            )
            await self.kube.post_event(body, Event("Normal", Reason.DATA_DELETED.value, message))
        await self.kube.set_finalizers(body, [f for f in finalizers if f != FINALIZER])
        return None
