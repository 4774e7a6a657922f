"""Rank 0's reports: log lines for humans, `status.progress` for the operator, metrics.json.

Reports follow the progress contract (`kubeforge.progress`): `updatedAt` is the time the step
last advanced, which the operator's hang detection reads, `startedAt` and `firstStepAt` (when
this process started, when its first step finished) tell the operator's goodput one attempt from
the next, `stage` and `stageSince` say what the attempt is doing (the operator times each stage
of a start on its own), and reports are forced at each stage, at each checkpoint, when a wait for
the object store starts or ends (`storageWaitingSince`), and at the end. The history of
measurements and of evaluations on the held-out split are part of the checkpointed state, so the
final metrics.json covers the whole run across restarts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel

from kubeforge.api.trainingjob import (
    CheckpointRecord,
    ProgressStatus,
    TrainerStage,
    ValidationProgress,
)
from kubeforge.progress import ProgressReporter
from kubeforge_trainer.validation import Evaluation

log = logging.getLogger(__name__)


def process_start_time() -> datetime:
    """When this process started (Linux's /proc), or now where /proc cannot say."""
    try:
        # Field 22, counted after the command name (which may hold spaces), in clock ticks.
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        system = Path("/proc/stat").read_text().splitlines()
        boot = next(int(line.split()[1]) for line in system if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return datetime.now(UTC)
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


@dataclass(frozen=True)
class Measurement:
    """Training metrics at one step: its loss, and rates since the previous measurement."""

    step: int
    loss: float
    samples_per_second: float
    tokens_per_second: float | None
    mfu: float | None
    data_wait_seconds: float
    checkpoint_wait_seconds: float
    test_accuracy: float | None = None


class Progress:
    """What rank 0 knows about the run's progress, and where it tells it."""

    def __init__(self, total_steps: int, reporter: ProgressReporter) -> None:
        self.total_steps = total_steps
        self.reporter = reporter
        self.step: int | None = None
        """The last step done; unknown (not reported) until the attempt has restored."""
        self.history: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        """Every evaluation on the held-out split, as `ValidationProgress` JSON."""
        self._latest: Measurement | None = None
        self._last_checkpoint: CheckpointRecord | None = None
        self._validation: ValidationProgress | None = None
        self._advanced_at: datetime | None = None
        self._started_at = process_start_time()
        self._first_step_at: datetime | None = None
        self._storage_waiting_since: datetime | None = None
        self._stage: TrainerStage | None = None
        self._stage_since: datetime | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "validations": list(self.validations)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.validations = list(state.get("validations", []))  # none in older checkpoints
        if self.validations:
            self._validation = ValidationProgress.model_validate(self.validations[-1])

    def entered(self, stage: TrainerStage, step: int | None = None) -> None:
        """The attempt began a stage, at `step` when it knows where it stands: reported at once,
        as the clock of the operator's hang detection restarts with it. A restarted attempt
        reports no step while it loads and restores, rather than a step 0 it is not at."""
        log.info("stage %s", stage.value)
        if step is not None:
            self.step = step
        self._stage = stage
        self._stage_since = datetime.now(UTC)
        self.reporter.report(self._status(), force=True)

    def advanced(self, step: int) -> None:
        """A step finished; the first one of the attempt begins its Training stage."""
        self.step = step
        self._advanced_at = datetime.now(UTC)
        if self._first_step_at is None:
            self._first_step_at = self._advanced_at
            self._stage, self._stage_since = TrainerStage.TRAINING, self._advanced_at
        self.reporter.report(self._status(), force=self._stage_since == self._advanced_at)

    def measured(self, measurement: Measurement) -> None:
        self._latest = measurement
        self.history.append({to_camel(k): v for k, v in vars(measurement).items() if v is not None})
        parts = [
            f"step {measurement.step}/{self.total_steps}",
            f"loss {measurement.loss:.4f}",
            f"{measurement.samples_per_second:,.0f} samples/s",
        ]
        if measurement.tokens_per_second is not None:
            parts.append(f"{measurement.tokens_per_second:,.0f} tokens/s")
        if measurement.mfu is not None:
            parts.append(f"MFU {measurement.mfu:.1%}")
        if measurement.test_accuracy is not None:
            parts.append(f"test accuracy {measurement.test_accuracy:.2%}")
        parts.append(f"data wait {measurement.data_wait_seconds:.1f} s")
        parts.append(f"checkpoint wait {measurement.checkpoint_wait_seconds:.1f} s")
        log.info(" | ".join(parts))

    def validated(self, step: int, evaluation: Evaluation) -> None:
        """An evaluation on the held-out split, after `step`."""
        self._validation = ValidationProgress(
            step=step,
            loss=evaluation.loss,
            perplexity=evaluation.perplexity,
            bits_per_byte=evaluation.bits_per_byte,
            tokens=evaluation.tokens,
        )
        self.validations.append(self._validation.model_dump(mode="json", by_alias=True))
        log.info(
            "step %d/%d | validation loss %.4f | perplexity %.2f | %.4f bits/byte | %d tokens",
            step,
            self.total_steps,
            evaluation.loss,
            evaluation.perplexity,
            evaluation.bits_per_byte,
            evaluation.tokens,
        )

    def checkpointed(self, record: CheckpointRecord) -> None:
        self._last_checkpoint = record
        log.info("checkpoint of step %d committed at %s", record.step, record.uri)
        self.reporter.report(self._status(), force=True)

    def storage_waiting(self, since: datetime | None) -> None:
        """The object store stopped answering at `since`, or answered again (None): reported at
        once, so that the status says what the run is waiting for."""
        self._storage_waiting_since = since
        self.reporter.report(self._status(), force=True)

    def finished(self) -> None:
        self.reporter.report(self._status(), force=True)

    def _status(self) -> ProgressStatus:
        latest = self._latest
        return ProgressStatus(
            step=self.step,
            total_steps=self.total_steps,
            loss=latest.loss if latest else None,
            samples_per_second=latest.samples_per_second if latest else None,
            tokens_per_second=latest.tokens_per_second if latest else None,
            mfu=latest.mfu if latest else None,
            data_wait_seconds=latest.data_wait_seconds if latest else None,
            checkpoint_wait_seconds=latest.checkpoint_wait_seconds if latest else None,
            last_checkpoint=self._last_checkpoint,
            storage_waiting_since=self._storage_waiting_since,
            updated_at=self._advanced_at,
            started_at=self._started_at,
            first_step_at=self._first_step_at,
            stage=self._stage,
            stage_since=self._stage_since,
            validation=self._validation,
        )
