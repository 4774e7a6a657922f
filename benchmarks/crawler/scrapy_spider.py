"""`python -m benchmarks.crawler.scrapy_spider SETTINGS.json`: the peer crawler, Scrapy.

A spider written the way a Scrapy user writes one for this job: start from the seeds, stay in
the allowed domains, follow every link (`LinkExtractor`), and extract each page's title and body
text with XPath (script and style left out) into a gzip-compressed JSON-lines feed. Its settings
come from the benchmark, set to match the kubeforge crawl: concurrency per host and in all, no
delay, robots.txt obeyed, the same user agent, depth, timeouts, size limit and retries.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from scrapy.linkextractors import LinkExtractor

TEXT = "//body//text()[not(ancestor::script or ancestor::style)]"


class PagesSpider(scrapy.Spider):
    name = "pages"

    def __init__(self, seeds: list[str], domains: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = seeds
        self.allowed_domains = domains
        # Scrapy's offsite filter keeps the crawl in `allowed_domains` (LinkExtractor's own
        # allow_domains compares host:port, so it never matches a URL with a port).
        self.links = LinkExtractor()

    def parse(self, response: Response, **_: Any) -> Iterator[Any]:
        lines = (line.strip() for line in response.xpath(TEXT).getall())
        yield {
            "url": response.url,
            "title": response.xpath("//title/text()").get(),
            "text": "\n".join(line for line in lines if line),
        }
        for link in self.links.extract_links(response):
            yield response.follow(link, callback=self.parse)


def main() -> None:
    settings: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    seeds, domains = settings.pop("SEEDS"), settings.pop("DOMAINS")
    process = CrawlerProcess(settings)
    process.crawl(PagesSpider, seeds=seeds, domains=domains)
    process.start()


if __name__ == "__main__":
    main()
