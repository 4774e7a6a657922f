"""Prometheus metrics of DataIngests, from the status each reconcile decided.

Counted when scraped, from the last decided status of every DataIngest the operator knows:

- `kubeforge_dataingests{phase}`: DataIngests by phase;
- `kubeforge_dataingest_pages{namespace,dataingest,status_class}`: responses by status class;
- `kubeforge_dataingest_bytes_fetched{namespace,dataingest}`;
- `kubeforge_dataingest_documents{namespace,dataingest}`: documents kept so far;
- `kubeforge_dataingest_dropped{namespace,dataingest,reason}`: URLs and documents dropped;
- `kubeforge_dataingest_duplicates_removed{namespace,dataingest}`;
- `kubeforge_dataingest_dataset_version{namespace,dataingest}`: the latest published version.

These are gauges (a status is a level, and a new crawl starts its counters again); served with the
operator's other metrics by `prometheus_client`.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from kubeforge.api.dataingest import DataIngestPhase, DataIngestStatus

_statuses: dict[tuple[str, str], DataIngestStatus] = {}
_OBJECT = ["namespace", "dataingest"]


class _IngestCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        phases = GaugeMetricFamily(
            "kubeforge_dataingests",
            "DataIngests known to the operator, by phase.",
            labels=["phase"],
        )
        tally = Tally(status.phase for status in _statuses.values())
        for phase in DataIngestPhase:
            phases.add_metric([phase.value], tally.get(phase, 0))
        yield phases
        pages = GaugeMetricFamily(
            "kubeforge_dataingest_pages",
            "Responses the crawl received, by status class.",
            labels=[*_OBJECT, "status_class"],
        )
        fetched = GaugeMetricFamily(
            "kubeforge_dataingest_bytes_fetched", "Response bytes received.", labels=_OBJECT
        )
        documents = GaugeMetricFamily(
            "kubeforge_dataingest_documents", "Documents kept so far.", labels=_OBJECT
        )
        dropped = GaugeMetricFamily(
            "kubeforge_dataingest_dropped",
            "URLs and documents dropped, by reason.",
            labels=[*_OBJECT, "reason"],
        )
        duplicates = GaugeMetricFamily(
            "kubeforge_dataingest_duplicates_removed",
            "Exact and near duplicates removed.",
            labels=_OBJECT,
        )
        version = GaugeMetricFamily(
            "kubeforge_dataingest_dataset_version",
            "The latest published dataset version.",
            labels=_OBJECT,
        )
        for (namespace, name), status in sorted(_statuses.items()):
            counters, key = status.counters, [namespace, name]
            for status_class, count in counters.pages_by_status.items():
                pages.add_metric([*key, status_class], count)
            for reason, count in counters.dropped_by_reason.items():
                dropped.add_metric([*key, reason], count)
            fetched.add_metric(key, counters.bytes_fetched)
            documents.add_metric(key, counters.documents_kept)
            duplicates.add_metric(key, counters.duplicates_removed)
            if status.dataset is not None:
                version.add_metric(key, status.dataset.version)
        yield from (pages, fetched, documents, dropped, duplicates, version)


REGISTRY.register(_IngestCollector())


def observe(key: tuple[str, str], status: DataIngestStatus) -> None:
    """Records the status one reconcile decided."""
    _statuses[key] = status


def forget(key: tuple[str, str]) -> None:
    """Drops a DataIngest that is gone."""
    _statuses.pop(key, None)
