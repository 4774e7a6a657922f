"""A TrainingJob trains to completion in real pods on a real cluster, run by the chart's operator.

Real: the cluster of KUBEFORGE_KUBECONFIG (kind, from `make e2e-kind`) with the chart installed,
its kubelets pulling nothing but running the trainer image loaded into them, torchrun's c10d
rendezvous over the operator's headless Service, the operator in its own pod, and S3 (SeaweedFS
on this machine, reached by the pods over kind's network) for checkpoints. The job is the
TrainingJob sample, made small enough for a CI runner. Nothing is faked; without
KUBEFORGE_KUBECONFIG it is skipped.
"""

from __future__ import annotations

import uuid

from kubernetes import client

from tests.e2e.conftest import S3_REGION, PodS3
from tests.e2e.jobs import LONG_STEPS, STEPS, TIMEOUT_S, Jobs, small_sample
from tests.polling import wait_for


def test_trainingjob_sample_succeeds_in_real_pods(
    e2e_api: client.ApiClient, restricted_namespace: str
) -> None:
    jobs = Jobs(e2e_api, restricted_namespace)
    job = small_sample(restricted_namespace)
    name = jobs.create(job)

    status = jobs.wait_finished(name)
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["step"] == STEPS
    pods = jobs.core.list_namespaced_pod(restricted_namespace).items
    assert pods, "the workers' pods are gone"
    assert {pod.spec.containers[0].image for pod in pods} == {job["spec"]["image"]}


def test_worker_deleted_mid_run_resumes_from_its_checkpoint(
    e2e_api: client.ApiClient, restricted_namespace: str, pod_s3: PodS3
) -> None:
    """A worker pod is deleted mid-run: the group restarts, resumes from S3 and ends on the step."""
    namespace = restricted_namespace
    jobs = Jobs(e2e_api, namespace)
    bucket = f"kf-e2e-{uuid.uuid4().hex[:12]}"
    pod_s3.client.create_bucket(Bucket=bucket)
    jobs.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="s3"), string_data=pod_s3.secret_data()),
    )
    job = small_sample(namespace, steps=LONG_STEPS)
    name = job["metadata"]["name"]
    job["spec"]["checkpoint"] = {"uri": f"s3://{bucket}/{name}", "intervalSteps": 100, "keep": 2}
    job["spec"]["env"] = [
        {"name": "AWS_ENDPOINT_URL", "value": pod_s3.endpoint},
        {"name": "AWS_REGION", "value": S3_REGION},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": "s3", "key": key}}}
            for key in pod_s3.secret_data()
        ),
    ]
    jobs.create(job)

    def checkpointed() -> int | None:
        progress = jobs.status(name).get("progress") or {}
        step = (progress.get("lastCheckpoint") or {}).get("step")
        return int(step) if step and step < LONG_STEPS // 2 else None

    checkpoint_step = wait_for(checkpointed, f"{name}'s first checkpoint", timeout=TIMEOUT_S)
    victim = next(
        pod.metadata.name
        for pod in jobs.core.list_namespaced_pod(namespace).items
        if pod.status.phase == "Running"
    )
    jobs.core.delete_namespaced_pod(victim, namespace)

    # Every step reported once the restart is recorded must come after the checkpoint: a group
    # that started over from step 0 would report lower ones first.
    seen_after_restart: list[int] = []

    def restarted_and_finished() -> bool:
        status = jobs.status(name)
        restarts = status.get("restarts", {})
        step = (status.get("progress") or {}).get("step")
        if restarts.get("history") and step is not None:
            seen_after_restart.append(step)
        return status.get("phase") in ("Succeeded", "Failed")

    wait_for(restarted_and_finished, f"{name} to finish after losing {victim}", timeout=TIMEOUT_S)
    status = jobs.status(name)
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["step"] == LONG_STEPS
    assert status["restarts"]["history"], status["restarts"]
    assert seen_after_restart
    assert min(seen_after_restart) >= checkpoint_step, seen_after_restart
    keys = [
        item["Key"]
        for page in pod_s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    assert any(key.startswith(f"{name}/") for key in keys), keys
    # The restart was announced as an Event with its cause, as `kubectl describe` shows it.
    events = jobs.core.list_namespaced_event(namespace).items
    reasons = {event.reason for event in events if event.involved_object.name == name}
    assert status["restarts"]["history"][0]["cause"] in reasons, reasons
