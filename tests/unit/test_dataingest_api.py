"""The DataIngest API models and the crawler config built from them.

Pure pydantic validation; nothing is faked. The invalid specs come from `tests.dataingest_cases`,
the table the integration tier sends to a real apiserver, so local validation and the cluster
are held to the same refusals (field and message).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubeforge.api.dataingest import (
    DATA_INGEST,
    CrawlCounters,
    DataIngest,
    DataIngestReason,
    DataIngestSpec,
    DeletionPolicy,
    DropReason,
    EncryptionMode,
)
from kubeforge.crawlconfig import (
    CrawlerConfig,
    crawl_command,
    crawler_config,
    publish_command,
)
from tests.dataingest_cases import FULL_SPEC, INVALID_SPECS, MINIMAL_SPEC, InvalidSpec
from tests.unit.test_trainingjob_api import error_path


def refusals(document: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as refused:
        DataIngest.model_validate(document)
    return [(error_path(DataIngest, e), e["msg"]) for e in refused.value.errors()]


def test_minimal_spec_takes_safe_defaults() -> None:
    spec = DataIngestSpec.model_validate(MINIMAL_SPEC)
    assert spec.crawl.obey_robots_txt is True
    assert spec.crawl.allowed_networks == []
    assert spec.crawl.per_host_concurrency == 1
    assert spec.crawl.max_redirects == 5
    assert spec.crawl.max_response_bytes == 16 * 1024 * 1024
    assert spec.shards == 1
    assert spec.storage.encryption == EncryptionMode.AES256
    assert spec.storage.public_access_block is True
    assert spec.storage.deletion_policy == DeletionPolicy.RETAIN
    assert spec.processing.dedup.threshold == pytest.approx(0.8)
    assert spec.crawl.user_agent.header == "AcmeResearchBot/1.0 (+https://acme.example/bot)"


def test_full_spec_round_trips_through_the_wire_format() -> None:
    spec = DataIngestSpec.model_validate(FULL_SPEC)
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["crawl"]["allowedNetworks"] == ["10.20.0.0/16"]
    assert dumped["storage"]["credentialsSecretRef"]["accessKeyIdKey"] == "AWS_ACCESS_KEY_ID"
    assert DataIngestSpec.model_validate(dumped) == spec


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda case: case.id)
def test_invalid_spec_is_refused_naming_the_field(case: InvalidSpec) -> None:
    errors = refusals({"spec": case.spec})
    assert any(
        case.message.lower() in message.lower()
        and (case.field == path or case.field.startswith((f"{path}.", f"{path}[")))
        for path, message in errors
    ), f"expected {case.message!r} at {case.field}, got {errors}"


def test_names_and_reasons() -> None:
    assert DATA_INGEST.crd_name == "dataingests.kubeforge.dev"
    assert DATA_INGEST.short_names == ("di",)
    for reason in [*DataIngestReason, *DropReason]:
        assert reason.value.isalnum(), reason
        assert reason.value[0].isupper(), reason


def test_counters_of_shards_add_up() -> None:
    first = CrawlCounters(pages_by_status={"2xx": 3}, dropped_by_reason={"TooLarge": 1})
    second = CrawlCounters(
        pages_by_status={"2xx": 2, "4xx": 1}, documents_kept=2, duplicates_removed=1
    )
    assert first.plus(second) == CrawlCounters(
        pages_by_status={"2xx": 5, "4xx": 1},
        documents_kept=2,
        dropped_by_reason={"TooLarge": 1},
        duplicates_removed=1,
    )


def test_crawler_config_carries_the_spec_and_the_dataset_location() -> None:
    ingest = DataIngest.model_validate({"metadata": {"name": "web"}, "spec": FULL_SPEC})
    config = crawler_config(ingest, version=3)
    assert config.dataset_uri == "s3://acme-datasets/web/datasets/web/v3"
    assert config.shards == 8
    assert config.crawl == ingest.spec.crawl
    wire = config.model_dump(mode="json", by_alias=True)
    assert CrawlerConfig.model_validate(wire) == config
    assert crawl_command("/etc/kubeforge/crawler.yaml") == [
        "python",
        "-m",
        "kubeforge_crawler",
        "--config",
        "/etc/kubeforge/crawler.yaml",
    ]
    assert publish_command("c.yaml")[-2:] == ["--stage", "publish"]


def test_a_nameless_ingest_has_no_dataset() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        crawler_config(DataIngest.model_validate({"spec": MINIMAL_SPEC}), version=1)


@pytest.mark.parametrize(
    "schedule", ["@weekly", "0 3 * * 1", "*/15 * * * *", "0 0 1 jan,jul *", "30 2 * * mon-fri"]
)
def test_cron_schedules_are_accepted(schedule: str) -> None:
    spec = DataIngestSpec.model_validate({**MINIMAL_SPEC, "schedule": schedule})
    assert spec.schedule == schedule


def test_a_schedule_with_an_unknown_name_is_refused() -> None:
    # The CRD's pattern lets three letters through; the model knows the names.
    document = {
        "metadata": {"name": "web"},
        "spec": {**MINIMAL_SPEC, "schedule": "0 0 * * fri-xyz"},
    }
    assert refusals(document) == [
        ("spec.schedule", "Value error, '0 0 * * fri-xyz' is not a cron schedule")
    ]
