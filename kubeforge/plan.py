"""The workload plan: what a TrainingJob runs, decided once for every place it runs.

`plan_training` is a pure function from a TrainingJob to the command line (torchrun's arguments,
run by `kubeforge.launch` so that a worker's exit code reaches the pod), environment and worker
config of its workers, and the command of the rendezvous store the workers' agents meet in (a
process of its own, `kubeforge.rendezvous`, so that no worker's loss takes it down). The operator
materialises the plan as an Indexed Job of pods and a store Deployment; the local runner
materialises the same plan as local processes. Only the rendezvous host and port and the paths
differ between the two, and they are arguments, so the command a pod runs is the command that was
proven to train.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from kubeforge.api.meta import CamelModel
from kubeforge.api.trainingjob import CheckpointPolicy, TrainerConfig, TrainingJob
from kubeforge.rendezvous import BACKEND

RENDEZVOUS_PORT = 29400
"""Port of the job's rendezvous store (`kubeforge.rendezvous`)."""
STORE_WAIT_SECONDS = 600
"""How long an agent keeps trying to reach the store (torch's `read_timeout`, 60 s by default):
as long as it waits for its peers (torch's join timeout). The store is a pod of its own, scheduled,
pulled and started beside the workers, and replaced when it is lost; an agent that gave up on it
sooner would fail, and be charged a restart, for the store's image pull."""

TRAINER_MODULE = "kubeforge_trainer"
LAUNCHER = ["python", "-m", "kubeforge.launch"]
"""torchrun, in-process, exiting with the failed worker's code (`kubeforge.launch`)."""


class WorkerConfig(CamelModel):
    """The config file the built-in trainer reads (`python -m kubeforge_trainer --config FILE`)."""

    job_name: str = Field(description="Name of the TrainingJob, for logs and artifact paths.")
    trainer: TrainerConfig = Field(description="What to train and how.")
    dataset_uri: str | None = Field(
        default=None, description="Where the dataset's manifest is (s3:// or file://)."
    )
    checkpoint: CheckpointPolicy | None = Field(
        default=None, description="Where and how often to checkpoint."
    )


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a worker runs, independent of where it runs."""

    replicas: int
    min_nodes: int
    max_nodes: int
    nproc_per_node: int
    command: list[str]
    rendezvous_command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    worker_config: WorkerConfig | None = None

    @property
    def world_size(self) -> int:
        return self.replicas * self.nproc_per_node


def plan_training(
    job: TrainingJob,
    *,
    rendezvous_host: str,
    config_path: str,
    dataset_uri: str | None = None,
    rendezvous_port: int = RENDEZVOUS_PORT,
    rendezvous_id: str | None = None,
) -> TrainingPlan:
    """The plan of a TrainingJob's workers.

    rendezvous_host: where the job's rendezvous store is reachable (its Service, or 127.0.0.1).
    rendezvous_port: its port; pods use the default, local runs side by side need free ones.
    config_path: where the worker config file will be in each worker.
    dataset_uri: the dataset resolved from spec.dataset (a DataIngest's published URI, or the URI).
    rendezvous_id: the agents' run in the store; the job's uid when not given. In the cluster
    each worker Job has a run of its own, so that no agent of a Job being replaced can join the
    group of the Job that replaces it.
    """
    spec = job.spec
    name = job.metadata.name or ""
    min_nodes = spec.min_replicas or spec.replicas
    max_nodes = spec.max_replicas or spec.replicas
    launcher = [
        *LAUNCHER,
        f"--nnodes={min_nodes}:{max_nodes}",
        f"--nproc-per-node={spec.nproc_per_node}",
        f"--rdzv-backend={BACKEND}",
        f"--rdzv-endpoint={rendezvous_host}:{rendezvous_port}",
        # The store is its own process: no agent hosts it, not even one on the store's host.
        f"--rdzv-conf=is_host=false,read_timeout={STORE_WAIT_SECONDS}",
        f"--rdzv-id={rendezvous_id or job.metadata.uid or name}",
        # The operator owns every restart: a failed worker ends its pod, and the group is
        # replaced and charged once to failurePolicy.maxRestarts (docs/trainingjob-operator.md).
        "--max-restarts=0",
    ]
    worker_config = None
    if spec.trainer is not None:
        worker_config = WorkerConfig(
            job_name=name,
            trainer=spec.trainer,
            dataset_uri=dataset_uri,
            checkpoint=spec.checkpoint,
        )
        program = ["-m", TRAINER_MODULE, "--config", config_path]
    else:
        program = list(spec.command or [])
    env = {
        "KUBEFORGE_JOB_NAME": name,
        "PYTHONUNBUFFERED": "1",
        # Each rendezvous round gets a fresh store for the workers' process group. The agents'
        # shared store keeps the previous round's keys, and gloo then connects to dead peers
        # after a restart (docs/trainer.md, "Elastic restarts").
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
    }
    if dataset_uri:
        env["KUBEFORGE_DATASET_URI"] = dataset_uri
    if spec.checkpoint is not None:
        env["KUBEFORGE_CHECKPOINT_URI"] = spec.checkpoint.uri
    env.update({var.name: var.value for var in spec.env if var.value is not None})
    return TrainingPlan(
        replicas=spec.replicas,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        nproc_per_node=spec.nproc_per_node,
        command=[*launcher, *program],
        rendezvous_command=["python", "-m", "kubeforge.rendezvous", f"--port={rendezvous_port}"],
        env=env,
        worker_config=worker_config,
    )
