"""The chart on a real cluster: upgrades leave running jobs alone, uninstalls keep CRDs, jobs and
the data of DataIngests (deletionPolicy Retain).

Real: the cluster of KUBEFORGE_KUBECONFIG with the release that `make e2e-kind` installed
(KUBEFORGE_HELM_RELEASE in KUBEFORGE_HELM_NAMESPACE, from `hack/kind.sh`'s env file), the pinned
helm, TrainingJobs in real pods, and a DataIngest crawling the demo web into SeaweedFS (see
`test_pipeline`). Each test leaves the release installed as it found it.
"""

from __future__ import annotations

import os
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeforge.cli.localweb import DemoWeb
from tests.e2e.conftest import PodS3
from tests.e2e.jobs import (
    LONG_STEPS,
    TIMEOUT_S,
    Ingests,
    Jobs,
    demo_pipeline,
    new_bucket,
    s3_json,
    small_sample,
)
from tests.helm import CHART, helm
from tests.image_names import image_settings
from tests.polling import wait_for
from tests.resources import GROUP, VERSION

pytestmark = pytest.mark.timeout(TIMEOUT_S + 600)  # the job, and helm's waits of up to 5 min
CRDS = ("trainingjobs.kubeforge.dev", "dataingests.kubeforge.dev")


def release() -> tuple[str, str]:
    return (
        os.environ.get("KUBEFORGE_HELM_RELEASE", "kubeforge"),
        os.environ.get("KUBEFORGE_HELM_NAMESPACE", "kubeforge-system"),
    )


def helm_on_cluster(*args: str) -> str:
    _, namespace = release()
    kubeconfig = os.environ["KUBEFORGE_KUBECONFIG"]
    return helm(*args, "--kubeconfig", kubeconfig, "--namespace", namespace)


def operator_pods(core: client.CoreV1Api) -> set[str]:
    name, namespace = release()
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}")
    return {pod.metadata.uid for pod in pods.items if pod.metadata.deletion_timestamp is None}


def test_chart_upgrade_leaves_a_running_job_alone(
    e2e_api: client.ApiClient, restricted_namespace: str
) -> None:
    jobs = Jobs(e2e_api, restricted_namespace)
    name = jobs.create_object(small_sample(steps=LONG_STEPS))["metadata"]["name"]
    wait_for(lambda: jobs.step(name), f"{name} to report a step", timeout=TIMEOUT_S)
    workers = jobs.pod_uids()
    operators = operator_pods(jobs.core)
    release_name, _ = release()

    # A changed value rolls the operator's Deployment (Recreate): a new operator pod adopts the job.
    helm_on_cluster(
        "upgrade",
        release_name,
        str(CHART),
        "--reuse-values",
        "--set",
        "verbose=true",
        "--wait",
        "--timeout",
        "5m",
    )
    try:
        assert operator_pods(jobs.core).isdisjoint(operators), "the operator was not replaced"
        status = jobs.wait_succeeded(name, LONG_STEPS, " after the chart upgrade")
        assert not status.get("restarts", {}).get("history"), status["restarts"]
        assert jobs.pod_uids() == workers, "the upgrade replaced worker pods"
    finally:
        helm_on_cluster(
            "upgrade",
            release_name,
            str(CHART),
            "--reuse-values",
            "--set",
            "verbose=false",
            "--wait",
            "--timeout",
            "5m",
        )


def test_uninstall_keeps_the_crds_the_jobs_and_the_data(
    e2e_api: client.ApiClient, restricted_namespace: str, pod_web: DemoWeb, pod_s3: PodS3
) -> None:
    jobs, ingests = Jobs(e2e_api, restricted_namespace), Ingests(e2e_api, restricted_namespace)
    bucket = new_bucket(jobs.core, restricted_namespace, pod_s3)
    ingest, _ = demo_pipeline(pod_web, pod_s3, bucket, steps=1, checkpoint_every=1)
    ingest_name = ingests.create_object(ingest)["metadata"]["name"]
    name = jobs.create_object(small_sample())["metadata"]["name"]
    assert jobs.wait_done(name)["phase"] == "Succeeded"
    published = ingests.wait_finished(ingest_name, timeout=TIMEOUT_S)
    assert published["phase"] == "Succeeded", published
    release_name, release_namespace = release()
    settings = image_settings()
    apps = client.AppsV1Api(e2e_api)

    helm_on_cluster("uninstall", release_name, "--wait", "--timeout", "5m")
    try:
        deployments = apps.list_namespaced_deployment(release_namespace).items
        assert not deployments, [d.metadata.name for d in deployments]
        extensions = client.ApiextensionsV1Api(e2e_api)
        for crd in CRDS:
            extensions.read_custom_resource_definition(crd)  # raises if it was deleted
        assert jobs.status(name)["phase"] == "Succeeded"
        listed = jobs.objects.list_cluster_custom_object(GROUP, VERSION, jobs.plural)
        assert name in {item["metadata"]["name"] for item in cast(dict[str, Any], listed)["items"]}
        # The DataIngest (Retain) and what it published are where they were.
        dataset = published["dataset"]
        assert ingests.status(ingest_name)["dataset"] == dataset
        assert s3_json(pod_s3, dataset["manifest"]), dataset["manifest"]
    except ApiException as error:
        raise AssertionError(f"the uninstall took kubeforge's data with it: {error}") from error
    finally:
        helm_on_cluster(
            "upgrade",
            "--install",
            release_name,
            str(CHART),
            "--set",
            f"image.repository={settings['KUBEFORGE_IMAGE_PREFIX']}/operator",
            "--set",
            f"image.tag={settings['KUBEFORGE_IMAGE_TAG']}",
            "--wait",
            "--timeout",
            "5m",
        )
