"""FSDP and sharded checkpoints: under real torchrun, and in this process as a group of one.

What is real: torchrun agents and `python -m kubeforge_trainer` workers sharding the model with
FSDP2 over gloo on the CPU, DCP writing every rank's shards to SeaweedFS (the rig's S3) through
kubeforge's object store, SIGTERMs sent to real processes. The in-process tests use a real gloo
group of one and the same writer and reader.

Exactness across world sizes is asserted, as for DDP, on the consumed-sample log compared with an
uninterrupted run's; within one world size on the model's and optimiser's tensors themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from kubeforge.api.trainingjob import (
    ActivationCheckpointing,
    ModelArchitecture,
    ModelConfig,
    OptimizerConfig,
    ParallelismConfig,
    ParallelStrategy,
)
from kubeforge.plan import WorkerConfig
from kubeforge.storage import FileStore, S3Store
from kubeforge_trainer import state_file
from kubeforge_trainer.checkpoint import LATEST, Checkpoints, StateFormat, step_directory
from kubeforge_trainer.distributed import Distributed
from kubeforge_trainer.parallelism import parallelize
from kubeforge_trainer.sharded_checkpoint import (
    ShardedCheckpointWriter,
    load_shards,
    load_whole_state,
)
from kubeforge_trainer.tasks import build_language_model, loss_sum
from kubeforge_trainer.tokenizer import ByteTokenizer
from kubeforge_trainer.trainer import Trainer, build_optimizer
from tests.conftest import Rig
from tests.workloads.trainer_runs import (
    ConsumedSamples,
    Launch,
    mlp_job_spec,
    newest_generation_last_step,
    run_stopped_at,
    training_job,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]  # five torchrun runs

# Long enough that each SIGTERM, sent once a polled step is seen, lands well inside its run.
STEPS = 400
FSDP = {"strategy": "fsdp"}


def test_resharding_2_3_1_2_through_sigterms_resumes_exactly(
    rig: Rig, bucket: str, s3: S3Client, tmp_path: Path
) -> None:
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    spec = mlp_job_spec(
        {"uri": (reference_dir / "ckpt").as_uri(), "intervalSteps": 100}, STEPS, FSDP
    )
    reference = Launch(training_job("reference", 2, spec), reference_dir, rig)
    assert run_stopped_at(reference, None) == [0, 0], reference.output()
    expected = ConsumedSamples.read(reference.sample_log)

    # No periodic checkpoint within the run: whatever is resumed was written on SIGTERM.
    spec = mlp_job_spec({"uri": f"s3://{bucket}/ckpt", "intervalSteps": 10 * STEPS}, STEPS, FSDP)
    store = S3Store(bucket, "ckpt", s3)
    checkpoints = Checkpoints(store, keep=3)
    resized = tmp_path / "resized"
    resized.mkdir()
    for replicas, stop_at in ((2, 80), (3, 180), (1, 280), (2, None)):
        launch = Launch(training_job("resharded", replicas, spec), resized, rig)
        codes = run_stopped_at(launch, stop_at)
        if stop_at is None:
            assert codes == [0, 0], launch.output()
            continue
        last_step = newest_generation_last_step(launch.sample_log)
        assert checkpoints.newest_valid() == last_step, launch.output()
        latest = json.loads(store.get(LATEST))
        assert (latest["state_format"], latest["world_size"]) == (StateFormat.SHARDED, replicas)
        shards = {name for name in latest["files"] if name.endswith(".distcp")}
        assert shards == {f"shards/__{rank}_0.distcp" for rank in range(replicas)}
    consumed = ConsumedSamples.read(launch.sample_log)
    assert consumed.world_sizes == [2, 3, 1, 2]
    assert consumed.steps == expected.steps
    assert consumed.by_position == expected.by_position


def test_fsdp_ranks_with_uneven_micro_batches_train_as_ddp_does(tmp_path: Path, rig: Rig) -> None:
    """A global batch of 3 in micro-batches of 1 on 2 workers: one rank has 1 micro-batch, the
    other 2. Every FSDP forward and backward is a collective, so the rank with fewer repeats its
    last one at weight 0 (without it the group hangs at its first step); the losses are DDP's."""
    losses = {}
    for strategy in ("ddp", "fsdp"):
        workdir = tmp_path / strategy
        workdir.mkdir()
        spec = mlp_job_spec(
            {"uri": (workdir / "ckpt").as_uri(), "intervalSteps": 1000}, 40, {"strategy": strategy}
        )
        spec["trainer"]["batch"] = {"globalSize": 3, "microSize": 1}
        spec["trainer"]["logIntervalSteps"] = 10
        launch = Launch(training_job(f"uneven-{strategy}", 2, spec), workdir, rig)
        assert run_stopped_at(launch, None) == [0, 0], launch.output()
        metrics = json.loads((workdir / "ckpt" / "final" / "metrics.json").read_text())
        losses[strategy] = [entry["loss"] for entry in metrics["history"]]
    assert len(losses["fsdp"]) == len(losses["ddp"]) >= 4
    assert losses["fsdp"] == pytest.approx(losses["ddp"], rel=1e-4)


# In this process: a gloo group of one.


@pytest.fixture(scope="module")
def group() -> Iterator[Distributed]:
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    control = dist.new_group(backend="gloo")
    assert isinstance(control, dist.ProcessGroup)
    yield Distributed(0, 0, 1, torch.device("cpu"), control)
    dist.destroy_process_group()


GPT = ModelConfig(
    architecture=ModelArchitecture.GPT, layers=2, hidden_size=32, heads=4, context_length=16
)


def trained_gpt(
    group: Distributed,
    strategy: ParallelStrategy,
    checkpointing: ActivationCheckpointing = ActivationCheckpointing.NONE,
    steps: int = 2,
) -> tuple[nn.Module, torch.optim.Optimizer, dict[str, torch.Tensor]]:
    """A small GPT after `steps` optimiser steps on fixed tokens, its optimiser, and the
    gradients of the last step (by parameter name, whole)."""
    torch.manual_seed(3)
    model = build_language_model(GPT, ByteTokenizer.vocab_size)
    settings = ParallelismConfig(strategy=strategy, activation_checkpointing=checkpointing)
    parallel = parallelize(model, settings, group, bf16=False, compile=False)
    optimizer = build_optimizer(model, OptimizerConfig(weight_decay=0.1), fused=False)
    tokens = torch.randint(0, 200, (4, 17), generator=torch.Generator().manual_seed(5))
    gradients: dict[str, torch.Tensor] = {}
    for _ in range(steps):
        loss_sum(parallel.network(tokens[:, :-1]), tokens[:, 1:]).backward()
        gradients = {
            name: _whole(parameter.grad)
            for name, parameter in model.named_parameters()
            if parameter.grad is not None
        }
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer, gradients


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (a plain tensor's own)."""
    if isinstance(tensor, DTensor):
        tensor = tensor.full_tensor()
    return tensor.detach().clone()


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: _whole(tensor) for name, tensor in model.state_dict().items()}


def _optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    names: dict[torch.Tensor, str] = {p: name for name, p in model.named_parameters()}
    return {
        f"{names[parameter]}.{key}": _whole(value)
        for parameter, state in optimizer.state.items()
        for key, value in state.items()
    }


def snapshot(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Copies of the model's and optimiser's tensors, whole, by name."""
    return _weights(model), _optimizer_state(model, optimizer)


def assert_same_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    expected: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]],
) -> None:
    for actual_tensors, expected_tensors in zip(snapshot(model, optimizer), expected, strict=True):
        assert actual_tensors.keys() == expected_tensors.keys()
        for name, tensor in expected_tensors.items():
            torch.testing.assert_close(actual_tensors[name], tensor, rtol=0, atol=0, msg=name)


def test_fsdp_shards_every_block_then_the_root_and_keeps_parameter_names(
    group: Distributed,
) -> None:
    plain, _, _ = trained_gpt(group, ParallelStrategy.DDP, ActivationCheckpointing.NONE)
    sharded, _, _ = trained_gpt(group, ParallelStrategy.FSDP, ActivationCheckpointing.NONE)
    assert isinstance(sharded, FSDPModule)
    assert all(isinstance(block, FSDPModule) for block in sharded.blocks)  # type: ignore[union-attr]
    assert list(_weights(sharded)) == list(_weights(plain))


@pytest.mark.parametrize(
    "checkpointing", [ActivationCheckpointing.SELECTIVE, ActivationCheckpointing.FULL]
)
def test_activation_checkpointing_changes_no_gradient(
    group: Distributed, checkpointing: ActivationCheckpointing
) -> None:
    _, _, kept = trained_gpt(group, ParallelStrategy.FSDP, ActivationCheckpointing.NONE)
    _, _, recomputed = trained_gpt(group, ParallelStrategy.FSDP, checkpointing)
    assert kept.keys() == recomputed.keys()
    for name, gradient in kept.items():
        torch.testing.assert_close(recomputed[name], gradient, rtol=0, atol=0, msg=name)


def saved_checkpoint(
    group: Distributed, store: S3Store, step: int
) -> tuple[nn.Module, torch.optim.Optimizer, Checkpoints]:
    """A trained sharded GPT and its checkpoint of `step`, committed."""
    model, optimizer, _ = trained_gpt(group, ParallelStrategy.FSDP)
    checkpoints = Checkpoints(store, keep=2)
    writer = ShardedCheckpointWriter(checkpoints, model, optimizer, group)
    writer.save(step, {"step": step}, wait=True)
    assert [record.step for record in writer.committed()] == [step]
    return model, optimizer, checkpoints


@pytest.mark.parametrize("strategy", [ParallelStrategy.FSDP, ParallelStrategy.DDP])
def test_a_sharded_checkpoint_restores_the_model_and_optimiser_exactly(
    group: Distributed, bucket: str, s3: S3Client, strategy: ParallelStrategy
) -> None:
    store = S3Store(bucket, "ckpt", s3)
    model, optimizer, checkpoints = saved_checkpoint(group, store, 2)
    assert checkpoints.newest_valid() == 2
    verified = checkpoints.read_verified(2)
    assert verified.state_format == StateFormat.SHARDED
    assert state_file.decode(verified.buffer) == {"step": 2}
    fresh, fresh_optimizer, _ = trained_gpt(group, strategy, steps=0)
    load_shards(store, 2, verified.files, fresh, fresh_optimizer, group)
    assert_same_state(fresh, fresh_optimizer, snapshot(model, optimizer))


def test_an_asynchronous_save_holds_its_step_while_training_goes_on(
    group: Distributed, bucket: str, s3: S3Client
) -> None:
    store = S3Store(bucket, "ckpt", s3)
    model, optimizer, _ = trained_gpt(group, ParallelStrategy.FSDP)
    at_save = snapshot(model, optimizer)
    checkpoints = Checkpoints(store, keep=2)
    writer = ShardedCheckpointWriter(checkpoints, model, optimizer, group)
    writer.save(2, {"step": 2}, wait=False)
    tokens = torch.randint(0, 200, (4, 17))
    loss_sum(model(tokens[:, :-1]), tokens[:, 1:]).backward()
    optimizer.step()  # changes every parameter and moment in place while the upload may run
    assert writer.committed() == []  # committed only once every rank's upload is waited for
    writer.close()
    assert [record.step for record in writer.committed()] == [2]
    fresh, fresh_optimizer, _ = trained_gpt(group, ParallelStrategy.FSDP, steps=0)
    load_shards(store, 2, checkpoints.read_verified(2).files, fresh, fresh_optimizer, group)
    assert_same_state(fresh, fresh_optimizer, at_save)


def test_an_altered_shard_fails_the_load_and_names_it(
    group: Distributed, bucket: str, s3: S3Client
) -> None:
    store = S3Store(bucket, "ckpt", s3)
    saved_checkpoint(group, store, 4)
    shard = f"{step_directory(4)}/shards/__0_0.distcp"
    data = bytearray(store.get(shard))
    data[len(data) // 2] ^= 0xFF
    store.put(shard, bytes(data))
    files = Checkpoints(store, keep=2).read_verified(4).files  # its state file is intact
    fresh, fresh_optimizer, _ = trained_gpt(group, ParallelStrategy.FSDP, steps=0)
    with pytest.raises(
        ValueError, match=r"rank 0: shards/__0_0.distcp has xxh3_128 .* its bytes were altered"
    ):
        load_shards(store, 4, files, fresh, fresh_optimizer, group)


def test_a_whole_model_state_loads_into_a_sharded_model(group: Distributed) -> None:
    # The state-file format, as DDP saves it: the whole model and optimizer.state_dict().
    model, optimizer, _ = trained_gpt(group, ParallelStrategy.DDP)
    encoded = state_file.encode({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    state = state_file.decode(torch.frombuffer(bytearray(encoded), dtype=torch.uint8))
    sharded, sharded_optimizer, _ = trained_gpt(group, ParallelStrategy.FSDP, steps=0)
    load_whole_state(sharded, sharded_optimizer, state["model"], state["optimizer"])
    assert_same_state(sharded, sharded_optimizer, snapshot(model, optimizer))


def test_a_restore_skips_a_sharded_checkpoint_that_does_not_verify(
    group: Distributed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(tmp_path / "ckpt")
    spec = mlp_job_spec({"uri": store.uri, "intervalSteps": 2}, 4, FSDP)
    config = WorkerConfig(job_name="skip", **spec)
    first = Trainer(config, group)
    assert first.train()
    first.close()
    shard = f"{step_directory(4)}/shards/__0_0.distcp"
    store.put(shard, store.get(shard)[:-1] + b"?")
    config.trainer.steps = 6
    second = Trainer(config, group)
    second.close()
    assert second.step == 2
    assert "skipping checkpoint step-000000004: step-000000004 does not load" in caplog.text
