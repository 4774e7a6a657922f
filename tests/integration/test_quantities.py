"""Resource quantities on a real apiserver: the CRD's CEL rule (Kubernetes' quantity library) and
its Python twin, which `kubeforge validate` runs offline, accept and refuse the same values, and
refuse them in the same words.

Real: kube-apiserver with the CRDs from manifests/crds; each value is a server-side dry run.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeforge.api.trainingjob import TRAINING_JOB
from kubeforge.cli.resources import InvalidResources, parse_resource
from tests.kube import status_message
from tests.trainingjob_cases import minimal_with

pytestmark = pytest.mark.integration

# Edges of the grammar and of the sign, as integers and strings; the parser's own oddities too
# (`1.` and `-0` are quantities, a fractional exponent and an int64 overflow are not).
VALUES: list[int | str] = [
    *[0, 8, -1, -9223372036854775807],
    *["8", "500m", "4Gi", "1.5", "1.", ".5", "+.5Ki", "1e3", "1E-3", "1E", "1Ei", "+4k"],
    *["-0", "-0.0Mi", "-1", "-500m", "-.5Ki", "-1e-100", "-1e3"],
    *["lots", "", "Gi", "+", ".", "-", "1.5.5", "16GB", "1KiB", "1mm", "1e", "1e3.5", " 1"],
    *["1e9223372036854775807", "1e9223372036854775808", "1e-9223372036854775808"],
]
ACCEPTED: list[int | str] = [
    *[0, 8],
    *["8", "500m", "4Gi", "1.5", "1.", ".5", "+.5Ki", "1e3", "1E-3", "1E", "1Ei", "+4k"],
    *["-0", "-0.0Mi", "1e9223372036854775807", "1e-9223372036854775808"],
]


def offline(document: dict[str, Any]) -> str | None:
    """What `kubeforge validate` says of the document: its problems, or None when valid."""
    try:
        parse_resource(document)
    except InvalidResources as invalid:
        return "\n".join(problem.split(" is invalid: ", 1)[1] for problem in invalid.problems)
    return None


def on_the_apiserver(
    api_client: client.ApiClient, namespace: str, body: dict[str, Any]
) -> str | None:
    """What the apiserver says of the document: its refusal, or None when it would create it."""
    try:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            TRAINING_JOB.group,
            TRAINING_JOB.version,
            namespace,
            TRAINING_JOB.plural,
            body,
            dry_run="All",
        )
    except ApiException as refused:
        if refused.status != 422:
            raise
        return status_message(refused).split(" is invalid: ", 1)[1]
    return None


@pytest.mark.parametrize("side", ["limits", "requests"])
def test_the_apiserver_and_kubeforge_validate_agree_on_every_quantity(
    api_client: client.ApiClient, crds: list[str], namespace: str, side: str
) -> None:
    disagreements, accepted = [], []
    for value in VALUES:
        body = {
            "apiVersion": TRAINING_JOB.api_version,
            "kind": TRAINING_JOB.kind,
            "metadata": {"name": "quantity"},
            "spec": minimal_with(resources={side: {"example.com/accelerator": value}}),
        }
        verdicts = (offline(body), on_the_apiserver(api_client, namespace, body))
        if verdicts[0] != verdicts[1]:
            disagreements.append((value, *verdicts))
        if verdicts[1] is None:
            accepted.append(value)
    assert disagreements == []
    assert accepted == ACCEPTED
