"""The metrics every resource shares: its count by phase, from the last status each reconcile
decided, counted when Prometheus scrapes.

A resource's metrics module makes one `DecidedStatuses`, with the families of its own that it
counts from the same statuses, and feeds it from its reconcile (`observe`, `forget`).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from kubeforge_operator.base.reconcile import Key


class Phased(Protocol):
    @property
    def phase(self) -> StrEnum | None: ...


StatusT = TypeVar("StatusT", bound=Phased)


class DecidedStatuses(Collector, Generic[StatusT]):
    """The last status decided for every resource of one kind, registered with Prometheus.

    At each scrape it yields `metric{phase}`, how many resources are in each of `phases` (a
    resource not yet given a phase counts in none), then what `families` counts from the same
    statuses."""

    def __init__(
        self,
        metric: str,
        kind: str,
        phases: Iterable[StrEnum],
        families: Callable[[Mapping[Key, StatusT]], Iterable[Metric]],
    ) -> None:
        self.metric = metric
        self.kind = kind
        self.phases = list(phases)
        self.families = families
        self.statuses: dict[Key, StatusT] = {}
        REGISTRY.register(self)

    def observe(self, key: Key, status: StatusT) -> None:
        """Records the status one reconcile decided."""
        self.statuses[key] = status

    def forget(self, key: Key) -> None:
        """Drops a resource that is gone."""
        self.statuses.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        statuses = dict(self.statuses)
        family = GaugeMetricFamily(
            self.metric, f"{self.kind}s known to the operator, by phase.", labels=["phase"]
        )
        tally = Tally(status.phase for status in statuses.values())
        for phase in self.phases:
            family.add_metric([phase.value], tally.get(phase, 0))
        yield family
        yield from self.families(statuses)
