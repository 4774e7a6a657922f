"""A TrainingJob trains to completion in real pods on a real cluster, run by the chart's operator.

Real: the cluster of KUBEFORGE_KUBECONFIG (kind, from `make e2e-kind`) with the chart installed,
its kubelets pulling nothing but running the trainer image loaded into them, torchrun's c10d
rendezvous over the operator's headless Service, and the operator in its own pod. The job is the
TrainingJob sample, made small enough for a CI runner (fewer steps, smaller requests, no
checkpoint store). Nothing is faked; without KUBEFORGE_KUBECONFIG it is skipped.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import yaml
from kubernetes import client

from tests.conftest import REPO_ROOT
from tests.polling import wait_for

GROUP, VERSION, PLURAL = "kubeforge.dev", "v1alpha1", "trainingjobs"
SAMPLE = REPO_ROOT / "manifests" / "samples" / "trainingjob.yaml"
STEPS = 100
# Pulling nothing, two workers of the MLP on a 2-4 core runner finish in a few minutes.
TIMEOUT_S = 900.0


def small_sample(namespace: str) -> dict[str, Any]:
    job: dict[str, Any] = copy.deepcopy(yaml.safe_load(SAMPLE.read_text()))
    job["metadata"]["namespace"] = namespace
    spec = job["spec"]
    spec["trainer"]["steps"] = STEPS
    spec["resources"] = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    del spec["checkpoint"]
    return job


def test_trainingjob_sample_succeeds_in_real_pods(
    e2e_api: client.ApiClient, restricted_namespace: str
) -> None:
    custom = client.CustomObjectsApi(e2e_api)
    job = small_sample(restricted_namespace)
    name = job["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, restricted_namespace, PLURAL, job)

    def finished() -> dict[str, Any] | None:
        current = custom.get_namespaced_custom_object(
            GROUP, VERSION, restricted_namespace, PLURAL, name
        )
        status: dict[str, Any] = cast(dict[str, Any], current).get("status", {})
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for(finished, f"TrainingJob {name} to finish", timeout=TIMEOUT_S)
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["step"] == STEPS
    pods = client.CoreV1Api(e2e_api).list_namespaced_pod(restricted_namespace).items
    assert pods, "the workers' pods are gone"
    assert {pod.spec.containers[0].image for pod in pods} == {job["spec"]["image"]}
