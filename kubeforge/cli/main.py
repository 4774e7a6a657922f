"""`kubeforge`: the command line.

    kubeforge validate FILE...             check resources offline, in the apiserver's words
    kubeforge run FILE --local             run them as local processes, then write the report
    kubeforge status [NAME]                TrainingJobs and DataIngests on the current cluster
    kubeforge logs NAME                    the logs of their pods
    kubeforge demo [--profile gpt|mlp]     from no data to a trained model, on this machine

Exit status: 0 done, 1 failed, 2 invalid input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rich.console import Console

from kubeforge.cli.local_ingest import IngestFailed
from kubeforge.cli.local_state import DEFAULT_STATE_DIR, StateDir
from kubeforge.cli.local_training import TrainingFailed
from kubeforge.cli.resources import InvalidResources, load_resources

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kubeforge", description="Crawl data and train models, locally or on Kubernetes."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check resources offline")
    validate.add_argument("files", nargs="+", type=Path)
    run = commands.add_parser("run", help="run the resources of a file")
    run.add_argument("file", type=Path)
    run.add_argument(
        "--local", action="store_true", required=True, help="as processes on this machine"
    )
    run.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    status = commands.add_parser("status", help="resources on the current cluster")
    status.add_argument("name", nargs="?")
    status.add_argument("-n", "--namespace")
    status.add_argument("-A", "--all-namespaces", action="store_true")
    logs = commands.add_parser("logs", help="logs of a resource's pods on the current cluster")
    logs.add_argument("name")
    logs.add_argument("-n", "--namespace")
    logs.add_argument("--tail", type=int, default=100, help="lines per pod")
    demo = commands.add_parser("demo", help="crawl a local web and train on it, with a failure")
    demo.add_argument("--profile", choices=("gpt", "mlp"), default="gpt")
    demo.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    return parser.parse_args(argv)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _validate(files: list[Path], console: Console) -> int:
    failed = False
    for path in files:
        try:
            resources = load_resources(path)
        except InvalidResources as invalid:
            failed = True
            for problem in invalid.problems:
                console.print(problem, highlight=False, markup=False)
            continue
        for resource in resources:
            console.print(f'{path}: {resource.kind} "{resource.metadata.name}" is valid')
    return EXIT_INVALID if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    # Lines are never wrapped: a path or a field's message stays on one line for grep and logs.
    console = Console(soft_wrap=True)
    errors = Console(stderr=True, soft_wrap=True)
    if arguments.command == "validate":
        return _validate(arguments.files, console)
    if arguments.command in {"status", "logs"}:
        from kubeforge.cli.cluster import show_logs, show_status  # a cluster client only here

        if arguments.command == "status":
            return show_status(
                console, arguments.name, arguments.namespace, arguments.all_namespaces
            )
        return show_logs(console, arguments.name, arguments.namespace, arguments.tail)
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    # Ctrl-C stops the run cleanly even when started with SIGINT ignored (a background job).
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    state = StateDir(arguments.state_dir)
    try:
        if arguments.command == "demo":
            from kubeforge.cli.demo import run_demo

            report = run_demo(arguments.profile, state, os.environ, console)
        else:
            from kubeforge.cli.runner import run_local

            report = run_local(arguments.file, state, os.environ, console=console)
    except InvalidResources as invalid:
        for problem in invalid.problems:
            errors.print(problem, highlight=False, markup=False)
        errors.print("nothing was run", highlight=False)
        return EXIT_INVALID
    except (IngestFailed, TrainingFailed) as failure:
        errors.print(str(failure), highlight=False, markup=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        errors.print(
            "stopped: every process committed what it had; run the same command to resume",
            highlight=False,
        )
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)
    console.print(f"report: {report}", highlight=False)
    print(report.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
