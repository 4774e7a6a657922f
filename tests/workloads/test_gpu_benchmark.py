"""`benchmarks/trainer/gpu.sh`, which measures MFU on a GPU, runs end to end in its smoke form on
whatever device this machine has (the CPU in CI): the same dataset writing, plan, torchrun
command, bf16 + torch.compile config and metrics reading as the real run, with a tiny model. So
the script is known to work before a session spends its few minutes of GPU time on it. Real
torchrun, real worker; only the model size and the step count differ from the GPU run."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(600)


def test_the_gpu_benchmark_runs_in_its_smoke_form() -> None:
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "trainer" / "gpu.sh"), "--smoke"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"GPT 6 steps, bf16\+compile: [\d,]+ tokens/s, MFU .+", summary), summary
