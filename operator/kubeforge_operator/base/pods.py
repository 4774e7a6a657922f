"""Why a pod cannot start without a change: the one classification every resource's status uses."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

from kubeforge.api.meta import PodStartFailure
from kubeforge_operator.objects import Object

ReasonT = TypeVar("ReasonT", bound=StrEnum)

WAITING_BLOCKERS = {
    "ImagePullBackOff": PodStartFailure.IMAGE_PULL_BACK_OFF,
    "ErrImagePull": PodStartFailure.ERR_IMAGE_PULL,
    "CreateContainerConfigError": PodStartFailure.CREATE_CONTAINER_CONFIG_ERROR,
}
"""Container waiting reasons that keep a pod from ever starting without a change."""
START_BLOCKERS = frozenset(failure.value for failure in PodStartFailure)
"""The values of every PodStartFailure: a resource's reason with one of them is a blocked start."""


def is_start_blocker(reason: str) -> bool:
    """True when a resource's reason (of its own enum) says a pod cannot start."""
    return reason in START_BLOCKERS


def start_blocker(pods: Iterable[Object], reasons: type[ReasonT]) -> tuple[ReasonT, str] | None:
    """The first reason one of `pods` cannot start, as the resource's own reason (`reasons`, whose
    members include PodStartFailure's values), with a message naming the pod: a container waiting
    for good, or the pod unschedulable. Pods being deleted are passed over."""
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in WAITING_BLOCKERS:
                detail = f"{waiting['reason']}: {waiting.get('message', '')}".strip().rstrip(":")
                blocker = WAITING_BLOCKERS[waiting["reason"]]
                return reasons(blocker.value), f"pod {meta['name']}: {detail}"
        for condition in status.get("conditions") or []:
            if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
                "PodScheduled",
                "False",
                "Unschedulable",
            ):
                message = f"pod {meta['name']}: {condition.get('message', '')}".strip()
                return reasons(PodStartFailure.UNSCHEDULABLE.value), message
    return None
