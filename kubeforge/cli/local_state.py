"""Where a local run keeps its state, and where its objects go.

Layout under the state directory (`.kubeforge/` unless `--state-dir` says otherwise):

    objects/BUCKET/KEY            the embedded object store: what `s3://BUCKET/KEY` holds on a
                                  cluster, as `file://` (unless S3 is used, see below)
    dataingests/NAME/             crawler config, shard progress and logs, dataset.json once
                                  published (the local stand-in for status.dataset)
    trainingjobs/NAME/            worker config, progress.json, agent logs, restarts.json
    reports/STEM/                 the report of `kubeforge run STEM.yaml`

Objects go to S3 instead when the resource names an endpoint (a DataIngest's
`spec.storage.endpoint`, a TrainingJob's `AWS_ENDPOINT_URL` in `spec.env`) or the environment
does (`AWS_ENDPOINT_URL`); credentials then come from the environment, as boto3 reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from kubeforge.api.dataingest import DataIngest
from kubeforge.api.trainingjob import TrainingJob

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
DEFAULT_STATE_DIR = Path(".kubeforge")


class PublishedDataset(BaseModel):
    """What a local DataIngest published: its dataset and the S3 endpoint it is on, if any."""

    uri: str
    documents: int
    bytes: int
    endpoint: str | None = None


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    def ingest_dir(self, name: str) -> Path:
        return self.root / "dataingests" / name

    def training_dir(self, name: str) -> Path:
        return self.root / "trainingjobs" / name

    def report_dir(self, stem: str) -> Path:
        return self.root / "reports" / stem

    def published(self, ingest_name: str) -> PublishedDataset | None:
        """The dataset a DataIngest of this name published in an earlier local run, if any."""
        path = self.ingest_dir(ingest_name) / "dataset.json"
        if not path.is_file():
            return None
        return PublishedDataset.model_validate(json.loads(path.read_text()))

    def record_published(self, ingest_name: str, dataset: PublishedDataset) -> None:
        path = self.ingest_dir(ingest_name) / "dataset.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dataset.model_dump_json(indent=2))


def local_uri(uri: str, objects: Path) -> str:
    """`s3://BUCKET/KEY` as the embedded store's `file://` location; file:// URIs unchanged."""
    parts = urlsplit(uri)
    if parts.scheme != "s3":
        return uri
    return (objects.resolve() / parts.netloc / parts.path.lstrip("/")).as_uri()


def ingest_endpoint(ingest: DataIngest, environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint a DataIngest's local run writes to; None: the embedded file store."""
    return ingest.spec.storage.endpoint or environ.get(ENDPOINT_ENV) or None


def training_endpoint(job: TrainingJob, environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint a TrainingJob's local run checkpoints to; None: the embedded file store."""
    named = {var.name: var.value for var in job.spec.env}.get(ENDPOINT_ENV)
    return named or environ.get(ENDPOINT_ENV) or None
