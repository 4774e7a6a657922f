"""The pure builders of a TrainingJob's children and the plan they carry."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from kubeforge.api.trainingjob import TrainingJob
from kubeforge.plan import plan_training
from kubeforge_operator import objects
from kubeforge_operator.trainingjob import builders
from tests.trainingjob_cases import FULL_SPEC, MINIMAL_SPEC


def training_job(**spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "metadata": {"name": "tj", "namespace": "ns", "uid": "tj-uid"},
            "spec": {**copy.deepcopy(MINIMAL_SPEC), **spec},
        }
    )


def children(job: TrainingJob, **kwargs: Any) -> dict[str, dict[str, Any]]:
    built = builders.build_children(
        job,
        dataset_uri=kwargs.get("dataset_uri"),
        observed_suspend=kwargs.get("observed_suspend"),
    )
    return {f"{child['kind']}/{child['metadata']['name']}": child for child in built}


def test_every_child_is_owned_labelled_and_hashed() -> None:
    built = children(training_job())
    assert sorted(built) == [
        "ConfigMap/tj-config",
        "ConfigMap/tj-progress",
        "Deployment/tj-rendezvous",
        "Job/tj",
        "Role/tj-progress-writer",
        "RoleBinding/tj-progress-writer",
        "Service/tj",
        "Service/tj-rendezvous",
        "ServiceAccount/tj-trainer",
    ]
    for child in built.values():
        meta = child["metadata"]
        assert meta["namespace"] == "ns"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "kubeforge.dev/v1alpha1",
                "kind": "TrainingJob",
                "name": "tj",
                "uid": "tj-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubeforge-operator"
        assert meta["labels"]["kubeforge.dev/training-job"] == "tj"
        assert len(meta["annotations"][objects.DESIRED_HASH]) == 16


def test_hash_changes_with_the_spec_and_only_then() -> None:
    first = children(training_job())["Job/tj"]["metadata"]["annotations"]
    same = children(training_job())["Job/tj"]["metadata"]["annotations"]
    scaled = children(training_job(replicas=2, maxReplicas=2, minReplicas=1))["Job/tj"]
    assert first == same
    assert scaled["metadata"]["annotations"][objects.DESIRED_HASH] != first[objects.DESIRED_HASH]


def test_elastic_scale_keeps_the_template_so_the_job_is_updated_in_place() -> None:
    two = children(training_job(replicas=2, minReplicas=1, maxReplicas=4))["Job/tj"]
    four = children(training_job(replicas=4, minReplicas=1, maxReplicas=4))["Job/tj"]
    template = objects.TEMPLATE_HASH
    assert two["metadata"]["annotations"][template] == four["metadata"]["annotations"][template]
    assert (four["spec"]["completions"], four["spec"]["parallelism"]) == (4, 4)
    image = children(training_job(replicas=2, minReplicas=1, maxReplicas=4, image="other:2"))
    changed = image["Job/tj"]["metadata"]["annotations"][template]
    assert changed != two["metadata"]["annotations"][template]


def test_worker_config_is_the_trainer_section() -> None:
    job = training_job(checkpoint={"uri": "s3://ckpt/tj", "intervalSteps": 100})
    config_map = children(job, dataset_uri="s3://data/v1/manifest.json")["ConfigMap/tj-config"]
    config = yaml.safe_load(config_map["data"]["trainer.yaml"])
    assert config["jobName"] == "tj"
    assert config["trainer"]["model"]["architecture"] == "mlp"
    assert config["datasetUri"] == "s3://data/v1/manifest.json"
    assert config["checkpoint"]["uri"] == "s3://ckpt/tj"


def test_custom_command_runs_under_the_launcher_without_a_config() -> None:
    job = training_job(trainer=None, command=["-m", "myproject.train", "--lr", "3e-4"])
    built = children(job)
    command = built["Job/tj"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "kubeforge.launch"]
    assert command[-4:] == ["-m", "myproject.train", "--lr", "3e-4"]
    assert built["ConfigMap/tj-config"]["data"] == {}


def test_full_spec_reaches_the_pod_template() -> None:
    job = TrainingJob.model_validate(
        {"metadata": {"name": "tj", "namespace": "ns", "uid": "u"}, "spec": FULL_SPEC}
    )
    pod = children(job, dataset_uri="s3://d/m.json")["Job/tj"]["spec"]["template"]["spec"]
    spec = job.spec
    assert pod["nodeSelector"] == spec.node_selector
    lost_node = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    ]
    assert pod["tolerations"] == [*spec.tolerations, *lost_node]
    assert pod["terminationGracePeriodSeconds"] == spec.termination_grace_period_seconds
    assert pod["affinity"] == spec.affinity
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_the_storage_ca_bundle_is_mounted_and_named_by_aws_ca_bundle() -> None:
    bundle = {"secretKeyRef": {"name": "s3-ca", "key": "bundle.pem"}}
    job = children(training_job(storage={"caBundle": bundle}))["Job/tj"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {var["name"]: var.get("value") for var in container["env"]}
    assert env["AWS_CA_BUNDLE"] == "/etc/kubeforge-ca/storage/ca.crt"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["storage-ca"]["secret"] == {
        "secretName": "s3-ca",
        "items": [{"key": "bundle.pem", "path": "ca.crt"}],
    }
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["storage-ca"] == {
        "name": "storage-ca",
        "mountPath": "/etc/kubeforge-ca/storage",
        "readOnly": True,
    }
    from_config_map = training_job(storage={"caBundle": {"configMapKeyRef": {"name": "s3-ca"}}})
    volume = children(from_config_map)["Job/tj"]["spec"]["template"]["spec"]["volumes"][-1]
    assert volume["configMap"] == {"name": "s3-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}


def test_without_a_storage_ca_bundle_the_workers_trust_the_system_cas() -> None:
    pod = children(training_job())["Job/tj"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "AWS_CA_BUNDLE" not in {var["name"] for var in container["env"]}
    assert "storage-ca" not in {volume["name"] for volume in pod["volumes"]}


def test_kueue_decides_suspend_once_the_job_exists() -> None:
    queued = training_job(scheduling={"queueName": "team-a"})
    first = children(queued)["Job/tj"]
    assert first["spec"]["suspend"] is True
    assert first["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    admitted = children(queued, observed_suspend=False)["Job/tj"]
    assert admitted["spec"]["suspend"] is False
    paused = training_job(scheduling={"queueName": "team-a"}, suspend=True)
    assert children(paused, observed_suspend=False)["Job/tj"]["spec"]["suspend"] is True
    plain = training_job()
    assert children(plain, observed_suspend=True)["Job/tj"]["spec"]["suspend"] is False


def test_gang_scheduling_adds_a_pod_group_and_its_scheduler() -> None:
    job = training_job(replicas=4, minReplicas=2, maxReplicas=4, scheduling={"gang": "volcano"})
    built = children(job)
    group = built["PodGroup/tj"]
    assert group["apiVersion"] == "scheduling.volcano.sh/v1beta1"
    assert group["spec"]["minMember"] == 2
    template = built["Job/tj"]["spec"]["template"]
    assert template["spec"]["schedulerName"] == "volcano"
    assert template["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "tj"
    plugins = children(training_job(scheduling={"gang": "scheduler-plugins"}))
    assert plugins["PodGroup/tj"]["apiVersion"] == "scheduling.x-k8s.io/v1alpha1"
    labels = plugins["Job/tj"]["spec"]["template"]["metadata"]["labels"]
    assert labels["scheduling.x-k8s.io/pod-group"] == "tj"


def test_pod_failure_policy_follows_the_exit_code_rules() -> None:
    job = training_job(failurePolicy={"permanentExitCodes": [2, 1], "retryableExitCodes": [3]})
    rules = builders.pod_failure_policy(job)["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1]["onExitCodes"] == {
        "containerName": "trainer",
        "operator": "In",
        "values": [1, 2],
    }
    assert rules[2]["onExitCodes"]["operator"] == "NotIn"


def test_the_jobs_backoff_limit_never_ends_a_run_the_operator_would_restart() -> None:
    """Each restart the operator may charge can cost the Job one failed pod per worker, and so
    can each disruption, which the operator does not charge."""
    job = training_job(replicas=3, failurePolicy={"maxRestarts": 2})
    assert children(job)["Job/tj"]["spec"]["backoffLimit"] == 3 * (2 + 1)
    disrupted = job.model_copy(update={"status": job.status.model_copy(deep=True)})
    disrupted.status.restarts.disruptions = 4
    assert children(disrupted)["Job/tj"]["spec"]["backoffLimit"] == 3 * (2 + 1 + 4)


def test_plan_is_the_same_for_every_place_it_runs() -> None:
    job = training_job(replicas=2, minReplicas=1, maxReplicas=3, nprocPerNode=2)
    local = plan_training(job, rendezvous_host="127.0.0.1", config_path="/tmp/c.yaml")
    pod = builders.build_plan(job, None)
    assert local.env == pod.env
    assert local.worker_config == pod.worker_config
    differing = [(a, b) for a, b in zip(local.command, pod.command, strict=True) if a != b]
    assert differing == [
        ("--rdzv-endpoint=127.0.0.1:29400", "--rdzv-endpoint=tj-rendezvous.ns.svc:29400"),
        ("--rdzv-id=tj-uid", "--rdzv-id=$(KUBEFORGE_WORKER_JOB_UID)"),
        ("/tmp/c.yaml", "/etc/kubeforge/trainer.yaml"),
    ]
    assert local.rendezvous_command == pod.rendezvous_command
    assert local.world_size == 4


def test_each_worker_job_has_a_rendezvous_run_of_its_own() -> None:
    """The kubelet expands the run id from the pod's environment: its Job's uid, so that the
    agents of a worker Job being replaced cannot join the group of the Job that replaces it."""
    container = children(training_job())["Job/tj"]["spec"]["template"]["spec"]["containers"][0]
    assert "--rdzv-id=$(KUBEFORGE_WORKER_JOB_UID)" in container["command"]
    (uid,) = [e for e in container["env"] if e["name"] == "KUBEFORGE_WORKER_JOB_UID"]
    field = uid["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['batch.kubernetes.io/controller-uid']"


def test_the_rendezvous_store_is_a_pod_of_its_own_that_no_worker_hosts() -> None:
    job = training_job(
        replicas=2,
        minReplicas=1,
        maxReplicas=2,
        priorityClassName="high",
        tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}],
        failurePolicy={"unreachableNodeSeconds": 7},
    )
    built = children(job)
    plan = builders.build_plan(job, None)
    assert "--rdzv-endpoint=tj-rendezvous.ns.svc:29400" in plan.command
    assert "--rdzv-conf=is_host=false,read_timeout=600" in plan.command
    deployment = built["Deployment/tj-rendezvous"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    template = deployment["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    # Not a worker: the status counts, and the headless Service selects, JOB_LABEL's pods.
    assert builders.JOB_LABEL not in pod_labels
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = template["spec"]["containers"]
    assert container["image"] == job.spec.image
    assert container["command"] == [
        "python", "-m", "kubeforge.rendezvous", "--port=29400"
    ]  # fmt: skip
    assert container["securityContext"] == objects.CONTAINER_SECURITY_CONTEXT
    assert template["spec"]["securityContext"] == objects.POD_SECURITY_CONTEXT
    assert template["spec"]["automountServiceAccountToken"] is False
    assert template["spec"]["priorityClassName"] == "high"
    # Not the workers' tolerations (no accelerator), but lost as soon as they would be.
    assert template["spec"]["tolerations"] == [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7}
        for key in builders.LOST_NODE_TAINTS
    ]
    service = built["Service/tj-rendezvous"]["spec"]
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["ports"] == [{"name": "rendezvous", "port": 29400, "protocol": "TCP"}]
    worker = built["Job/tj"]["spec"]["template"]
    assert "ports" not in worker["spec"]["containers"][0]
    assert built["Service/tj"]["spec"]["selector"].items() <= worker["metadata"]["labels"].items()


def test_a_finished_jobs_rendezvous_store_has_no_pod() -> None:
    job = training_job(replicas=2)
    running = children(job)["Deployment/tj-rendezvous"]
    finished = builders.build_finished_rendezvous(job, None)
    assert finished["spec"]["replicas"] == 0
    assert finished["spec"]["template"] == running["spec"]["template"]
    # A different desired hash: applied once when the job finishes, then left alone.
    hashes = [d["metadata"]["annotations"][objects.DESIRED_HASH] for d in (running, finished)]
    assert hashes[0] != hashes[1]


def test_workers_run_torchrun_under_the_launcher_without_restarts_of_their_own() -> None:
    job = training_job(
        replicas=2, minReplicas=1, maxReplicas=3, nprocPerNode=2, failurePolicy={"maxRestarts": 7}
    )
    plan = plan_training(job, rendezvous_host="h", config_path="/c.yaml", rendezvous_port=1)
    assert plan.command == [
        "python",
        "-m",
        "kubeforge.launch",
        "--nnodes=1:3",
        "--nproc-per-node=2",
        "--rdzv-backend=kubeforge",
        "--rdzv-endpoint=h:1",
        "--rdzv-conf=is_host=false,read_timeout=600",
        "--rdzv-id=tj-uid",
        "--max-restarts=0",
        "-m",
        "kubeforge_trainer",
        "--config",
        "/c.yaml",
    ]


def test_the_restart_budget_is_not_in_the_pods_command() -> None:
    """The operator keeps the budget, so changing it does not replace the running Job."""
    job = training_job(failurePolicy={"maxRestarts": 1})
    raised = training_job(failurePolicy={"maxRestarts": 9})
    assert builders.build_plan(job, None).command == builders.build_plan(raised, None).command


def test_the_worker_job_records_the_dataset_it_trains_on() -> None:
    job = training_job()
    worker = children(job, dataset_uri="s3://data/web/v2")["Job/tj"]
    assert worker["metadata"]["annotations"][builders.DATASET_ANNOTATION] == "s3://data/web/v2"
    assert builders.DATASET_ANNOTATION not in children(job)["Job/tj"]["metadata"]["annotations"]


def test_a_toleration_of_lost_nodes_in_the_spec_is_kept_as_written() -> None:
    """unreachableNodeSeconds applies only to the lost-node taints the spec does not tolerate."""
    mine = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    job = TrainingJob.model_validate(
        {
            "metadata": {"name": "tj", "namespace": "ns", "uid": "u"},
            "spec": {
                **FULL_SPEC,
                "tolerations": [mine],
                "failurePolicy": {"unreachableNodeSeconds": 5},
            },
        }
    )
    pod = children(job, dataset_uri="s3://d/m.json")["Job/tj"]["spec"]["template"]["spec"]
    assert pod["tolerations"] == [
        mine,
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 5,
        },
    ]
