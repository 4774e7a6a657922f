"""What rank 0 reports while an attempt starts: its stages, and no step before it knows it."""

from __future__ import annotations

from pathlib import Path

from kubeforge.api.trainingjob import ProgressStatus, TrainerStage
from kubeforge.progress import FileSink, ProgressReporter
from kubeforge_trainer.reporting import Progress


def test_a_restarted_attempt_reports_no_step_until_it_has_restored(tmp_path: Path) -> None:
    """Hours in, a new attempt loads and restores the checkpoint of step 4000: its reports say
    so by their stage and report no step, rather than a step 0 that `kubectl get` and anything
    watching the step would take for a run started over; from its first step on, the step."""
    file = tmp_path / "progress.json"
    progress = Progress(10_000, ProgressReporter(FileSink(file)))

    def reported() -> ProgressStatus:
        return ProgressStatus.model_validate_json(file.read_text())

    progress.entered(TrainerStage.LOADING)
    assert (reported().stage, reported().step) == (TrainerStage.LOADING, None)
    progress.entered(TrainerStage.RESTORING)
    assert (reported().stage, reported().step) == (TrainerStage.RESTORING, None)
    progress.entered(TrainerStage.FIRST_STEP, 4000)
    assert (reported().stage, reported().step) == (TrainerStage.FIRST_STEP, 4000)
    progress.advanced(4001)
    report = reported()
    assert (report.stage, report.step) == (TrainerStage.TRAINING, 4001)
    assert report.stage_since == report.updated_at == report.first_step_at
