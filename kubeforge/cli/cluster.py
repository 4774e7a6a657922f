"""`kubeforge status` and `kubeforge logs`: TrainingJobs and DataIngests on the current cluster.

Uses the current kubeconfig (KUBECONFIG, or ~/.kube/config, or the in-cluster account) through
lightkube. Status shows what the operator wrote, read with the API models: phase, the Ready
condition's reason and message, progress (step, loss, throughput, last checkpoint), goodput
(measured again at this clock) and restarts with their causes; `status NAME` adds every
condition, the restart history and what each restart cost (time lost, time to first step). Logs
are those of the resource's pods, found by the labels the operator puts on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, Client, ConfigError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod
from rich.console import Console
from rich.table import Table

from kubeforge.api.dataingest import DATA_INGEST, DataIngest
from kubeforge.api.meta import GROUP, VERSION, find_condition
from kubeforge.api.trainingjob import TRAINING_JOB, TrainingJob
from kubeforge.cli.goodput_text import restart_lines, summary
from kubeforge.goodput import measure_status

TrainingJobs = create_namespaced_resource(GROUP, VERSION, TRAINING_JOB.kind, TRAINING_JOB.plural)
DataIngests = create_namespaced_resource(GROUP, VERSION, DATA_INGEST.kind, DATA_INGEST.plural)
POD_LABELS = {
    TRAINING_JOB.kind: f"{GROUP}/training-job",
    DATA_INGEST.kind: f"{GROUP}/data-ingest",
}
"""The label the operator puts on a resource's pods, by kind (its value is the name)."""

Resource = TrainingJob | DataIngest


def _client(namespace: str | None) -> Client:
    return Client(namespace=namespace) if namespace else Client()


def _list(client: Client, namespace: str | None, name: str | None) -> list[Resource]:
    found: list[Resource] = []
    for kind, model in ((TrainingJobs, TrainingJob), (DataIngests, DataIngest)):
        for item in client.list(kind, namespace=namespace):
            document: dict[str, Any] = item.to_dict()  # type: ignore[no-untyped-call]
            if name is None or document["metadata"]["name"] == name:
                found.append(model.model_validate(document))
    return found


def _ready(resource: Resource) -> str:
    ready = find_condition(resource.status.conditions, "Ready")
    if ready is None:
        return "-"
    return f"{ready.status.value} ({ready.reason})"


def _progress(resource: Resource) -> str:
    if isinstance(resource, DataIngest):
        counters = resource.status.counters
        pages = sum(counters.pages_by_status.values())
        return f"{pages} pages, {counters.documents_kept} docs kept"
    progress = resource.status.progress
    if progress is None or progress.step is None:
        return "-"
    text = f"step {progress.step}/{progress.total_steps or '?'}"
    if progress.loss is not None:
        text += f", loss {progress.loss:.3f}"
    if progress.validation is not None:
        text += f", val loss {progress.validation.loss:.3f}"
    if progress.samples_per_second is not None:
        text += f", {progress.samples_per_second:,.0f} samples/s"
    return text


def _goodput(resource: Resource) -> str:
    if isinstance(resource, DataIngest):
        return "-"
    goodput = measure_status(resource.status, datetime.now(UTC))
    return "-" if goodput is None or goodput.ratio is None else f"{goodput.ratio:.1%}"


def _restarts(resource: Resource) -> str:
    if isinstance(resource, DataIngest):
        return "-"
    restarts = resource.status.restarts
    text = f"{restarts.count}"
    if restarts.disruptions:
        text += f" (+{restarts.disruptions} disruptions)"
    if restarts.history:
        text += f", last: {restarts.history[-1].cause.value}"
    return text


def show_status(
    console: Console, name: str | None, namespace: str | None, all_namespaces: bool
) -> int:
    try:
        client = _client(namespace)
        resources = _list(client, "*" if all_namespaces else namespace, name)
    except (ApiError, ConfigError, OSError) as error:
        console.print(f"cannot read the cluster: {error}", highlight=False, markup=False)
        return 1
    if not resources:
        console.print("no TrainingJobs or DataIngests found")
        return 1 if name else 0
    table = Table("NAMESPACE", "KIND", "NAME", "PHASE", "READY", "PROGRESS", "GOODPUT", "RESTARTS")
    for resource in resources:
        phase = resource.status.phase
        table.add_row(
            resource.metadata.namespace or "",
            resource.kind,
            resource.metadata.name or "",
            phase.value if phase else "-",
            _ready(resource),
            _progress(resource),
            _goodput(resource),
            _restarts(resource),
        )
    console.print(table)
    if name is not None:
        for resource in resources:
            _details(console, resource)
    return 0


def _details(console: Console, resource: Resource) -> None:
    conditions = Table("TYPE", "STATUS", "REASON", "MESSAGE", title=f"{resource.kind} conditions")
    for condition in resource.status.conditions:
        conditions.add_row(
            condition.type, condition.status.value, condition.reason, condition.message
        )
    console.print(conditions)
    if isinstance(resource, DataIngest):
        _drops(console, resource)
    if isinstance(resource, TrainingJob):
        progress = resource.status.progress
        if progress is not None and progress.last_checkpoint is not None:
            checkpoint = progress.last_checkpoint
            console.print(f"last checkpoint: step {checkpoint.step} at {checkpoint.uri}")
        if progress is not None and progress.stage is not None and progress.stage_since:
            console.print(f"stage: {progress.stage} since {progress.stage_since:%Y-%m-%d %H:%M:%S}")
        if progress is not None and progress.validation is not None:
            held_out = progress.validation
            console.print(
                f"validation at step {held_out.step}: loss {held_out.loss:.4f}, perplexity "
                f"{held_out.perplexity:.2f}, {held_out.bits_per_byte:.4f} bits per byte "
                f"({held_out.tokens:,} held-out tokens)",
                highlight=False,
            )
        if progress is not None and progress.storage_waiting_since is not None:
            since = progress.storage_waiting_since
            console.print(f"waiting for the object store since {since:%Y-%m-%d %H:%M:%S}")
        for restart in resource.status.restarts.history:
            charged = "charged" if restart.charged else "not charged"
            detail = f"exit code {restart.exit_code}" if restart.exit_code is not None else ""
            console.print(
                f"restart at {restart.time:%Y-%m-%d %H:%M:%S}: {restart.cause.value} "
                f"({charged}) {restart.pod or ''} {detail} {restart.reason or ''}".rstrip(),
                highlight=False,
            )
        goodput = measure_status(resource.status, datetime.now(UTC))
        console.print(summary(goodput), highlight=False)
        for line in restart_lines(goodput):
            console.print(line, highlight=False)


def _drops(console: Console, ingest: DataIngest) -> None:
    """What the DataIngest did not keep, by reason (each filter rule apart), most first."""
    dropped = ingest.status.counters.dropped_by_reason
    if not dropped:
        return
    table = Table("REASON", "DROPPED", title="DataIngest drops by reason")
    for reason, count in sorted(dropped.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(reason, f"{count:,}")
    console.print(table)


def show_logs(console: Console, name: str, namespace: str | None, tail: int) -> int:
    try:
        client = _client(namespace)
        resources = _list(client, namespace, name)
        if not resources:
            console.print(f"no TrainingJob or DataIngest named {name}")
            return 1
        for resource in resources:
            selector: dict[str, Any] = {POD_LABELS[resource.kind]: name}
            for pod in client.list(Pod, namespace=resource.metadata.namespace, labels=selector):
                pod_name = pod.metadata.name if pod.metadata else ""
                console.rule(f"pod {pod_name}")
                try:
                    for line in client.log(
                        pod_name or "", namespace=resource.metadata.namespace, tail_lines=tail
                    ):
                        console.print(line, end="", highlight=False, markup=False)
                except ApiError as error:
                    console.print(f"(no logs: {error.status.message})", highlight=False)
    except (ApiError, ConfigError, OSError) as error:
        console.print(f"cannot read the cluster: {error}", highlight=False, markup=False)
        return 1
    return 0
