"""The TrainingJob API models: defaults, wire format, and the specs they refuse.

Pure pydantic validation; nothing is faked. The invalid specs come from `tests.trainingjob_cases`,
the table the integration tier sends to a real apiserver, so the local runner and the cluster are
held to the same refusals (field and message).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from kubeforge.api.trainingjob import (
    RESTART_HISTORY_LIMIT,
    TRAINING_JOB,
    GangScheduler,
    Precision,
    RestartCause,
    RestartRecord,
    RestartStatus,
    TrainingJob,
    TrainingJobReason,
    TrainingJobSpec,
    TrainingJobStatus,
)
from kubeforge.cli.resources import describe
from tests.trainingjob_cases import FULL_SPEC, INVALID_SPECS, MINIMAL_SPEC, InvalidSpec

STARTED = datetime(2025, 1, 1, tzinfo=UTC)


def error_path(model: type[BaseModel], error: ErrorDetails) -> str:
    """Where `kubeforge validate`, in the apiserver's words, places a pydantic error."""
    return describe(model, error).split(": ", 1)[0]


def refusals(document: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as refused:
        TrainingJob.model_validate(document)
    return [(error_path(TrainingJob, e), e["msg"]) for e in refused.value.errors()]


def test_minimal_spec_takes_the_documented_defaults() -> None:
    spec = TrainingJobSpec.model_validate(MINIMAL_SPEC)
    assert spec.replicas == 1
    assert spec.min_replicas is None
    assert spec.max_replicas is None
    assert spec.nproc_per_node == 1
    assert spec.failure_policy.max_restarts == 3
    assert spec.failure_policy.retryable_exit_codes == []
    assert spec.start_deadline_seconds == 600
    assert spec.progress_deadline_seconds is None
    assert spec.suspend is False
    assert spec.scheduling.gang == GangScheduler.NONE
    assert spec.trainer is not None
    assert spec.trainer.precision == Precision.BF16
    assert spec.trainer.batch.global_size == 64
    assert spec.trainer.optimizer.learning_rate == pytest.approx(3e-4)


def test_full_spec_round_trips_through_the_wire_format() -> None:
    spec = TrainingJobSpec.model_validate(FULL_SPEC)
    assert spec.resources.limits["nvidia.com/gpu"] == 8
    assert spec.dataset is not None
    assert spec.dataset.dataset_ref is not None
    assert spec.dataset.dataset_ref.version == 2
    assert spec.env[1].value_from == {"secretKeyRef": {"name": "s3", "key": "id"}}
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["nprocPerNode"] == 8
    assert dumped["checkpoint"]["intervalSteps"] == 500
    assert TrainingJobSpec.model_validate(dumped) == spec


def test_spec_fields_can_be_set_by_python_name() -> None:
    spec = TrainingJobSpec(image="trainer:1", command=["train.py"], nproc_per_node=4)
    assert spec.model_dump(by_alias=True)["nprocPerNode"] == 4


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda case: case.id)
def test_invalid_spec_is_refused_naming_the_field(case: InvalidSpec) -> None:
    errors = refusals({"spec": case.spec})
    # A CEL rule's check fails on the object that holds the rule, so its error may sit on a
    # parent of the field the apiserver names; the message then names the field itself.
    assert any(
        case.message.lower() in message.lower()
        and (case.field == path or case.field.startswith((f"{path}.", f"{path}[")))
        for path, message in errors
    ), f"expected {case.message!r} at {case.field}, got {errors}"


def test_unknown_spec_field_is_refused() -> None:
    errors = refusals({"spec": {**MINIMAL_SPEC, "replica": 2}})
    assert errors == [("spec.replica", "Extra inputs are not permitted")]


def test_a_resource_read_from_the_cluster_is_accepted() -> None:
    job = TrainingJob.model_validate(
        {
            "apiVersion": "kubeforge.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "gpt", "generation": 3, "managedFields": [{"manager": "kubectl"}]},
            "spec": MINIMAL_SPEC,
            "status": {
                "phase": "Running",
                "observedGeneration": 3,
                "replicas": {"desired": 1, "current": 1, "ready": 1},
                "progress": {"step": 10, "loss": 2.5, "updatedAt": "2025-01-01T00:00:00Z"},
                "fieldFromANewerOperator": True,
            },
        }
    )
    assert job.metadata.generation == 3
    assert job.status.progress is not None
    assert job.status.progress.step == 10
    assert job.api_version == TRAINING_JOB.api_version
    assert job.kind == TRAINING_JOB.kind


def test_a_resource_of_another_kind_is_refused() -> None:
    errors = refusals({"kind": "DataIngest", "spec": MINIMAL_SPEC})
    assert [path for path, _ in errors] == ["kind"]


def test_status_serialises_without_empty_fields() -> None:
    status = TrainingJobStatus(start_time=STARTED, world_size=8)
    assert status.model_dump(by_alias=True, exclude_none=True, mode="json") == {
        "conditions": [],
        "replicas": {"desired": 0, "current": 0, "ready": 0},
        "restarts": {"count": 0, "disruptions": 0, "history": []},
        "worldSize": 8,
        "startTime": "2025-01-01T00:00:00Z",
    }


def test_restart_history_is_bounded() -> None:
    record = RestartRecord(time=STARTED, cause=RestartCause.NODE_LOST, charged=False)
    RestartStatus(history=[record] * RESTART_HISTORY_LIMIT)
    with pytest.raises(ValidationError, match=f"at most {RESTART_HISTORY_LIMIT} items"):
        RestartStatus(history=[record] * (RESTART_HISTORY_LIMIT + 1))


def test_only_disruptions_are_free_of_the_restart_budget() -> None:
    disruptions = {cause for cause in RestartCause if cause.is_disruption}
    assert disruptions == {
        RestartCause.NODE_LOST,
        RestartCause.PREEMPTED,
        RestartCause.EVICTED,
        RestartCause.POD_DELETED,
    }


def test_every_restart_cause_is_also_a_condition_reason() -> None:
    reasons = {reason.value for reason in TrainingJobReason}
    assert {cause.value for cause in RestartCause} <= reasons


def test_reasons_have_the_metav1_condition_shape() -> None:
    for reason in TrainingJobReason:
        assert reason.value.isalnum(), reason
        assert reason.value[0].isupper(), reason
