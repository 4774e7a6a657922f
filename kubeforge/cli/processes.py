"""The local runner's child processes: each in its own session, stopped together and in order.

Children start in a new session, so a Ctrl-C in the terminal reaches only the runner, which
then stops them the way Kubernetes stops pods: SIGTERM to each child's process group (torchrun
forwards it to its workers, which commit a checkpoint and exit), then SIGKILL to whatever is
left after the grace period, descendants included (torchrun's workers have sessions of their
own). Descendants are read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_SECONDS = 45.0
"""How long children have to exit after SIGTERM: more than torchrun's own 30 s for workers."""


def children_of(pid: int) -> list[int]:
    """Direct children of a process (empty when it is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def descendants_of(pid: int) -> list[int]:
    """Every process below one, children before grandchildren."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for parent in frontier for child in children_of(parent)]
        found += children
        frontier = children
    return found


def _signal(pid: int, signum: signal.Signals, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


@dataclass
class Child:
    """One started program and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()


@dataclass
class Children:
    """The children of one local run."""

    running: list[Child] = field(default_factory=list)

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(command),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.running.append(child)
        return child

    def forget_exited(self) -> None:
        self.running = [child for child in self.running if child.poll() is None]

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to every child's group, then SIGKILL to all that is left after `grace`."""
        alive = [child for child in self.running if child.poll() is None]
        below = {pid for child in alive for pid in descendants_of(child.pid)}
        for child in alive:
            _signal(child.pid, signal.SIGTERM, group=True)
        deadline = time.monotonic() + grace
        for child in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in alive:
            if child.poll() is None:
                _signal(child.pid, signal.SIGKILL, group=True)
                child.process.wait()
        for pid in below:
            _signal(pid, signal.SIGKILL, group=False)
        self.running = []
