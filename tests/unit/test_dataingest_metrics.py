"""DataIngest metrics: what a scrape of the real Prometheus registry shows after reconciles
decided a status, and after a DataIngest is gone."""

from __future__ import annotations

from prometheus_client import REGISTRY

from kubeforge.api.dataingest import (
    CrawlCounters,
    DataIngestPhase,
    DataIngestStatus,
    DatasetStatus,
)
from kubeforge_operator.dataingest import metrics

KEY = ("metrics-test", "docs")


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def succeeded_count() -> float:
    return sample("kubeforge_dataingests", phase="Succeeded") or 0.0


def test_counters_phase_and_version_are_exported_until_the_ingest_is_gone() -> None:
    before = succeeded_count()
    status = DataIngestStatus(
        phase=DataIngestPhase.SUCCEEDED,
        counters=CrawlCounters(
            pages_by_status={"2xx": 40, "4xx": 2},
            bytes_fetched=123456,
            documents_kept=30,
            dropped_by_reason={"RobotsDisallowed": 3, "NearDuplicate": 4},
            duplicates_removed=4,
        ),
        dataset=DatasetStatus(
            uri="s3://b/datasets/docs/v1", version=1, documents=30, bytes=9, manifest="m"
        ),
    )
    metrics.observe(KEY, status)
    labels = {"namespace": KEY[0], "dataingest": KEY[1]}
    assert succeeded_count() == before + 1
    assert sample("kubeforge_dataingest_pages", **labels, status_class="2xx") == 40
    assert sample("kubeforge_dataingest_dropped", **labels, reason="RobotsDisallowed") == 3
    assert sample("kubeforge_dataingest_documents", **labels) == 30
    assert sample("kubeforge_dataingest_bytes_fetched", **labels) == 123456
    assert sample("kubeforge_dataingest_duplicates_removed", **labels) == 4
    assert sample("kubeforge_dataingest_dataset_version", **labels) == 1
    metrics.forget(KEY)
    assert succeeded_count() == before
    assert sample("kubeforge_dataingest_documents", **labels) is None
