"""The TrainingJob sample trains to completion in real pods on a real cluster, run by the chart.

Real: the cluster of KUBEFORGE_KUBECONFIG (kind, from `make e2e-kind`) with the chart installed,
its kubelets pulling nothing but running the trainer image loaded into them, torchrun's agents
meeting in the job's rendezvous store pod (its Deployment and Service), the workers over the
headless Service, and the operator in its own pod. The job is the
TrainingJob sample (the MLP on the bundled digits, 2 workers), made small enough for a CI runner.
A worker lost mid-run is `test_pipeline`'s. Then `kubeforge status` and `kubeforge logs`, the
console script as a user runs it on that kubeconfig, read the job and its pods' real logs.
Nothing is faked; without KUBEFORGE_KUBECONFIG it is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.jobs import STEPS, TIMEOUT_S, Jobs, small_sample
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(TIMEOUT_S + 60)


def test_trainingjob_sample_succeeds_in_real_pods(
    e2e_api: client.ApiClient, restricted_namespace: str
) -> None:
    jobs = Jobs(e2e_api, restricted_namespace)
    job = small_sample()
    name = jobs.create_object(job)["metadata"]["name"]

    status = jobs.wait_succeeded(name, STEPS)
    assert status["progress"]["totalSteps"] == STEPS
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["observedGeneration"] == jobs.get(name)["metadata"]["generation"], ready
    # The workers: the job's rendezvous store pod is not one (it carries no batch job name).
    selector = f"batch.kubernetes.io/job-name={name}"
    pods = jobs.core.list_namespaced_pod(restricted_namespace, label_selector=selector).items
    assert len(pods) == job["spec"]["replicas"], [pod.metadata.name for pod in pods]
    assert {pod.spec.containers[0].image for pod in pods} == {job["spec"]["image"]}
    assert {pod.status.phase for pod in pods} == {"Succeeded"}
    jobs.wait_event(name, "Completed")
    # Finished, the job keeps no rendezvous store pod.
    apps = client.AppsV1Api(e2e_api)
    wait_for(
        lambda: (
            apps.read_namespaced_deployment(
                f"{name}-rendezvous", restricted_namespace
            ).status.replicas
            in (None, 0)
        ),
        "the finished job's rendezvous store pod to go",
    )

    # What a user sees, with the same kubeconfig: the phase and step, then each pod's last lines.
    shown = kubeforge("status", name, "-n", restricted_namespace)
    assert "Succeeded" in shown, shown
    assert f"step {STEPS}/{STEPS}" in shown, shown
    assert "goodput " in shown, shown
    assert "attempt 1 began " in shown, shown
    logs = kubeforge("logs", name, "-n", restricted_namespace, "--tail", "20")
    for pod in pods:
        assert f"pod {pod.metadata.name}" in logs, logs
    assert f"step {STEPS}/{STEPS}" in logs, logs


def kubeforge(*arguments: str) -> str:
    """The output of the `kubeforge` console script on the e2e cluster; it must succeed."""
    command = [str(Path(sys.executable).parent / "kubeforge"), *arguments]
    # A wide terminal: rich fits its tables to COLUMNS.
    kubeconfig = os.environ["KUBEFORGE_KUBECONFIG"]
    environment = {**os.environ, "KUBECONFIG": kubeconfig, "COLUMNS": "200"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
