"""What a person watching `kubeforge run --local` sees: rich progress bars and event lines.

One bar per crawler shard (pages fetched against its page budget, documents kept, dropped) and
one per TrainingJob (step against total steps, loss, validation bits per byte, throughput, time
remaining), fed from the
progress files the workloads write (`kubeforge.progress`). Event lines (started, restarted,
published, finished) are printed above the bars, so the scrollback tells the story of the run.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kubeforge.api.dataingest import CrawlCounters
from kubeforge.api.trainingjob import ProgressStatus, TrainerStage


class RunView:
    """The live display of one local run; use as a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )

    def __enter__(self) -> RunView:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def event(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    def add_shard(self, ingest: str, shard: int, page_budget: int) -> TaskID:
        return self.progress.add_task(
            f"{ingest} crawl shard {shard}", total=page_budget, detail="starting"
        )

    def update_shard(self, task: TaskID, counters: CrawlCounters, *, done: bool = False) -> None:
        pages = sum(counters.pages_by_status.values())
        dropped = sum(counters.dropped_by_reason.values())
        detail = f"{counters.documents_kept} docs kept, {dropped} dropped"
        total = pages if done else None
        self.progress.update(task, completed=pages, detail=detail, total=total)

    def add_training(self, job: str, total_steps: int) -> TaskID:
        return self.progress.add_task(f"{job} train", total=total_steps, detail="starting")

    def update_training(self, task: TaskID, status: ProgressStatus) -> None:
        parts = []
        if status.loss is not None:
            parts.append(f"loss {status.loss:.3f}")
        if status.validation is not None:
            parts.append(f"val {status.validation.bits_per_byte:.3f} bpb")
        if status.tokens_per_second is not None:
            parts.append(f"{status.tokens_per_second:,.0f} tok/s")
        elif status.samples_per_second is not None:
            parts.append(f"{status.samples_per_second:,.0f} samples/s")
        if status.last_checkpoint is not None:
            parts.append(f"ckpt @{status.last_checkpoint.step}")
        if status.storage_waiting_since is not None:
            parts.append(f"waiting for storage since {status.storage_waiting_since:%H:%M:%S}")
        if status.stage not in {None, TrainerStage.TRAINING}:
            parts.insert(0, str(status.stage))
        self.progress.update(task, completed=status.step or 0, detail=", ".join(parts))
