"""Small helpers for tests that talk to the cluster: clients and readable API errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


def kube_client(kubeconfig: Path, impersonate: str | None = None) -> client.ApiClient:
    """An API client for a kubeconfig, optionally impersonating another user."""
    api: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))
    if impersonate:
        api.set_default_header("Impersonate-User", impersonate)
    return api


def status_message(error: ApiException) -> str:
    """The human-readable message of the apiserver's Status answer."""
    message: str = json.loads(error.body)["message"]
    return message


def kubeforge_status(kubeconfig: Path, namespace: str, name: str) -> str:
    """What `kubeforge status NAME` prints, as a program on the given kubeconfig."""
    command = [sys.executable, "-m", "kubeforge.cli.main", "status", name, "-n", namespace]
    # A wide terminal: rich fits its tables to COLUMNS.
    environment = {**os.environ, "KUBECONFIG": str(kubeconfig), "COLUMNS": "200"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
