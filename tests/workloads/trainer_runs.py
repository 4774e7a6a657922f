"""Running the trainer as a TrainingJob's pods would: torchrun agents started with the command
`kubeforge.plan.plan_training` builds, on loopback, and reading back what they left.

Each agent is a real torchrun agent (`kubeforge.launch`, a "pod"); its workers are real `python -m
kubeforge_trainer` processes using gloo on the CPU; they meet in a real rendezvous store
(`kubeforge.rendezvous`, the store Deployment's command), started with the first agents and kept
until `kill`. Only the rendezvous host, port and config path differ from a pod's. The
consumed-sample log (`KUBEFORGE_SAMPLE_LOG`) is read back as the position -> sample mapping of the
attempts that counted: when a step was trained again after a restart, the later generation's record
supersedes the earlier one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pydoc
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kubeforge.api.dataingest import CrawlCounters, OutputFormat, TokenizerTraining
from kubeforge.api.trainingjob import TrainingJob
from kubeforge.dataset import (
    Document,
    Manifest,
    ManifestPart,
    ShardSummary,
    content_hash,
    document_id,
    shard_marker_key,
    write_manifest,
    write_part,
)
from kubeforge.plan import TrainingPlan, plan_training
from kubeforge.storage import ObjectStore
from kubeforge_crawler.tokenizer import publish_tokenizer
from tests.conftest import Rig
from tests.polling import wait_for

SMALL_GPT = {"architecture": "gpt", "layers": 2, "hiddenSize": 64, "heads": 4, "contextLength": 64}
"""A GPT that trains a step in milliseconds on a CPU: the tests' and benchmarks' model."""
SMALL_LLAMA = {"architecture": "llama", "size": "tiny", "contextLength": 64}
"""The tiny Llama at the small GPT's context."""
SMALL_LANGUAGE_MODELS = {"gpt": SMALL_GPT, "llama": SMALL_LLAMA}
"""The small model of each language-model architecture, by its name."""

MLP_GLOBAL_BATCH = 64


def mlp_job_spec(
    checkpoint: dict[str, Any], steps: int, parallelism: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The MLP on the bundled digits: the spec of the tests that compare consumed samples."""
    trainer: dict[str, Any] = {
        "model": {"architecture": "mlp", "layers": 2, "hiddenSize": 256},
        "optimizer": {"name": "adam", "learningRate": 0.002},
        # Micro-batches of 16: 2 per step per process at world size 2, 4 at world size 1.
        "batch": {"globalSize": MLP_GLOBAL_BATCH, "microSize": 16},
        "steps": steps,
        "seed": 7,
    }
    if parallelism is not None:
        trainer["parallelism"] = parallelism
    return {"trainer": trainer, "checkpoint": checkpoint}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def training_job(name: str, replicas: int, spec: dict[str, Any]) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "metadata": {"name": name, "uid": f"{name}-uid"},
            "spec": {"image": "kubeforge.test/trainer", "replicas": replicas, **spec},
        }
    )


@dataclass
class Launch:
    """The agents of one TrainingJob on this machine, one per replica."""

    job: TrainingJob
    workdir: Path
    rig: Rig
    dataset_uri: str | None = None
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)
    store: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=free_port)

    @property
    def sample_log(self) -> Path:
        return self.workdir / "samples"

    @property
    def progress_file(self) -> Path:
        return self.workdir / "progress.json"

    def start(self, agents: int | None = None) -> None:
        """Starts `agents` agents (one per replica by default), and the store before the first."""
        config_path = self.workdir / "trainer.yaml"
        port = self.port
        plan = plan_training(
            self.job,
            rendezvous_host="127.0.0.1",
            config_path=str(config_path),
            dataset_uri=self.dataset_uri,
            rendezvous_port=port,
        )
        assert plan.worker_config is not None
        config = plan.worker_config.model_dump(mode="json", by_alias=True, exclude_none=True)
        config_path.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            **plan.env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "AWS_ENDPOINT_URL": self.rig.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.rig.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.rig.s3_secret_key,
            "AWS_REGION": self.rig.s3_region,
            "KUBEFORGE_SAMPLE_LOG": str(self.sample_log),
            "KUBEFORGE_PROGRESS_FILE": str(self.progress_file),
            "OMP_NUM_THREADS": "1",
            "TMPDIR": str(self.workdir),  # torchrun's own log directories land here
        }
        if self.store is None:
            self.store = start_store(plan, port, env, self.workdir / "rendezvous.log")
        for _ in range(plan.replicas if agents is None else agents):
            with (self.workdir / f"agent-{len(self.agents)}.log").open("ab") as log:
                self.agents.append(
                    subprocess.Popen(plan.command, env=env, stdout=log, stderr=subprocess.STDOUT)
                )

    def wait(self, timeout: float = 150) -> list[int]:
        """The agents' exit codes, once all have exited."""
        return [agent.wait(timeout=timeout) for agent in self.agents]

    def workers(self, agent: int) -> list[int]:
        """Process ids of one agent's worker processes."""
        pid = self.agents[agent].pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(child) for child in children.read_text().split()] if children.exists() else []

    def terminate(self) -> None:
        """SIGTERM to every agent, as Kubernetes sends when the pods are deleted or preempted."""
        for agent in self.agents:
            agent.send_signal(signal.SIGTERM)

    def output(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.workdir.glob("agent-*.log")))

    def kill_agent(self, index: int) -> None:
        """SIGKILLs an agent and its workers, as a lost node takes a pod."""
        for worker in self.workers(index):
            _kill(worker)
        self.agents[index].kill()
        self.agents[index].wait()

    def kill(self) -> None:
        """Ends whatever is left (a failed test), workers first, then the store."""
        for index, agent in enumerate(self.agents):
            if agent.poll() is None:
                self.kill_agent(index)
        if self.store is not None:
            self.store.kill()
            self.store.wait()


def run_stopped_at(launch: Launch, stop_at: int | None, timeout: float = 150) -> list[int]:
    """Runs the launch to its end, or sends it SIGTERM once a rank has logged step `stop_at`;
    the agents' exit codes."""
    try:
        launch.start()
        if stop_at is not None:
            wait_for(
                lambda: highest_logged_step(launch.sample_log) >= stop_at,
                f"step {stop_at}",
                timeout=120,
            )
            launch.terminate()
        return launch.wait(timeout)
    finally:
        launch.kill()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_store(
    plan: TrainingPlan, port: int, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Starts the job's rendezvous store (the store Deployment's command) and waits for it."""
    with log_path.open("ab") as log:
        store = subprocess.Popen(plan.rendezvous_command, env=env, stdout=log, stderr=log)
    wait_for(lambda: listening(port), f"the rendezvous on port {port}", timeout=120)
    return store


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class ConsumedSamples:
    """What the run trained on, after restarts: the attempts that counted."""

    by_position: dict[int, int]
    """Stream position -> sample id."""
    steps: list[int]
    world_sizes: list[int]
    """World size of each generation of the group that trained, in order."""

    @classmethod
    def read(cls, directory: Path) -> ConsumedSamples:
        return cls.of_lines(_log_lines(directory))

    @classmethod
    def of_lines(cls, lines: list[dict[str, Any]]) -> ConsumedSamples:
        """From the log's lines, each once (a step redone by a later generation supersedes)."""
        counted: dict[int, int] = {}
        for line in lines:
            counted[line["step"]] = max(counted.get(line["step"], 0), line["generation"])
        by_position: dict[int, int] = {}
        for line in lines:
            if line["generation"] != counted[line["step"]]:
                continue
            for position, sample in zip(range(*line["positions"]), line["samples"], strict=True):
                assert position not in by_position, f"position {position} trained twice"
                by_position[position] = sample
        generations = sorted({(line["generation"], line["worldSize"]) for line in lines})
        return cls(by_position, sorted(counted), [size for _, size in generations])


def _log_lines(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def newest_generation_last_step(directory: Path) -> int:
    """The last step the newest generation of the group trained."""
    lines = _log_lines(directory)
    newest = max(line["generation"] for line in lines)
    return max(int(line["step"]) for line in lines if line["generation"] == newest)


def highest_logged_step(directory: Path) -> int:
    """The highest step any rank has logged so far (0 before the first)."""
    return max((int(line["step"]) for line in _log_lines(directory)), default=0)


def module_docs(names: Iterable[str]) -> list[list[str]]:
    """Real text for a dataset: the plain-text documentation of each module, a part each."""
    return [[pydoc.plain(pydoc.render_doc(name))] for name in names]


def write_text_dataset(
    store: ObjectStore,
    texts: list[list[str]],
    format: OutputFormat = OutputFormat.JSONL,
    *,
    sized: bool = True,
    tokenizer: TokenizerTraining | None = None,
) -> None:
    """A published dataset with one shard whose parts (in `format`) hold the given documents;
    its manifest gives each part's text size as publishing does, unless not `sized` (as
    manifests written before it was recorded), and with `tokenizer` the version's tokenizer and
    token counts, trained and counted by the publish stage's own code."""
    fetched = datetime(2026, 1, 1, tzinfo=UTC)
    parts = []
    for index, part_texts in enumerate(texts):
        documents = [
            Document(
                id=document_id(0, index, row),
                url=f"https://docs.kubeforge.invalid/{index}/{row}",
                fetched_at=fetched,
                content_hash=content_hash(text),
                text=text,
            )
            for row, text in enumerate(part_texts)
        ]
        info = write_part(store, 0, index, documents, [200] * len(documents), format)
        parts.append(
            ManifestPart(
                key=info.key,
                documents=info.documents,
                bytes=info.bytes,
                sha256=info.sha256,
                text_bytes=sum(len(text.encode()) for text in part_texts) if sized else None,
            )
        )
    trained = None
    if tokenizer is not None:
        trained, counted = publish_tokenizer(store, parts, tokenizer)
        parts = list(counted)
    total = sum(len(part_texts) for part_texts in texts)
    write_manifest(
        store,
        Manifest(
            created_at=fetched,
            shards=(
                ShardSummary(
                    shard=0,
                    marker=shard_marker_key(0),
                    documents=total,
                    counters=CrawlCounters(documents_kept=total),
                ),
            ),
            parts=tuple(parts),
            documents=total,
            bytes=sum(part.bytes for part in parts),
            duplicates_removed=0,
            tokenizer=trained,
        ),
    )
