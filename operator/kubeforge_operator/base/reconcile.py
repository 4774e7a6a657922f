"""The one reconcile skeleton every resource fills in: read, decide, act, report.

`Reconcile.reconcile(key)` finds the resource in the operator's in-memory indexes (kept current by
watches, see handlers.py) and validates it, then

    read    what is observed of its world: its children from the indexes, and what else the
            resource needs (a bucket check, a manifest); no change is made
    decide  a pure function of the resource and what was read: the new status, its Events, what
            to do
    act     the API calls the decision asks for: the children that drifted (`apply_drifted`:
            server-side apply of only the children whose desired hash differs from the one
            observed; a Job whose immutable part changed is deleted, the next reconcile creates
            it anew), restarts, stops, deletions
    report  the status, patched only when it changed (`report_status`), what must follow a
            stored status (`after_status`), the Events, the metrics

and asks to be woken when the decision says. A resource being deleted goes to `deleting` instead.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from kubeforge_operator.k8s import Kube
from kubeforge_operator.objects import DESIRED_HASH, TEMPLATE_HASH, Event, Object

Key = tuple[str, str]
"""A resource's (namespace, name): how indexes and work queues name it."""


def first(values: Iterable[Object] | None) -> Object | None:
    return next(iter(values or ()), None)


def _annotation(obj: Object, name: str) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(name)


async def apply_drifted(
    kube: Kube,
    children: Iterable[Object],
    owned: Iterable[tuple[str, str, str | None]],
    jobs: Mapping[str, Object],
) -> None:
    """Applies the children whose desired hash differs from what is observed.

    owned: (kind, name, desired hash) of the existing children other than Jobs;
    jobs: the existing Jobs by name.
    """
    observed = {(kind, name): digest for kind, name, digest in owned}
    observed.update({("Job", name): _annotation(job, DESIRED_HASH) for name, job in jobs.items()})
    for child in children:
        meta = child["metadata"]
        if observed.get((child["kind"], meta["name"])) == meta["annotations"][DESIRED_HASH]:
            continue
        existing = jobs.get(meta["name"]) if child["kind"] == "Job" else None
        if existing is not None and _annotation(existing, TEMPLATE_HASH) != _annotation(
            child, TEMPLATE_HASH
        ):
            # A Job's pod template is immutable: replace the Job. Its pods resume from their last
            # checkpoint; the next reconcile creates the new Job.
            await kube.delete_job(meta["namespace"], meta["name"])
            continue
        await kube.apply(child)


async def report_status(kube: Kube, body: Object, old: BaseModel, new: BaseModel) -> None:
    """Patches the resource's status when `new` differs from `old` (or none is stored yet)."""
    new_status = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    old_status = old.model_dump(mode="json", by_alias=True, exclude_none=True)
    if new_status != old_status or not body.get("status"):
        await kube.patch_status(body, new_status)


class Resource(Protocol):
    """A validated kubeforge resource: the skeleton reads only its stored status."""

    @property
    def status(self) -> BaseModel: ...


class Decided(Protocol):
    """What a resource's decision tells the skeleton."""

    @property
    def status(self) -> BaseModel: ...
    @property
    def events(self) -> Sequence[Event]: ...
    @property
    def requeue_after(self) -> float | None: ...


ResourceT = TypeVar("ResourceT", bound=Resource)
ObservedT = TypeVar("ObservedT")
DecisionT = TypeVar("DecisionT", bound=Decided)

logger = logging.getLogger(__name__)


class Reconcile(ABC, Generic[ResourceT, ObservedT, DecisionT]):
    """The reconcile of one kind of resource; a subclass says how to read, decide and act."""

    def __init__(
        self,
        kube: Kube,
        kind: str,
        parse: Callable[[Object], ResourceT],
        bodies: Mapping[Key, Iterable[Object]],
    ) -> None:
        """kind: the resource's kind, for the log; parse: its model's validation; bodies: the
        index of its bodies by (namespace, name)."""
        self.kube = kube
        self.kind = kind
        self.parse = parse
        self.bodies = bodies

    async def reconcile(self, key: Key) -> float | None:
        """Reconciles the resource `key`; returns in how many seconds to look again, if at all."""
        body = first(self.bodies.get(key))
        if body is None:
            self.forget(key)
            return None
        try:
            resource = self.parse(body)
        except ValidationError as error:
            # The apiserver validates with the same rules; this is an older or foreign object.
            logger.error("%s %s/%s is not valid, not reconciled: %s", self.kind, *key, error)
            return None
        if body["metadata"].get("deletionTimestamp"):
            return await self.deleting(key, body, resource)
        observed = await self.read(key, body, resource)
        decision = self.decide(resource, observed)
        if not await self.act(key, body, resource, observed, decision):
            return None
        await report_status(self.kube, body, resource.status, decision.status)
        await self.after_status(key, observed, decision)
        for event in decision.events:
            await self.kube.post_event(body, event)
        self.measure(key, resource, decision)
        return decision.requeue_after

    def forget(self, key: Key) -> None:
        """The resource is gone: drop what is kept of it."""

    @abstractmethod
    async def deleting(self, key: Key, body: Object, resource: ResourceT) -> float | None:
        """The resource is being deleted: what its deletion needs (a finalizer's work)."""

    @abstractmethod
    async def read(self, key: Key, body: Object, resource: ResourceT) -> ObservedT:
        """What is observed of the resource's world, now."""

    @abstractmethod
    def decide(self, resource: ResourceT, observed: ObservedT) -> DecisionT:
        """The resource's status decision (pure)."""

    @abstractmethod
    async def act(
        self, key: Key, body: Object, resource: ResourceT, observed: ObservedT, decision: DecisionT
    ) -> bool:
        """Makes the API calls the decision asks for, but the status and Events; False when the
        resource is gone and nothing is left to report."""

    async def after_status(self, key: Key, observed: ObservedT, decision: DecisionT) -> None:
        """What may be done only once the new status is stored."""

    @abstractmethod
    def measure(self, key: Key, resource: ResourceT, decision: DecisionT) -> None:
        """Updates the resource's metrics."""
