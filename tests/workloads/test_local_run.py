"""`kubeforge run FILE --local` end to end: the real CLI as a program, real crawler shards against
the demo web on loopback, real torchrun agents (`kubeforge.launch`) and workers (gloo, CPU), the
embedded file store.

The samples are the demo's own files with their step counts scaled down so that a test takes
seconds, not minutes; the failure-policy tests run a custom `command` whose rank 1 exits with a
chosen code once, under the real launcher, as a pod's would. Interrupting is a real SIGINT to the
runner, as a Ctrl-C in its terminal sends; resuming is proven by the trainer's own log of the
checkpoint it resumed from.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.api.trainingjob import ProgressStatus
from kubeforge.cli.demo import demo_file
from kubeforge.cli.goodput_text import duration
from kubeforge.cli.local_state import StateDir
from kubeforge.cli.local_training import read_goodput
from kubeforge.cli.localweb import DemoWeb, build_demo_web
from kubeforge.cli.runner import run_local
from kubeforge.dataset import read_manifest
from kubeforge.storage import open_store
from kubeforge_trainer.checkpoint import CheckpointManifest
from tests.polling import wait_for

KUBEFORGE = [sys.executable, "-m", "kubeforge.cli.main"]
RUN_TIMEOUT = 400
STOP_TIMEOUT = 120
# Real torchrun groups on a small shared machine: more than the suite's default time.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def demo_web() -> Iterator[DemoWeb]:
    web = build_demo_web()
    yield web
    web.stop()


def _environ() -> dict[str, str]:
    """This environment without an S3 endpoint: the run uses the embedded store."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _scaled(profile: str, tmp_path: Path, checkpoint_every: int, **trainer: Any) -> Path:
    documents = list(yaml.safe_load_all(demo_file(profile).read_text()))
    for document in documents:
        if document["kind"] == "TrainingJob":
            document["spec"]["trainer"].update(trainer)
            document["spec"]["checkpoint"]["intervalSteps"] = checkpoint_every
    path = tmp_path / f"{profile}.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def _start(path: Path, state: Path) -> subprocess.Popen[str]:
    command = [*KUBEFORGE, "run", str(path), "--local", "--state-dir", str(state)]
    return subprocess.Popen(
        command, env=_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(runner: subprocess.Popen[str], signum: signal.Signals) -> tuple[str, str]:
    """Signals the runner, which stops its children, and returns its output."""
    runner.send_signal(signum)
    return runner.communicate(timeout=STOP_TIMEOUT)


def _run(path: Path, state: Path) -> subprocess.CompletedProcess[str]:
    runner = _start(path, state)
    try:
        out, errors = runner.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        _stop(runner, signal.SIGTERM)  # never leave workers behind
        raise
    return subprocess.CompletedProcess(runner.args, runner.returncode, out, errors)


def _objects(state: Path, *key: str) -> str:
    return (state / "objects" / "kubeforge-demo").joinpath(*key).resolve().as_uri()


def test_the_gpt_sample_crawls_trains_and_reports(demo_web: DemoWeb, tmp_path: Path) -> None:
    state = tmp_path / "state"
    sample = _scaled("gpt", tmp_path, 10, steps=20, logIntervalSteps=5)
    finished = _run(sample, state)
    assert finished.returncode == 0, finished.stderr + finished.stdout
    report = Path(finished.stdout.splitlines()[-1])
    assert report == (state / "reports" / "gpt" / "report.md").resolve()
    manifest = read_manifest(open_store(_objects(state, "datasets", "demo-docs", "v1")))
    assert manifest.documents > 5
    assert (
        manifest.duplicates_removed
        + sum(shard.counters.duplicates_removed for shard in manifest.shards)
        >= 2
    )  # the mirror's planted copies
    checkpoints = open_store(_objects(state, "checkpoints", "demo-gpt"))
    assert checkpoints.exists("final/model.pt")
    assert CheckpointManifest.model_validate_json(checkpoints.get("latest")).step == 20
    text = report.read_text()
    assert f"| documents | {manifest.documents:,} |" in text
    assert "| RobotsDisallowed | 1 |" in text
    assert "Texts the model writes" in text
    assert "| validation at step 20 | loss " in text
    assert (report.parent / "demo-gpt-training.png").stat().st_size > 0

    again = _run(sample, state)
    assert again.returncode == 0, again.stderr
    assert "already published" in again.stdout
    assert "already succeeded" in again.stdout


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = _scaled("mlp", tmp_path, 20, steps=600, logIntervalSteps=100)
    runner = _start(path, state)
    progress = state / "trainingjobs" / "demo-mlp" / "progress.json"

    def step() -> int:
        try:
            return ProgressStatus.model_validate_json(progress.read_text()).step or 0
        except (OSError, ValueError):
            return 0

    try:
        wait_for(lambda: step() >= 60, "step 60", timeout=RUN_TIMEOUT)
    finally:
        _, errors = _stop(runner, signal.SIGINT)  # what a Ctrl-C in its terminal sends
    assert runner.returncode == 130, errors
    assert "run the same command to resume" in errors
    checkpoints = open_store(_objects(state, "checkpoints", "demo-mlp"))
    stopped_at = CheckpointManifest.model_validate_json(checkpoints.get("latest")).step
    assert 60 <= stopped_at < 600
    assert not checkpoints.exists("final/model.pt")

    finished = _run(path, state)
    assert finished.returncode == 0, finished.stderr
    logs = (state / "trainingjobs" / "demo-mlp" / "logs").glob("agent-*.log")
    resumed = "".join(log.read_text() for log in logs)
    assert f"resumed from the checkpoint of step {stopped_at}" in resumed
    assert checkpoints.exists("final/model.pt")
    assert "test accuracy" in Path(finished.stdout.splitlines()[-1]).read_text()


# Rank 1 of the group's first start exits with EXIT_CODE (the marker file remembers that it did);
# every other process, and every process of a later start, finishes.
FAILS_ONCE_ON_RANK_1 = """
import os, pathlib, sys
marker = pathlib.Path(sys.argv[1])
if os.environ["RANK"] == "1" and not marker.exists():
    marker.touch()
    sys.exit(int(sys.argv[2]))
"""


def _failing_job(tmp_path: Path, exit_code: int, failure_policy: dict[str, Any]) -> Path:
    script = tmp_path / "train.py"
    script.write_text(FAILS_ONCE_ON_RANK_1)
    job = {
        "apiVersion": "kubeforge.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "custom"},
        "spec": {
            "image": "kubeforge.test/custom",
            "replicas": 2,
            "command": [str(script), str(tmp_path / "failed-once"), str(exit_code)],
            "failurePolicy": failure_policy,
        },
    }
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _restarts(state: Path) -> list[dict[str, Any]]:
    path = state / "trainingjobs" / "custom" / "restarts.json"
    restarts: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    return restarts


def test_a_permanent_exit_code_fails_the_run_without_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    failed = _run(_failing_job(tmp_path, 2, {"permanentExitCodes": [2]}), state)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "custom agent 1 exited with permanent exit code 2" in failed.stderr
    assert "PermanentExitCode: rank 1 (local rank 0) exited with 2" in failed.stderr
    assert _restarts(state) == []


def test_a_retryable_exit_code_restarts_the_group_once_and_it_completes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = _failing_job(tmp_path, 3, {"permanentExitCodes": [2], "maxRestarts": 1})
    finished = _run(path, state)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    [restart] = _restarts(state)
    assert restart["cause"] == "RetryableExitCode"
    assert restart["exit_code"] == 3
    assert restart["charged"] is True
    assert restart["agent"] == "custom agent 1"
    assert restart["message"] == "rank 1 (local rank 0) exited with 3"
    report = Path(finished.stdout.splitlines()[-1]).read_text()
    assert "RetryableExitCode, exit code 3 (custom agent 1: rank 1" in report


def test_a_restart_shows_in_the_goodput_of_the_report(tmp_path: Path) -> None:
    """The demo's failure (a worker SIGKILLed halfway) through the runner, in this process."""
    state = StateDir(tmp_path / "state")
    path = _scaled("mlp", tmp_path, 20, steps=300, logIntervalSteps=100)
    report = run_local(path, state, _environ(), kill_worker_at_step=150)
    goodput = read_goodput(state.training_dir("demo-mlp"))
    assert goodput is not None
    # The kill is the last restart (a group can also re-form once as a late agent joins).
    *before, restarted = goodput.attempts
    assert before
    assert restarted.started_at not in {attempt.started_at for attempt in before}
    assert restarted.time_to_first_step_seconds is not None
    assert restarted.lost_seconds == pytest.approx(
        restarted.time_to_first_step_seconds + restarted.rework_seconds, abs=0.2
    )
    assert goodput.ratio is not None
    assert 0 < goodput.ratio < 1
    text = report.read_text()
    assert f"Latest run's goodput {goodput.ratio:.1%}: " in text
    assert "- attempt 1 began " in text
    lost = f"lost {duration(restarted.lost_seconds)}"
    assert f"- restart at {restarted.began_at:%Y-%m-%d %H:%M:%S}: first step after " in text
    assert lost in text
