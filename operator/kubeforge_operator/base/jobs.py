"""What a batch/v1 Job says of its end, and the times a resource's status takes from its Jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from kubeforge_operator.objects import Object, job_condition, parse_time


class Timed(Protocol):
    """A status with the start and completion of the resource's work."""

    start_time: datetime | None
    completion_time: datetime | None


def complete(job: Object | None) -> bool:
    """True when the Job succeeded (or its success criteria are met, before its pods are gone)."""
    return bool(job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet"))


def failed(job: Object | None) -> Object | None:
    """The Job's Failed condition (or FailureTarget, before its pods are gone), None while it has
    not failed."""
    return job_condition(job, "Failed") or job_condition(job, "FailureTarget")


def created_at(obj: Object, now: datetime) -> datetime:
    """When the object was created (now when the server has not said)."""
    return parse_time(obj["metadata"].get("creationTimestamp")) or now


def stamp_start(status: Timed, started: datetime | None) -> None:
    """Sets the status' startTime, once: the first time the work is seen started."""
    if status.start_time is None:
        status.start_time = started


def stamp_completion(status: Timed, finished: bool, last_job: Object | None, now: datetime) -> None:
    """Sets the status' completionTime, once, when the work has finished: the completionTime of
    its last Job, or now (a Job that failed has none)."""
    if finished and status.completion_time is None:
        completed = ((last_job or {}).get("status") or {}).get("completionTime")
        status.completion_time = parse_time(completed) or now
