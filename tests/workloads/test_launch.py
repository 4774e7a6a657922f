"""`kubeforge.launch`: the pods' command exits with the exit code of the worker that failed and
names it in the termination message, also when the rendezvous store is lost.

What is real: the command `kubeforge.plan.plan_training` builds (torch's elastic agent in the
launcher's process, meeting in the rendezvous store process on 127.0.0.1), worker processes that
fail as a custom `spec.command` and as the built-in trainer do, a store process killed and started
again as the store pod is lost and replaced. The termination message goes to a file named by
KUBEFORGE_TERMINATION_LOG instead of /dev/termination-log. Nothing is faked.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeforge.launch import TERMINATION_LOG_ENV
from kubeforge.plan import TrainingPlan, plan_training
from kubeforge.rendezvous import REPLACED
from tests.polling import wait_for
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

# Two pods' program: barriers until the file argv[1] exists; then rank 1 exits with 3, and rank 0,
# whose next barrier fails without its peer, with 4.
BARRIERS_UNTIL_TOLD = """
import os, pathlib, sys, time
import torch.distributed as dist
dist.init_process_group("gloo")
told = pathlib.Path(sys.argv[1])
step = 0
try:
    while True:
        dist.barrier()
        if told.exists() and dist.get_rank() == 1:
            sys.exit(3)
        step += 1
        print(f"step {step}", flush=True)
        time.sleep(0.2)
except RuntimeError:
    sys.exit(4)
"""
STORE_LOST = "Broken pipe"
"""What torch's store client prints at each request to a store that is gone (the first read's
error varies: connection reset or closed)."""


def _pod_env(plan: TrainingPlan, tmp_path: Path, termination_log: Path) -> dict[str, str]:
    """A pod's environment: the plan's, this interpreter's scripts, its own termination log."""
    return {
        **os.environ,
        **plan.env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp_path),
        TERMINATION_LOG_ENV: str(termination_log),
    }


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
    env = _pod_env(plan, tmp_path, termination_log)
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


@dataclass
class TwoPods:
    """Two pods' launchers and the store they meet in, on loopback."""

    plan: TrainingPlan
    port: int
    store: subprocess.Popen[bytes]
    launchers: list[subprocess.Popen[bytes]]
    outputs: list[Path]
    messages: list[Path]
    """Each pod's termination message."""

    def wait(self) -> list[int]:
        return [launcher.wait(timeout=LAUNCH_TIMEOUT) for launcher in self.launchers]


@contextlib.contextmanager
def _two_pods_that_lost_their_store(tmp_path: Path, told: Path) -> Iterator[TwoPods]:
    """Two pods running BARRIERS_UNTIL_TOLD whose store was SIGKILLed once they trained, yielded
    once both agents have seen it gone and their workers have taken a step since."""
    script = tmp_path / "train.py"
    script.write_text(BARRIERS_UNTIL_TOLD)
    port = free_port()
    job = training_job("store-lost", 2, {"command": [str(script), str(told)]})
    plan = plan_training(job, rendezvous_host="127.0.0.1", config_path="", rendezvous_port=port)
    names = ("a", "b")
    outputs = [tmp_path / f"{name}.log" for name in names]
    messages = [tmp_path / f"{name}.termination-log" for name in names]
    store = start_store(plan, port, _pod_env(plan, tmp_path, messages[0]), tmp_path / "store.log")
    pods = TwoPods(plan, port, store, [], outputs, messages)
    try:
        for output, message in zip(outputs, messages, strict=True):
            with output.open("wb") as log:
                env = _pod_env(plan, tmp_path, message)
                pods.launchers.append(
                    subprocess.Popen(plan.command, env=env, stdout=log, stderr=log)
                )
        wait_for(lambda: all("step 2" in out.read_text() for out in outputs), "the group")
        store.kill()
        store.wait()

        def trained_on_after_losing_the_store() -> bool:
            after = [out.read_text().partition(STORE_LOST) for out in outputs]
            return all(lost and "step" in later for _, lost, later in after)

        wait_for(trained_on_after_losing_the_store, "steps after the store was lost")
        yield pods
    finally:
        for process in (pods.store, *pods.launchers):
            process.kill()
            process.wait()


def test_a_lost_store_stops_no_running_group_and_codes_still_reach_the_pods(
    tmp_path: Path,
) -> None:
    """The store's pod lost mid-run: both agents see it gone and their workers train on; a worker
    that fails afterwards still ends its pod with its own code, and its peer's with the peer's."""
    told = tmp_path / "told"
    with _two_pods_that_lost_their_store(tmp_path, told) as pods:
        told.touch()
        codes = pods.wait()
    assert sorted(codes) == [3, 4], [out.read_text()[-2000:] for out in pods.outputs]
    for message, code in zip(pods.messages, codes, strict=True):
        # rank 1 exits with 3, rank 0 with 4
        assert message.read_text() == f"rank {4 - code} (local rank 0) exited with {code}\n"


def test_a_group_whose_store_was_replaced_ends_to_re_form_there(tmp_path: Path) -> None:
    """The store's pod replaced (an empty store at the same address): the running group ends,
    each pod saying why, rather than train on beside a group that could form in the new store."""
    with _two_pods_that_lost_their_store(tmp_path, tmp_path / "never-told") as pods:
        env = _pod_env(pods.plan, tmp_path, tmp_path / "store-message")
        pods.store = start_store(pods.plan, pods.port, env, tmp_path / "new-store.log")
        codes = pods.wait()
    assert codes == [1, 1], [out.read_text()[-2000:] for out in pods.outputs]
    for message in pods.messages:
        assert (
            message.read_text() == f"the launcher failed: RendezvousConnectionError: {REPLACED}\n"
        )
