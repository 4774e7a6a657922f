"""The generated DataIngest CRD on a real apiserver: it is accepted, and it refuses what the
models refuse.

Real: kube-apiserver (structural schema, defaulting, CEL rules such as isCIDR) with the CRDs
from manifests/crds. No operator runs; these tests only create objects.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeforge.api.dataingest import DATA_INGEST, DataIngest
from tests.conftest import Rig
from tests.dataingest_cases import FULL_SPEC, INVALID_SPECS, MINIMAL_SPEC, InvalidSpec
from tests.kube import kubeforge_status, status_message

pytestmark = pytest.mark.integration


def create(api_client: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        DATA_INGEST.group,
        DATA_INGEST.version,
        namespace,
        DATA_INGEST.plural,
        {
            "apiVersion": DATA_INGEST.api_version,
            "kind": DATA_INGEST.kind,
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def test_minimal_and_full_specs_are_accepted_with_defaults(
    api_client: client.ApiClient, crds: list[str], namespace: str
) -> None:
    minimal = create(api_client, namespace, "minimal", MINIMAL_SPEC)
    create(api_client, namespace, "full", FULL_SPEC)
    spec = minimal["spec"]
    assert spec["shards"] == 1
    assert spec["crawl"]["obeyRobotsTxt"] is True
    assert spec["processing"]["dedup"]["threshold"] == 0.8
    assert spec["storage"]["deletionPolicy"] == "Retain"
    # What the apiserver stored (defaults applied) is what the models read.
    assert DataIngest.model_validate(minimal).spec.crawl.max_redirects == 5


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda case: case.id)
def test_invalid_spec_is_refused_naming_the_field(
    api_client: client.ApiClient, crds: list[str], namespace: str, case: InvalidSpec
) -> None:
    with pytest.raises(ApiException) as refused:
        create(api_client, namespace, "invalid", case.spec)
    assert refused.value.status == 422
    message = status_message(refused.value)
    assert case.field in message, message
    assert case.message.lower() in message.lower(), message


def test_kubeforge_status_lists_the_drops_by_reason_each_filter_rule_apart(
    rig: Rig, api_client: client.ApiClient, crds: list[str], namespace: str
) -> None:
    create(api_client, namespace, "filtered", MINIMAL_SPEC)
    dropped = {"GopherRepetition:dup_line_frac": 1200, "Language:low_score": 35, "OffScope": 7}
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        DATA_INGEST.group,
        DATA_INGEST.version,
        namespace,
        DATA_INGEST.plural,
        "filtered",
        {"status": {"counters": {"droppedByReason": dropped}}},
    )
    shown = kubeforge_status(rig.kubeconfig, namespace, "filtered")
    # Table rows read "│ REASON │ COUNT │"; the most frequent reason comes first.
    rows = [line.split() for line in shown.splitlines()]
    assert [row[1] for row in rows if len(row) > 1 and row[1] in dropped] == list(dropped), shown
    assert "1,200" in shown
