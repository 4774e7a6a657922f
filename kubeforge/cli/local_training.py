"""A TrainingJob as local processes: one torchrun agent per replica, rendezvous on 127.0.0.1.

The command, arguments, environment and worker config are the operator's
(`kubeforge.plan.plan_training`); only the rendezvous endpoint (127.0.0.1 and a free port), the
config path, the progress channel (a file instead of a ConfigMap) and, without an S3 endpoint,
the storage locations (the embedded `file://` store) differ, as they differ between pods too.
The first agent hosts the c10d rendezvous, as worker 0's pod does.

While the agents run, the runner shows rank 0's progress file, and notices restarts of the
worker group (torchrun restarts every worker when one fails): new worker processes under an
agent after the group had formed, with the exit code torchrun logged for the failed one. The
run's goodput (`kubeforge.goodput`, the operator's computation, with the time a restart was
noticed standing for its failure) is folded at every poll and kept in goodput.json. A rerun
resumes from the newest checkpoint; a job whose final artifacts exist is not run again.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from kubeforge.api.trainingjob import GoodputStatus, ProgressStatus, TrainingJob
from kubeforge.cli.local_state import (
    ENDPOINT_ENV,
    PublishedDataset,
    StateDir,
    local_uri,
    training_endpoint,
)
from kubeforge.cli.processes import Child, Children, children_of
from kubeforge.cli.view import RunView
from kubeforge.goodput import measure
from kubeforge.plan import TrainingPlan, plan_training
from kubeforge.progress import FILE_ENV
from kubeforge.storage import open_store

POLL_SECONDS = 0.5
RENDEZVOUS_TIMEOUT_SECONDS = 120.0
RESTART_COALESCE_SECONDS = 10.0
"""New workers under several agents within this long are one restart of the group."""
FINAL_METRICS = "final/metrics.json"
GOODPUT_FILE = "goodput.json"
_WORKER_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\)")


class TrainingFailed(Exception):
    """An agent exited with an error: torchrun ran out of restarts, or the job cannot run."""


class Restart(BaseModel):
    """One restart of the local worker group, as status.restarts.history records a pod's."""

    time: datetime
    cause: str
    exit_code: int | None = None


_RESTARTS = TypeAdapter(list[Restart])


@dataclass(frozen=True)
class LocalTrainingPlan:
    """What a local run of a TrainingJob executes."""

    job: TrainingJob
    """The job as run: its checkpoint URI in the embedded store when no endpoint is named."""
    plan: TrainingPlan
    config_path: Path
    directory: Path
    env: dict[str, str]
    rendezvous_port: int

    @property
    def checkpoint_uri(self) -> str | None:
        return self.job.spec.checkpoint.uri if self.job.spec.checkpoint else None

    @property
    def progress_file(self) -> Path:
        return self.directory / "progress.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def resolve_dataset(
    job: TrainingJob, state: StateDir, datasets: Mapping[str, PublishedDataset]
) -> PublishedDataset | None:
    """The dataset a job trains on: a DataIngest's (this run's, or an earlier local run's), or
    its URI; raises TrainingFailed when the DataIngest it waits for was never published."""
    source = job.spec.dataset
    if source is None:
        return None
    if source.uri is not None:
        return PublishedDataset(uri=source.uri, documents=0, bytes=0)
    assert source.dataset_ref is not None
    name = source.dataset_ref.name
    published = datasets.get(name) or state.published(name)
    if published is None:
        raise TrainingFailed(
            f"TrainingJob {job.metadata.name}: waits for DataIngest {name}, which is not in this "
            "file and was not run locally before (WaitingForDataset)"
        )
    return published


def plan_local_training(
    job: TrainingJob,
    state: StateDir,
    environ: Mapping[str, str],
    dataset: PublishedDataset | None,
    rendezvous_port: int,
) -> LocalTrainingPlan:
    """The operator's plan for this machine (pure: nothing is started)."""
    name = job.metadata.name or ""
    directory = state.training_dir(name).resolve()
    endpoint = training_endpoint(job, environ)
    checkpoint = job.spec.checkpoint
    if checkpoint is not None and endpoint is None:
        local = checkpoint.model_copy(update={"uri": local_uri(checkpoint.uri, state.objects)})
        job = job.model_copy(update={"spec": job.spec.model_copy(update={"checkpoint": local})})
    dataset_uri = None
    if dataset is not None:
        on_s3 = dataset.endpoint is not None or endpoint is not None
        dataset_uri = dataset.uri if on_s3 else local_uri(dataset.uri, state.objects)
    config_path = directory / "trainer.yaml"
    plan = plan_training(
        job,
        rendezvous_host="127.0.0.1",
        config_path=str(config_path),
        dataset_uri=dataset_uri,
        rendezvous_port=rendezvous_port,
    )
    env = {**environ, **plan.env}
    # torchrun and the workers come from this Python's environment, as from a pod's image.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    env[FILE_ENV] = str(directory / "progress.json")
    # Processes share this machine's cores rather than each taking all of them.
    cores = os.cpu_count() or 1
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // plan.world_size)))
    if dataset is not None and dataset.endpoint and ENDPOINT_ENV not in env:
        env[ENDPOINT_ENV] = dataset.endpoint
    return LocalTrainingPlan(job, plan, config_path, directory, env, rendezvous_port)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _progress(path: Path) -> ProgressStatus | None:
    try:
        return ProgressStatus.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None


def read_restarts(directory: Path) -> list[Restart]:
    path = directory / "restarts.json"
    return _RESTARTS.validate_json(path.read_bytes()) if path.is_file() else []


def read_goodput(directory: Path) -> GoodputStatus | None:
    """The goodput of the latest local run of the job, when one ran."""
    path = directory / GOODPUT_FILE
    return GoodputStatus.model_validate_json(path.read_bytes()) if path.is_file() else None


def is_finished(local: LocalTrainingPlan) -> bool:
    uri = local.checkpoint_uri
    return uri is not None and open_store(uri).exists(FINAL_METRICS)


_MEASUREMENT = re.compile(r"kubeforge_trainer\.reporting: (step .*)$")


@dataclass
class _LogTail:
    """New measurement lines of rank 0 ("step N/M | loss ... | test accuracy ...")."""

    path: Path
    offset: int = 0

    def __post_init__(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def measurements(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as file:
            file.seek(self.offset)
            data = file.read()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        lines = data[:complete].decode(errors="replace").splitlines()
        return [match.group(1) for line in lines if (match := _MEASUREMENT.search(line))]


@dataclass
class _Watch:
    """What the runner has seen of the agents' workers."""

    agents: list[Child]
    seen_workers: set[int] = field(default_factory=set)
    formed: bool = False
    last_restart: float = float("-inf")
    failures_logged: int = 0
    killed_for_demo: bool = False

    def worker_pids(self) -> list[list[int]]:
        return [children_of(agent.pid) for agent in self.agents]

    def failure_codes(self) -> list[int]:
        text = "".join(
            agent.log_path.read_text(errors="replace")
            for agent in self.agents
            if agent.log_path.exists()
        )
        return [int(code) for code in _WORKER_FAILED.findall(text)]


def run_training(
    local: LocalTrainingPlan,
    children: Children,
    view: RunView,
    *,
    kill_worker_at_step: int | None = None,
) -> list[Restart]:
    """Runs the agents to the end; returns the restarts of this run (also in restarts.json).

    kill_worker_at_step: SIGKILL one worker of the last agent once rank 0 reports this step (the
    demo's injected failure).
    """
    name = local.job.metadata.name or ""
    plan = local.plan
    local.directory.mkdir(parents=True, exist_ok=True)
    if plan.worker_config is not None:
        document = plan.worker_config.model_dump(mode="json", by_alias=True, exclude_none=True)
        local.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    local.progress_file.unlink(missing_ok=True)
    started = datetime.now(UTC)
    total = local.job.spec.trainer.steps if local.job.spec.trainer else 0
    task = view.add_training(name, total)
    view.event(
        f"TrainingJob {name}: {plan.replicas} torchrun agents x {plan.nproc_per_node} "
        f"processes, checkpoints at {local.checkpoint_uri or '(none)'}"
    )
    agents: list[Child] = []
    tails = [
        _LogTail(local.directory / "logs" / f"agent-{index}.log") for index in range(plan.replicas)
    ]
    for index in range(plan.replicas):
        agents.append(
            children.start(
                f"{name} agent {index}",
                plan.command,
                local.env,
                local.directory / "logs" / f"agent-{index}.log",
            )
        )
        if index == 0:
            _wait_for_rendezvous(agents[0], local.rendezvous_port)
    watch = _Watch(agents)
    watch.failures_logged = len(watch.failure_codes())  # the logs of earlier runs
    restarts: list[Restart] = []
    goodput: GoodputStatus | None = None

    def fold(report: ProgressStatus | None) -> GoodputStatus:
        failures = [restart.time for restart in restarts]
        now = datetime.now(UTC)
        return measure(goodput, started=started, failures=failures, progress=report, now=now)

    while True:
        time.sleep(POLL_SECONDS)
        status = _progress(local.progress_file)
        if status is not None:
            view.update_training(task, status)
        restart = _notice_restart(watch)
        if restart is not None:
            restarts.append(restart)
            view.event(f"TrainingJob {name}: worker group restarted ({restart.cause})")
        goodput = fold(status)
        for tail in tails:
            for line in tail.measurements():
                view.event(f"TrainingJob {name}: {line}")
        step = status.step if status is not None and status.step is not None else 0
        due = kill_worker_at_step is not None and step >= kill_worker_at_step
        if due and not watch.killed_for_demo:
            _kill_one_worker(watch, view, name, step)
        codes = [agent.poll() for agent in agents]
        if any(code not in (None, 0) for code in codes):
            failed = next(a for a, c in zip(agents, codes, strict=True) if c not in (None, 0))
            raise TrainingFailed(
                f"TrainingJob {name}: {failed.name} exited with {failed.poll()}, "
                f"see {failed.log_path}"
            )
        if all(code == 0 for code in codes):
            break
    children.forget_exited()
    history = read_restarts(local.directory) + restarts
    (local.directory / "restarts.json").write_bytes(_RESTARTS.dump_json(history, indent=2))
    goodput = fold(_progress(local.progress_file))
    (local.directory / GOODPUT_FILE).write_text(goodput.model_dump_json(by_alias=True, indent=2))
    return restarts


def _wait_for_rendezvous(agent: Child, port: int) -> None:
    deadline = time.monotonic() + RENDEZVOUS_TIMEOUT_SECONDS
    while not _listening(port):
        if agent.poll() is not None:
            raise TrainingFailed(f"{agent.name} exited with {agent.poll()}, see {agent.log_path}")
        if time.monotonic() > deadline:
            raise TrainingFailed(f"{agent.name}: no rendezvous on port {port}")
        time.sleep(0.2)


def _notice_restart(watch: _Watch) -> Restart | None:
    """A restart when workers appear under an agent after the group formed (once per group)."""
    current = {pid for pids in watch.worker_pids() for pid in pids}
    new = current - watch.seen_workers
    watch.seen_workers |= current
    if not new:
        return None
    if not watch.formed:
        watch.formed = True
        return None
    now = time.monotonic()
    if now - watch.last_restart < RESTART_COALESCE_SECONDS:
        return None
    watch.last_restart = now
    codes = watch.failure_codes()
    fresh, watch.failures_logged = codes[watch.failures_logged :], len(codes)
    exit_code = fresh[0] if fresh else None
    if watch.killed_for_demo and exit_code == -signal.SIGKILL:
        cause = "a worker was killed (SIGKILL) by the demo"
    elif exit_code is not None and exit_code < 0:
        cause = f"a worker died of signal {signal.Signals(-exit_code).name}"
    elif exit_code is not None:
        cause = f"a worker exited with code {exit_code}"
    else:
        cause = "the worker group re-formed"
    return Restart(time=datetime.now(UTC), cause=cause, exit_code=exit_code)


def _kill_one_worker(watch: _Watch, view: RunView, name: str, step: int) -> None:
    workers = watch.worker_pids()[-1]
    if not workers:
        return
    os.kill(workers[0], signal.SIGKILL)
    watch.killed_for_demo = True
    view.event(
        f"TrainingJob {name}: killed worker process {workers[0]} (SIGKILL) at step {step}, "
        "to show elastic recovery from the checkpoint"
    )
