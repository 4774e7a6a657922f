"""`kubeforge demo`: from no data to a trained model on this machine, with a failure on the way.

The gpt profile serves the demo web (`localweb`), runs `demos/gpt.yaml` (crawl, dedup, publish,
then a small GPT with 2 torchrun workers), SIGKILLs one worker halfway so the group restarts and
resumes from its latest checkpoint, and writes the report. The mlp profile runs `demos/mlp.yaml`:
the MLP on 28x28 digits with Adam and 2 workers, its test accuracy printed every 100 steps. Each
profile starts from a clean state directory of its own (STATE/demo-PROFILE), so the demo always
shows the whole path.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console

from kubeforge.cli.local_state import ENDPOINT_ENV, StateDir
from kubeforge.cli.localweb import build_demo_web
from kubeforge.cli.resources import load_resources
from kubeforge.cli.runner import run_local

DEMOS = Path(__file__).parent / "demos"


def demo_file(profile: str) -> Path:
    return DEMOS / f"{profile}.yaml"


def run_demo(profile: str, state: StateDir, environ: Mapping[str, str], console: Console) -> Path:
    """Runs a demo profile from scratch; returns the report's path."""
    path = demo_file(profile)
    demo_state = StateDir(state.root / f"demo-{profile}")
    shutil.rmtree(demo_state.root, ignore_errors=True)
    # The demo keeps everything on this machine, even in a shell pointed at an S3 store.
    local_environ = {key: value for key, value in environ.items() if key != ENDPOINT_ENV}
    if profile == "mlp":
        return run_local(path, demo_state, local_environ, console=console)
    job = next(r for r in load_resources(path) if r.kind == "TrainingJob")
    assert job.spec.trainer is not None
    web = build_demo_web()
    console.print(f"serving the demo web at {web.seed()} (pydoc pages of the standard library)")
    try:
        return run_local(
            path,
            demo_state,
            local_environ,
            console=console,
            kill_worker_at_step=job.spec.trainer.steps // 2,
        )
    finally:
        web.stop()
