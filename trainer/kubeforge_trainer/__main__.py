"""`python -m kubeforge_trainer --config FILE`: the entry point torchrun starts in every worker.

The config file is the `WorkerConfig` the operator mounts (YAML or JSON). The exit status is 0
when training finished and 143 when a SIGTERM stopped it after a checkpoint, so torchrun and
the Job see an interrupted run as a failure to retry, never as success. An exception is recorded
for torchelastic (`@record`), so the launcher (`kubeforge.launch`) can put its first line in the
pod's termination message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml
from torch.distributed.elastic.multiprocessing.errors import record

from kubeforge.plan import WorkerConfig
from kubeforge_trainer.distributed import init_from_environment
from kubeforge_trainer.trainer import Trainer

STOPPED_EXIT_CODE = 128 + 15


@record
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubeforge_trainer", description="Train a kubeforge built-in model."
    )
    parser.add_argument("--config", type=Path, required=True, help="the worker config file")
    arguments = parser.parse_args(argv)
    config = WorkerConfig.model_validate(yaml.safe_load(arguments.config.read_text()))
    group = init_from_environment()
    logging.basicConfig(
        level=logging.INFO if group.is_main else logging.WARNING,
        format=f"%(asctime)s rank {group.rank} %(levelname)s %(name)s: %(message)s",
    )
    trainer = Trainer(config, group)
    try:
        completed = trainer.train()
    finally:
        trainer.close()
        group.close()
    return 0 if completed else STOPPED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
