"""The Argo CD health checks (Lua) of TrainingJob and DataIngest, on sample statuses.

Real: the committed scripts, run by Lua 5.1 (gopher-lua's dialect) through lupa. The statuses are
written here in the operator's shape (every condition type, the current reason on each);
tests/integration/test_chart_install.py runs the same scripts on statuses the operator wrote.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge.api.dataingest import DataIngestConditionType
from kubeforge.api.trainingjob import TrainingJobConditionType
from tests.argocd import health

TIME = "2026-01-01T00:00:00Z"


def resource(
    kind: str,
    phase: str | None,
    reason: str = "",
    holding: tuple[str, ...] = (),
    *,
    generation: int = 1,
    observed: int = 1,
    progress: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A resource whose conditions of the listed types are True, the others False."""
    types = TrainingJobConditionType if kind == "TrainingJob" else DataIngestConditionType
    body: dict[str, Any] = {
        "apiVersion": "kubeforge.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "spec": {},
    }
    if phase is None:
        return body
    conditions = [
        {
            "type": kind_.value,
            "status": "True" if kind_.value in holding else "False",
            "observedGeneration": observed,
            "lastTransitionTime": TIME,
            "reason": reason,
            "message": f"{phase.lower()} for a reason",
        }
        for kind_ in types
    ]
    body["status"] = {"phase": phase, "conditions": conditions, "progress": progress or {}}
    return body


TRAINING_JOB_CASES = {
    "no status yet": (resource("TrainingJob", None), "Progressing"),
    "waiting for its dataset": (
        resource("TrainingJob", "Pending", "WaitingForDataset", ("Reconciling",)),
        "Progressing",
    ),
    "workers starting": (
        resource("TrainingJob", "Starting", "WorkersStarting", ("Reconciling",)),
        "Progressing",
    ),
    "image pull back-off": (
        resource("TrainingJob", "Starting", "ImagePullBackOff", ("Stalled",)),
        "Degraded",
    ),
    "running": (
        resource(
            "TrainingJob", "Running", "WorkersRunning", ("Ready", "Running"), progress={"step": 42}
        ),
        "Progressing",
    ),
    "restarting": (
        resource("TrainingJob", "Restarting", "RetryableExitCode", ("Reconciling",)),
        "Progressing",
    ),
    "suspended": (resource("TrainingJob", "Suspended", "Suspended", ("Suspended",)), "Suspended"),
    "succeeded": (
        resource("TrainingJob", "Succeeded", "Completed", ("Ready", "Succeeded")),
        "Healthy",
    ),
    "failed": (
        resource("TrainingJob", "Failed", "BackoffLimitExceeded", ("Stalled", "Failed")),
        "Degraded",
    ),
    "succeeded, but for an older spec": (
        resource("TrainingJob", "Succeeded", "Completed", ("Ready", "Succeeded"), generation=2),
        "Progressing",
    ),
}

DATA_INGEST_CASES = {
    "no status yet": (resource("DataIngest", None), "Progressing"),
    "provisioning": (
        resource("DataIngest", "Provisioning", "BucketCreated", ("Reconciling",)),
        "Progressing",
    ),
    "credentials missing": (
        resource("DataIngest", "Provisioning", "CredentialsMissing", ("Stalled",)),
        "Degraded",
    ),
    "crawling": (
        resource("DataIngest", "Crawling", "ShardsRunning", ("Reconciling", "StorageReady")),
        "Progressing",
    ),
    "published": (
        resource("DataIngest", "Succeeded", "Published", ("Ready", "Published", "StorageReady")),
        "Healthy",
    ),
    "a shard failed": (
        resource("DataIngest", "Failed", "ShardFailed", ("Stalled", "Failed")),
        "Degraded",
    ),
    "published, but for an older spec": (
        resource("DataIngest", "Succeeded", "Published", ("Ready", "Published"), generation=3),
        "Progressing",
    ),
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [*TRAINING_JOB_CASES.values(), *DATA_INGEST_CASES.values()],
    ids=[f"TrainingJob {c}" for c in TRAINING_JOB_CASES]
    + [f"DataIngest {c}" for c in DATA_INGEST_CASES],
)
def test_health_follows_the_conditions(body: dict[str, Any], expected: str) -> None:
    assert health(body).status == expected


def test_message_says_phase_reason_and_step() -> None:
    body, _ = TRAINING_JOB_CASES["running"]
    assert health(body).message == "Running (WorkersRunning): running for a reason; step 42"
    body, _ = TRAINING_JOB_CASES["succeeded, but for an older spec"]
    assert health(body).message == "Waiting for the operator to observe generation 2"
    body, _ = DATA_INGEST_CASES["credentials missing"]
    assert health(body).message == "Provisioning (CredentialsMissing): provisioning for a reason"
