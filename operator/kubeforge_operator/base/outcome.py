"""A reconcile's verdict on its resource, the conditions it writes and the Event of a transition.

Each resource decides an `Outcome` (a phase of its own and a reason of its own, with a message);
every condition it then writes carries that reason and message unless it says otherwise, and a
change of phase or of the Ready condition's reason is told in one Event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from kubeforge.api.meta import Condition, ConditionStatus, find_condition
from kubeforge_operator.objects import Event

PhaseT = TypeVar("PhaseT", bound=StrEnum)
ReasonT = TypeVar("ReasonT", bound=StrEnum)

READY = "Ready"
"""The condition whose reason, with the phase, says whether the resource's state changed."""


@dataclass(frozen=True)
class Outcome(Generic[PhaseT, ReasonT]):
    """The phase and the reason and message of its conditions."""

    phase: PhaseT
    reason: ReasonT
    message: str


@dataclass(frozen=True)
class ConditionWriter:
    """Writes the conditions of one outcome: with its reason and message unless told otherwise,
    for the spec generation the outcome was reached for, stamped now (`set_condition` keeps the
    earlier time of a condition whose status did not change)."""

    reason: StrEnum
    message: str
    generation: int | None
    now: datetime

    def __call__(
        self,
        kind: StrEnum,
        holds: bool,
        reason: StrEnum | None = None,
        message: str | None = None,
    ) -> Condition:
        return Condition(
            type=kind.value,
            status=ConditionStatus.TRUE if holds else ConditionStatus.FALSE,
            observed_generation=self.generation,
            last_transition_time=self.now,
            reason=(reason or self.reason).value,
            message=self.message if message is None else message,
        )


def condition_writer(
    outcome: Outcome[PhaseT, ReasonT], generation: int | None, now: datetime
) -> ConditionWriter:
    return ConditionWriter(outcome.reason, outcome.message, generation, now)


def transition_event(
    previous_phase: StrEnum | None,
    previous_conditions: Sequence[Condition],
    outcome: Outcome[PhaseT, ReasonT],
    warning: bool,
) -> Event | None:
    """The Event telling the new phase and reason, None when neither changed."""
    ready = find_condition(previous_conditions, READY)
    previous_reason = ready.reason if ready is not None else None
    if previous_phase == outcome.phase and previous_reason == outcome.reason.value:
        return None
    message = f"{outcome.phase.value}: {outcome.message}"
    return Event("Warning" if warning else "Normal", outcome.reason.value, message)
