"""The operator's only door to the API server: apply children, patch status, delete, post Events,
keep a finalizer, read a credentials Secret.

Everything goes through one lightkube AsyncClient with one field manager. Children are written
with server-side apply (forced: the operator is the sole owner of the fields it sets, and other
managers' fields, such as Kueue's `suspend` or the trainer's progress data, are left alone).
Status goes through the status subresource, so the operator never writes `spec`. A Secret's data
is returned to the caller and never logged.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret
from lightkube.resources.core_v1 import Event as CoreEvent
from lightkube.types import CascadeType, PatchType

from kubeforge.api.dataingest import DATA_INGEST
from kubeforge.api.meta import GROUP, VERSION
from kubeforge.api.trainingjob import TRAINING_JOB
from kubeforge_operator import metrics
from kubeforge_operator.objects import MANAGED_BY, Event, Object
from kubeforge_operator.workqueue import Stale

T = TypeVar("T", Secret, ConfigMap)

FIELD_MANAGER = MANAGED_BY
TrainingJobResource = create_namespaced_resource(
    GROUP, VERSION, TRAINING_JOB.kind, TRAINING_JOB.plural
)
# DataIngests, so that their status and finalizers are patched like TrainingJobs'.
create_namespaced_resource(GROUP, VERSION, DATA_INGEST.kind, DATA_INGEST.plural)
# Gang scheduling's PodGroups, so that they can be applied like built-in kinds.
create_namespaced_resource("scheduling.volcano.sh", "v1beta1", "PodGroup", "podgroups")
create_namespaced_resource("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups")


class Kube:
    """The API calls reconcile makes, counted (kubeforge_api_requests_total) per verb."""

    def __init__(self, client: AsyncClient | None = None) -> None:
        self.client = client or AsyncClient(field_manager=FIELD_MANAGER)

    async def close(self) -> None:
        await self.client.close()

    async def apply(self, obj: Object) -> None:
        # Any kind the builders make; lightkube's overloads want one statically known class.
        resource: Any = resource_registry.load(obj["apiVersion"], obj["kind"])
        metrics.API_REQUESTS.labels(verb="apply").inc()
        await self.client.patch(
            resource,
            obj["metadata"]["name"],
            obj,
            namespace=obj["metadata"].get("namespace"),
            patch_type=PatchType.APPLY,
            field_manager=FIELD_MANAGER,
            force=True,
        )

    async def delete_job(self, namespace: str, name: str, *, foreground: bool = False) -> None:
        """Deletes a Job and its pods: in the background, or (foreground) before the Job goes."""
        metrics.API_REQUESTS.labels(verb="delete").inc()
        cascade = CascadeType.FOREGROUND if foreground else CascadeType.BACKGROUND
        try:
            await self.client.delete(Job, name, namespace=namespace, cascade=cascade)
        except ApiError as error:
            if error.status.code != 404:
                raise

    async def suspend_worker_job(self, namespace: str, name: str) -> None:
        metrics.API_REQUESTS.labels(verb="patch").inc()
        await self.client.patch(
            Job, name, {"spec": {"suspend": True}}, namespace=namespace, patch_type=PatchType.MERGE
        )

    async def delete_training_job(self, namespace: str, name: str) -> None:
        metrics.API_REQUESTS.labels(verb="delete").inc()
        await self.client.delete(
            TrainingJobResource, name, namespace=namespace, cascade=CascadeType.BACKGROUND
        )

    async def patch_status(self, owner: Object, status: Object) -> None:
        """Merges `status` into the status subresource of `owner` (a TrainingJob or DataIngest),
        only if the object is still the version that was read: a status decided from a stale
        copy (the watch lags, as after an apiserver restart) would undo what a newer reconcile
        recorded, such as a counted restart. Raises workqueue.Stale when it is not."""
        resource: Any = resource_registry.load(owner["apiVersion"], owner["kind"])
        meta = owner["metadata"]
        metrics.API_REQUESTS.labels(verb="patch").inc()
        precondition = {"resourceVersion": meta["resourceVersion"]}
        try:
            await self.client.patch(
                resource.Status,
                meta["name"],
                {"metadata": precondition, "status": status},
                namespace=meta["namespace"],
                patch_type=PatchType.MERGE,
            )
        except ApiError as error:
            if error.status.code != 409:
                raise
            raise Stale(f"{owner['kind']} {meta['name']} changed since it was read") from error

    async def set_finalizers(self, owner: Object, finalizers: list[str]) -> None:
        """Replaces the finalizers of `owner`, failing (409) if it changed since it was read."""
        resource: Any = resource_registry.load(owner["apiVersion"], owner["kind"])
        meta = owner["metadata"]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        metrics.API_REQUESTS.labels(verb="patch").inc()
        await self.client.patch(
            resource, meta["name"], patch, namespace=meta["namespace"], patch_type=PatchType.MERGE
        )

    async def _get_or_none(self, kind: type[T], namespace: str, name: str) -> T | None:
        metrics.API_REQUESTS.labels(verb="get").inc()
        try:
            return await self.client.get(kind, name, namespace=namespace)
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The decoded data of a Secret, or None when there is no such Secret."""
        secret = await self._get_or_none(Secret, namespace, name)
        if secret is None:
            return None
        return {
            key: base64.b64decode(value).decode("utf-8", "replace")
            for key, value in (secret.data or {}).items()
        }

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """The data of a ConfigMap, or None when there is no such ConfigMap."""
        config_map = await self._get_or_none(ConfigMap, namespace, name)
        return None if config_map is None else dict(config_map.data or {})

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        metrics.API_REQUESTS.labels(verb="patch").inc()
        try:
            await self.client.patch(
                Pod,
                name,
                {"metadata": {"annotations": annotations}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as error:
            if error.status.code != 404:  # the pod went away: nothing left to mark
                raise

    async def force_delete_pod(self, namespace: str, name: str) -> None:
        """Ends a pod whose kubelet will never confirm it, as the pod garbage collector ends a
        pod on an out-of-service node: its phase set to Failed (so that the Job controller counts
        and replaces it at once, without waiting for its tracking finalizer), then deleted with
        no grace period."""
        metrics.API_REQUESTS.labels(verb="patch").inc()
        metrics.API_REQUESTS.labels(verb="delete").inc()
        try:
            await self.client.patch(
                Pod.Status,
                name,
                {"status": {"phase": "Failed", "reason": "NodeLost"}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
            await self.client.delete(Pod, name, namespace=namespace, grace_period=0)
        except ApiError as error:
            if error.status.code != 404:
                raise

    async def post_event(self, involved: Object, event: Event) -> None:
        """A core/v1 Event about a TrainingJob or DataIngest, as `kubectl describe` shows them."""
        meta = involved["metadata"]
        now = datetime.now(UTC).isoformat()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": MANAGED_BY},
            "reportingComponent": f"{GROUP}/{MANAGED_BY}",
            "reportingInstance": MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        metrics.API_REQUESTS.labels(verb="create").inc()
        await self.client.create(CoreEvent.from_dict(body))  # type: ignore[call-overload]
