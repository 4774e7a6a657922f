"""`python -m kubeforge.launch [torchrun arguments] PROGRAM...`: torchrun that exits with the code
of the worker that failed.

torchrun exits with 1 whatever its workers returned (measured with torch 2.15: a script that exits
2 under `torchrun --nnodes=1:2` ends torchrun with 1), so a pod's exit code could never match the
exit-code rules of `failurePolicy`. This runs torch's own launcher in-process
(`torch.distributed.run`: the same arguments, elastic agent and rendezvous) and, when the workers
fail (torch raises `ChildFailedError`), exits with the exit code of the root-cause rank: the
earliest failure, as `ChildFailedError.get_first_failure` picks it, a death by signal N reported
as 128+N, as a shell and the kubelet report it. A launcher stopped by a signal (SIGTERM when its
pod is deleted) exits with 128+N after torch stopped its workers.

Either way, and when the agent itself fails (rendezvous, store), it writes one line (which rank,
its exit code, the first line of the error the worker recorded through torchelastic's `@record`,
if any; or the signal; or the agent's error) to the container's termination message, the
file `TERMINATION_LOG_ENV` names (`/dev/termination-log`, the Kubernetes default, when unset),
which `kubectl describe pod` and the pod's `status.containerStatuses` show. A file that cannot be
written is skipped: the exit code is what the operator acts on.

Every worker image runs this module, so an image for a custom `spec.command` needs kubeforge
installed beside torch (docs/trainingjob-operator.md). It registers the `kubeforge` rendezvous
backend (`kubeforge.rendezvous`: the job's own store, left rather than closed by an agent that
fails). torch is imported only when the launcher runs: the local runner
(`kubeforge.cli.local_training`) reads its exit codes and termination messages without loading
torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kubeforge import rendezvous

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

TERMINATION_LOG_ENV = "KUBEFORGE_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 1024
"""Characters kept of the message (Kubernetes keeps at most 4096 bytes of it)."""
SIGNAL_EXIT_BASE = 128


def shell_exit_code(returncode: int) -> int:
    """A process's exit status as a shell reports it: -N (killed by signal N) becomes 128+N."""
    return SIGNAL_EXIT_BASE - returncode if returncode < 0 else returncode


def recorded_error(failure: ProcessFailure) -> str | None:
    """The first line of the error the worker recorded (`@record`), or None without one.

    torchelastic's error file holds {"message": {"message": "Type: text", "extraInfo": ...}};
    without a file, `failure.message` is torch's own hint or the signal, not the worker's error.
    """
    message: object = failure.message  # typed str, but the error file's dict when there is one
    text = message.get("message") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip().splitlines()[0]


def describe_failure(rank: int, failure: ProcessFailure) -> str:
    """One line: the rank, its exit code (and signal) and the first line of its error."""
    line = f"rank {rank} (local rank {failure.local_rank}) exited with "
    line += f"{shell_exit_code(failure.exitcode)}"
    if failure.exitcode < 0:
        line += f" ({failure.signal_name()})"
    error = recorded_error(failure)
    return f"{line}: {error}" if error else line


def write_termination_message(message: str) -> None:
    """Writes the first line of `message` as the container's termination message; never fails
    the launcher."""
    path = Path(os.environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG)
    line = message.splitlines()[0] if message else ""
    with contextlib.suppress(OSError):
        path.write_text(line[:TERMINATION_MESSAGE_LIMIT] + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs torchrun with `argv` (sys.argv's arguments by default); returns the exit code."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    rendezvous.register_backend()
    arguments = torchrun.parse_args(list(sys.argv[1:] if argv is None else argv))  # type: ignore[no-untyped-call]
    try:
        torchrun.run(arguments)  # type: ignore[no-untyped-call]
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        message = describe_failure(rank, failure)
        print(f"{failed}\nkubeforge.launch: {message}", file=sys.stderr, flush=True)
        write_termination_message(message)
        return shell_exit_code(failure.exitcode)
    except SignalException as stopped:
        message = f"the launcher was stopped by {stopped.sigval.name}"
        print(f"kubeforge.launch: {message}", file=sys.stderr, flush=True)
        write_termination_message(message)
        return SIGNAL_EXIT_BASE + stopped.sigval.value
    except Exception as error:  # the agent's own failure (rendezvous, store): still say why
        write_termination_message(f"the launcher failed: {type(error).__name__}: {error}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
