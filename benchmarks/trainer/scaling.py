"""Two-process scaling on this machine: the GPT's samples/s at world size 1 and 2.

Each world size is a TrainingJob run to its end under torchrun, as pods would run it: 1 agent,
then 2 agents x 1 process (DDP over gloo, c10d rendezvous on loopback), the same global batch,
so world size 2 halves each process's share. The rate is the trainer's own measurement over its
last two windows. Run from the repository root, with the rig up (`make dev-cluster`):

    .venv/bin/python -m benchmarks.trainer.scaling
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.trainer.launches import docs_dataset, run_to_completion, steady_rate
from kubeforge_trainer.trainer import LOG_INTERVAL


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        dataset = docs_dataset(root / "dataset")
        rates = {}
        for world in (1, 2):
            spec = {
                "trainer": {
                    "model": {
                        "architecture": "gpt",
                        "layers": 2,
                        "hiddenSize": 128,
                        "heads": 4,
                        "contextLength": 128,
                    },
                    "batch": {"globalSize": 32},
                    "steps": 3 * LOG_INTERVAL,
                },
                "dataset": {"uri": dataset},
                "checkpoint": {"uri": (root / f"ckpt-{world}").as_uri(), "intervalSteps": 10**6},
            }
            metrics = run_to_completion(f"scale-{world}", world, spec, root / f"w{world}", dataset)
            rates[world] = steady_rate(metrics)
        print("| world size | samples/s | speed-up | efficiency |")
        print("|---|---|---|---|")
        for world, rate in rates.items():
            speedup = rate / rates[1]
            print(f"| {world} | {rate:,.1f} | {speedup:.2f} | {speedup / world:.2f} |")


if __name__ == "__main__":
    main()
