"""FSDP against DDP on two CPU processes: the trainer's samples/s for a model that fits both.

Each side is a TrainingJob run to its end under torchrun, as pods would run it: 2 agents x 1
process over gloo, c10d rendezvous on loopback, the same Llama, global batch and data; only
`parallelism.strategy` differs. FSDP2 shards each block and the root, so every forward and
backward gathers parameters and reduce-scatters gradients where DDP all-reduces the gradients
once per step. The rate is the trainer's own measurement over its last two windows, the
checkpoint interval beyond the run (the final save is after the last window). The two sides
alternate in ROUNDS rounds, so both see the same machine load; the ratio is the median of the
rounds' FSDP/DDP ratios. Issue 16's goal: at least 0.9. Run from the repository root, with the
rig up (`make dev-cluster`):

    .venv/bin/python -m benchmarks.trainer.fsdp
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.trainer.launches import docs_dataset, run_to_completion, steady_rate
from kubeforge_trainer.trainer import LOG_INTERVAL

ROUNDS = 3
MODEL = {
    "architecture": "llama",
    "layers": 4,
    "hiddenSize": 256,
    "heads": 8,
    "kvHeads": 4,
    "contextLength": 128,
}
STRATEGIES = ("ddp", "fsdp")


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        dataset = docs_dataset(root / "dataset")
        rates: dict[str, list[float]] = {strategy: [] for strategy in STRATEGIES}
        for round_ in range(ROUNDS):
            for strategy in STRATEGIES:
                spec = {
                    "trainer": {
                        "model": MODEL,
                        "batch": {"globalSize": 16},
                        "steps": 3 * LOG_INTERVAL,
                        "parallelism": {"strategy": strategy},
                    },
                    "dataset": {"uri": dataset},
                    "checkpoint": {
                        "uri": (root / f"ckpt-{strategy}-{round_}").as_uri(),
                        "intervalSteps": 10**6,
                    },
                }
                name = f"{strategy}-{round_}"
                metrics = run_to_completion(name, 2, spec, root / name, dataset)
                rates[strategy].append(steady_rate(metrics))
        ratio = statistics.median(f / d for f, d in zip(rates["fsdp"], rates["ddp"], strict=True))
        print("| model | DDP samples/s | FSDP samples/s | FSDP / DDP |")
        print("|---|---|---|---|")
        ddp, fsdp = statistics.median(rates["ddp"]), statistics.median(rates["fsdp"])
        print(f"| llama 4 x 256, context 128, batch 16 | {ddp:,.1f} | {fsdp:,.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
