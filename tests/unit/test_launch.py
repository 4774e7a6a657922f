"""What the launcher (`kubeforge.launch`) reports of a failed worker, from torchelastic's own
`ProcessFailure` read from a real error file; the launch itself runs in tests/workloads."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

from kubeforge.launch import (
    TERMINATION_LOG_ENV,
    describe_failure,
    shell_exit_code,
    write_termination_message,
)


def test_a_death_by_signal_is_reported_as_a_shell_does() -> None:
    assert shell_exit_code(-signal.SIGKILL) == 137
    assert shell_exit_code(3) == 3
    killed = ProcessFailure(local_rank=1, pid=10, exitcode=-signal.SIGKILL, error_file="<N/A>")
    assert describe_failure(3, killed) == "rank 3 (local rank 1) exited with 137 (SIGKILL)"


def test_the_recorded_error_gives_its_first_line(tmp_path: Path) -> None:
    error_file = tmp_path / "error.json"
    recorded = {"message": "ValueError: bad\nsecond line", "extraInfo": {"timestamp": "1"}}
    error_file.write_text(json.dumps({"message": recorded}))
    failure = ProcessFailure(local_rank=0, pid=10, exitcode=1, error_file=str(error_file))
    assert describe_failure(0, failure) == "rank 0 (local rank 0) exited with 1: ValueError: bad"


def test_an_unwritable_termination_log_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(tmp_path / "missing-directory" / "log"))
    write_termination_message("rank 0 exited with 2")  # no error
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(tmp_path / "log"))
    write_termination_message("x" * 5000)
    assert (tmp_path / "log").read_text() == "x" * 1024 + "\n"
