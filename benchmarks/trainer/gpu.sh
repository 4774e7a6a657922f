#!/usr/bin/env bash
# The GPT on one GPU with bf16 and torch.compile: tokens/s and MFU as the trainer measures them.
#
# A GPT-2-small-shaped model (12 layers, width 768, 12 heads, context 1024, byte-level vocab)
# trains 300 steps of 64 sequences (65,536 tokens a step) on a text dataset written to a local
# directory (the plain-text documentation of the standard library: nothing is downloaded), with
# the torchrun command `kubeforge.plan.plan_training` builds for one pod of one process. The
# figures are the trainer's own measurements over steps 101-300 (compilation excluded); MFU is
# against the GPU's dense bf16 peak (H100/H200: 989 TFLOP/s). Needs an NVIDIA GPU and the
# project installed (`pip install -e '.[trainer]'`). Usage, from the repository root:
#
#   benchmarks/trainer/gpu.sh          (PYTHON=... picks the interpreter; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" - "$work" <<'PY'
import json, os, pydoc, socket, subprocess, sys
from pathlib import Path

import yaml

from kubeforge.storage import open_store
from kubeforge.plan import plan_training
from tests.workloads.trainer_runs import training_job, write_text_dataset

work = Path(sys.argv[1])
names = """argparse asyncio collections configparser csv dataclasses datetime decimal difflib
email enum fractions functools heapq html http.client http.server inspect io ipaddress
itertools json logging mailbox math multiprocessing operator os pathlib pickle random re
shlex shutil socket sqlite3 statistics string struct subprocess tarfile textwrap threading
time tokenize typing unittest urllib.parse uuid xml.dom zipfile""".split()
texts = [[pydoc.plain(pydoc.render_doc(name))] for name in names]
write_text_dataset(open_store((work / "dataset").as_uri()), texts)
spec = {
    "trainer": {
        "model": {"architecture": "gpt", "layers": 12, "hiddenSize": 768, "heads": 12, "contextLength": 1024},
        "optimizer": {"learningRate": 6e-4, "warmupSteps": 50, "weightDecay": 0.1},
        "batch": {"globalSize": 64, "microSize": 32},
        "steps": 300,
        "precision": "bf16",
        "compile": True,
    },
    "dataset": {"uri": (work / "dataset").as_uri()},
    "checkpoint": {"uri": (work / "checkpoints").as_uri(), "intervalSteps": 1000},
}
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
plan = plan_training(
    training_job("gpu", 1, spec),
    rendezvous_host="127.0.0.1",
    config_path=str(work / "trainer.yaml"),
    dataset_uri=spec["dataset"]["uri"],
    rendezvous_port=port,
)
(work / "trainer.yaml").write_text(yaml.safe_dump(plan.worker_config.model_dump(mode="json", by_alias=True, exclude_none=True)))
env = {**os.environ, **plan.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
subprocess.run(plan.command, env=env, check=True)
metrics = json.loads((work / "checkpoints" / "final" / "metrics.json").read_text())
steady = metrics["history"][-2:]
tokens = sum(m["tokensPerSecond"] for m in steady) / len(steady)
mfu = [m["mfu"] for m in steady if "mfu" in m]
print(f"GPU GPT 124M-shape bf16+compile: {tokens:,.0f} tokens/s", end="")
print(f", MFU {sum(mfu) / len(mfu):.1%}" if mfu else ", MFU unknown for this GPU")
PY
