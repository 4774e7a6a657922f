"""Pure builders: a DataIngest in, the Kubernetes objects that crawl and publish its dataset out.

Children, named after the DataIngest NAME, in apply order:

- ConfigMap `NAME-crawler`: the crawler config (`kubeforge.crawlconfig.crawler_config`) at
  /etc/kubeforge/crawler.yaml;
- Job `NAME-crawl`: an Indexed Job of `shards` pods (completions = parallelism = shards), each
  running `crawl_command`; a pod's shard is its JOB_COMPLETION_INDEX;
- Job `NAME-publish`: one pod running `publish_command` (global deduplication, then the manifest),
  built only once every shard has succeeded.

All three are of one dataset version, `status.currentVersion` (the config names its URI; the Jobs
carry it as the `kubeforge.dev/dataset-version` label and annotation), so a scheduled run's Jobs
are told apart from the previous run's, which the reconcile deletes before it creates the new ones.

Pods are restricted-PodSecurity compliant, read their S3 endpoint, region and (from
`credentialsSecretRef`) credentials from the environment as boto3 does, and need no API access.
A CA bundle (`crawl.tls.caBundle` for the crawled sites, `storage.caBundle` for the S3 endpoint)
is a volume of its ConfigMap or Secret key, mounted as `ca.crt` under /etc/kubeforge-ca/: the
crawl's is the config's `caFile`, the storage's is `AWS_CA_BUNDLE`, which boto3 reads.
Every object carries the shared child metadata (`objects`) and the `kubeforge.dev/data-ingest`
label. Nothing here talks to the API server.
"""

from __future__ import annotations

import yaml

from kubeforge.api.dataingest import DataIngest
from kubeforge.api.meta import GROUP
from kubeforge.crawlconfig import (
    CRAWL_CA_FILE,
    EXIT_CONFIG,
    EXIT_SHARDS_INCOMPLETE,
    crawl_command,
    crawler_config,
    publish_command,
)
from kubeforge_operator import objects
from kubeforge_operator.objects import Object

INGEST_LABEL = f"{GROUP}/data-ingest"
CONTAINER = "crawler"
CONFIG_DIR = "/etc/kubeforge"
CONFIG_FILE = "crawler.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
DEFAULT_IMAGE = "kubeforge/crawler:0.1.0"
"""The crawler image when spec.image is omitted."""
DATASET_VERSION = f"{GROUP}/dataset-version"
"""The label and annotation of a Job with the dataset version it builds."""
SHARD_RETRIES = 3
"""Pod failures one shard may have before the crawl fails (a shard resumes where it stopped)."""
PUBLISH_RETRIES = 3
IMMUTABLE_JOB_FIELDS = ("completionMode", "backoffLimitPerIndex", "podFailurePolicy", "template")


def config_map_name(ingest: DataIngest) -> str:
    return f"{ingest.metadata.name}-crawler"


def crawl_job_name(ingest: DataIngest) -> str:
    return f"{ingest.metadata.name}-crawl"


def publish_job_name(ingest: DataIngest) -> str:
    return f"{ingest.metadata.name}-publish"


def labels(ingest: DataIngest, component: str) -> dict[str, str]:
    return objects.labels(ingest, "kubeforge-crawler", INGEST_LABEL, component)


def _metadata(ingest: DataIngest, name: str, component: str) -> Object:
    return objects.metadata(ingest, name, labels(ingest, component))


def job_version(job: Object) -> int:
    """The dataset version a Job builds (1 for a Job from before versions were recorded)."""
    return int((job["metadata"].get("annotations") or {}).get(DATASET_VERSION) or 1)


def build_config_map(ingest: DataIngest) -> Object:
    version = ingest.status.current_version
    config = crawler_config(ingest, version).model_dump(mode="json", by_alias=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ingest, config_map_name(ingest), "config"),
        "data": {CONFIG_FILE: yaml.safe_dump(config, sort_keys=False)},
    }


def _env(ingest: DataIngest) -> list[Object]:
    storage = ingest.spec.storage
    env: list[Object] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    if storage.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": storage.endpoint})
    if storage.region:
        env.append({"name": "AWS_REGION", "value": storage.region})
    if storage.ca_bundle:
        env.append(objects.STORAGE_CA_ENV)
    secret = storage.credentials_secret_ref
    if secret is not None:
        env += [
            {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}},
            }
            for variable, key in (
                ("AWS_ACCESS_KEY_ID", secret.access_key_id_key),
                ("AWS_SECRET_ACCESS_KEY", secret.secret_access_key_key),
            )
        ]
    return env


def _ca_volumes(ingest: DataIngest) -> list[tuple[Object, Object]]:
    bundles = {
        "crawl-ca": (ingest.spec.crawl.tls.ca_bundle, CRAWL_CA_FILE),
        objects.STORAGE_CA_VOLUME: (ingest.spec.storage.ca_bundle, objects.STORAGE_CA_FILE),
    }
    return [
        objects.ca_bundle_volume(name, bundle, file)
        for name, (bundle, file) in bundles.items()
        if bundle is not None
    ]


def build_pod_template(ingest: DataIngest, component: str, command: list[str]) -> Object:
    spec = ingest.spec
    ca_volumes = _ca_volumes(ingest)
    pod_spec: Object = {
        "restartPolicy": "Never",
        "securityContext": objects.POD_SECURITY_CONTEXT,
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image or DEFAULT_IMAGE,
                "command": command,
                "env": _env(ingest),
                "resources": spec.resources.model_dump(by_alias=True, exclude_defaults=True),
                "securityContext": {
                    **objects.CONTAINER_SECURITY_CONTEXT,
                    "readOnlyRootFilesystem": True,
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
                    *(mount for _, mount in ca_volumes),
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map_name(ingest)}},
            {"name": "tmp", "emptyDir": {}},
            *(volume for volume, _ in ca_volumes),
        ],
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    else:
        # The crawler never calls the API server; only a named account (workload identity) may.
        pod_spec["automountServiceAccountToken"] = False
    return {"metadata": {"labels": labels(ingest, component)}, "spec": pod_spec}


def _pod_failure_policy(*permanent_exit_codes: int) -> Object:
    """Disruptions never count; exit codes that a retry cannot fix fail the Job at once."""
    fail = {
        "action": "FailJob",
        "onExitCodes": {
            "containerName": CONTAINER,
            "operator": "In",
            "values": sorted(permanent_exit_codes),
        },
    }
    return {"rules": [objects.IGNORE_DISRUPTIONS, fail]}


def _job(ingest: DataIngest, name: str, component: str, job_spec: Object) -> Object:
    version = str(ingest.status.current_version)
    metadata = _metadata(ingest, name, component)
    metadata["labels"][DATASET_VERSION] = version
    metadata["annotations"] = {DATASET_VERSION: version}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        # A replacement starts only once the failed pod is gone, so two pods never hold a shard.
        "spec": {**job_spec, "podReplacementPolicy": "Failed"},
    }
    return objects.with_template_hash(job, IMMUTABLE_JOB_FIELDS)


def build_crawl_job(ingest: DataIngest) -> Object:
    """The Indexed Job of crawler shards: completions = parallelism = shards."""
    shards = ingest.spec.shards
    return _job(
        ingest,
        crawl_job_name(ingest),
        "crawl",
        {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            "backoffLimitPerIndex": SHARD_RETRIES,
            # The dataset needs every shard: one that runs out of retries fails the crawl.
            "maxFailedIndexes": 0,
            "podFailurePolicy": _pod_failure_policy(EXIT_CONFIG),
            "template": build_pod_template(ingest, "crawl", crawl_command(CONFIG_PATH)),
        },
    )


def build_publish_job(ingest: DataIngest) -> Object:
    """The Job that deduplicates across shards and writes the manifest."""
    return _job(
        ingest,
        publish_job_name(ingest),
        "publish",
        {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": PUBLISH_RETRIES,
            "podFailurePolicy": _pod_failure_policy(EXIT_CONFIG, EXIT_SHARDS_INCOMPLETE),
            "template": build_pod_template(ingest, "publish", publish_command(CONFIG_PATH)),
        },
    )


def build_children(ingest: DataIngest, *, publish: bool) -> list[Object]:
    """The objects the DataIngest should own now, each with its desired hash, in apply order.

    publish: every shard has succeeded, so the publish Job is wanted too.
    """
    children = [build_config_map(ingest), build_crawl_job(ingest)]
    if publish:
        children.append(build_publish_job(ingest))
    return [objects.with_desired_hash(child) for child in children]
