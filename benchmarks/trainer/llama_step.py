"""kubeforge's Llama against `transformers`' LlamaForCausalLM: training tokens/s, same shape.

Both run in this one process, alternating in paired rounds, on the CPU with one thread. The peer
is a bare loop over `transformers.LlamaForCausalLM` (SDPA attention) built from the same shape,
on the very same batches (the kubeforge task's data order, indexed in memory), with AdamW, the
gradient clip and the schedule: the least a training step over that model needs. kubeforge's
side is the whole trainer (`kubeforge_trainer.trainer.Trainer`, a group of one: its prefetching
loader, per-step agreement, progress reporting), whose rate is the one it measures itself
between its measurement steps (startup excluded); the bare loop is timed over the same steps.
Issue 15's goal: tokens/s at least 1.0 x the bare `transformers` loop. Run from the repository
root:

    .venv/bin/python -m benchmarks.trainer.llama_step
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.functional import cross_entropy
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.trainer.launches import docs_dataset
from benchmarks.trainer.overhead import trainer_run
from kubeforge.api.trainingjob import ModelConfig
from kubeforge.plan import WorkerConfig
from kubeforge_trainer.distributed import init_from_environment
from kubeforge_trainer.llama_shapes import LlamaShape, shape_of
from kubeforge_trainer.order import GlobalOrder
from kubeforge_trainer.schedule import warmup_cosine
from kubeforge_trainer.tasks import build_task
from kubeforge_trainer.trainer import LOG_INTERVAL

STEPS = 3 * LOG_INTERVAL
ROUNDS = 3
MODELS: dict[str, tuple[dict[str, Any], int]] = {
    "tiny (2 x 128, 4 heads / 2 kv, context 128), batch 16": (
        {"architecture": "llama", "size": "tiny"},
        16,
    ),
    "4 x 256 (8 heads / 4 kv, context 256), batch 8": (
        {
            "architecture": "llama",
            "layers": 4,
            "hiddenSize": 256,
            "heads": 8,
            "kvHeads": 4,
            "contextLength": 256,
        },
        8,
    ),
}


def transformers_model(shape: LlamaShape, vocab_size: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.context_length,
        rope_theta=shape.rope_theta,
        rms_norm_eps=shape.norm_eps,
        tie_word_embeddings=shape.tie_embeddings,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def bare_transformers_loop(config: WorkerConfig) -> float:
    """Tokens per second of the plain loop over `transformers`' model, last 2 x LOG_INTERVAL
    steps."""
    settings = config.trainer
    torch.manual_seed(settings.seed)
    task = build_task(config)
    model = transformers_model(shape_of(settings.model), task.source.vocab_size)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.optimizer.learning_rate,
        weight_decay=settings.optimizer.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(settings.optimizer.warmup_steps, settings.steps)
    )
    order = GlobalOrder(task.source.block_sizes, settings.seed)
    size = settings.batch.global_size
    started, tokens = 0.0, 0
    for step in range(STEPS):
        if step == LOG_INTERVAL:
            started, tokens = time.perf_counter(), 0
        inputs, targets = task.source.collate(order.samples(step * size, (step + 1) * size))
        logits = model(input_ids=inputs).logits
        loss = cross_entropy(logits.flatten(0, 1), targets.flatten())
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.optimizer.grad_clip_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += targets.numel()
    return tokens / (time.perf_counter() - started)


def worker_config(model: dict[str, Any], batch: int, dataset_uri: str) -> WorkerConfig:
    ModelConfig.model_validate(model)  # a clear error here rather than inside the trainer
    trainer = {"model": model, "batch": {"globalSize": batch}, "steps": STEPS}
    return WorkerConfig.model_validate(
        {"jobName": "bench", "trainer": trainer, "datasetUri": dataset_uri}
    )


def main() -> None:
    torch.set_num_threads(1)
    group = init_from_environment()
    with tempfile.TemporaryDirectory() as scratch:
        dataset = docs_dataset(Path(scratch) / "dataset")
        print("| model | bare transformers tokens/s | kubeforge trainer tokens/s | ratio |")
        print("|---|---|---|---|")
        for name, (model, batch) in MODELS.items():
            config = worker_config(model, batch, dataset)
            bare, ours = [], []
            for _ in range(ROUNDS):  # paired rounds: both sides see the same machine load
                bare.append(bare_transformers_loop(config))
                ours.append(trainer_run(config, group, "tokensPerSecond"))
            ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
            b, o = statistics.median(bare), statistics.median(ours)
            print(f"| {name} | {b:,.0f} | {o:,.0f} | {ratio:.3f} |", flush=True)
    group.close()


if __name__ == "__main__":
    main()
