"""The Helm chart and the kustomize install on the real control plane, and the operator running
with exactly the permissions the chart grants it.

Real: kube-apiserver (server-side dry-run and apply, RBAC with a real ServiceAccount token,
SubjectAccessReviews, PodSecurity admission at the `restricted` level), the Job, Deployment and
garbage-collector controllers, helm (install, uninstall, adoption of existing CRDs), SeaweedFS,
the local test web, and the operator itself, run in-process and logged in with a token of the
chart's ServiceAccount (never the admin kubeconfig). Simulated: the kubelet (kwok); the crawler
shards, the publish stage and the trainer's workers run as local processes with the pods'
commands and environment, and one progress report is written with the trainer's own sink and its
ServiceAccount's token.

The CRDs are cluster-wide and shared with every other test, so the release that owns them takes
them over (`--take-ownership`) with `crds.keep`, and its uninstall must leave them in place.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import kopf
import lightkube
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config

from kubeforge.api.trainingjob import ProgressStatus
from kubeforge.progress import FILE_ENV, ConfigMapSink
from kubeforge_operator import handlers
from kubeforge_operator.__main__ import parse_args
from tests.argocd import health
from tests.conftest import REPO_ROOT, Rig
from tests.helm import CHART, helm, helm_binary, values_args
from tests.integration.conftest import OperatorThread
from tests.integration.dataingests import Ingests, PodProcesses, remove_bucket
from tests.integration.trainingjobs import Jobs, spec_with
from tests.kube import kube_client
from tests.polling import wait_for
from tests.resources import GROUP, condition, read_or_none
from tests.testweb import LocalWeb, build_web, stop_web
from tests.workloads.trainer_runs import SMALL_GPT, free_port, listening

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

CRD_NAMES = ["trainingjobs.kubeforge.dev", "dataingests.kubeforge.dev"]
CRD_GROUP, RBAC_GROUP = "apiextensions.k8s.io", "rbac.authorization.k8s.io"
SAMPLE_INGEST = REPO_ROOT / "manifests" / "samples" / "dataingest.yaml"
INSTALL = REPO_ROOT / "manifests" / "install"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
CRAWLER_REPOSITORY = "registry.kubeforge.test/crawler"


def kubectl(rig: Rig, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(rig.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def release_name() -> str:
    return f"kf{uuid.uuid4().hex[:8]}"


@pytest.fixture
def installs(rig: Rig) -> Iterator[Callable[..., str]]:
    """Installs the chart (helm --wait) as a fresh release; uninstalls what is left at the end."""
    releases: list[tuple[str, str]] = []

    def install(namespace: str, values: dict[str, Any], *extra: str) -> str:
        release = release_name()
        releases.append((release, namespace))
        helm(
            "install",
            release,
            str(CHART),
            "--kubeconfig",
            str(rig.kubeconfig),
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "120s",
            *values_args(values),
            *extra,
        )
        return release

    yield install
    for release, namespace in releases:
        # Most were uninstalled by the test already; this is the clean-up after a failure.
        subprocess.run(
            [
                helm_binary(),
                "uninstall",
                release,
                "-n",
                namespace,
                "--kubeconfig",
                str(rig.kubeconfig),
            ],
            capture_output=True,
            check=False,
        )


def uninstall(rig: Rig, release: str, namespace: str) -> None:
    helm("uninstall", release, "--kubeconfig", str(rig.kubeconfig), "-n", namespace, "--wait")


def restrict(core: client.CoreV1Api, namespace: str) -> None:
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})


@pytest.fixture
def second_namespace(api_client: client.ApiClient, namespace: str) -> Iterator[str]:
    """Another namespace for the test, enforcing the restricted PodSecurity profile."""
    core = client.CoreV1Api(api_client)
    name = f"{namespace[:50]}-work"
    labels = {"app.kubernetes.io/part-of": "kubeforge-tests", **RESTRICTED}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    Ingests(api_client, name).release_all()
    core.delete_namespace(name)


def service_account_token(core: client.CoreV1Api, namespace: str, name: str) -> str:
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    token: str = core.create_namespaced_service_account_token(name, namespace, request).status.token
    return token


def token_kubeconfig(rig: Rig, token: str, path: Path) -> Path:
    """A kubeconfig for the rig's apiserver that authenticates with `token` alone."""
    admin = yaml.safe_load(Path(rig.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "rig", "cluster": cluster}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "rig", "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return path


def allowed(
    authz: client.AuthorizationV1Api,
    user: str,
    verb: str,
    resource: str,
    namespace: str = "",
    group: str = "",
) -> bool:
    """Whether the apiserver's authorizer lets `user` (a ServiceAccount) do this; `resource` may
    name a subresource (`dataingests/status`)."""
    plural, _, subresource = resource.partition("/")
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=["system:serviceaccounts", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                group=group,
                resource=plural,
                subresource=subresource or None,
                namespace=namespace,
            ),
        )
    )
    answer: bool = authz.create_subject_access_review(review).status.allowed
    return answer


# --- rendering accepted by the apiserver --------------------------------------------------------


def test_chart_and_kustomize_install_pass_server_side_dry_run(
    rig: Rig, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    """Every object of both install methods, as the apiserver would store it: schemas,
    admission (PodSecurity restricted on the operator's pod), and RBAC's escalation checks."""
    core = client.CoreV1Api(kube_client(rig.kubeconfig))
    restrict(core, namespace)
    values = {
        "watchNamespaces": [namespace],
        "podDisruptionBudget.enabled": True,
        "extraEnv": [{"name": "AWS_REGION", "value": "us-east-1"}],
    }
    rendered = helm(
        "template", release_name(), str(CHART), "--namespace", namespace, *values_args(values)
    )
    out = kubectl(
        rig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
        stdin=rendered,
    )
    assert "deployment.apps/" in out
    assert "customresourcedefinition.apiextensions.k8s.io/trainingjobs.kubeforge.dev" in out
    # The kustomize install, moved to the test's namespace by an overlay, as a user would.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"namespace": namespace, "resources": [os.path.relpath(INSTALL, overlay)]})
    )
    out = kubectl(
        rig, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", str(overlay)
    )
    assert "clusterrole.rbac.authorization.k8s.io/kubeforge " in out
    assert f"namespace/{namespace} serverside-applied (server dry run)" in out


# --- helm install and uninstall -----------------------------------------------------------------


def test_cluster_wide_install_grants_the_operator_rules_and_uninstalls_cleanly(
    rig: Rig, crds: list[str], namespace: str, installs: Callable[..., str]
) -> None:
    api = kube_client(rig.kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    authz, rbac = client.AuthorizationV1Api(api), client.RbacAuthorizationV1Api(api)
    restrict(core, namespace)
    release = installs(namespace, {"crds.enabled": False})
    fullname = f"{release}-kubeforge"

    # The operator's pod was admitted under the restricted profile, and is ready (kwok).
    deployment = apps.read_namespaced_deployment(fullname, namespace)
    assert deployment.status.available_replicas == 1
    (pod,) = core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={release}"
    ).items
    assert pod.spec.security_context.run_as_non_root is True

    operator = f"system:serviceaccount:{namespace}:{fullname}"
    anywhere = ["default", namespace, "kube-system"]
    for ns in anywhere:
        assert allowed(authz, operator, "watch", "trainingjobs", ns, GROUP)
        assert allowed(authz, operator, "patch", "dataingests/status", ns, GROUP)
        assert allowed(authz, operator, "create", "jobs", ns, "batch")
        assert allowed(authz, operator, "get", "secrets", ns)
        assert not allowed(authz, operator, "list", "secrets", ns)
        assert not allowed(authz, operator, "create", "pods", ns)
        assert not allowed(authz, operator, "create", "pods/exec", ns)
        assert not allowed(authz, operator, "update", "trainingjobs", ns, GROUP)
        assert not allowed(authz, operator, "escalate", "roles", ns, RBAC_GROUP)
    assert allowed(authz, operator, "watch", "customresourcedefinitions", group=CRD_GROUP)
    assert not allowed(authz, operator, "patch", "customresourcedefinitions", group=CRD_GROUP)
    assert not allowed(authz, operator, "delete", "namespaces")
    # The aggregated roles reach the built-in ones: a namespace editor may run TrainingJobs.
    edit = wait_for(
        lambda: any(
            "trainingjobs" in (rule.resources or [])
            for rule in rbac.read_cluster_role("edit").rules or []
        ),
        "the edit role to aggregate kubeforge's rules",
    )
    assert edit

    uninstall(rig, release, namespace)
    selector = f"app.kubernetes.io/instance={release}"
    assert rbac.list_cluster_role(label_selector=selector).items == []
    assert rbac.list_cluster_role_binding(label_selector=selector).items == []
    assert read_or_none(lambda: apps.read_namespaced_deployment(fullname, namespace)) is None
    for name in CRD_NAMES:  # the release never had them
        client.ApiextensionsV1Api(api).read_custom_resource_definition(name)


def test_crds_owned_by_a_release_stay_after_its_uninstall(
    rig: Rig, crds: list[str], namespace: str, installs: Callable[..., str]
) -> None:
    api = kube_client(rig.kubeconfig)
    extensions = client.ApiextensionsV1Api(api)
    values = {"crds.enabled": True, "crds.keep": True, "replicaCount": 0}
    # Other tests installed the CRDs; this release takes them over, as after `kubectl apply`.
    release = installs(namespace, values, "--take-ownership")
    for name in CRD_NAMES:
        crd = extensions.read_custom_resource_definition(name)
        assert crd.metadata.annotations["meta.helm.sh/release-name"] == release
        assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    before = {
        name: extensions.read_custom_resource_definition(name).metadata.uid for name in CRD_NAMES
    }

    out = helm("uninstall", release, "--kubeconfig", str(rig.kubeconfig), "-n", namespace, "--wait")
    assert "kept due to the resource policy" in out or "These resources were kept" in out
    for name in CRD_NAMES:
        crd = extensions.read_custom_resource_definition(name)
        assert crd.metadata.uid == before[name]
        assert crd.metadata.deletion_timestamp is None
    # Still served: the resources of every other test are intact.
    Jobs(api, namespace).names()


# --- the operator with the chart's identity -----------------------------------------------------


@pytest.fixture
def test_web() -> Iterator[LocalWeb]:
    web = build_web()
    yield web
    stop_web(web)


@pytest.fixture
def operators() -> Iterator[Callable[..., OperatorThread]]:
    """Starts the operator in-process for a namespace; stops every one at the end."""
    running: list[OperatorThread] = []

    def start(namespace: str, **settings: Any) -> OperatorThread:
        running.append(OperatorThread(namespace, **settings).start())
        return running[-1]

    yield start
    for operator in running:
        operator.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[PodProcesses]:
    started = PodProcesses(tmp_path)
    yield started
    started.stop()


def as_operator(rig: Rig, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points every login path of the operator (kopf's and lightkube's) at the token alone, and
    checks that each of them would use it."""
    path = token_kubeconfig(rig, token, tmp_path / "operator.kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    # The official client reads $KUBECONFIG once, when imported; kopf logs in through it.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    login = cast(Callable[..., kopf.ConnectionInfo | None], handlers.login)
    info = login(logger=logging.getLogger("login"), settings=kopf.OperatorSettings())
    assert info is not None
    assert (info.token, info.certificate_path, info.private_key_path) == (token, None, None)
    config = lightkube.KubeConfig.from_env().get()
    assert config is not None
    assert (config.user.token, config.user.client_cert) == (token, None)
    return path


@pytest.mark.timeout(600)  # a real crawl, publish and training lifecycle on a shared machine
def test_operator_with_the_charts_permissions_runs_both_lifecycles(
    rig: Rig,
    s3: S3Client,
    crds: list[str],
    namespace: str,
    second_namespace: str,
    installs: Callable[..., str],
    operators: Callable[..., OperatorThread],
    test_web: LocalWeb,
    processes: PodProcesses,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The chart installed in one namespace, watching another: the operator, logged in as the
    chart's ServiceAccount, takes a DataIngest (Delete policy) and a TrainingJob on its dataset
    through their whole lives there, every pod admitted as restricted, without one refusal."""
    admin = kube_client(rig.kubeconfig)
    core = client.CoreV1Api(admin)
    work = second_namespace
    release = installs(
        namespace,
        {
            "crds.enabled": False,
            "replicaCount": 0,
            "watchNamespaces": [work],
            "crawler.image.repository": CRAWLER_REPOSITORY,
        },
    )
    token = service_account_token(core, namespace, f"{release}-kubeforge")
    operator_kubeconfig = as_operator(rig, token, tmp_path, monkeypatch)

    # What the identity must not do: Secrets elsewhere, enumerating them, other namespaces.
    identity = kube_client(operator_kubeconfig)
    as_sa = client.CoreV1Api(identity)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="elsewhere"), string_data={"k": "v"}),
    )
    refusals = [
        lambda: as_sa.read_namespaced_secret("elsewhere", namespace),
        lambda: as_sa.list_namespaced_secret(work),
        lambda: as_sa.list_namespaced_pod("default"),
        lambda: Jobs(identity, "default").names(),
        lambda: as_sa.create_namespaced_pod(
            work,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="intruder"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
            ),
        ),
    ]
    for refused in refusals:
        with pytest.raises(ApiException) as denied:
            refused()
        assert denied.value.status == 403
    # The namespace does enforce the restricted profile: a pod without its settings is refused.
    with pytest.raises(ApiException) as unrestricted:
        core.create_namespaced_pod(
            work,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="unrestricted"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
            ),
        )
    assert "violates PodSecurity" in unrestricted.value.body

    caplog.set_level(logging.WARNING)
    # The operator runs with the flags of the chart's Deployment, as its pod would.
    apps = client.AppsV1Api(admin)
    deployment = apps.read_namespaced_deployment(f"{release}-kubeforge", namespace)
    flags = parse_args(deployment.spec.template.spec.containers[0].args)
    operators(work, crawler_image=flags.crawler_image)
    ingests, jobs = Ingests(admin, work), Jobs(admin, work)

    # A DataIngest from the sample, crawling this test's web, deleting its data when deleted.
    sample = yaml.safe_load(SAMPLE_INGEST.read_text())
    spec = sample["spec"]
    spec["sources"].update(seeds=[test_web.url("docs-a", "/")], maxPages=60)
    spec["storage"].update(
        bucket=f"kf-chart-{uuid.uuid4().hex[:10]}",
        endpoint=rig.s3_endpoint,
        deletionPolicy="Delete",
    )
    bucket = spec["storage"]["bucket"]
    core.create_namespaced_secret(
        work,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=spec["storage"]["credentialsSecretRef"]["name"]),
            string_data={
                "AWS_ACCESS_KEY_ID": rig.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
            },
        ),
    )
    secrets = {"rig-s3": ingests.secret_data("rig-s3")}
    caplog.set_level(logging.DEBUG)  # every line the operator logs is searched for the secret
    try:
        written = run_both_lifecycles(rig, ingests, jobs, processes, spec, secrets)
    finally:
        remove_bucket(s3, bucket)

    # The secret key went from the Secret to the crawler, publish and trainer processes only: no
    # log line of the operator or of those processes, no status, Event or ConfigMap shows it.
    logs = [path.read_text() for path in sorted(processes.logs.glob("*.log"))]
    texts = [caplog.text, *logs, *written, *api_texts(admin, work)]
    shown = [text for text in texts if rig.s3_secret_key in text]
    assert not shown, f"the secret appears in {len(shown)} of {len(texts)} texts"

    # A refused request fails a reconcile, which logs the ApiError (403 Forbidden) with its
    # traceback; a refused watch makes kopf warn of missing permissions.
    # (The namespaces are named after this test, whose name says "permissions": not a complaint.)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    lines = [line.replace(work, "").replace(namespace, "") for line in warnings]
    complaints = [
        line
        for line in lines
        if any(word in line for word in ("403", "Forbidden", "forbidden", "permission"))
    ]
    assert complaints == []


def run_both_lifecycles(
    rig: Rig,
    ingests: Ingests,
    jobs: Jobs,
    processes: PodProcesses,
    spec: dict[str, Any],
    secrets: dict[str, dict[str, str]],
) -> list[str]:
    """Runs both; returns what kubeforge had written to the API before the deletions
    (api_texts)."""
    ingests.create("docs", spec)
    bucket, credentials = spec["storage"]["bucket"], spec["storage"]["credentialsSecretRef"]
    jobs.create(
        "gpt",
        spec_with(
            replicas=2,
            trainer={"model": SMALL_GPT, "batch": {"globalSize": 16}, "steps": 20},
            dataset={"datasetRef": {"name": "docs"}},
            checkpoint={"uri": f"s3://{bucket}/checkpoints/gpt", "intervalSteps": 10},
            # The workers' S3 credentials come from the DataIngest's Secret, as a user gives them.
            env=[
                {"name": "AWS_ENDPOINT_URL", "value": rig.s3_endpoint},
                {"name": "AWS_REGION", "value": rig.s3_region},
                *(
                    {
                        "name": variable,
                        "valueFrom": {
                            "secretKeyRef": {"name": credentials["name"], "key": variable}
                        },
                    }
                    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                ),
            ],
            failurePolicy={"maxRestarts": 3},
            ttlSecondsAfterFinished=3,
        ),
    )
    waiting = jobs.wait_reason("gpt", "WaitingForDataset")
    assert health(waiting).status == "Progressing"

    # A job that cannot start: Degraded while stalled, then failed and its workers stopped.
    jobs.create(
        "blocked", spec_with(image="kubeforge.test/image-pull-backoff", startDeadlineSeconds=8)
    )
    stalled = jobs.wait_reason("blocked", "ImagePullBackOff")
    assert health(stalled).status == "Degraded"
    failed = jobs.wait_phase("blocked", "Failed", timeout=60)
    assert condition(failed["status"], "Failed")["reason"] == "StartDeadlineExceeded"
    assert health(failed).status == "Degraded"
    wait_for(lambda: jobs.worker_job("blocked").spec.suspend, "the workers to be stopped")

    # Crawl: every shard admitted as restricted, run as its pod would run it.
    assert "kubeforge.dev/delete-data" in wait_for(
        lambda: ingests.get("docs")["metadata"].get("finalizers"), "the finalizer"
    )
    crawl = ingests.job("docs-crawl")
    # The sample names no image: the chart's crawler.image, tagged with its appVersion.
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    (container,) = crawl.spec.template.spec.containers
    assert container.image == f"{CRAWLER_REPOSITORY}:{app_version}"
    config = ingests.core.read_namespaced_config_map("docs-crawler", ingests.namespace).data
    pods = ingests.running_pods("docs-crawl", 2)
    assert health(ingests.wait_phase("docs", "Crawling")).status == "Progressing"
    processes.wait([processes.start(crawl, config, secrets, index=i) for i in range(2)])
    for pod in pods:
        ingests.end_pod(pod, 0)
    publish = ingests.job("docs-publish")
    (publisher,) = ingests.running_pods("docs-publish", 1)
    processes.wait([processes.start(publish, config, secrets)])
    ingests.end_pod(publisher, 0)
    published = ingests.wait_phase("docs", "Succeeded")
    assert health(published).status == "Healthy"
    assert published["status"].get("dataset", {}).get("documents", 0) > 0, published["status"]

    # Train on it: workers admitted as restricted, a progress report through the Role the
    # operator granted, a counted failure, a suspension, success, and deletion after the TTL.
    workers = jobs.running_pods("gpt", 2)
    sink = progress_sink(rig, jobs, "gpt")
    sink.write(ProgressStatus(step=7, loss=2.5))
    # The operator's pod cache and its progress cache are separate watches: wait for both.
    running = jobs.wait(
        "gpt",
        "Running at step 7",
        lambda s: s.get("phase") == "Running" and (s.get("progress") or {}).get("step") == 7,
    )
    assert health(running).message.endswith("step 7")
    jobs.end_pod(workers[0], 3)
    jobs.wait("gpt", "a restart", lambda s: s.get("restarts", {}).get("count") == 1)
    workers = jobs.running_pods("gpt", 2)
    jobs.patch_spec("gpt", {"suspend": True})
    assert health(jobs.wait_phase("gpt", "Suspended")).status == "Suspended"
    wait_for(
        lambda: all(pod.status.phase == "Failed" for pod in jobs.pods("gpt")),
        "the running workers to go (the failed one stays)",
    )
    jobs.patch_spec("gpt", {"suspend": False})
    # The resumed group trains for real: both workers run as their pods would, reading the
    # published dataset and checkpointing with the Secret's credentials (their logs are searched).
    pods = jobs.running_pods("gpt", 2)
    train_locally(jobs, processes, secrets)
    for pod in pods:
        jobs.end_pod(pod, 0)
    succeeded = jobs.wait_phase("gpt", "Succeeded")
    assert health(succeeded).status == "Healthy"
    wait_for(lambda: read_or_none(lambda: jobs.get("gpt")) is None, "deletion after the TTL")

    written = api_texts(ingests.core.api_client, ingests.namespace)
    # Deleting the DataIngest deletes its Jobs, its data and its bucket, then the finalizer.
    ingests.delete("docs")
    wait_for(lambda: read_or_none(lambda: ingests.get("docs")) is None, "the deletion", 60)
    ingests.wait_event("docs", "DataDeleted")
    return written


def train_locally(jobs: Jobs, processes: PodProcesses, secrets: dict[str, dict[str, str]]) -> None:
    """Runs the TrainingJob gpt's rendezvous store and two workers as local processes, to the
    end of training. The store is on a free loopback port (no pod DNS here); progress goes to a
    file."""
    workers = jobs.worker_job("gpt")
    (volume,) = [v for v in workers.spec.template.spec.volumes if v.name == "config"]
    config = jobs.core.read_namespaced_config_map(volume.config_map.name, jobs.namespace).data
    (container,) = workers.spec.template.spec.containers
    (endpoint,) = [a for a in container.command if a.startswith("--rdzv-endpoint=")]
    store = client.AppsV1Api(jobs.core.api_client).read_namespaced_deployment(
        "gpt-rendezvous", jobs.namespace
    )
    (store_container,) = store.spec.template.spec.containers
    (store_port,) = [a for a in store_container.command if a.startswith("--port=")]
    port = free_port()
    store_command = [
        sys.executable if a == "python" else f"--port={port}" if a == store_port else a
        for a in store_container.command
    ]
    with (processes.logs / "rendezvous.log").open("ab") as log:
        rendezvous = subprocess.Popen(store_command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listening(port), f"the rendezvous on port {port}", timeout=120)
        arguments = {endpoint: f"--rdzv-endpoint=127.0.0.1:{port}"}
        env = {FILE_ENV: str(processes.logs / "progress.json"), "OMP_NUM_THREADS": "1"}
        started = [
            processes.start(workers, config, secrets, index, arguments, env) for index in range(2)
        ]
        processes.wait(started, timeout=240)
    finally:
        rendezvous.kill()
        rendezvous.wait()


def api_texts(api: client.ApiClient, namespace: str) -> list[str]:
    """Everything kubeforge wrote to the API in the namespace, as text: the resources (status
    included), Events and ConfigMaps."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    texts = [
        json.dumps(custom.list_namespaced_custom_object(GROUP, "v1alpha1", namespace, plural))
        for plural in ("trainingjobs", "dataingests")
    ]
    texts += [str(event.message) for event in core.list_namespaced_event(namespace).items]
    texts += [
        json.dumps(config_map.data or {})
        for config_map in core.list_namespaced_config_map(namespace).items
    ]
    return texts


def progress_sink(rig: Rig, jobs: Jobs, name: str) -> ConfigMapSink:
    """Rank 0's sink, with a token of the ServiceAccount the operator made for the workers."""
    wait_for(
        lambda: read_or_none(
            lambda: jobs.core.read_namespaced_service_account(f"{name}-trainer", jobs.namespace)
        ),
        "the trainer's ServiceAccount",
    )
    token = service_account_token(jobs.core, jobs.namespace, f"{name}-trainer")
    cluster = yaml.safe_load(Path(rig.kubeconfig).read_text())["clusters"][0]["cluster"]
    return ConfigMapSink(
        api_url=cluster["server"],
        namespace=jobs.namespace,
        name=f"{name}-progress",
        token=token,
        ca_file=Path(cluster["certificate-authority"]),
    )


# --- least privilege, as the apiserver reports it ------------------------------------------------

Permission = tuple[str, str, str, tuple[str, ...]]
"""(API group, resource, verb, resource names): one effective permission."""
PERMISSIONS_DOC = REPO_ROOT / "docs" / "permissions.md"


def documented(section: str) -> set[Permission]:
    """The rows of one section's table in docs/permissions.md, one permission per verb."""
    text = PERMISSIONS_DOC.read_text()
    body = text[text.index(f"## {section}") :].split("\n## ")[0]
    permissions: set[Permission] = set()
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] == "API group" or set(cells[0]) <= {"-"}:
            continue
        group = "" if cells[0] == "core" else cells[0]
        names = tuple(cells[2:-1])
        for verb in cells[-1].split(", "):
            permissions.add((group, cells[1], verb, names))
    return permissions


def effective(rig: Rig, core: client.CoreV1Api, namespace: str, account: str) -> set[Permission]:
    """What `account` may do in `namespace`: a SelfSubjectRulesReview made with its own token,
    expanded to one permission per group, resource and verb."""
    token = service_account_token(core, namespace, account)
    with tempfile.TemporaryDirectory() as directory:
        api = kube_client(token_kubeconfig(rig, token, Path(directory) / "kubeconfig"))
    review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(
            spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace)
        )
    )
    assert not review.status.incomplete, review.status.evaluation_error
    return {
        (group, resource, verb, tuple(rule.resource_names or ()))
        for rule in review.status.resource_rules
        for group in rule.api_groups or [""]
        for resource in rule.resources or []
        for verb in rule.verbs
    }


def test_effective_permissions_are_exactly_the_documented_ones(
    rig: Rig,
    crds: list[str],
    namespace: str,
    installs: Callable[..., str],
    operator: OperatorThread,
) -> None:
    """The chart's operator account and a job's worker account may do what docs/permissions.md
    lists, no more and no less; a namespace editor may run both kinds of resource."""
    api = kube_client(rig.kubeconfig)
    core, authz = client.CoreV1Api(api), client.AuthorizationV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    everyone = effective(rig, core, namespace, "nobody")  # what any authenticated user may do

    release = installs(namespace, {"crds.enabled": False})
    operator_account = effective(rig, core, namespace, f"{release}-kubeforge") - everyone
    assert operator_account == documented("The operator")

    jobs = Jobs(api, namespace)
    jobs.create("least", spec_with())
    wait_for(
        lambda: read_or_none(
            lambda: client.RbacAuthorizationV1Api(api).read_namespaced_role_binding(
                "least-progress-writer", namespace
            )
        ),
        "the progress writer's binding",
    )
    workers = effective(rig, core, namespace, "least-trainer") - everyone
    assert workers == {
        (group, resource, verb, tuple(name.replace("NAME", "least") for name in names))
        for group, resource, verb, names in documented("A training job's workers")
    }

    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="alice-edits"),
            role_ref=client.V1RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name="edit"),
            subjects=[client.RbacV1Subject(api_group=RBAC_GROUP, kind="User", name="alice")],
        ),
    )
    for verb in ("create", "watch", "delete", "patch"):
        for plural in ("trainingjobs", "dataingests"):
            assert allowed(authz, "alice", verb, plural, namespace, GROUP), (verb, plural)
    assert not allowed(authz, "alice", "create", "trainingjobs", "default", GROUP)
