"""Pure builders: a TrainingJob and its plan in, the Kubernetes objects it should own out.

Nothing here talks to the API server. Every object carries the metadata every child shares
(`objects`: labels, an owner reference to its TrainingJob, the hash of its desired content).
"""

from __future__ import annotations

import yaml

from kubeforge.api.meta import GROUP
from kubeforge.api.trainingjob import GangScheduler, TrainingJob
from kubeforge.plan import RENDEZVOUS_PORT, TrainingPlan, plan_training
from kubeforge.progress import CONFIGMAP_ENV, NAMESPACE_ENV, progress_configmap_name
from kubeforge_operator import objects
from kubeforge_operator.objects import Object

JOB_LABEL = f"{GROUP}/training-job"
RENDEZVOUS_LABEL = f"{GROUP}/rendezvous-of"
"""On the rendezvous store's pod: the TrainingJob whose agents meet in it."""
CONTAINER = "trainer"
RENDEZVOUS_CONTAINER = "rendezvous"
RENDEZVOUS_RESOURCES: Object = {
    "requests": {"cpu": "50m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
"""The store is idle but for the agents' rendezvous rounds; most of its memory is torch."""
CONFIG_DIR = "/etc/kubeforge"
CONFIG_FILE = "trainer.yaml"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
"""On every pod of a Job (Kubernetes 1.27 and later): the uid of the Job that owns it."""
WORKER_JOB_UID_ENV = "KUBEFORGE_WORKER_JOB_UID"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
COSCHEDULING_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
COSCHEDULING_SCHEDULER = "scheduler-plugins-scheduler"
DATASET_ANNOTATION = f"{GROUP}/dataset-uri"
"""On the worker Job: the dataset it trains on, kept while it runs (a DataIngest's next version
is for jobs that start later)."""


def config_map_name(job: TrainingJob) -> str:
    return f"{job.metadata.name}-config"


def service_account_name(job: TrainingJob) -> str:
    """The pods' ServiceAccount: the user's, or one the operator makes per job."""
    return job.spec.service_account_name or f"{job.metadata.name}-trainer"


def progress_writer_name(job: TrainingJob) -> str:
    return f"{job.metadata.name}-progress-writer"


def rendezvous_name(job: TrainingJob) -> str:
    """Name of the rendezvous store's Deployment and Service."""
    return f"{job.metadata.name}-rendezvous"


def rendezvous_host(job: TrainingJob) -> str:
    """DNS name of the rendezvous store's Service."""
    return f"{rendezvous_name(job)}.{job.metadata.namespace}.svc"


def worker_selector(job: TrainingJob) -> str:
    """Label selector of the job's worker pods, as status.selector (scale subresource) has it."""
    return f"{JOB_LABEL}={job.metadata.name}"


def labels(job: TrainingJob, component: str) -> dict[str, str]:
    return objects.labels(job, "kubeforge-trainer", JOB_LABEL, component)


def _metadata(job: TrainingJob, name: str, component: str) -> Object:
    return objects.metadata(job, name, labels(job, component))


def build_plan(job: TrainingJob, dataset_uri: str | None) -> TrainingPlan:
    return plan_training(
        job,
        rendezvous_host=rendezvous_host(job),
        config_path=f"{CONFIG_DIR}/{CONFIG_FILE}",
        dataset_uri=dataset_uri,
        # Expanded by the kubelet from the pod's environment (_env).
        rendezvous_id=f"$({WORKER_JOB_UID_ENV})",
    )


def build_config_map(job: TrainingJob, plan: TrainingPlan) -> Object:
    """The worker config file, mounted at /etc/kubeforge (empty for a custom command)."""
    data = {}
    if plan.worker_config is not None:
        config = plan.worker_config.model_dump(mode="json", by_alias=True, exclude_none=True)
        data[CONFIG_FILE] = yaml.safe_dump(config, sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(job, config_map_name(job), "config"),
        "data": data,
    }


def build_progress_config_map(job: TrainingJob) -> Object:
    """Where rank 0 reports progress. The operator owns only its metadata; the trainer, its data."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(job, progress_configmap_name(job.metadata.name or ""), "progress"),
    }


def build_service(job: TrainingJob) -> Object:
    """Headless Service giving each worker a stable DNS name, reachable before it is ready: each
    rendezvous round, the workers meet at the store of the agent of group rank 0 by that name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job, job.metadata.name or "", "worker"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_LABEL: job.metadata.name},
        },
    }


def _rendezvous_pod_labels(job: TrainingJob) -> dict[str, str]:
    """The store pod's labels: without JOB_LABEL, which marks the job's workers (status counts
    them, the headless Service selects them), and with RENDEZVOUS_LABEL instead."""
    pod_labels = {**labels(job, "rendezvous"), RENDEZVOUS_LABEL: job.metadata.name or ""}
    del pod_labels[JOB_LABEL]
    return pod_labels


def build_rendezvous_service(job: TrainingJob) -> Object:
    """The rendezvous store's stable address (rendezvous_host)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job, rendezvous_name(job), "rendezvous"),
        "spec": {
            "selector": {RENDEZVOUS_LABEL: job.metadata.name},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "protocol": "TCP"}],
        },
    }


def build_rendezvous_deployment(
    job: TrainingJob, plan: TrainingPlan, *, finished: bool = False
) -> Object:
    """One pod of the job's image hosting the agents' rendezvous store (`kubeforge.rendezvous`),
    apart from every worker, so that the group re-forms without any given worker; none once the
    job is `finished` (no agent will meet there again; the Deployment goes with the job)."""
    pod_labels = _rendezvous_pod_labels(job)
    container: Object = {
        "name": RENDEZVOUS_CONTAINER,
        "image": job.spec.image,
        "command": plan.rendezvous_command,
        "ports": [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}],
        "readinessProbe": {"tcpSocket": {"port": "rendezvous"}, "periodSeconds": 2},
        "resources": RENDEZVOUS_RESOURCES,
        "securityContext": objects.CONTAINER_SECURITY_CONTEXT,
    }
    pod_spec: Object = {
        "automountServiceAccountToken": False,
        "securityContext": objects.POD_SECURITY_CONTEXT,
        "containers": [container],
        # Replaced as soon as a worker would be when its node stops answering (the agents wait
        # for the replacement: plan.STORE_WAIT_SECONDS).
        "tolerations": lost_node_tolerations(job, []),
    }
    if job.spec.priority_class_name:
        pod_spec["priorityClassName"] = job.spec.priority_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(job, rendezvous_name(job), "rendezvous"),
        "spec": {
            "replicas": 0 if finished else 1,
            # One store at a time: agents must never meet in two.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {RENDEZVOUS_LABEL: job.metadata.name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def build_finished_rendezvous(job: TrainingJob, dataset_uri: str | None) -> Object:
    """The store's Deployment of a finished job, with its desired hash: scaled to no pod."""
    plan = build_plan(job, dataset_uri)
    return objects.with_desired_hash(build_rendezvous_deployment(job, plan, finished=True))


def build_service_account(job: TrainingJob) -> Object | None:
    """The per-job ServiceAccount, unless the user named one."""
    if job.spec.service_account_name:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(job, service_account_name(job), "worker"),
    }


def build_progress_role(job: TrainingJob) -> Object:
    """The least RBAC that lets rank 0 report: get and patch one ConfigMap, by name."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(job, progress_writer_name(job), "progress"),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [progress_configmap_name(job.metadata.name or "")],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_progress_role_binding(job: TrainingJob) -> Object:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(job, progress_writer_name(job), "progress"),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": progress_writer_name(job),
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": service_account_name(job),
                "namespace": job.metadata.namespace,
            }
        ],
    }


def build_pod_group(job: TrainingJob, plan: TrainingPlan) -> Object | None:
    """A gang-scheduling PodGroup (all min workers or none) for Volcano or scheduler-plugins."""
    gang = job.spec.scheduling.gang
    if gang == GangScheduler.NONE:
        return None
    api_version = (
        "scheduling.volcano.sh/v1beta1"
        if gang == GangScheduler.VOLCANO
        else "scheduling.x-k8s.io/v1alpha1"
    )
    return {
        "apiVersion": api_version,
        "kind": "PodGroup",
        "metadata": _metadata(job, job.metadata.name or "", "gang"),
        "spec": {"minMember": plan.min_nodes},
    }


def _env(job: TrainingJob, plan: TrainingPlan) -> list[Object]:
    env: list[Object] = [
        {"name": NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # The rendezvous run of this worker Job: a Job that replaces it (a restart) has another,
        # so that agents of the old Job, still terminating, never join the new group.
        {
            "name": WORKER_JOB_UID_ENV,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_UID_LABEL}']"}},
        },
        {"name": CONFIGMAP_ENV, "value": progress_configmap_name(job.metadata.name or "")},
    ]
    env += [{"name": name, "value": value} for name, value in plan.env.items()]
    # Variables whose value comes from a Secret or field are passed through as the user wrote them.
    env += [
        var.model_dump(by_alias=True, exclude_none=True)
        for var in job.spec.env
        if var.value_from is not None
    ]
    if _storage_ca_volume(job):
        env.append(objects.STORAGE_CA_ENV)
    return env


def _storage_ca_volume(job: TrainingJob) -> list[tuple[Object, Object]]:
    """spec.storage.caBundle's volume and mount, if it is set."""
    bundle = job.spec.storage.ca_bundle if job.spec.storage else None
    if bundle is None:
        return []
    return [objects.ca_bundle_volume(objects.STORAGE_CA_VOLUME, bundle, objects.STORAGE_CA_FILE)]


def build_pod_template(job: TrainingJob, plan: TrainingPlan) -> Object:
    spec = job.spec
    ca_volumes = _storage_ca_volume(job)
    pod_labels = labels(job, "worker")
    annotations: dict[str, str] = {}
    pod_spec: Object = {
        "subdomain": job.metadata.name,
        "serviceAccountName": service_account_name(job),
        "restartPolicy": "Never",
        "securityContext": objects.POD_SECURITY_CONTEXT,
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image,
                "command": plan.command,
                "env": _env(job, plan),
                "resources": spec.resources.model_dump(by_alias=True, exclude_defaults=True),
                "securityContext": objects.CONTAINER_SECURITY_CONTEXT,
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    # Private emptyDirs: /tmp for caches (torch.compile), and /dev/shm, through
                    # which NCCL and DataLoader workers share memory (the runtime gives 64Mi).
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
                    {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108
                    *(mount for _, mount in ca_volumes),
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map_name(job)}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            *(volume for volume, _ in ca_volumes),
        ],
    }
    pod_spec["terminationGracePeriodSeconds"] = spec.termination_grace_period_seconds
    optional = {
        "nodeSelector": spec.node_selector,
        "tolerations": [*spec.tolerations, *lost_node_tolerations(job, spec.tolerations)],
        "affinity": spec.affinity,
        "priorityClassName": spec.priority_class_name,
    }
    pod_spec.update({key: value for key, value in optional.items() if value})
    if spec.scheduling.gang == GangScheduler.VOLCANO:
        pod_spec["schedulerName"] = "volcano"
        annotations[VOLCANO_GROUP_ANNOTATION] = job.metadata.name or ""
    elif spec.scheduling.gang == GangScheduler.SCHEDULER_PLUGINS:
        pod_spec["schedulerName"] = COSCHEDULING_SCHEDULER
        pod_labels[COSCHEDULING_GROUP_LABEL] = job.metadata.name or ""
    metadata: Object = {"labels": pod_labels}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": pod_spec}


LOST_NODE_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
"""The taints the node lifecycle controller puts on a node that stopped answering."""


def lost_node_tolerations(job: TrainingJob, tolerations: list[Object]) -> list[Object]:
    """How long a pod of the job stays on a node that stopped answering before Kubernetes evicts
    it (failurePolicy.unreachableNodeSeconds; Kubernetes gives every pod 300 s), for each such
    taint that the pod's `tolerations` do not already tolerate."""
    seconds = job.spec.failure_policy.unreachable_node_seconds
    tolerated = {toleration.get("key") for toleration in tolerations}
    return [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in LOST_NODE_TAINTS
        if key not in tolerated
    ]


def pod_failure_policy(job: TrainingJob) -> Object:
    """Disruptions never count; permanent exit codes fail at once; the rest count to backoff."""
    policy = job.spec.failure_policy
    rules: list[Object] = [objects.IGNORE_DISRUPTIONS]
    if policy.permanent_exit_codes:
        rules.append(
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": sorted(policy.permanent_exit_codes),
                },
            }
        )
    if policy.retryable_exit_codes:
        rules.append(
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "NotIn",
                    "values": sorted(policy.retryable_exit_codes),
                },
            }
        )
    return {"rules": rules}


def worker_backoff_limit(job: TrainingJob, replicas: int) -> int:
    """The worker Job's backoffLimit: a backstop for when the operator is not watching.

    The operator charges failurePolicy.maxRestarts itself, one restart per broken group, but
    the Job controller counts every failed pod: the one that failed and each worker that stopped
    with it, and deleted pods (which carry no DisruptionTarget condition) too. So the Job allows
    `replicas` failures for each restart the operator may still charge and for each disruption
    it has seen; it is raised as disruptions add up (backoffLimit is mutable).
    """
    restarts = job.status.restarts
    return replicas * (job.spec.failure_policy.max_restarts + 1 + restarts.disruptions)


def build_worker_job(job: TrainingJob, plan: TrainingPlan, *, suspend: bool) -> Object:
    """The Indexed Job of workers: completions = parallelism = replicas."""
    spec = job.spec
    metadata = _metadata(job, job.metadata.name or "", "worker")
    if spec.scheduling.queue_name:
        metadata["labels"][KUEUE_QUEUE_LABEL] = spec.scheduling.queue_name
    job_spec: Object = {
        "completionMode": "Indexed",
        "completions": plan.replicas,
        "parallelism": plan.replicas,
        "backoffLimit": worker_backoff_limit(job, plan.replicas),
        "podFailurePolicy": pod_failure_policy(job),
        # A replacement starts only once the failed pod is gone, so two pods never hold an index.
        "podReplacementPolicy": "Failed",
        "suspend": suspend,
        "template": build_pod_template(job, plan),
    }
    return objects.with_template_hash(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec},
        ("completionMode", "podFailurePolicy", "template"),
    )


def worker_job_suspend(job: TrainingJob, observed_suspend: bool | None) -> bool:
    """Whether the worker Job is suspended: by the TrainingJob, or by its queue.

    With a Kueue queue, Kueue admits a Job by unsuspending it (and may suspend it again to
    preempt it). The Job is created suspended and afterwards the operator keeps whatever value is
    there (observed_suspend; None when the Job does not exist yet), so it never fights Kueue.
    """
    if job.spec.suspend:
        return True
    if job.spec.scheduling.queue_name:
        return True if observed_suspend is None else observed_suspend
    return False


def build_children(
    job: TrainingJob, *, dataset_uri: str | None, observed_suspend: bool | None = None
) -> list[Object]:
    """Every object the TrainingJob should own, each with its desired hash, in apply order.

    observed_suspend: spec.suspend of the existing worker Job, None when there is none.
    """
    plan = build_plan(job, dataset_uri)
    worker_job = build_worker_job(job, plan, suspend=worker_job_suspend(job, observed_suspend))
    if dataset_uri:
        worker_job["metadata"]["annotations"][DATASET_ANNOTATION] = dataset_uri
    children = [
        build_service_account(job),
        build_progress_config_map(job),
        build_progress_role(job),
        build_progress_role_binding(job),
        build_config_map(job, plan),
        build_service(job),
        build_rendezvous_service(job),
        build_rendezvous_deployment(job, plan),
        build_pod_group(job, plan),
        worker_job,
    ]
    return [objects.with_desired_hash(child) for child in children if child is not None]
