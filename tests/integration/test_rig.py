"""The test rig is real: each test exercises one behaviour that only the real component has.

Real: kube-apiserver (admission, RBAC, CEL validation), etcd, kube-controller-manager (Job
controller, garbage collector), kube-scheduler, and the S3 server. Simulated: the kubelet; kwok
moves pods through their phases, and `kubeforge.dev/test-exit-code` chooses how a pod ends.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import Rig
from tests.kube import kube_client, status_message
from tests.polling import wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


EXIT_CODE = "kubeforge.dev/test-exit-code"
GPU_PRODUCT = "nvidia.com/gpu.product"

pytestmark = pytest.mark.integration


def restricted_container(name: str = "main") -> client.V1Container:
    """A container that the `restricted` Pod Security Standard admits."""
    return client.V1Container(
        name=name,
        image="registry.invalid/kubeforge/idle:1",
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False,
            run_as_non_root=True,
            run_as_user=1000,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str:
    phase: str = core.read_namespaced_pod(name, namespace).status.phase
    return phase


def test_server_reports_kubernetes_1_36(api_client: client.ApiClient, rig: Rig) -> None:
    version = client.VersionApi(api_client).get_code()
    assert (version.major, version.minor) == ("1", "36")
    assert re.fullmatch(r"v1\.36\.\d+", version.git_version), version.git_version
    if rig.local:
        assert version.build_date.startswith("20"), "the local build stamps its build date"


@pytest.mark.parametrize(("exit_code", "phase"), [(0, "Succeeded"), (3, "Failed")])
def test_gpu_pod_is_scheduled_on_a_gpu_node_and_ends_as_told(
    core: client.CoreV1Api, namespace: str, exit_code: int, phase: str
) -> None:
    container = restricted_container()
    container.resources = client.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"})
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="gpu"),
            spec=client.V1PodSpec(containers=[container], restart_policy="Never"),
        ),
    )

    wait_for(lambda: pod_phase(core, namespace, "gpu") == "Running", "the GPU pod to run")
    pod = core.read_namespaced_pod("gpu", namespace)
    node = core.read_node(pod.spec.node_name)
    assert GPU_PRODUCT in node.metadata.labels, f"scheduled on {node.metadata.name}, not a GPU node"
    assert int(node.status.allocatable["nvidia.com/gpu"]) >= 1

    core.patch_namespaced_pod(
        "gpu", namespace, {"metadata": {"annotations": {EXIT_CODE: str(exit_code)}}}
    )
    wait_for(lambda: pod_phase(core, namespace, "gpu") == phase, f"the pod to be {phase}")
    terminated = core.read_namespaced_pod("gpu", namespace).status.container_statuses[0].state
    assert terminated.terminated.exit_code == exit_code


def test_pod_without_gpu_request_stays_off_gpu_nodes(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="cpu"),
            spec=client.V1PodSpec(containers=[restricted_container()], restart_policy="Never"),
        ),
    )
    wait_for(lambda: pod_phase(core, namespace, "cpu") == "Running", "the CPU pod to run")
    node = core.read_node(core.read_namespaced_pod("cpu", namespace).spec.node_name)
    assert GPU_PRODUCT not in node.metadata.labels


def test_indexed_job_completes_through_the_job_controller(
    api_client: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(annotations={EXIT_CODE: "0"}),
        spec=client.V1PodSpec(containers=[restricted_container()], restart_policy="Never"),
    )
    batch.create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="indexed"),
            spec=client.V1JobSpec(
                completions=3, parallelism=3, completion_mode="Indexed", template=template
            ),
        ),
    )

    def complete() -> client.V1JobStatus | None:
        status = batch.read_namespaced_job_status("indexed", namespace).status
        done = any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])
        return status if done else None

    status = wait_for(complete, "the Indexed Job to complete")
    assert status.succeeded == 3
    assert status.completed_indexes == "0-2"


def test_privileged_pod_is_refused_in_a_restricted_namespace(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    privileged = client.V1Container(
        name="main",
        image="registry.invalid/kubeforge/idle:1",
        security_context=client.V1SecurityContext(privileged=True),
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(containers=[privileged]),
    )

    def refusal() -> ApiException | None:
        # Admission reads namespace labels from the apiserver's cache: it sees the patch a little
        # later. A dry run creates nothing while it does not.
        try:
            core.create_namespaced_pod(namespace, pod, dry_run="All")
        except ApiException as error:
            return error
        return None

    wait_for(refusal, "PodSecurity admission to enforce the namespace's new label")
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, pod)
    assert refused.value.status == 403
    message = status_message(refused.value)
    assert 'violates PodSecurity "restricted:' in message
    assert 'privileged (container "main" must not set securityContext.privileged=true)' in message

    # The same namespace admits a pod that meets the standard, so the refusal was about privilege.
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="restricted"),
            spec=client.V1PodSpec(containers=[restricted_container()]),
        ),
    )


def test_service_account_without_permission_is_forbidden(
    api_client: client.ApiClient, rig: Rig, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    user = f"system:serviceaccount:{namespace}:reader"
    impersonated = client.CoreV1Api(kube_client(rig.kubeconfig, impersonate=user))

    with pytest.raises(ApiException) as forbidden:
        impersonated.list_namespaced_config_map(namespace)
    assert forbidden.value.status == 403
    assert f'User "{user}" cannot list resource "configmaps"' in status_message(forbidden.value)

    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )
    # Granted, the same request goes through: the 403 came from RBAC, not from the impersonation.
    wait_for(lambda: can_list_config_maps(impersonated, namespace), "RBAC to grant the Role")


def can_list_config_maps(api: client.CoreV1Api, namespace: str) -> bool:
    try:
        api.list_namespaced_config_map(namespace)
    except ApiException as error:
        if error.status == 403:
            return False
        raise
    return True


@pytest.fixture
def widget_crd(api_client: client.ApiClient) -> Iterator[str]:
    """A namespaced CRD with a CEL rule, unique to this test and deleted afterwards."""
    extensions = client.ApiextensionsV1Api(api_client)
    group = f"t{uuid.uuid4().hex[:8]}.kubeforge.dev"
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {
                        "rule": "self.min <= self.max",
                        "message": "min must not exceed max",
                        "fieldPath": ".min",
                    }
                ],
            }
        },
    }
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
    # The client sends a plain dict as it is; its type hints only know the model class.
    extensions.create_custom_resource_definition(crd)  # type: ignore[arg-type]

    def established() -> bool:
        conditions = (
            extensions.read_custom_resource_definition(f"widgets.{group}").status.conditions or []
        )
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, "the CRD to be established")
    yield group
    extensions.delete_custom_resource_definition(f"widgets.{group}")


def test_crd_cel_rule_rejects_an_invalid_object(
    api_client: client.ApiClient, widget_crd: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)

    def widget(name: str, low: int, high: int) -> dict[str, Any]:
        return {
            "apiVersion": f"{widget_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"min": low, "max": high},
        }

    def create(body: dict[str, Any]) -> object:
        return wait_for(
            lambda: created_unless_not_found(objects, widget_crd, namespace, body),
            "the apiserver to serve the new CRD",
        )

    create(widget("valid", 1, 2))
    with pytest.raises(ApiException) as invalid:
        create(widget("invalid", 3, 2))
    assert invalid.value.status == 422
    assert "spec.min: Invalid value" in status_message(invalid.value)
    assert "min must not exceed max" in status_message(invalid.value)


def created_unless_not_found(
    objects: client.CustomObjectsApi, group: str, namespace: str, body: dict[str, Any]
) -> object:
    """Creates the object; None while the apiserver still answers 404 for a just-made CRD."""
    try:
        result: object = objects.create_namespaced_custom_object(
            group, "v1", namespace, "widgets", body
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return result


def test_owner_reference_garbage_collection_deletes_the_child(
    core: client.CoreV1Api, namespace: str
) -> None:
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="child",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            )
        ),
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander"))
    )

    core.delete_namespaced_config_map("owner", namespace)

    def remaining() -> set[str] | None:
        names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        return None if "child" in names else names

    assert "bystander" in wait_for(remaining, "the garbage collector to delete the child")


def test_s3_bucket_round_trip(s3: S3Client, bucket: str) -> None:
    payload = uuid.uuid4().bytes * 1000
    s3.put_object(Bucket=bucket, Key="dir/object.bin", Body=payload)
    assert s3.get_object(Bucket=bucket, Key="dir/object.bin")["Body"].read() == payload
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(item["Key"], item["Size"]) for item in listed] == [("dir/object.bin", len(payload))]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
