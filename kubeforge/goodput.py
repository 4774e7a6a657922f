"""Goodput: how much of a TrainingJob's wall time went into training that the model kept.

`measure` is one pure function: it folds what is known of a job (when its workers were first
created, when its restarts' failures happened, rank 0's latest progress report) into the
previous `GoodputStatus`, at a given clock. The operator calls it at every reconcile
(`measure_status`) and the local runner at every poll of the progress file; both keep the result,
so what scrolls out of the restart history still counts.

The wall time from the first creation of the workers (to completion, once finished) is split:
  startup     from the first creation to the first training step;
  lost        per restart, from the failure to the first training step after it, plus the
              training of the failed attempt after its last checkpoint, which the group redoes
              from that checkpoint (the rework);
  productive  the rest, over the wall time: the goodput ratio.

The group's attempts are told apart by the failures recorded in status.restarts and by the
process start time rank 0 reports (`startedAt`), which also catches a restart nobody recorded
(torchrun restarting its workers in place). Reports of trainers older than `startedAt` and
`firstStepAt` still count: the first report after an attempt began stands for its first step.
The operator measures at every reconcile but writes the status only when it changed, so
`measure_status` reads the clock in steps of STATUS_CLOCK_SECONDS: the reconcile that the write
itself triggers finds the same goodput and writes nothing. Readers (`kubeforge status`, the
Prometheus gauge) measure the stored status again at their own clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from kubeforge.api.trainingjob import (
    RESTART_HISTORY_LIMIT,
    GoodputAttempt,
    GoodputStatus,
    ProgressStatus,
    TrainingJobStatus,
)

ATTEMPTS_KEPT = RESTART_HISTORY_LIMIT + 1
"""The first attempt and the latest RESTART_HISTORY_LIMIT."""
STATUS_CLOCK_SECONDS = 10
"""The step of the clock `measure_status` reads."""


def _seconds(since: datetime, until: datetime) -> float:
    return max(0.0, (until - since).total_seconds())


def _close(attempt: GoodputAttempt, ended: datetime) -> GoodputAttempt:
    """The attempt as it ended; one that never stepped lost all of its time."""
    if attempt.lost_seconds is not None:
        return attempt
    lost = _seconds(attempt.began_at, ended) + attempt.rework_seconds
    return attempt.model_copy(update={"lost_seconds": round(lost, 1)})


def _after(attempt: GoodputAttempt, failure: datetime) -> GoodputAttempt:
    """The attempt a failure begins: the failed one's training since its last checkpoint (or
    since its first step, when it committed none) is redone."""
    rework = 0.0
    if attempt.first_step_at is not None:
        kept_until = max(attempt.first_step_at, attempt.last_checkpoint_at or attempt.first_step_at)
        rework = _seconds(kept_until, failure)
    return GoodputAttempt(began_at=failure, rework_seconds=round(rework, 1))


def _restart(attempts: list[GoodputAttempt], failure: datetime) -> None:
    attempts[-1] = _close(attempts[-1], failure)
    attempts.append(_after(attempts[-1], failure))


def _is_new(failure: datetime, attempts: list[GoodputAttempt]) -> bool:
    """Whether a failure ends the current attempt. The attempt after a restart began at its
    failure, so only a later one does; the first began at the start, which a failure in the
    same second (pods' times have whole seconds) can equal. A failure before the current
    process started was already stood for by the change of process."""
    current = attempts[-1]
    if failure < current.began_at or (failure == current.began_at and len(attempts) > 1):
        return False
    process = current.started_at
    return process is None or failure >= process.replace(microsecond=0)


def _take_report(attempts: list[GoodputAttempt], report: ProgressStatus) -> None:
    """Updates the current attempt from rank 0's report, unless the report is an earlier
    attempt's (the channel keeps the last report until the next attempt writes one)."""
    current = attempts[-1]
    process = report.started_at
    if process is not None and any(a.started_at == process for a in attempts[:-1]):
        return
    if report.updated_at is not None and report.updated_at <= current.began_at:
        return
    if process is not None and current.started_at not in (None, process):
        # A new process without a recorded failure: the failure came after the last step seen.
        _restart(attempts, max(current.began_at, current.last_step_at or process))
        current = attempts[-1]
    update: dict[str, object] = {}
    if current.started_at is None and process is not None:
        update["started_at"] = process
    stepped = report.updated_at if report.step else None
    first_step = report.first_step_at or stepped
    if current.first_step_at is None and first_step is not None:
        to_first_step = round(_seconds(current.began_at, first_step), 1)
        update["first_step_at"] = first_step
        update["time_to_first_step_seconds"] = to_first_step
        update["lost_seconds"] = round(to_first_step + current.rework_seconds, 1)
    if stepped is not None:
        update["last_step_at"] = stepped
    checkpoint = report.last_checkpoint
    if checkpoint is not None and checkpoint.time > current.began_at:
        update["last_checkpoint_at"] = checkpoint.time
    attempts[-1] = current.model_copy(update=update)


def measure(
    previous: GoodputStatus | None,
    *,
    started: datetime,
    failures: Iterable[datetime],
    progress: ProgressStatus | None,
    now: datetime,
) -> GoodputStatus:
    """The goodput at `now` (the completion time, for a finished job).

    started: when the workers were first created; failures: when each restart's failure
    happened (any that were folded in before are skipped); progress: rank 0's latest report.
    """
    attempts = list(previous.attempts) if previous and previous.attempts else []
    attempts = attempts or [GoodputAttempt(began_at=started)]
    earlier_lost = previous.earlier_lost_seconds if previous else 0.0
    for failure in sorted(failures):
        if _is_new(failure, attempts):
            _restart(attempts, failure)
    if progress is not None:
        _take_report(attempts, progress)
    while len(attempts) > ATTEMPTS_KEPT:
        earlier_lost += attempts.pop(1).lost_seconds or 0.0

    def lost(attempt: GoodputAttempt) -> float:
        if attempt.lost_seconds is not None:
            return attempt.lost_seconds
        return _seconds(attempt.began_at, now) + attempt.rework_seconds  # under way

    wall = round(_seconds(started, now))
    startup = round(lost(attempts[0]))
    restarts = round(earlier_lost + sum(lost(a) for a in attempts[1:]))
    productive = max(0, wall - startup - restarts)
    return GoodputStatus(
        ratio=round(productive / wall, 4) if wall else None,
        wall_seconds=wall,
        productive_seconds=productive,
        startup_seconds=startup,
        lost_seconds=restarts,
        attempts=attempts,
        earlier_lost_seconds=round(earlier_lost, 1),
    )


def measure_status(status: TrainingJobStatus, now: datetime) -> GoodputStatus | None:
    """The goodput of a job's status at `now` (in steps of STATUS_CLOCK_SECONDS; at completion
    once finished); None before its workers were first created."""
    if status.start_time is None:
        return None
    step = now.timestamp() // STATUS_CLOCK_SECONDS * STATUS_CLOCK_SECONDS
    return measure(
        status.goodput,
        started=status.start_time,
        failures=[restart.time for restart in status.restarts.history],
        progress=status.progress,
        now=status.completion_time or datetime.fromtimestamp(step, UTC),
    )
