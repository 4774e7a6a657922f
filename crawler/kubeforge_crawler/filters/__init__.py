"""The document filters, in FineWeb's order: URL blocklists, language, Gopher repetition, Gopher
quality, C4, FineWeb (`processing.filters`).

Each filter looks at a `Document` and returns None to keep it or the reason it is dropped, named
`Filter:rule` after the one rule that tripped (datatrove's rule names, so the counts compare with
its stats); the shard counts each reason apart. A filter's rules are separate checks run in the
order datatrove runs them, so a document is counted under the first rule it fails.
"""

from __future__ import annotations

from kubeforge.api.dataingest import ProcessingSpec
from kubeforge_crawler.filters.base import Document, Filter
from kubeforge_crawler.filters.c4 import C4Filter
from kubeforge_crawler.filters.fineweb import FineWebQualityFilter
from kubeforge_crawler.filters.gopher_quality import GopherQualityFilter
from kubeforge_crawler.filters.gopher_repetition import GopherRepetitionFilter
from kubeforge_crawler.filters.language import LanguageFilter, identify_language
from kubeforge_crawler.filters.url_blocklist import UrlBlocklistFilter

__all__ = ["Document", "Filter", "document_filters", "identify_language"]


def document_filters(processing: ProcessingSpec) -> list[Filter]:
    """The enabled filters of a DataIngest's processing, in the order they run."""
    settings = processing.filters
    filters: list[Filter] = []
    if settings.url.enabled:
        filters.append(UrlBlocklistFilter(settings.url))
    if settings.language.enabled:
        filters.append(LanguageFilter(processing.languages, settings.language))
    if settings.gopher_repetition.enabled:
        filters.append(GopherRepetitionFilter(settings.gopher_repetition))
    if settings.gopher_quality.enabled:
        filters.append(GopherQualityFilter(settings.gopher_quality))
    if settings.c4.enabled:
        filters.append(C4Filter(settings.c4))
    if settings.fineweb.enabled:
        filters.append(FineWebQualityFilter(settings.fineweb))
    return filters
