"""From no data to a trained model in real pods: crawl, publish, train, lose a worker, finish.

Real: the cluster of KUBEFORGE_KUBECONFIG (kind, from `make e2e-kind`) with the chart's operator
in its own pod; the demo web (pydoc pages of the standard library, with planted copies and a
robots.txt rule) served by this process where pods reach this machine; SeaweedFS there too,
where the operator provisions the DataIngest's bucket with boto3; crawler pods of the crawler
image fetching over the cluster's network and publishing a dataset; and the demo's GPT trained
on that dataset by 2 trainer pods under torchrun elastic (the rendezvous in the job's store pod,
gloo over the headless Service).
Mid-run one worker pod is deleted: the group must restart once, uncharged (a disruption), resume
from its S3 checkpoint and end on exactly the requested step. Last, the DataIngest is deleted
with deletionPolicy Retain: its dataset must stay. The resources are the demo's own file
(`kubeforge/cli/demos/gpt.yaml`), pointed at this web and this store; nothing is faked.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from kubeforge.cli.localweb import DemoWeb
from tests.e2e.conftest import PodS3
from tests.e2e.jobs import TIMEOUT_S, Ingests, Jobs, demo_pipeline, new_bucket, s3_json
from tests.polling import wait_for
from tests.resources import condition, read_or_none

# A crawl, a dataset and a few hundred GPT steps on two CPU pods of a small runner.
pytestmark = pytest.mark.timeout(2 * TIMEOUT_S)
STEPS = 300
CHECKPOINT_EVERY = 25


def worker_pods(jobs: Jobs, name: str) -> list[client.V1Pod]:
    selector = f"batch.kubernetes.io/job-name={name}"
    return list(jobs.core.list_namespaced_pod(jobs.namespace, label_selector=selector).items)


def check_published(ingests: Ingests, name: str, bucket: str, web: DemoWeb) -> dict[str, Any]:
    """The DataIngest published its first version, said so, and crawled politely; its dataset."""
    status = ingests.wait_finished(name, " publishing", timeout=TIMEOUT_S)
    assert status["phase"] == "Succeeded", status
    ready = condition(status, "Ready")
    assert ready["status"] == "True", status["conditions"]
    assert ready["observedGeneration"] == ingests.get(name)["metadata"]["generation"]
    assert status["storage"] == {"bucket": bucket, "ready": True}
    assert condition(status, "StorageReady")["status"] == "True", status["conditions"]
    dataset: dict[str, Any] = status["dataset"]
    assert dataset["uri"].startswith(f"s3://{bucket}/"), dataset
    assert dataset["version"] == 1
    assert dataset["documents"] == status["counters"]["documentsKept"] > 0, status["counters"]
    # The web plants two exact and two near copies, and a robots.txt rule over /drafts/.
    assert status["counters"]["duplicatesRemoved"] >= 2, status["counters"]
    assert status["counters"]["droppedByReason"].get("RobotsDisallowed", 0) >= 1
    ingests.wait_event(name, "ShardsRunning")
    ingests.wait_event(name, "Published")
    # The crawler pods fetched from this machine: robots.txt first, and never a disallowed page.
    paths = [request.path for site in web.sites.values() for request in site.log.of(site.name)]
    assert "/robots.txt" in paths, paths
    assert "/drafts/notes.html" not in paths
    return dataset


def test_crawl_publish_train_lose_a_worker_and_finish(
    e2e_api: client.ApiClient, restricted_namespace: str, pod_web: DemoWeb, pod_s3: PodS3
) -> None:
    ingests, jobs = Ingests(e2e_api, restricted_namespace), Jobs(e2e_api, restricted_namespace)
    bucket = new_bucket(jobs.core, restricted_namespace, pod_s3)
    ingest, job = demo_pipeline(
        pod_web, pod_s3, bucket, steps=STEPS, checkpoint_every=CHECKPOINT_EVERY
    )
    # As `kubectl apply -f` of the demo file does: both at once, and the job waits for the data.
    ingest_name = ingests.create_object(ingest)["metadata"]["name"]
    name = jobs.create_object(job)["metadata"]["name"]

    dataset = check_published(ingests, ingest_name, bucket, pod_web)
    assert s3_json(pod_s3, dataset["manifest"]), dataset["manifest"]
    jobs.wait_event(name, "WaitingForDataset")

    def checkpointed() -> int | None:
        progress = jobs.status(name).get("progress") or {}
        step = (progress.get("lastCheckpoint") or {}).get("step")
        return int(step) if step and step < STEPS // 2 else None

    checkpoint_step = wait_for(checkpointed, f"{name}'s first checkpoint", timeout=TIMEOUT_S)
    # The workers train on the version that was published.
    worker_job = jobs.batch.read_namespaced_job(name, restricted_namespace)
    assert dataset["uri"] in worker_job.metadata.annotations.values()
    victim = next(p.metadata.name for p in worker_pods(jobs, name) if p.status.phase == "Running")
    jobs.core.delete_namespaced_pod(victim, restricted_namespace)

    # Every step reported once the restart is recorded must come after the checkpoint: a group
    # that started over from step 0 would report lower ones first.
    seen_after_restart: list[int] = []

    def restarted_and_finished() -> bool:
        status = jobs.status(name)
        step = (status.get("progress") or {}).get("step")
        if status.get("restarts", {}).get("history") and step is not None:
            seen_after_restart.append(step)
        return status.get("phase") in ("Succeeded", "Failed")

    wait_for(restarted_and_finished, f"{name} to finish after losing {victim}", TIMEOUT_S)
    status = jobs.wait_succeeded(name, STEPS)
    progress = status["progress"]
    assert progress["loss"] > 0, progress
    assert progress["samplesPerSecond"] > 0, progress
    # One deleted pod is one restart, a disruption: not charged, though the other worker
    # stopped with the group and both exited with an error.
    restarts = status["restarts"]
    assert [(r["pod"], r["cause"], r["charged"]) for r in restarts["history"]] == [
        (victim, "PodDeleted", False)
    ], restarts
    assert (restarts["count"], restarts["disruptions"]) == (0, 1), restarts
    assert seen_after_restart, status
    assert min(seen_after_restart) >= checkpoint_step, seen_after_restart
    jobs.wait_event(name, "PodDeleted")
    metrics = s3_json(pod_s3, f"{job['spec']['checkpoint']['uri']}/final/metrics.json")
    assert metrics["steps"] == STEPS, metrics["steps"]

    # Retain: deleting the DataIngest releases it and leaves its dataset in the bucket.
    ingests.delete(ingest_name)

    wait_for(
        lambda: read_or_none(lambda: ingests.get(ingest_name)) is None,
        f"DataIngest {ingest_name} to be deleted",
    )
    assert s3_json(pod_s3, dataset["manifest"]), "the dataset went with its DataIngest"
