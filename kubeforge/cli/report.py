"""The report of a local run: Markdown with PNG plots, in `reports/STEM/` of the state directory.

Per DataIngest: documents, bytes, pages by status, what was dropped and why, duplicates removed
(within shards and across them), per shard. Per TrainingJob: the loss curve (with a language
model's validation loss and bits per byte, when it has a held-out split), the MLP's test
accuracy, throughput, goodput and the time each restart lost, restarts with their causes, the
checkpoints kept, the final artifacts and,
for a GPT, a few texts it writes (`python -m kubeforge_trainer.generate`, run as a program so
the core never imports torch). Everything is read back from storage, so the report describes
what a rerun would resume from, not what this process remembers.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from kubeforge.api.trainingjob import ModelArchitecture
from kubeforge.cli.goodput_text import restart_lines, summary
from kubeforge.cli.local_state import PublishedDataset
from kubeforge.cli.local_training import (
    FINAL_METRICS,
    LocalTrainingPlan,
    read_goodput,
    read_restarts,
)
from kubeforge.dataset import Manifest, read_manifest, total_counters
from kubeforge.storage import ObjectNotFound, open_store

SAMPLE_PROMPTS = ("The ", "Return the ", "This module ")
GENERATE_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class IngestResult:
    name: str
    dataset: PublishedDataset


@dataclass(frozen=True)
class TrainingResult:
    local: LocalTrainingPlan
    wall_seconds: float


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ingest_section(result: IngestResult) -> list[str]:
    manifest: Manifest = read_manifest(open_store(result.dataset.uri))
    counters = total_counters(manifest)
    statuses = ", ".join(f"{key}: {count}" for key, count in counters.pages_by_status.items())
    lines = [
        f"## DataIngest `{result.name}`",
        "",
        f"Dataset: `{result.dataset.uri}`",
        "",
        "| | |",
        "|---|---|",
        f"| documents | {manifest.documents:,} |",
        f"| bytes (compressed parts) | {manifest.bytes:,} |",
        f"| bytes fetched | {counters.bytes_fetched:,} |",
        f"| pages by status | {statuses} |",
        f"| duplicates removed (in shards + across shards) | {counters.duplicates_removed:,} "
        f"({manifest.duplicates_removed:,} across shards) |",
        f"| shards | {len(manifest.shards)} |",
        "",
        "Dropped, by reason:",
        "",
        "| reason | count |",
        "|---|---|",
    ]
    lines += [f"| {reason} | {count:,} |" for reason, count in counters.dropped_by_reason.items()]
    lines += ["", "| shard | documents | pages | kept | dropped |", "|---|---|---|---|---|"]
    for shard in manifest.shards:
        c = shard.counters
        lines.append(
            f"| {shard.shard} | {shard.documents:,} | {sum(c.pages_by_status.values()):,} | "
            f"{c.documents_kept:,} | {sum(c.dropped_by_reason.values()):,} |"
        )
    return [*lines, ""]


def _plot(
    name: str,
    history: list[dict[str, Any]],
    validations: list[dict[str, Any]],
    directory: Path,
) -> str:
    """One figure per job: the training loss (and the validation loss beside it), validation
    bits per byte, test accuracy (each when measured) and throughput by step."""
    panels: list[tuple[str, str]] = [("loss", "loss")]
    if validations:
        panels.append(("bitsPerByte", "validation bits per byte"))
    if any("testAccuracy" in entry for entry in history):
        panels.append(("testAccuracy", "test accuracy"))
    rate = "tokensPerSecond" if any("tokensPerSecond" in e for e in history) else "samplesPerSecond"
    panels.append((rate, "tokens/s" if rate == "tokensPerSecond" else "samples/s"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for axis, (key, label) in zip(axes[0], panels, strict=True):
        series = [("validation", validations)] if key == "bitsPerByte" else [("training", history)]
        if key == "loss" and validations:
            series.append(("validation", validations))
        for legend, entries in series:
            points = [(e["step"], e[key]) for e in entries if key in e]
            axis.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=legend)
        if len(series) > 1:
            axis.legend()
        axis.set_xlabel("step")
        axis.set_title(label)
        axis.grid(alpha=0.3)
    figure.suptitle(f"TrainingJob {name}")
    figure.tight_layout()
    file = f"{name}-training.png"
    figure.savefig(directory / file, dpi=100)
    plt.close(figure)
    return file


def generate_samples(checkpoint_uri: str, env: dict[str, str]) -> list[dict[str, str]]:
    """A few continuations of SAMPLE_PROMPTS by a trained GPT (empty if it cannot run)."""
    command = [sys.executable, "-m", "kubeforge_trainer.generate", "--model", checkpoint_uri]
    for prompt in SAMPLE_PROMPTS:
        command += ["--prompt", prompt]
    finished = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=GENERATE_TIMEOUT_SECONDS
    )
    if finished.returncode != 0:
        return []
    return [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]


def _training_section(result: TrainingResult, directory: Path) -> list[str]:
    local = result.local
    name = local.job.metadata.name or ""
    lines = [f"## TrainingJob `{name}`", ""]
    uri = local.checkpoint_uri
    metrics: dict[str, Any] = {}
    checkpoints: list[str] = []
    if uri is not None:
        store = open_store(uri)
        with contextlib.suppress(ObjectNotFound):
            metrics = json.loads(store.get(FINAL_METRICS))
        checkpoints = [key.split("/")[0] for key in store.list("step-") if key.endswith(".json")]
    history: list[dict[str, Any]] = metrics.get("history", [])
    validations: list[dict[str, Any]] = metrics.get("validation", [])
    final: dict[str, Any] = metrics.get("final", {})
    plan = local.plan
    lines += [
        "| | |",
        "|---|---|",
        f"| workers | {plan.replicas} agents x {plan.nproc_per_node} processes |",
        f"| steps | {metrics.get('steps', 'not finished')} |",
        f"| wall time of this run | {result.wall_seconds:.0f} s |",
    ]
    for key, label in (
        ("loss", "final loss"),
        ("testAccuracy", "test accuracy"),
        ("samplesPerSecond", "samples/s"),
        ("tokensPerSecond", "tokens/s"),
    ):
        if key in final:
            lines.append(f"| {label} | {_number(float(final[key]))} |")
    if validations:
        held_out = validations[-1]
        lines.append(
            f"| validation at step {held_out['step']} | loss {held_out['loss']:.3f}, perplexity "
            f"{_number(held_out['perplexity'])}, {held_out['bitsPerByte']:.3f} bits per byte |"
        )
    if uri is not None:
        lines.append(f"| final model | `{uri}/final/model.pt` |")
        trainer = local.job.spec.trainer
        if trainer is not None and trainer.model.architecture == ModelArchitecture.LLAMA:
            lines.append(f"| Hugging Face model | `{uri}/final/hf` (transformers loads it) |")
        lines.append(f"| checkpoints kept | {', '.join(checkpoints) or 'none'} |")
    lines.append("")
    if history:
        lines += [f"![training of {name}]({_plot(name, history, validations, directory)})", ""]
    goodput = read_goodput(local.directory)
    lines += [f"Latest run's {summary(goodput)}", ""]
    lines += [f"- {line}" for line in restart_lines(goodput)]
    restarts = read_restarts(local.directory)
    lines += ["", f"Restarts of the worker group (all local runs): {len(restarts)}", ""]
    for restart in restarts:
        lines.append(f"- {restart.time:%Y-%m-%d %H:%M:%S} UTC: {restart.describe()}")
    lines.append("")
    trainer = local.job.spec.trainer
    language_model = trainer is not None and trainer.model.architecture != ModelArchitecture.MLP
    if uri is not None and language_model and metrics:
        lines += ["Texts the model writes (prompt in bold):", ""]
        for sample in generate_samples(uri, local.env):
            written = " ".join(sample["text"].split())
            lines += [f"> **{sample['prompt'].strip()}** {written}", ""]
    return lines


def write_report(
    title: str,
    directory: Path,
    ingests: list[IngestResult],
    trainings: list[TrainingResult],
) -> Path:
    """Writes report.md (and its plots) into `directory`; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# kubeforge local run: {title}", ""]
    for ingest in ingests:
        lines += _ingest_section(ingest)
    for training in trainings:
        lines += _training_section(training, directory)
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
