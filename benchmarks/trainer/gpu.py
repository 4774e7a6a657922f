"""The GPT on one GPU with bf16 and torch.compile: tokens/s and MFU as the trainer measures them.

A GPT-2-small-shaped model (12 layers, width 768, 12 heads, context 1024, byte-level vocab)
trains 300 steps of 64 sequences (65,536 tokens a step) on a text dataset written to a local
directory (the plain-text documentation of the standard library: nothing is downloaded), with
the torchrun command `kubeforge.plan.plan_training` builds for one pod of one process. The
figures are the trainer's own measurements over its last two windows (steps 101-300, so
compilation is excluded); MFU is against the GPU's dense bf16 peak (H100/H200: 989 TFLOP/s).
Needs an NVIDIA GPU and the project installed (`pip install -e '.[trainer]'`); nothing else, not
the rig. `--smoke` runs the same path with a tiny model for a few steps on whatever device there
is, so the script can be checked where there is no GPU (a test does, on the CPU). Run from the
repository root, through `benchmarks/trainer/gpu.sh` or as

    python -m benchmarks.trainer.gpu [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from kubeforge.plan import plan_training
from kubeforge.storage import open_store
from tests.workloads.trainer_runs import (
    SMALL_GPT,
    free_port,
    module_docs,
    start_store,
    training_job,
    write_text_dataset,
)

# The standard-library modules whose documentation is the text (a few MB of it).
# fmt: off
MODULES = (
    "argparse", "asyncio", "collections", "configparser", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "enum", "fractions", "functools", "heapq", "html",
    "http.client", "http.server", "inspect", "io", "ipaddress", "itertools", "json", "logging",
    "mailbox", "math", "multiprocessing", "operator", "os", "pathlib", "pickle", "random", "re",
    "shlex", "shutil", "socket", "sqlite3", "statistics", "string", "struct", "subprocess",
    "tarfile", "textwrap", "threading", "time", "tokenize", "typing", "unittest", "urllib.parse",
    "uuid", "xml.dom", "zipfile",
)
# fmt: on
GPT2_SMALL = {"architecture": "gpt", "layers": 12, "hiddenSize": 768, "heads": 12}


def trainer_spec(smoke: bool) -> dict[str, Any]:
    if smoke:
        model = {**SMALL_GPT}
        batch, steps, log_every = {"globalSize": 8, "microSize": 4}, 6, 2
    else:
        model = {**GPT2_SMALL, "contextLength": 1024}
        batch, steps, log_every = {"globalSize": 64, "microSize": 32}, 300, 100
    return {
        "model": model,
        "optimizer": {"learningRate": 6e-4, "warmupSteps": min(50, steps), "weightDecay": 0.1},
        "batch": batch,
        "steps": steps,
        "logIntervalSteps": log_every,
        "precision": "bf16",
        "compile": True,
    }


def run(work: Path, smoke: bool) -> dict[str, Any]:
    """Trains as one pod of one process would; returns the run's metrics.json."""
    dataset = work / "dataset"
    modules = MODULES[:3] if smoke else MODULES
    write_text_dataset(open_store(dataset.as_uri()), module_docs(modules))
    spec = {
        "trainer": trainer_spec(smoke),
        "dataset": {"uri": dataset.as_uri()},
        "checkpoint": {"uri": (work / "checkpoints").as_uri(), "intervalSteps": 1000},
    }
    config = work / "trainer.yaml"
    port = free_port()
    plan = plan_training(
        training_job("gpu", 1, spec),
        rendezvous_host="127.0.0.1",
        config_path=str(config),
        dataset_uri=dataset.as_uri(),
        rendezvous_port=port,
    )
    assert plan.worker_config is not None
    worker_config = plan.worker_config.model_dump(mode="json", by_alias=True, exclude_none=True)
    config.write_text(yaml.safe_dump(worker_config))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, **plan.env, "PATH": path, "TMPDIR": str(work)}
    store = start_store(plan, port, env, work / "rendezvous.log")  # as the store's pod
    try:
        subprocess.run(plan.command, env=env, check=True)
    finally:
        store.kill()
        store.wait()
    metrics: dict[str, Any] = json.loads((work / "checkpoints/final/metrics.json").read_text())
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """Tokens/s and MFU over the last two measurement windows."""
    steady = metrics["history"][-2:]
    tokens = sum(entry["tokensPerSecond"] for entry in steady) / len(steady)
    mfu = [entry["mfu"] for entry in steady if "mfu" in entry]
    line = f"GPT {metrics['final'].get('step')} steps, bf16+compile: {tokens:,.0f} tokens/s"
    return line + (f", MFU {sum(mfu) / len(mfu):.1%}" if mfu else ", MFU unknown (no known GPU)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.trainer.gpu", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a tiny model for a few steps")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        print(summary(run(Path(work), arguments.smoke)))


if __name__ == "__main__":
    main()
