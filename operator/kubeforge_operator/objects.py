"""What the children of every kubeforge resource share, and the Events the operator posts.

The builders of TrainingJob and DataIngest children (`trainingjob.builders`, `dataingest.builders`)
put the same metadata on every object: the `app.kubernetes.io/*` labels plus the owner's own label,
an owner reference to the resource (so deleting it collects them), and the hash of the object's
desired content (`kubeforge.dev/desired-hash`), which lets a reconcile skip objects that are already
as desired without asking the API server. Pods of both run under the restricted PodSecurity profile.
A CA bundle (`CaBundle`: a ConfigMap or Secret key) reaches a pod the same way for both: a volume
holding the one key as `ca.crt` under /etc/kubeforge-ca/; the S3 endpoint's is named by
AWS_CA_BUNDLE, which boto3 reads. Everything here is pure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from kubeforge.api.dataingest import DataIngest
from kubeforge.api.meta import GROUP, CaBundle
from kubeforge.api.trainingjob import TrainingJob

Object = dict[str, Any]
Owner = TrainingJob | DataIngest

DESIRED_HASH = f"{GROUP}/desired-hash"
TEMPLATE_HASH = f"{GROUP}/template-hash"
MANAGED_BY = "kubeforge-operator"

POD_SECURITY_CONTEXT: Object = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: Object = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
"""With POD_SECURITY_CONTEXT, what the restricted PodSecurity profile requires of a container."""

IGNORE_DISRUPTIONS: Object = {
    "action": "Ignore",
    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
}
"""A podFailurePolicy rule: preemption, eviction and node loss never count as failures."""

STORAGE_CA_VOLUME = "storage-ca"
STORAGE_CA_FILE = "/etc/kubeforge-ca/storage/ca.crt"
"""Where a pod finds `storage.caBundle`, the CAs its S3 endpoint is verified with."""
STORAGE_CA_ENV: Object = {"name": "AWS_CA_BUNDLE", "value": STORAGE_CA_FILE}


def ca_bundle_volume(name: str, bundle: CaBundle, file: str) -> tuple[Object, Object]:
    """The volume holding a CA bundle's key as the file `file`, and its mount."""
    path = PurePosixPath(file)
    config_map, secret = bundle.config_map_key_ref, bundle.secret_key_ref
    volume: Object = {"name": name}
    if config_map is not None:
        items = [{"key": config_map.key, "path": path.name}]
        volume["configMap"] = {"name": config_map.name, "items": items}
    else:
        assert secret is not None, "a CaBundle has exactly one source"
        items = [{"key": secret.key, "path": path.name}]
        volume["secret"] = {"secretName": secret.name, "items": items}
    return volume, {"name": name, "mountPath": str(path.parent), "readOnly": True}


@dataclass(frozen=True)
class Event:
    """A core/v1 Event to post about a resource."""

    type: str  # Normal or Warning
    reason: str
    message: str


def labels(owner: Owner, app: str, owner_label: str, component: str) -> dict[str, str]:
    """The labels of a child: the standard ones, and `owner_label` naming its owner."""
    name = owner.metadata.name or ""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "kubeforge",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        owner_label: name,
    }


def owner_reference(owner: Owner) -> Object:
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, name: str, child_labels: dict[str, str]) -> Object:
    """A child's metadata: in its owner's namespace, labelled, owned."""
    return {
        "name": name,
        "namespace": owner.metadata.namespace,
        "labels": child_labels,
        "ownerReferences": [owner_reference(owner)],
    }


def content_hash(content: object) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def with_desired_hash(obj: Object) -> Object:
    """The object with the hash of its content in an annotation."""
    annotations = {**obj["metadata"].get("annotations", {}), DESIRED_HASH: content_hash(obj)}
    return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}


def with_template_hash(job: Object, immutable: tuple[str, ...]) -> Object:
    """A Job with the hash of the spec fields a Job cannot change in place (`immutable`).

    When that hash differs from the existing Job's, the reconcile replaces the Job.
    """
    spec = job["spec"]
    digest = content_hash({key: spec[key] for key in immutable if key in spec})
    annotations = {**job["metadata"].get("annotations", {}), TEMPLATE_HASH: digest}
    return {**job, "metadata": {**job["metadata"], "annotations": annotations}}


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def job_condition(job: Object | None, condition_type: str) -> Object | None:
    """The Job's condition of this type when it is True (Complete, Failed, ...), else None."""
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    return next(
        (c for c in conditions if c.get("type") == condition_type and c.get("status") == "True"),
        None,
    )
