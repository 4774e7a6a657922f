"""Trainer overhead: the trainer's samples/s against a bare training loop, same model and batch.

Both run in this one process, alternating, on the CPU: the bare loop is the minimum a training
step needs (index the step's batch from the data in memory, forward, loss, backward, clip,
optimiser and schedule step, all in the one thread); the trainer is
`kubeforge_trainer.trainer.Trainer` as a group of one (so without DDP, which it applies only to
groups of more), with its prefetching loader, per-step agreement and progress reporting. The
trainer's rate is the one it measures itself between its measurement steps (startup excluded);
the bare loop's is timed the same way. Run from the repository root:

    .venv/bin/python -m benchmarks.trainer.overhead
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.trainer.launches import docs_dataset
from kubeforge.plan import WorkerConfig
from kubeforge_trainer.distributed import init_from_environment
from kubeforge_trainer.order import GlobalOrder
from kubeforge_trainer.schedule import warmup_cosine
from kubeforge_trainer.tasks import build_task, loss_sum
from kubeforge_trainer.trainer import LOG_INTERVAL, Trainer, build_optimizer
from tests.workloads.trainer_runs import SMALL_GPT

STEPS = 3 * LOG_INTERVAL
ROUNDS = 7


def bare_loop(config: WorkerConfig) -> float:
    """Samples per second of the plain loop over the last 2 x LOG_INTERVAL steps."""
    settings = config.trainer
    torch.manual_seed(settings.seed)
    task = build_task(config)
    model = task.model
    optimizer = build_optimizer(model, settings.optimizer, fused=False)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(settings.optimizer.warmup_steps, settings.steps)
    )
    order = GlobalOrder(task.source.block_sizes, settings.seed)
    size = settings.batch.global_size
    started = 0.0
    for step in range(STEPS):
        if step == LOG_INTERVAL:
            started = time.perf_counter()
        inputs, targets = task.source.collate(order.samples(step * size, (step + 1) * size))
        loss = loss_sum(model(inputs), targets) / targets.numel()
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.optimizer.grad_clip_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return (STEPS - LOG_INTERVAL) * size / (time.perf_counter() - started)


def trainer_run(config: WorkerConfig, group: Any, rate: str = "samplesPerSecond") -> float:
    """The rate (samples or tokens per second) the trainer measured over its last two
    measurement windows."""
    trainer = Trainer(config, group)
    try:
        trainer.train()
    finally:
        trainer.close()
    return statistics.mean(float(entry[rate]) for entry in trainer.progress.history[-2:])


def configs(dataset_uri: str) -> dict[str, WorkerConfig]:
    mlp = {
        "model": {"architecture": "mlp"},
        "optimizer": {"name": "adam", "learningRate": 0.001},
        "batch": {"globalSize": 64},
        "steps": STEPS,
    }
    gpt = {
        "model": SMALL_GPT,
        "batch": {"globalSize": 16},
        "steps": STEPS,
    }
    return {
        "mlp (784-256-256-10, batch 64)": WorkerConfig.model_validate(
            {"jobName": "bench", "trainer": mlp}
        ),
        "gpt (2 x 64, context 64, batch 16)": WorkerConfig.model_validate(
            {"jobName": "bench", "trainer": gpt, "datasetUri": dataset_uri}
        ),
    }


def main() -> None:
    torch.set_num_threads(1)
    group = init_from_environment()
    with tempfile.TemporaryDirectory() as scratch:
        dataset = docs_dataset(Path(scratch) / "dataset")
        print("| model | bare loop samples/s | trainer samples/s | ratio (median of rounds) |")
        print("|---|---|---|---|")
        for name, config in configs(dataset).items():
            bare, ours = [], []
            for _ in range(ROUNDS):  # paired rounds: both sides see the same machine load
                bare.append(bare_loop(config))
                ours.append(trainer_run(config, group))
            ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
            b, o = statistics.median(bare), statistics.median(ours)
            print(f"| {name} | {b:,.0f} | {o:,.0f} | {ratio:.3f} |", flush=True)
    group.close()


if __name__ == "__main__":
    main()
