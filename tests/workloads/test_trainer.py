"""The trainer under real torchrun, launched with the command the operator's pods run.

What is real: torchrun agents (`kubeforge.launch`, one per "pod", meeting in the job's rendezvous
store, `kubeforge.rendezvous`, on 127.0.0.1) started with the command
`kubeforge.plan.plan_training` builds; `python -m kubeforge_trainer` workers training with DDP over
gloo on the CPU; SeaweedFS from the rig for checkpoints and the GPT's dataset (the reference run
checkpoints to a local directory, `file://`, the other store); signals and kills sent to real
processes. Nothing is faked. Models, batches and step counts are small so that the module runs in a
few minutes on two cores.

Exactness is asserted on the consumed-sample log (which sample every stream position held in
the attempt that counted), compared with an uninterrupted reference run, never on a loss.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from kubeforge.api.dataingest import TokenizerTraining
from kubeforge.api.trainingjob import ProgressStatus, TokenizerType, TrainerStage
from kubeforge.dataset import Manifest, read_manifest
from kubeforge.storage import FileStore, S3Store
from kubeforge_trainer.checkpoint import Checkpoints
from kubeforge_trainer.digits import DigitsSource
from kubeforge_trainer.text import TextSource
from tests.conftest import REPO_ROOT, Rig
from tests.polling import wait_for
from tests.workloads.crawls import s3_environment
from tests.workloads.trainer_runs import (
    MLP_GLOBAL_BATCH,
    SMALL_GPT,
    SMALL_LANGUAGE_MODELS,
    ConsumedSamples,
    Launch,
    highest_logged_step,
    mlp_job_spec,
    module_docs,
    newest_generation_last_step,
    run_stopped_at,
    training_job,
    write_text_dataset,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

# Long enough that a signal sent once a polled step is seen (polls are 0.2 s apart, and the MLP
# trains hundreds of steps a second at world size 1) lands well inside the run.
STEPS = 1000
GLOBAL_BATCH = MLP_GLOBAL_BATCH
STOPPED_BY_SIGTERM = 143


def mlp_spec(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return mlp_job_spec(checkpoint, STEPS)


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: what every interrupted run must equal."""

    exit_codes: list[int]
    consumed: ConsumedSamples
    launch: Launch
    checkpoints: Path


@pytest.fixture(scope="module")
def reference(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    workdir = tmp_path_factory.mktemp("reference")
    checkpoints = workdir / "checkpoints"
    spec = mlp_spec({"uri": checkpoints.as_uri(), "intervalSteps": 100})
    job = training_job("reference", 2, spec)
    launch = Launch(job, workdir, rig)
    try:
        launch.start()
        codes = launch.wait()
    finally:
        launch.kill()
    return Reference(codes, ConsumedSamples.read(launch.sample_log), launch, checkpoints)


def test_the_mlp_learns_the_bundled_digits_and_reports_progress(reference: Reference) -> None:
    assert reference.exit_codes == [0, 0], reference.launch.output()
    final = reference.checkpoints / "final"
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["steps"] == STEPS
    assert metrics["final"]["testAccuracy"] > 0.9
    assert (final / "model.pt").stat().st_size > 0
    assert "architecture: mlp" in (final / "config.yaml").read_text()

    progress = ProgressStatus.model_validate_json(reference.launch.progress_file.read_text())
    assert progress.step == STEPS
    assert progress.total_steps == STEPS
    assert progress.last_checkpoint is not None
    assert progress.last_checkpoint.step == STEPS
    assert progress.updated_at is not None
    assert progress.samples_per_second
    # Goodput's view of the attempt: the process started, then its first step, then its last.
    assert progress.started_at is not None
    assert progress.first_step_at is not None
    assert progress.started_at <= progress.first_step_at <= progress.updated_at
    # Its stages, each reported as it began: the last report is the final save's.
    assert progress.stage == TrainerStage.FINISHING
    assert progress.stage_since is not None
    assert progress.stage_since >= progress.updated_at
    output = reference.launch.output()
    stages = ["Loading", "Restoring", "FirstStep", "Finishing"]
    at = [output.index(f"stage {stage}") for stage in stages]
    assert at == sorted(at), output


def test_every_sample_is_consumed_exactly_once_per_epoch(reference: Reference) -> None:
    consumed = reference.consumed
    assert consumed.steps == list(range(1, STEPS + 1))
    assert sorted(consumed.by_position) == list(range(STEPS * GLOBAL_BATCH))
    samples = len(DigitsSource("train").labels)
    epochs = STEPS * GLOBAL_BATCH // samples
    assert epochs >= 2
    for epoch in range(epochs):
        positions = range(epoch * samples, (epoch + 1) * samples)
        assert sorted(consumed.by_position[p] for p in positions) == list(range(samples)), epoch


def test_a_killed_worker_ends_its_pod_with_137_and_the_replaced_group_resumes_exactly(
    rig: Rig, bucket: str, tmp_path: Path, reference: Reference
) -> None:
    job = training_job("killed", 2, mlp_spec({"uri": f"s3://{bucket}/ckpt", "intervalSteps": 100}))
    launch = Launch(job, tmp_path, rig)
    try:
        launch.start()
        wait_for(lambda: highest_logged_step(launch.sample_log) >= 150, "step 150", timeout=120)
        victims = launch.workers(1)
        assert victims, "the second agent has no worker to kill"
        os.kill(victims[0], signal.SIGKILL)
        broken = launch.wait()
    finally:
        launch.kill()
    # No restart inside the pod: the killed worker's pod ends with its code, as a shell reports
    # a SIGKILL, and the other pod stops with the group.
    assert broken[1] == 128 + signal.SIGKILL, launch.output()
    assert broken[0] != 0, launch.output()
    replaced = Launch(job, tmp_path, rig)  # the Job controller's new pods
    try:
        replaced.start()
        codes = replaced.wait()
    finally:
        replaced.kill()
    assert codes == [0, 0], replaced.output()
    consumed = ConsumedSamples.read(launch.sample_log)
    assert consumed.world_sizes == [2, 2], "the run should have been restarted once"
    assert consumed.steps == reference.consumed.steps
    assert consumed.by_position == reference.consumed.by_position


def test_losing_the_first_agent_the_survivor_re_forms_in_the_same_store_and_finishes(
    rig: Rig, bucket: str, tmp_path: Path, reference: Reference
) -> None:
    """Pod 0 used to host the rendezvous: now it is lost for good (its node is gone, its
    replacement cannot be scheduled) and the other pod's replacement trains on alone, within
    minReplicas, in the store that outlived both."""
    checkpoint = {"uri": f"s3://{bucket}/ckpt", "intervalSteps": 100}
    job = training_job("lost0", 2, {**mlp_spec(checkpoint), "minReplicas": 1, "maxReplicas": 2})
    launch = Launch(job, tmp_path, rig)
    try:
        launch.start()
        wait_for(lambda: highest_logged_step(launch.sample_log) >= 150, "step 150", timeout=120)
        launch.kill_agent(0)
        assert launch.agents[1].wait(timeout=150) != 0, launch.output()
        launch.start(agents=1)  # pod 1's replacement; pod 0's never comes
        assert launch.agents[2].wait(timeout=300) == 0, launch.output()
        assert launch.store is not None
        assert launch.store.poll() is None, "the store went down"
    finally:
        launch.kill()
    consumed = ConsumedSamples.read(launch.sample_log)
    assert consumed.world_sizes == [2, 1], launch.output()
    assert consumed.steps == reference.consumed.steps


def test_resizing_2_1_2_through_sigterms_checkpoints_and_resumes_exactly(
    rig: Rig, bucket: str, s3: S3Client, tmp_path: Path, reference: Reference
) -> None:
    # No periodic checkpoint within the run: whatever is resumed was written on SIGTERM.
    spec = mlp_spec({"uri": f"s3://{bucket}/ckpt", "intervalSteps": 10 * STEPS})
    checkpoints = Checkpoints(S3Store(bucket, "ckpt", s3), keep=3)
    for replicas, stop_at in ((2, 200), (1, 500), (2, None)):
        launch = Launch(training_job("resized", replicas, spec), tmp_path, rig)
        codes = run_stopped_at(launch, stop_at)
        if stop_at is None:
            assert codes == [0, 0], launch.output()
        else:
            last_step = newest_generation_last_step(launch.sample_log)
            assert checkpoints.newest_valid() == last_step, launch.output()
            assert f"stopping at step {last_step} on SIGTERM" in launch.output()
    consumed = ConsumedSamples.read(launch.sample_log)
    assert consumed.world_sizes == [2, 1, 2]
    assert consumed.steps == reference.consumed.steps
    assert consumed.by_position == reference.consumed.by_position


def tokens_per_byte(manifest: Manifest) -> float:
    """Tokens per byte of text over the dataset: its own tokenizer's counts, else bytes."""
    parts = manifest.parts
    tokens = sum(
        part.text_bytes + part.documents if part.tokens is None else part.tokens for part in parts
    )
    return tokens / sum(part.text_bytes for part in parts)


@pytest.mark.parametrize(
    ("architecture", "tokenizer"),
    [("gpt", TokenizerType.BYTES), ("llama", TokenizerType.DATASET)],
)
def test_a_language_model_learns_from_text_shards_in_object_storage_and_resumes(
    rig: Rig,
    bucket: str,
    s3: S3Client,
    tmp_path: Path,
    architecture: str,
    tokenizer: TokenizerType,
) -> None:
    # Real text: the plain-text documentation of a few standard-library modules, one per part;
    # tokens are its bytes, or the version's own BPE (trained and counted as publish does).
    # Trained for 80 steps by two workers, then for 20 more by a new group from the checkpoint,
    # and the generator writes text with the same tokenizer.

    modules = ["json", "csv", "textwrap", "shlex", "heapq", "bisect"]
    prefix = f"datasets/docs-{tokenizer}/v1"
    training = TokenizerTraining(vocab_size=1024) if tokenizer == TokenizerType.DATASET else None
    write_text_dataset(S3Store(bucket, prefix, s3), module_docs(modules), tokenizer=training)
    dataset = f"s3://{bucket}/{prefix}"
    checkpoints = f"s3://{bucket}/ckpt-{architecture}"
    for run, steps in (("first", 80), ("resumed", 100)):
        spec = {
            "trainer": {
                "model": SMALL_LANGUAGE_MODELS[architecture],
                "tokenizer": {"type": tokenizer},
                "optimizer": {"learningRate": 0.01, "warmupSteps": 10, "weightDecay": 0.1},
                "batch": {"globalSize": 16},
                "steps": steps,
            },
            "dataset": {"uri": dataset},
            "checkpoint": {"uri": checkpoints, "intervalSteps": 40},
        }
        (tmp_path / run).mkdir()
        launch = Launch(
            training_job(f"{architecture}-{run}", 2, spec), tmp_path / run, rig, dataset_uri=dataset
        )
        try:
            launch.start()
            codes = launch.wait()
        finally:
            launch.kill()
        assert codes == [0, 0], launch.output()
        metrics = json.loads(S3Store(bucket, f"ckpt-{architecture}", s3).get("final/metrics.json"))
        first, last = metrics["history"][0], metrics["history"][-1]
        if run == "first":
            assert (first["step"], last["step"]) == (1, 80)
            # Per byte, so that tokenizers compare: 60% of a uniform guess among 257 tokens.
            per_byte = last["loss"] * tokens_per_byte(read_manifest(S3Store(bucket, prefix, s3)))
            assert per_byte < 0.6 * math.log(257), metrics["history"]
            assert last["tokensPerSecond"] > 0
        else:
            assert "resumed from the checkpoint of step 80" in launch.output()
            assert (metrics["steps"], last["step"]) == (100, 100)
    generated = subprocess.run(
        [sys.executable, "-m", "kubeforge_trainer.generate", "--model", checkpoints],
        env=s3_environment(rig),
        capture_output=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr.decode()
    texts = [json.loads(line)["text"] for line in generated.stdout.decode().splitlines()]
    assert len(texts) == 3
    assert any(texts)


@pytest.mark.parametrize("architecture", SMALL_LANGUAGE_MODELS)
def test_a_compiled_language_model_trains_and_its_checkpoints_resume_without_compile(
    rig: Rig, tmp_path: Path, architecture: str
) -> None:
    # `compile: true` as on a GPU (torch.compile's CPU backend here): the checkpoint holds the
    # plain model's names, so an uncompiled run resumes from it, and a compiled one from that.

    dataset = tmp_path / "dataset"
    write_text_dataset(FileStore(dataset), module_docs(["json", "csv", "textwrap"]))
    checkpoints = tmp_path / "checkpoints"
    steps_by_run = {"compiled": (20, True), "plain": (30, False), "compiled-again": (40, True)}
    for run, (steps, compile_model) in steps_by_run.items():
        spec = {
            "trainer": {
                "model": SMALL_LANGUAGE_MODELS[architecture],
                "batch": {"globalSize": 16},
                "steps": steps,
                "compile": compile_model,
            },
            "dataset": {"uri": dataset.as_uri()},
            "checkpoint": {"uri": checkpoints.as_uri(), "intervalSteps": 10},
        }
        (tmp_path / run).mkdir()
        launch = Launch(
            training_job(run, 1, spec), tmp_path / run, rig, dataset_uri=dataset.as_uri()
        )
        try:
            launch.start()
            codes = launch.wait(timeout=300)
        finally:
            launch.kill()
        assert codes == [0], launch.output()
        if run != "compiled":
            assert f"resumed from the checkpoint of step {steps - 10}" in launch.output()
        metrics = json.loads((checkpoints / "final" / "metrics.json").read_text())
        assert metrics["steps"] == steps
        assert [entry["step"] for entry in metrics["history"]][-1] == steps


def test_an_s3_outage_of_30_s_mid_training_loses_nothing_and_changes_nothing(
    rig: Rig, bucket: str, s3: S3Client, tmp_path: Path, reference: Reference
) -> None:
    """The rig's S3 server is killed at step 150 and started again 30 s later: checkpoint writes
    wait for it (the store retries with backoff; the workers log when the wait starts and ends,
    and rank 0's progress report says it waits meanwhile), the workers never fail, and the run
    consumes exactly the reference's samples and commits its final checkpoint."""
    if not rig.local:
        pytest.skip("stops a process of the local rig; this cluster is not one")
    job = training_job("outage", 2, mlp_spec({"uri": f"s3://{bucket}/ckpt", "intervalSteps": 100}))
    launch = Launch(job, tmp_path, rig)
    try:
        launch.start()
        wait_for(lambda: highest_logged_step(launch.sample_log) >= 150, "step 150", timeout=120)
        rig_process("kill", "seaweedfs")
        outage = time.monotonic()
        try:
            wait_for(lambda: waiting_for_storage(launch), "the report of the wait", timeout=25)
            time.sleep(max(0.0, 30 - (time.monotonic() - outage)))  # the rest of the outage
        finally:
            rig_process("restart", "seaweedfs")
        codes = launch.wait()
    finally:
        launch.kill()
    assert codes == [0, 0], launch.output()
    assert not waiting_for_storage(launch), "the end of the wait is reported too"
    assert "waiting for the S3 store at" in launch.output(), "the wait is logged"
    assert "answered again after" in launch.output(), "and its end"
    consumed = ConsumedSamples.read(launch.sample_log)
    assert consumed.world_sizes == [2], "no restart"
    assert consumed.by_position == reference.consumed.by_position
    checkpoints = Checkpoints(S3Store(bucket, "ckpt", s3), keep=3)
    assert checkpoints.newest_valid() == STEPS


def waiting_for_storage(launch: Launch) -> bool:
    """Whether rank 0's latest progress report says it waits for the object store."""
    report = launch.progress_file.read_text() if launch.progress_file.exists() else "{}"
    return "storageWaitingSince" in json.loads(report)


def rig_process(command: str, component: str) -> None:
    """`hack/dev_cluster.py kill|restart COMPONENT`: an outage of one process of the rig."""
    script = REPO_ROOT / "hack" / "dev_cluster.py"
    subprocess.run([sys.executable, str(script), command, component], check=True)


def test_validation_holds_out_the_same_documents_at_any_world_size_and_after_a_restart(
    rig: Rig, bucket: str, s3: S3Client, tmp_path: Path
) -> None:
    # Paragraphs of real text, many documents per part. One run trains uninterrupted on two
    # workers; another on one worker until a SIGTERM, then on two from its checkpoint. Both
    # train on the very same windows, none of them from a held-out document, and evaluate the
    # same held-out windows every 20 steps; the evaluations survive the restart.

    paragraphs = [
        [text for text in doc.split("\n\n") if len(text) > 40]
        for [doc] in module_docs(["json", "csv", "textwrap", "shlex"])
    ]
    prefix = "datasets/paragraphs/v1"
    store = S3Store(bucket, prefix, s3)
    write_text_dataset(store, paragraphs)
    dataset = f"s3://{bucket}/{prefix}"
    fraction = 0.2
    held = {
        text
        for part in paragraphs
        for text in part
        if int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) < fraction * 2**64
    }
    assert held, "the fraction should hold some paragraphs out"
    context = SMALL_GPT["contextLength"]
    assert isinstance(context, int)
    consumed, evaluations = {}, {}
    for run, stages in (("two", ((2, None),)), ("resized", ((1, 12), (2, None)))):
        checkpoints = f"ckpt-validation-{run}"
        spec = {
            "trainer": {
                "model": SMALL_GPT,
                "optimizer": {"learningRate": 0.01, "warmupSteps": 5},
                "batch": {"globalSize": 8},
                "steps": 60,
                "logIntervalSteps": 20,
                "validation": {"fraction": fraction, "everySteps": 20, "batches": 2},
            },
            "dataset": {"uri": dataset},
            "checkpoint": {"uri": f"s3://{bucket}/{checkpoints}", "intervalSteps": 100},
        }
        workdir = tmp_path / run
        workdir.mkdir()
        for replicas, stop_at in stages:
            job = training_job(f"validation-{run}", replicas, spec)
            launch = Launch(job, workdir, rig, dataset_uri=dataset)
            codes = run_stopped_at(launch, stop_at)
            if stop_at is None:
                assert codes == [0] * replicas, launch.output()
            else:
                assert "on SIGTERM" in launch.output(), launch.output()
        consumed[run] = ConsumedSamples.read(launch.sample_log)
        metrics = json.loads(S3Store(bucket, checkpoints, s3).get("final/metrics.json"))
        evaluations[run] = metrics["validation"]
        progress = ProgressStatus.model_validate_json(launch.progress_file.read_text())
        assert progress.validation is not None
        assert (
            progress.validation.model_dump(mode="json", by_alias=True) == metrics["validation"][-1]
        )
    assert consumed["resized"].world_sizes == [1, 2]
    assert consumed["resized"].by_position == consumed["two"].by_position
    # The trained windows are those of the text without the held-out paragraphs.
    kept = [[text for text in part if text not in held] for part in paragraphs]
    training_only = S3Store(bucket, "datasets/paragraphs-kept/v1", s3)
    write_text_dataset(training_only, kept)
    trained = np.array(list(consumed["two"].by_position.values()), dtype=np.int64)
    held_out_source = TextSource(store, context, holdout=fraction)
    for got, wanted in zip(
        held_out_source.collate(trained),
        TextSource(training_only, context).collate(trained),
        strict=True,
    ):
        assert torch.equal(got, wanted)
    for run, entries in evaluations.items():
        assert [entry["step"] for entry in entries] == [20, 40, 60], run
        assert {entry["tokens"] for entry in entries} == {2 * 8 * context}
        for entry in entries:
            assert entry["perplexity"] == pytest.approx(math.exp(entry["loss"]))
            # Byte tokens: a byte each, but for the ends of documents, which stand for none.
            per_byte = entry["loss"] / math.log(2)
            assert per_byte <= entry["bitsPerByte"] < 1.1 * per_byte
        assert max(entry["loss"] for entry in entries) < math.log(257), entries  # it learnt
    # The same held-out windows and the same training at world sizes 1 and 2.
    for two, resized in zip(evaluations["two"], evaluations["resized"], strict=True):
        assert resized["loss"] == pytest.approx(two["loss"], rel=1e-3)


def test_an_fsdp_group_evaluates_shares_of_unequal_length_as_ddp_does(
    rig: Rig, tmp_path: Path
) -> None:
    # Nine held-out windows over two ranks in micro-batches of two (a global batch of 3 over 2):
    # rank 0 evaluates four in two passes, rank 1 five in three, and under FSDP every forward
    # pass is a collective, so rank 0 must run a third.

    dataset = tmp_path / "dataset"
    write_text_dataset(FileStore(dataset), module_docs(["json", "csv", "textwrap", "shlex"]))
    evaluations = {}
    for strategy in ("ddp", "fsdp"):
        spec = {
            "trainer": {
                "model": SMALL_GPT,
                "batch": {"globalSize": 3},
                "steps": 4,
                "parallelism": {"strategy": strategy},
                "validation": {"fraction": 0.5, "everySteps": 2, "batches": 3},
            },
            "dataset": {"uri": dataset.as_uri()},
            "checkpoint": {"uri": (tmp_path / f"ckpt-{strategy}").as_uri(), "intervalSteps": 10},
        }
        (tmp_path / strategy).mkdir()
        launch = Launch(
            training_job(f"validation-{strategy}", 2, spec),
            tmp_path / strategy,
            rig,
            dataset_uri=dataset.as_uri(),
        )
        try:
            launch.start()
            codes = launch.wait()
        finally:
            launch.kill()
        assert codes == [0, 0], launch.output()
        metrics = json.loads((tmp_path / f"ckpt-{strategy}" / "final" / "metrics.json").read_text())
        evaluations[strategy] = metrics["validation"]
    assert [entry["step"] for entry in evaluations["fsdp"]] == [2, 4]
    for ddp, fsdp in zip(evaluations["ddp"], evaluations["fsdp"], strict=True):
        assert fsdp["tokens"] == ddp["tokens"] == 9 * 64
        assert fsdp["loss"] == pytest.approx(ddp["loss"], rel=1e-3)
