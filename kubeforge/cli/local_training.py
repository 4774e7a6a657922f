"""A TrainingJob as local processes: one agent per replica, rendezvous on 127.0.0.1.

The command, arguments, environment and worker config are the operator's
(`kubeforge.plan.plan_training`); only the rendezvous endpoint (127.0.0.1 and a free port), the
config path, the progress channel (a file instead of a ConfigMap), the termination message (a
file per agent) and, without an S3 endpoint, the storage locations (the embedded `file://` store)
differ, as they differ between pods too. The agents meet in the job's rendezvous store
(`kubeforge.rendezvous`), which the runner starts first and keeps for the whole run, as the
operator keeps the store's Deployment: a broken group re-forms in the same store.

The runner supervises the agents as the Job controller and the operator supervise pods. An agent
(`kubeforge.launch`, torchrun without restarts of its own) exits with its failed worker's exit
code; the first agent to fail breaks the group, whose other agents stop with it. An exit code
that `failurePolicy` makes permanent, from any agent of the broken group, fails the run at once
(PermanentExitCode); otherwise the broken group is one restart, recorded in restarts.json with its
cause and exit code and charged to `failurePolicy.maxRestarts` (counted per run of the runner;
past it: BackoffLimitExceeded), and the runner starts the agents again, which resume from the
newest checkpoint. A rerun resumes the same way; a job whose final artifacts exist is not run
again. The run's goodput (`kubeforge.goodput`, the operator's computation, with the time a
broken group was noticed standing for its failure) is folded at every poll and kept in
goodput.json.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from kubeforge.api.trainingjob import (
    GoodputStatus,
    ProgressStatus,
    RestartCause,
    TrainingJob,
    TrainingJobReason,
)
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
from kubeforge.launch import TERMINATION_LOG_ENV, shell_exit_code
from kubeforge.plan import TrainingPlan, plan_training
from kubeforge.progress import FILE_ENV
from kubeforge.storage import open_store

POLL_SECONDS = 0.5
RENDEZVOUS_TIMEOUT_SECONDS = 120.0
GROUP_STOP_SECONDS = 10.0
"""How long the other agents of a broken group have to stop on their own (their workers lose
their peers, in a second or two) before the runner stops them, and then their grace period. An
agent whose workers finished waits for its peers at torchrun's exit barrier, deaf to SIGTERM."""
FINAL_METRICS = "final/metrics.json"
GOODPUT_FILE = "goodput.json"


class TrainingFailed(Exception):
    """The job cannot run, or it failed: a permanent exit code, or its restart budget spent."""


class Restart(BaseModel):
    """One restart of the local worker group, as status.restarts.history records a pod's."""

    time: datetime
    cause: str = Field(description="A RestartCause (runs before kubeforge.launch: a sentence).")
    exit_code: int | None = None
    agent: str | None = Field(
        default=None, description="The agent whose failure broke the group (a pod's name)."
    )
    message: str | None = Field(
        default=None, description="Its termination message: the failed rank and its error."
    )
    charged: bool = True

    def describe(self) -> str:
        text = self.cause
        if self.exit_code is not None:
            text += f", exit code {self.exit_code}"
        if self.agent is not None:
            text += f" ({self.agent}: {self.message or 'no message'})"
        return text


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
    """The operator's plan for this machine (pure: nothing is started). A `storage.caBundle`
    lives in the cluster: here the workers verify S3 with the file AWS_CA_BUNDLE names, and
    without one the run stops (TrainingFailed) before it starts."""
    name = job.metadata.name or ""
    if job.spec.storage and job.spec.storage.ca_bundle and not environ.get("AWS_CA_BUNDLE"):
        raise TrainingFailed(
            f"TrainingJob {name}: storage.caBundle is a ConfigMap or Secret of a cluster, which "
            "a local run cannot read; set AWS_CA_BUNDLE to a PEM file of the CA instead"
        )
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


class _Group:
    """One start of the agents, and the order they exit in (a thread waits for each)."""

    def __init__(self, agents: list[Child]) -> None:
        self.agents = agents
        self.exited: list[Child] = []
        self._exits: queue.SimpleQueue[Child] = queue.SimpleQueue()
        for agent in agents:
            threading.Thread(target=self._wait, args=(agent,), daemon=True).start()

    def _wait(self, agent: Child) -> None:
        agent.process.wait()
        self._exits.put(agent)

    def wait_for_exit(self, timeout: float) -> None:
        """Returns when an agent exits, or after `timeout` seconds."""
        try:
            self.exited.append(self._exits.get(timeout=max(0.0, timeout)))
        except queue.Empty:
            return

    @property
    def done(self) -> bool:
        return len(self.exited) == len(self.agents)

    def failed(self) -> list[Child]:
        """The agents that exited non-zero, the first (the root cause) first."""
        return [agent for agent in self.exited if agent.process.returncode != 0]


def _termination_log(agent_log: Path) -> Path:
    return agent_log.with_suffix(".termination-log")


def _exit_code(agent: Child) -> int:
    returncode = agent.process.returncode
    assert returncode is not None, f"{agent.name} is still running"
    return shell_exit_code(returncode)


def _termination_message(agent: Child) -> str | None:
    try:
        return _termination_log(agent.log_path).read_text().strip() or None
    except OSError:
        return None


def run_training(
    local: LocalTrainingPlan,
    children: Children,
    view: RunView,
    *,
    kill_worker_at_step: int | None = None,
) -> list[Restart]:
    """Runs the agents to the end, restarting a broken group within the job's failurePolicy;
    returns the restarts of this run (also appended to restarts.json). Raises TrainingFailed
    on a permanent exit code or when the restarts exceed failurePolicy.maxRestarts.

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
        f"TrainingJob {name}: {plan.replicas} agents x {plan.nproc_per_node} processes, "
        f"checkpoints at {local.checkpoint_uri or '(none)'}"
    )
    tails = [_LogTail(_agent_log(local, index)) for index in range(plan.replicas)]
    restarts: list[Restart] = []
    goodput: GoodputStatus | None = None

    def fold(report: ProgressStatus | None) -> GoodputStatus:
        failures = [restart.time for restart in restarts]
        now = datetime.now(UTC)
        return measure(goodput, started=started, failures=failures, progress=report, now=now)

    kill_at = kill_worker_at_step
    store = Children()  # apart from `children`: stopping a broken group leaves the store up
    try:
        _wait_for_rendezvous(_start_store(local, store), local.rendezvous_port)
        while True:
            group = _Group(_start_agents(local, children))
            while not group.done and not group.failed():
                group.wait_for_exit(POLL_SECONDS)  # wakes at once when an agent exits
                status = _progress(local.progress_file)
                if status is not None:
                    view.update_training(task, status)
                goodput = fold(status)
                for tail in tails:
                    for line in tail.measurements():
                        view.event(f"TrainingJob {name}: {line}")
                step = status.step if status is not None and status.step is not None else 0
                if kill_at is not None and step >= kill_at and _kill_one_worker(group, view, name):
                    kill_at = None
            if not group.failed():
                break
            _let_the_group_stop(group, children)
            restarts.append(_charge_restart(local, group, len(restarts)))
            view.event(
                f"TrainingJob {name}: worker group restarting, {restarts[-1].describe()} "
                f"({len(restarts)}/{local.job.spec.failure_policy.max_restarts} charged)"
            )
    finally:
        store.stop()
    children.forget_exited()
    goodput = fold(_progress(local.progress_file))
    (local.directory / GOODPUT_FILE).write_text(goodput.model_dump_json(by_alias=True, indent=2))
    return restarts


def _agent_log(local: LocalTrainingPlan, index: int) -> Path:
    return local.directory / "logs" / f"agent-{index}.log"


def _start_store(local: LocalTrainingPlan, store: Children) -> Child:
    """Starts the job's rendezvous store (`kubeforge.rendezvous`), as the operator's Deployment."""
    name = local.job.metadata.name or ""
    log = local.directory / "logs" / "rendezvous.log"
    return store.start(f"{name} rendezvous", local.plan.rendezvous_command, local.env, log)


def _start_agents(local: LocalTrainingPlan, children: Children) -> list[Child]:
    """Starts one agent per replica, all at once: the store is up before them."""
    name = local.job.metadata.name or ""
    agents: list[Child] = []
    for index in range(local.plan.replicas):
        log = _agent_log(local, index)
        termination_log = _termination_log(log)
        termination_log.unlink(missing_ok=True)  # a message is this start's, as in a new pod
        env = {**local.env, TERMINATION_LOG_ENV: str(termination_log)}
        agents.append(children.start(f"{name} agent {index}", local.plan.command, env, log))
    return agents


def _let_the_group_stop(group: _Group, children: Children) -> None:
    """Waits a while for the rest of a broken group to stop, then stops what is left."""
    deadline = time.monotonic() + GROUP_STOP_SECONDS
    while not group.done and time.monotonic() < deadline:
        group.wait_for_exit(deadline - time.monotonic())
    children.stop(grace=GROUP_STOP_SECONDS)  # the group's agents are the only children left


def _charge_restart(local: LocalTrainingPlan, group: _Group, charged_before: int) -> Restart:
    """Records the restart of a broken group in restarts.json and returns it; raises
    TrainingFailed when an exit code is permanent (from any agent of the group, as the operator
    reads every pod) or when this restart exceeds failurePolicy.maxRestarts."""
    name = local.job.metadata.name or ""
    policy = local.job.spec.failure_policy
    failed = group.failed()
    for agent in failed:
        code = _exit_code(agent)
        if policy.is_permanent(code):
            raise TrainingFailed(
                f"TrainingJob {name}: {agent.name} exited with permanent exit code {code} "
                f"({TrainingJobReason.PERMANENT_EXIT_CODE.value}: "
                f"{_termination_message(agent) or 'no message'}), see {agent.log_path}"
            )
    first = failed[0]
    restart = Restart(
        time=datetime.now(UTC),
        cause=RestartCause.RETRYABLE_EXIT_CODE.value,
        exit_code=_exit_code(first),
        agent=first.name,
        message=_termination_message(first),
    )
    history = [*read_restarts(local.directory), restart]
    (local.directory / "restarts.json").write_bytes(_RESTARTS.dump_json(history, indent=2))
    if charged_before + 1 > policy.max_restarts:
        raise TrainingFailed(
            f"TrainingJob {name}: {restart.describe()}: restart {charged_before + 1} exceeds "
            f"failurePolicy.maxRestarts ({policy.max_restarts}) "
            f"({TrainingJobReason.BACKOFF_LIMIT_EXCEEDED.value}), see {first.log_path}"
        )
    return restart


def _wait_for_rendezvous(store: Child, port: int) -> None:
    deadline = time.monotonic() + RENDEZVOUS_TIMEOUT_SECONDS
    while not _listening(port):
        if store.poll() is not None:
            raise TrainingFailed(f"{store.name} exited with {store.poll()}, see {store.log_path}")
        if time.monotonic() > deadline:
            raise TrainingFailed(f"{store.name}: no rendezvous on port {port}")
        time.sleep(0.2)


def _kill_one_worker(group: _Group, view: RunView, name: str) -> bool:
    """SIGKILLs a worker of the last agent (the demo's failure); False when it has none yet."""
    workers = children_of(group.agents[-1].pid)
    if not workers:
        return False
    os.kill(workers[0], signal.SIGKILL)
    view.event(
        f"TrainingJob {name}: killed worker process {workers[0]} (SIGKILL), "
        "to show recovery from the checkpoint"
    )
    return True
