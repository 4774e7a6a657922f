"""The shared API pieces: camelCase models, CEL-rule declaration, conditions, quantities.

Pure functions and pydantic validation only; nothing is faked and nothing talks to a cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from kubeforge.api.meta import (
    CamelModel,
    Condition,
    ConditionStatus,
    ObjectMeta,
    Quantity,
    cel_rule,
    find_condition,
    set_condition,
    unique,
)

EARLIER = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
LATER = EARLIER + timedelta(minutes=5)


def condition(
    condition_type: str, status: ConditionStatus, when: datetime, reason: str = "Because"
) -> Condition:
    return Condition(
        type=condition_type,
        status=status,
        last_transition_time=when,
        reason=reason,
        message="",
        observed_generation=1,
    )


class Window(CamelModel):
    """A model with one CEL rule, to check how rules are declared."""

    low_mark: int = Field(description="Low.")
    high_mark: int = Field(description="High.")

    @cel_rule(
        "self.lowMark <= self.highMark", "lowMark must not exceed highMark", field_path=".lowMark"
    )
    def _ordered(self) -> bool:
        return self.low_mark <= self.high_mark


def test_cel_rule_is_in_the_schema_and_checked_in_python() -> None:
    schema = Window.model_json_schema()
    assert schema["x-kubernetes-validations"] == [
        {
            "rule": "self.lowMark <= self.highMark",
            "message": "lowMark must not exceed highMark",
            "fieldPath": ".lowMark",
        }
    ]
    assert Window(low_mark=1, high_mark=2).high_mark == 2
    with pytest.raises(ValidationError, match="lowMark must not exceed highMark"):
        Window.model_validate({"lowMark": 3, "highMark": 2})


def test_models_speak_camel_case_and_refuse_unknown_fields() -> None:
    window = Window.model_validate({"lowMark": 1, "highMark": 2})
    assert window == Window(low_mark=1, high_mark=2)
    assert window.model_dump(by_alias=True) == {"lowMark": 1, "highMark": 2}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Window.model_validate({"lowMark": 1, "highMark": 2, "hihgMark": 3})


def test_object_meta_keeps_fields_it_does_not_model() -> None:
    meta = ObjectMeta.model_validate({"name": "a", "resourceVersion": "42"})
    assert meta.model_dump(by_alias=True, exclude_none=True)["resourceVersion"] == "42"


def test_set_condition_keeps_the_transition_time_when_the_status_is_unchanged() -> None:
    before = [condition("Ready", ConditionStatus.TRUE, EARLIER, reason="WorkersRunning")]
    after = set_condition(before, condition("Ready", ConditionStatus.TRUE, LATER, reason="Scaling"))
    assert after[0].last_transition_time == EARLIER
    assert after[0].reason == "Scaling"
    assert before[0].reason == "WorkersRunning", "the input list is not changed"


def test_set_condition_moves_the_transition_time_when_the_status_changes() -> None:
    before = [condition("Ready", ConditionStatus.TRUE, EARLIER)]
    after = set_condition(before, condition("Ready", ConditionStatus.FALSE, LATER))
    assert after == [condition("Ready", ConditionStatus.FALSE, LATER)]


def test_set_condition_replaces_in_place_and_appends_new_types() -> None:
    before = [
        condition("Ready", ConditionStatus.FALSE, EARLIER),
        condition("Stalled", ConditionStatus.FALSE, EARLIER),
    ]
    replaced = set_condition(before, condition("Ready", ConditionStatus.TRUE, LATER))
    assert [(c.type, c.status) for c in replaced] == [
        ("Ready", ConditionStatus.TRUE),
        ("Stalled", ConditionStatus.FALSE),
    ]
    appended = set_condition(replaced, condition("Running", ConditionStatus.TRUE, LATER))
    assert [c.type for c in appended] == ["Ready", "Stalled", "Running"]
    assert find_condition(appended, "Running") == appended[2]
    assert find_condition(appended, "Failed") is None


@pytest.mark.parametrize("reason", ["", "not camel", "Trailing:", "9Lives"])
def test_condition_reason_has_the_metav1_shape(reason: str) -> None:
    with pytest.raises(ValidationError, match="reason"):
        condition("Ready", ConditionStatus.TRUE, EARLIER, reason=reason)


def test_condition_times_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        condition("Ready", ConditionStatus.TRUE, datetime(2025, 1, 1))


def test_condition_serialises_as_metav1_condition() -> None:
    dumped = condition("Ready", ConditionStatus.TRUE, EARLIER).model_dump(
        by_alias=True, mode="json"
    )
    assert dumped == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": "2025-01-01T12:00:00Z",
        "reason": "Because",
        "message": "",
    }


@pytest.mark.parametrize(
    "value",
    [0, 2, 8, "2", "500m", "4Gi", "1.5", "1.", ".5", "1e3", "1E-3", "+4k", "-0", "-0.0Mi"],
)
def test_quantity_accepts_non_negative_kubernetes_quantities(value: int | str) -> None:
    assert TypeAdapter(Quantity).validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [
        -1,
        "-1",
        "-500m",
        "-.5Ki",
        "-1e-100",
        "lots",
        "1.5.5",
        "16GB",
        "1KiB",
        "",
        "Gi",
        "+",
        ".",
        "1e3.5",
        "1e",
        "1e9223372036854775808",
        " 1",
    ],
)
def test_quantity_refuses_negative_and_malformed_values(value: int | str) -> None:
    with pytest.raises(ValidationError, match="must be a non-negative quantity such as 500m"):
        TypeAdapter(Quantity).validate_python(value)


def test_quantity_has_a_length_bound() -> None:
    with pytest.raises(ValidationError, match="at most 64 characters"):
        TypeAdapter(Quantity).validate_python("1" * 65)


def test_unique_names_every_repeated_value() -> None:
    assert unique([1, 2, 3]) == [1, 2, 3]
    with pytest.raises(ValueError, match="duplicate values: 1, 3"):
        unique([3, 1, 2, 1, 3])
