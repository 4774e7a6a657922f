"""`kubeforge.launch`: the pods' command exits with the exit code of the worker that failed and
names it in the termination message.

What is real: the command `kubeforge.plan.plan_training` builds (torch's elastic agent in the
launcher's process, meeting in the rendezvous store process on 127.0.0.1), worker processes that
fail as a custom `spec.command` and as the built-in trainer do. The termination message goes to a
file named by KUBEFORGE_TERMINATION_LOG instead of /dev/termination-log. Nothing is faked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kubeforge.launch import TERMINATION_LOG_ENV
from kubeforge.plan import plan_training
from tests.workloads.trainer_runs import free_port, start_store, training_job

LAUNCH_TIMEOUT = 180

# A custom program: rank 1 exits with 2 (a configuration error, say); rank 0 would run on, so
# the launcher must stop it and still report rank 1's code.
EXITS_2_ON_RANK_1 = """
import os, sys, time
if os.environ["RANK"] == "1":
    sys.exit(2)
time.sleep(120)
"""


def _launch(
    spec: dict[str, Any], tmp_path: Path, dataset_uri: str | None = None
) -> tuple[int, str, str]:
    """Runs the plan's command for one pod; returns its exit code, termination message, output."""
    config = tmp_path / "trainer.yaml"
    port = free_port()
    plan = plan_training(
        training_job("launched", 1, spec),
        rendezvous_host="127.0.0.1",
        config_path=str(config),
        dataset_uri=dataset_uri,
        rendezvous_port=port,
    )
    if plan.worker_config is not None:
        document = plan.worker_config.model_dump(mode="json", by_alias=True, exclude_none=True)
        config.write_text(yaml.safe_dump(document))
    termination_log = tmp_path / "termination-log"
    env = {
        **os.environ,
        **plan.env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp_path),
        TERMINATION_LOG_ENV: str(termination_log),
    }
    store = start_store(plan, port, env, tmp_path / "rendezvous.log")
    try:
        finished = subprocess.run(
            plan.command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT
        )
    finally:
        store.kill()
        store.wait()
    return finished.returncode, termination_log.read_text(), finished.stdout + finished.stderr


def test_a_custom_command_that_exits_2_ends_the_pod_with_2(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(EXITS_2_ON_RANK_1)
    code, message, output = _launch({"command": [str(script)], "nprocPerNode": 2}, tmp_path)
    assert code == 2, output
    assert message == "rank 1 (local rank 1) exited with 2\n"


def test_the_trainer_that_fails_ends_the_pod_with_its_code_and_error(tmp_path: Path) -> None:
    missing = (tmp_path / "no-dataset" / "manifest.json").as_uri()
    spec = {
        "trainer": {"model": {"architecture": "gpt", "layers": 1, "hiddenSize": 32}, "steps": 5},
        "dataset": {"uri": missing},
    }
    code, message, output = _launch(spec, tmp_path, dataset_uri=missing)
    assert code == 1, output
    # The trainer records its exception (@record): the message carries the error's first line.
    assert message == "rank 0 (local rank 0) exited with 1: ObjectNotFound: 'manifest.json'\n"
