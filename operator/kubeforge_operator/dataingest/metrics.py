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

from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

from kubeforge.api.dataingest import DataIngestPhase, DataIngestStatus
from kubeforge_operator.base.metrics import DecidedStatuses
from kubeforge_operator.base.reconcile import Key

_OBJECT = ["namespace", "dataingest"]


def _crawl_families(statuses: Mapping[Key, DataIngestStatus]) -> Iterator[Metric]:
    """The crawl's counters and the published version of each DataIngest."""
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
    for (namespace, name), status in sorted(statuses.items()):
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


_STATUSES = DecidedStatuses[DataIngestStatus](
    "kubeforge_dataingests", "DataIngest", DataIngestPhase, _crawl_families
)
observe = _STATUSES.observe
forget = _STATUSES.forget
