"""The progress contract: how rank 0 of a trainer reports progress, and how the operator reads it.

Rank 0 writes a `ProgressStatus` (the model of `status.progress`) as JSON under the key
`progress.json` of one ConfigMap, which the operator creates per TrainingJob and watches; the
operator validates it and publishes it in the TrainingJob's status. The trainer's ServiceAccount
may `get` and `patch` that one ConfigMap (a Role with `resourceNames`) and nothing else, so a
worker can neither touch the TrainingJob nor another job's progress. Locally (`kubeforge run
--local`) the same report goes to a file, written at most every second instead of every 10 s, and
each crawler shard writes its `CrawlCounters` to its own file at every commit. See
docs/progress-contract.md.

Environment the operator sets in every worker:
  KUBEFORGE_PROGRESS_CONFIGMAP  name of the ConfigMap (namespace: POD_NAMESPACE, downward API)
  KUBEFORGE_PROGRESS_FILE       instead, a local file path (the local runner)
The trainer needs only the standard library to report: no Kubernetes client in worker images.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ValidationError

from kubeforge.api.trainingjob import ProgressStatus

PROGRESS_KEY = "progress.json"
CONFIGMAP_ENV = "KUBEFORGE_PROGRESS_CONFIGMAP"
NAMESPACE_ENV = "POD_NAMESPACE"
FILE_ENV = "KUBEFORGE_PROGRESS_FILE"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def progress_configmap_name(job_name: str) -> str:
    """The ConfigMap a TrainingJob's rank 0 reports to."""
    return f"{job_name}-progress"


def encode(progress: ProgressStatus) -> str:
    return progress.model_dump_json(by_alias=True, exclude_none=True)


def decode(data: dict[str, str] | None) -> ProgressStatus | None:
    """The report in a ConfigMap's data, or None when there is none or it is not valid."""
    raw = (data or {}).get(PROGRESS_KEY)
    if not raw:
        return None
    try:
        return ProgressStatus.model_validate_json(raw)
    except ValidationError:
        return None


class ProgressSink(Protocol):
    """Where a report goes."""

    @property
    def min_interval(self) -> float:
        """Least seconds between two reports that are not forced."""
        ...

    def write(self, progress: ProgressStatus) -> None: ...


@dataclass(frozen=True)
class FileSink:
    """Writes the report (or any model, e.g. a crawler shard's counters) to a file atomically:
    a reader never sees half a report."""

    path: Path
    min_interval: float = 1.0

    def write(self, progress: BaseModel) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=self.path.parent, prefix=".progress-", delete=False
        ) as tmp:
            tmp.write(progress.model_dump_json(by_alias=True, exclude_none=True))
        Path(tmp.name).replace(self.path)


@dataclass(frozen=True)
class ConfigMapSink:
    """Merge-patches the report into the progress ConfigMap with the pod's own token."""

    api_url: str
    namespace: str
    name: str
    token: str
    ca_file: Path | None = None
    min_interval: float = 10.0

    @classmethod
    def in_cluster(cls, namespace: str, name: str) -> ConfigMapSink:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return cls(
            api_url=f"https://{host}:{port}",
            namespace=namespace,
            name=name,
            token=(SERVICE_ACCOUNT_DIR / "token").read_text().strip(),
            ca_file=SERVICE_ACCOUNT_DIR / "ca.crt",
        )

    def write(self, progress: ProgressStatus) -> None:
        body = json.dumps({"data": {PROGRESS_KEY: encode(progress)}}).encode()
        request = urllib.request.Request(  # noqa: S310 (the URL is the apiserver's, https)
            f"{self.api_url}/api/v1/namespaces/{self.namespace}/configmaps/{self.name}",
            data=body,
            method="PATCH",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        with urllib.request.urlopen(request, timeout=10, context=context):  # noqa: S310
            pass


def sink_from_env() -> ProgressSink | None:
    """The sink the environment names, or None when this process should not report."""
    if path := os.environ.get(FILE_ENV):
        return FileSink(Path(path))
    if name := os.environ.get(CONFIGMAP_ENV):
        return ConfigMapSink.in_cluster(os.environ[NAMESPACE_ENV], name)
    return None


class ProgressReporter:
    """Sends reports at most every `min_interval` seconds (the sink's unless given), unless
    forced (checkpoint, end)."""

    def __init__(self, sink: ProgressSink | None, min_interval: float | None = None) -> None:
        self.sink = sink
        if min_interval is None:
            min_interval = sink.min_interval if sink is not None else 0.0
        self.min_interval = min_interval
        self._last_sent = float("-inf")
        self._lock = threading.Lock()

    def report(self, progress: ProgressStatus, *, force: bool = False) -> bool:
        """Sends the report when due; returns whether it was sent. Failures never stop training.
        Thread-safe: a wait for the object store is reported from the thread that waits."""
        with self._lock:
            now = time.monotonic()
            if self.sink is None or (not force and now - self._last_sent < self.min_interval):
                return False
            try:
                self.sink.write(progress)
            except OSError:
                return False  # the apiserver or disk is briefly unavailable: the next one retries
            self._last_sent = now
            return True
