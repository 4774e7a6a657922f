"""The training loop: config -> Trainer -> train() -> close().

Each step every rank takes its share of the global batch in micro-batches, accumulating
gradients locally and synchronising them (DDP in a group of more than one, or FSDP's
reduce-scatter: `parallelism`) on its last micro-batch, with the loss scaled so the update is the
mean over the whole global batch at any world size. Around the steps: the rank-wide agreement on
stopping and time-based checkpoints, measurements every `trainer.logIntervalSteps` steps,
checkpoints on their cadence, on SIGTERM and at the end, a language model's evaluation on its
held-out split every `trainer.validation.everySteps` steps and at the last, and the final artifacts.

Every stateful part has `state_dict()`/`load_state_dict()`; the trainer's state is theirs plus
the step and every rank's RNG state. Under DDP rank 0 saves all of it as one state file
(`checkpoint`); under FSDP every rank saves its shards of the model and optimiser and rank 0 the
rest (`sharded_checkpoint`). Either format restores into either strategy at any world size.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from kubeforge import s3wait
from kubeforge.api.trainingjob import (
    DEFAULT_LOG_INTERVAL_STEPS,
    OptimizerConfig,
    OptimizerName,
    Precision,
    TrainerStage,
)
from kubeforge.plan import WorkerConfig
from kubeforge.progress import ProgressReporter, sink_from_env
from kubeforge.storage import open_store
from kubeforge_trainer.artifacts import write_final_artifacts
from kubeforge_trainer.checkpoint import (
    Checkpoints,
    CheckpointWriter,
    StateFormat,
    decode_state,
    step_directory,
)
from kubeforge_trainer.distributed import Distributed, StepAgreement, broadcast_bytes
from kubeforge_trainer.loader import Batch, BatchLoader
from kubeforge_trainer.order import GlobalOrder
from kubeforge_trainer.parallelism import parallelize
from kubeforge_trainer.reporting import Measurement, Progress
from kubeforge_trainer.sample_log import SampleLog
from kubeforge_trainer.schedule import warmup_cosine
from kubeforge_trainer.sharded_checkpoint import (
    ShardedCheckpointWriter,
    load_shards,
    load_whole_state,
    whole_model_state,
)
from kubeforge_trainer.tasks import accuracy, build_task, loss_sum
from kubeforge_trainer.throughput import RateMeter, peak_flops
from kubeforge_trainer.validation import evaluate

log = logging.getLogger(__name__)

LOG_INTERVAL = DEFAULT_LOG_INTERVAL_STEPS
"""Steps between measurements when the config does not say (the benchmarks' cadence)."""


def build_optimizer(
    model: nn.Module, config: OptimizerConfig, fused: bool
) -> torch.optim.Optimizer:
    """Adam, or AdamW with weight decay on matrices only (not on biases, norms)."""
    if config.name == OptimizerName.ADAM:
        return torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
    parameters = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused or None)


class Trainer:
    def __init__(self, config: WorkerConfig, group: Distributed) -> None:
        self._terminating = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.config = config
        self.group = group
        settings = config.trainer
        sink = sink_from_env() if group.is_main else None
        self.progress = Progress(settings.steps, ProgressReporter(sink))
        self._enter(TrainerStage.LOADING)
        cuda = group.device.type == "cuda"
        if cuda:
            torch.set_float32_matmul_precision("high")
        torch.manual_seed(settings.seed)
        self.task = build_task(config)
        self.model = self.task.model.to(group.device)
        bf16 = cuda and settings.precision == Precision.BF16
        self.parallel = parallelize(
            self.model, settings.parallelism, group, bf16=bf16, compile=settings.compile
        )
        # Built over the parallelised model: under FSDP its parameters are the shards.
        self.optimizer = build_optimizer(
            self.model, settings.optimizer, fused=cuda and not self.parallel.sharded
        )
        self.scheduler = LambdaLR(
            self.optimizer, warmup_cosine(settings.optimizer.warmup_steps, settings.steps)
        )
        self.loader = BatchLoader(
            self.task.source,
            GlobalOrder(self.task.source.block_sizes, settings.seed),
            global_size=settings.batch.global_size,
            micro_size=settings.batch.micro_size,
            rank=group.rank,
            world_size=group.world_size,
            pin_memory=cuda,
        )
        # FSDP casts the parameters itself (its MixedPrecisionPolicy); DDP computes under autocast.
        self.autocast = bf16 and not self.parallel.sharded
        self.peak_flops = peak_flops(group.device) if bf16 else None
        if group.is_main:
            s3wait.subscribe(self.progress.storage_waiting)
        self.agreement = StepAgreement(group.control)
        self.checkpoints: Checkpoints | None = None
        self.writer: CheckpointWriter | ShardedCheckpointWriter | None = None
        if config.checkpoint is not None:
            self.checkpoints = Checkpoints(
                open_store(config.checkpoint.uri), config.checkpoint.keep
            )
            if self.parallel.sharded:  # every rank writes its shards
                self.writer = ShardedCheckpointWriter(
                    self.checkpoints, self.model, self.optimizer, group
                )
            elif group.is_main:
                self.writer = CheckpointWriter(self.checkpoints, group.world_size)
        self.step = 0
        self._saved_step = 0
        self._saved_at = time.monotonic()
        self._save_requested = False
        self.restore()
        self.sample_log = SampleLog.from_environment(group)

    # State.

    def trainer_state(self) -> dict[str, Any]:
        """The training state but the model's and optimiser's; a collective call (every rank's
        RNG state is gathered)."""
        rng = {"cpu": torch.get_rng_state()}
        if self.group.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.group.device)
        every_rank: list[Any] = [None] * self.group.world_size
        dist.all_gather_object(every_rank, rng, group=self.group.control)
        return {
            "step": self.step,
            "scheduler": self.scheduler.state_dict(),
            "data": self.loader.state_dict(),
            "progress": self.progress.state_dict(),
            "rng": every_rank,
        }

    def state_dict(self) -> dict[str, Any]:
        """The whole training state of an unsharded model; a collective call."""
        return {
            **self.trainer_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads a whole training state (the state-file format) into any strategy's model."""
        if self.parallel.sharded:
            load_whole_state(self.model, self.optimizer, state["model"], state["optimizer"])
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.load_trainer_state(state)

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["data"])
        self.progress.load_state_dict(state["progress"])
        rng = state["rng"]
        if len(rng) == self.group.world_size:
            torch.set_rng_state(rng[self.group.rank]["cpu"])
            if "cuda" in rng[self.group.rank] and self.group.device.type == "cuda":
                torch.cuda.set_rng_state(rng[self.group.rank]["cuda"], self.group.device)
        else:  # another world size: each rank's stream is new, but still reproducible
            torch.manual_seed(self.config.trainer.seed + 1_000_003 * self.step + self.group.rank)

    def restore(self) -> None:
        """Loads the newest valid checkpoint. Rank 0 chooses it, reads and verifies its state
        file, and sends its bytes to the other ranks: one read of object storage per group, not
        per rank, and every rank decodes the very same bytes. A sharded checkpoint's shards are
        then read by every rank, each the slices of them it holds; when one does not verify,
        every rank learns it and the next older checkpoint is tried."""
        if self.checkpoints is None:
            return
        self._enter(TrainerStage.RESTORING)
        failed: set[int] = set()
        while True:
            verified = None
            if self.group.is_main and (step := self.checkpoints.newest_valid(failed)) is not None:
                verified = self.checkpoints.read_verified(step)
            chosen = [
                None
                if verified is None
                else (verified.step, verified.state_format, len(verified.buffer), verified.files)
            ]
            dist.broadcast_object_list(chosen, src=0, group=self.group.control)
            if chosen[0] is None:
                if failed:  # the model may hold part of a failed load: never train from it
                    raise RuntimeError(f"no checkpoint under {self.checkpoints.store.uri} loads")
                log.info("no checkpoint under %s: starting at step 0", self.checkpoints.store.uri)
                return
            step, state_format, size, files = chosen[0]
            mine = None if verified is None else verified.buffer
            state = decode_state(state_format, broadcast_bytes(self.group, mine, size))
            if state_format != StateFormat.SHARDED:
                self.load_state_dict(state)
                break
            try:
                load_shards(
                    self.checkpoints.store, step, files, self.model, self.optimizer, self.group
                )
            except ValueError as problem:  # raised on every rank alike
                log.warning("skipping checkpoint %s: %s", step_directory(step), problem)
                failed.add(step)
                continue
            self.load_trainer_state(state)
            break
        self._saved_step = self.step
        log.info("resumed from the checkpoint of step %d", self.step)

    # The loop.

    def train(self) -> bool:
        """Trains to the last step (True) or until a SIGTERM stops every rank (False)."""
        total = self.config.trainer.steps
        meter = RateMeter()
        self._enter(TrainerStage.FIRST_STEP, self.step)
        while self.step < total:
            decision = self.agreement.exchange(
                stop=self._terminating, checkpoint=self._time_to_checkpoint()
            )
            if decision.stop:
                break
            if decision.checkpoint or self._step_to_checkpoint():
                self._save(wait=False)
            batch = self.loader.next()
            loss = self._train_step(batch)
            self.step += 1
            meter.add(self.loader.global_size)
            if self.sample_log is not None:
                self.sample_log.record(self.step, batch)
            if self.step % self.config.trainer.log_interval_steps == 0 or self.step in (1, total):
                self._measure(loss, meter)
            if self._validation_due():
                self._validate()
            if self.group.is_main:
                self.progress.advanced(self.step)
            self._report_commits()
        self.agreement.settle()
        self._enter(TrainerStage.FINISHING, self.step)
        completed = self.step >= total
        if not completed:
            log.warning("stopping at step %d on SIGTERM", self.step)
        if self.checkpoints is not None and self._saved_step != self.step:
            self._save(wait=True)
        self._report_commits()
        if completed and self.config.checkpoint is not None:
            weights = whole_model_state(self.model)  # every rank: a sharded model is gathered
            if self.group.is_main:
                write_final_artifacts(
                    open_store(self.config.checkpoint.uri),
                    weights,
                    self.config,
                    self._metrics(),
                    self.model,
                    self.task.tokenizer,
                )
        if self.group.is_main:
            self.progress.finished()
        dist.barrier(group=self.group.control)  # nobody exits before the checkpoint is committed
        return completed

    def _enter(self, stage: TrainerStage, step: int | None = None) -> None:
        """Rank 0 reports the stage the attempt begins (every rank goes through it alike), and
        the step it stands at once it knows (after the restore)."""
        if self.group.is_main:
            self.progress.entered(stage, step)

    def close(self) -> None:
        s3wait.unsubscribe(self.progress.storage_waiting)
        self.loader.close()
        if self.writer is not None:
            self.writer.close()
        if self.sample_log is not None:
            self.sample_log.close()

    def _train_step(self, batch: Batch) -> torch.Tensor:
        """One optimiser step on this rank's share; returns its summed loss (not synchronised)."""
        scale = self.group.world_size / (self.loader.global_size * self.task.loss_terms_per_sample)
        summed = torch.zeros((), device=self.group.device)
        own = len(batch.micro_batches)
        # Under FSDP every forward and backward is a collective: a rank with fewer micro-batches
        # than another (uneven shares) repeats its last one at weight 0 rather than hang them.
        passes = self.loader.group_micro_batches if self.parallel.sharded else own
        for index in range(passes):
            inputs, targets = batch.micro_batches[min(index, own - 1)]
            inputs = inputs.to(self.group.device, non_blocking=True)
            targets = targets.to(self.group.device, non_blocking=True)
            with self.parallel.gradient_sync(index == passes - 1):
                with torch.autocast(self.group.device.type, torch.bfloat16, enabled=self.autocast):
                    logits = self.parallel.network(inputs)
                loss = loss_sum(logits, targets)
                torch.autograd.backward(loss * (scale if index < own else 0.0))
            if index < own:
                summed += loss.detach()
        clip = self.config.trainer.optimizer.grad_clip_norm
        if clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return summed

    def _measure(self, loss: torch.Tensor, meter: RateMeter) -> None:
        """Logs the step's loss over the global batch and the rates since the last measurement."""
        total_loss = loss.clone()
        dist.all_reduce(total_loss)
        test_set = self.task.test_set
        # Every rank: a sharded model's forward gathers parameters from all of them.
        test_accuracy = accuracy(self.model, test_set, self.group.device) if test_set else None
        if not self.group.is_main:
            return
        terms = self.loader.global_size * self.task.loss_terms_per_sample
        samples_per_second = meter.read()
        tokens = self.task.tokens_per_sample
        mfu = None
        if self.peak_flops is not None:
            achieved = self.task.flops_per_sample * samples_per_second
            mfu = achieved / (self.peak_flops * self.group.world_size)
        self.progress.measured(
            Measurement(
                step=self.step,
                loss=float(total_loss) / terms,
                samples_per_second=samples_per_second,
                tokens_per_second=samples_per_second * tokens if tokens else None,
                mfu=mfu,
                data_wait_seconds=self.loader.wait_seconds,
                checkpoint_wait_seconds=self.writer.blocked_seconds if self.writer else 0.0,
                test_accuracy=test_accuracy,
            )
        )

    def _validation_due(self) -> bool:
        settings = self.config.trainer
        every = settings.validation.every_steps if settings.validation else None
        return every is not None and (self.step % every == 0 or self.step == settings.steps)

    def _validate(self) -> None:
        """Evaluates the held-out split on every rank; rank 0 reports it."""
        assert self.task.validation is not None  # built whenever trainer.validation is set
        evaluation = evaluate(
            self.model,
            self.task.validation,
            self.group,
            loss_sum,
            micro_size=self.loader.micro_size,
            autocast=self.autocast,
        )
        if self.group.is_main:
            self.progress.validated(self.step, evaluation)

    # Checkpoints.

    def _step_to_checkpoint(self) -> bool:
        every = self.config.checkpoint.interval_steps if self.config.checkpoint else None
        return every is not None and self.step % every == 0 and self.step != self._saved_step

    def _time_to_checkpoint(self) -> bool:
        """Rank 0's vote: the time interval has passed since the last checkpoint."""
        every = self.config.checkpoint.interval_seconds if self.config.checkpoint else None
        if not every or not self.group.is_main or self._save_requested:
            return False
        self._save_requested = time.monotonic() - self._saved_at >= every
        return self._save_requested

    def _save(self, *, wait: bool) -> None:
        # Every rank takes part; a sharded checkpoint saves the model and optimiser by itself.
        state = self.trainer_state() if self.parallel.sharded else self.state_dict()
        if self.writer is not None:
            self.writer.save(self.step, state, wait=wait)
        self._saved_step = self.step
        self._saved_at = time.monotonic()
        self._save_requested = False

    def _report_commits(self) -> None:
        if self.writer is not None:
            for record in self.writer.committed():
                self.progress.checkpointed(record)

    def _metrics(self) -> dict[str, Any]:
        history = self.progress.history
        final = history[-1] if history else {}
        return {
            "jobName": self.config.job_name,
            "steps": self.step,
            "worldSize": self.group.world_size,
            "final": final,
            "history": history,
            **({"validation": self.progress.validations} if self.progress.validations else {}),
        }

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._terminating = True
