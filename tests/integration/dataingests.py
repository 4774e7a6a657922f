"""Test helpers for DataIngests on the cluster, their buckets, and their pods run as local
processes.

kwok pods do not execute, so a test runs what a crawler (or trainer) pod would run as a local
process: exactly the pod's command (with `python` this interpreter, and paths under the config
volume's mount pointing at a local copy of the ConfigMap), its environment (Secret references and
the pod's namespace and name resolved, nothing else of the test's AWS_* environment inherited)
and, for an Indexed Job, the JOB_COMPLETION_INDEX the Job controller would set. What only a
cluster gives (a pod's DNS name, the in-cluster API) is replaced by arguments and variables the
caller gives. When the process ends, the test ends the kwok pod with the same exit
code.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kubernetes import client
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

from kubeforge.crawlconfig import SHARD_INDEX_ENV
from kubeforge_operator.trainingjob.builders import JOB_UID_LABEL
from tests.polling import wait_for
from tests.resources import GROUP, VERSION, CustomResources

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


class Ingests(CustomResources):
    """The test's view of DataIngests and their children in one namespace."""

    kind = "DataIngest"
    plural = "dataingests"

    def job(self, name: str) -> client.V1Job:
        """The Job, once it exists."""

        def probe() -> client.V1Job | None:
            try:
                return self.batch.read_namespaced_job(name, self.namespace)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise

        return wait_for(probe, f"Job {name}")

    def running_pods(self, job: str, count: int) -> list[client.V1Pod]:
        """The Job's running pods, by completion index (or name), once there are `count`."""

        def probe() -> list[client.V1Pod] | None:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
            ).items
            running = [p for p in pods if p.status.phase == "Running"]
            return running if len(running) == count else None

        pods = wait_for(probe, f"{count} running pods of Job {job}")
        return sorted(
            pods, key=lambda p: int((p.metadata.annotations or {}).get(COMPLETION_INDEX, 0))
        )

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.core.read_namespaced_secret(name, self.namespace)
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}

    def release_all(self) -> None:
        """Deletes every DataIngest left and drops its finalizers, so the namespace can go."""
        for name in self.names():
            try:
                self.delete(name)
                self.objects.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    self.plural,
                    name,
                    {"metadata": {"finalizers": None}},
                )
            except ApiException as error:
                if error.status != 404:
                    raise


class PodProcesses:
    """Local processes started as pods would be; killed at the end if still running."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        job: client.V1Job,
        config: Mapping[str, str],
        secrets: Mapping[str, Mapping[str, str]],
        index: int | None = None,
        local_arguments: Mapping[str, str] | None = None,
        local_env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Runs the Job's container as its pod `index` would (config: the ConfigMap's data).
        For what only a cluster has, `local_arguments` replaces whole arguments of the command
        and `local_env` sets variables."""
        replaced = local_arguments or {}
        pod = job.spec.template.spec
        (container,) = pod.containers
        volumes = {volume.name: volume for volume in pod.volumes}
        mounts = {}
        for mount in container.volume_mounts:
            if volumes[mount.name].config_map is not None:
                local = self.logs / f"{job.metadata.name}-{mount.name}"
                local.mkdir(exist_ok=True)
                for key, value in config.items():
                    (local / key).write_text(value)
                mounts[mount.mount_path] = local
        name = f"{job.metadata.name}-{index if index is not None else 0}"
        # The labels the Job controller gives its pods: the template's and the Job's uid.
        labels = {**(job.spec.template.metadata.labels or {}), JOB_UID_LABEL: job.metadata.uid}
        fields = {
            "metadata.namespace": job.metadata.namespace,
            "metadata.name": name,
            **{f"metadata.labels['{key}']": value for key, value in labels.items()},
        }
        container_env = dict(_pod_env(container, secrets, fields))
        command = [
            replaced.get(argument) or _local_argument(_expanded(argument, container_env), mounts)
            for argument in container.command
        ]
        if command[0] == "python":
            command[0] = sys.executable
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(container_env)
        if index is not None:
            env[SHARD_INDEX_ENV] = str(index)
        env.update(local_env or {})
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def wait(self, processes: list[subprocess.Popen[bytes]], timeout: float = 90) -> None:
        """Waits until they exit, and fails with their logs unless every one exited with 0."""
        wait_for(lambda: all(p.poll() is not None for p in processes), "the processes", timeout)
        failed = [p for p in processes if p.returncode != 0]
        logs = "\n".join(path.read_text() for path in sorted(self.logs.glob("*.log")))
        assert not failed, f"exit codes {[p.returncode for p in processes]}:\n{logs[-4000:]}"

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait()


def _expanded(argument: str, env: Mapping[str, str]) -> str:
    """The argument with `$(NAME)` replaced by the container's variable, as the kubelet does
    (a name the container does not define is left as written)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), argument)


def _local_argument(argument: str, mounts: Mapping[str, Path]) -> str:
    for mount_path, local in mounts.items():
        if argument.startswith(mount_path.rstrip("/") + "/"):
            return str(local / argument[len(mount_path.rstrip("/")) + 1 :])
    return argument


def _pod_env(
    container: client.V1Container,
    secrets: Mapping[str, Mapping[str, str]],
    fields: Mapping[str, str],
) -> Iterator[tuple[str, str]]:
    for var in container.env or []:
        if var.value_from is None:
            yield var.name, var.value or ""
        elif var.value_from.field_ref is not None:
            yield var.name, fields[var.value_from.field_ref.field_path]
        else:
            ref = var.value_from.secret_key_ref
            assert ref is not None, f"{var.name}: only Secrets and fields are resolved locally"
            yield var.name, secrets[ref.name][ref.key]


def remove_bucket(s3: S3Client, name: str) -> None:
    """Empties (every object version) and removes a bucket, if there is one."""
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                s3.delete_object(Bucket=name, Key=entry["Key"], VersionId=entry["VersionId"])
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.NoSuchBucket:
        pass
