"""Small helpers for tests that talk to the cluster: clients and readable API errors."""

from __future__ import annotations

import json
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
