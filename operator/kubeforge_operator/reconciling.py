"""What the reconciles of TrainingJobs and DataIngests share once they have decided.

Both read their resource and its children from the operator's in-memory indexes, then call
`apply_drifted` (server-side apply of only the children whose desired hash differs from the one
observed; a Job whose immutable part changed is deleted, and the next reconcile creates it anew)
and `report_status` (a status patch only when the status changed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from kubeforge_operator.k8s import Kube
from kubeforge_operator.objects import DESIRED_HASH, TEMPLATE_HASH, Object

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
