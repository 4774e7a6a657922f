"""The Helm chart, rendered by the real helm with several sets of values, and what is made from it.

Real: helm (the pinned build), the chart's values.schema.json as helm enforces it, the Kubernetes
1.36 OpenAPI schemas (the `kubernetes-validate` package, strict: unknown fields are errors), the
CRD schemas the generator builds, and the kustomize install renderer. Nothing talks to a cluster:
tests/integration/test_chart_install.py installs the chart on the rig.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubeforge_operator import handlers
from kubeforge_operator.crds import RESOURCES, build_crd
from tests.conftest import REPO_ROOT
from tests.helm import CHART, Manifest, by_kind, helm, one, render, render_error, values_args

KUBERNETES_VERSION = "1.36.0"
INSTALL = REPO_ROOT / "manifests" / "install"
GITOPS = REPO_ROOT / "manifests" / "gitops"
RENDER_INSTALL = REPO_ROOT / "hack" / "render_install.py"
CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
SCHEMA = yaml.safe_load((CHART / "values.schema.json").read_text())
FULLNAME = "kf-kubeforge"
NAMESPACED = {"watchNamespaces": ["team-a", "team-b"]}
EVERYTHING_ON = {
    "watchNamespaces": ["team-a"],
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": None},
    "metrics.serviceMonitor": {"enabled": True, "interval": "30s", "labels": {"release": "prom"}},
    "serviceAccount.annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/kf"},
    "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
    "imagePullSecrets": [{"name": "regcred"}],
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                ]
            }
        }
    },
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "priorityClassName": "system-cluster-critical",
    "verbose": True,
}
VALUE_SETS = {"defaults": {}, "namespaced": NAMESPACED, "everything-on": EVERYTHING_ON}


@pytest.fixture(scope="module")
def defaults() -> list[Manifest]:
    return render()


def rules_of(role: Manifest) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, merged over the role's rules."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


# --- lint, schema, documentation ----------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_is_clean_in_strict_mode(values: dict[str, Any]) -> None:
    out = helm("lint", "--strict", str(CHART), *values_args(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 1}, "additional properties 'replicas' not allowed"),
        ({"crds": {"enabled": True, "keep": True, "upgrade": True}}, "'upgrade' not allowed"),
        ({"image.registry": "ghcr.io"}, "'registry' not allowed"),
        ({"metrics.serviceMonitor.intervall": "30s"}, "'intervall' not allowed"),
        ({"resources.request": {"cpu": 1}}, "'request' not allowed"),
        ({"securityContext.runAsUserr": 1}, "'runAsUserr' not allowed"),
        ({"podDisruptionBudget.max": 1}, "'max' not allowed"),
        ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, "'effects' not allowed"),
        ({"replicaCount": 2}, "value must be one of 0, 1"),
        ({"watchNamespaces": ["Team_A"]}, "does not match pattern"),
        ({"image.digest": "latest"}, "does not match pattern"),
        ({"crawler.image.pullPolicy": "Always"}, "'pullPolicy' not allowed"),
        ({"crawler.image.digest": "sha256:abc"}, "does not match pattern"),
        ({"resources.limits": {"memory": "lots"}}, "does not match pattern"),
        ({"metrics.port": 0}, "minimum"),
    ],
)
def test_schema_refuses_unknown_keys_and_bad_values(values: dict[str, Any], complaint: str) -> None:
    assert complaint in render_error(values)


def _schema_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, child in node.items():
            yield from _schema_nodes(child, f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _schema_nodes(child, f"{path}/{index}")


def test_schema_is_strict_at_every_level() -> None:
    """Every object node refuses unknown keys, except the documented Kubernetes passthrough."""
    loose = [
        path
        for path, node in _schema_nodes(SCHEMA)
        if (node.get("type") == "object" or "properties" in node)
        and "additionalProperties" not in node
        and path != "/definitions/kubernetesObject"
    ]
    assert loose == []
    assert all(
        node["additionalProperties"] is not True
        for _, node in _schema_nodes(SCHEMA)
        if "additionalProperties" in node
    )


def _values_tree(lines: list[str]) -> list[tuple[str, bool, int]]:
    """(dotted key, has a comment right above it, line index) of every key in values.yaml."""
    keys: list[tuple[str, bool, int]] = []
    stack: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([*(name for _, name in stack), match.group(2)])
        stack.append((indent, match.group(2)))
        keys.append((dotted, index > 0 and lines[index - 1].lstrip().startswith("#"), index))
    return keys


def test_every_value_is_documented_and_in_the_schema() -> None:
    """Each value in values.yaml has a comment (its own or its group's), and the
    values and the schema name the same keys, down to where Kubernetes objects begin."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = _values_tree((CHART / "values.yaml").read_text().splitlines())
    documented = {key for key, commented, _ in keys if commented}
    leaves = [key for key, _, _ in keys if not any(k.startswith(f"{key}.") for k, _, _ in keys)]
    undocumented = [
        leaf
        for leaf in leaves
        if not any(leaf == d or leaf.startswith(f"{d}.") for d in documented)
    ]
    assert undocumented == [], "values without a comment in values.yaml"

    def schema_keys(node: dict[str, Any], prefix: str = "") -> set[str]:
        node = _resolve(node)
        found = set()
        for name, child in node.get("properties", {}).items():
            found.add(f"{prefix}{name}")
            assert child.get("description"), f"{prefix}{name} has no description in the schema"
            resolved = _resolve(child)
            if "properties" in resolved and prefix + name not in KUBERNETES_VALUES:
                found |= schema_keys(resolved, f"{prefix}{name}.")
        return found

    def value_keys(node: Any, prefix: str = "") -> set[str]:
        found = set()
        for name, child in node.items():
            found.add(f"{prefix}{name}")
            if isinstance(child, dict) and prefix + name not in KUBERNETES_VALUES:
                found |= value_keys(child, f"{prefix}{name}.")
        return found

    assert value_keys(values) == schema_keys(SCHEMA)


# Values whose content is a Kubernetes object (its keys are Kubernetes', not the chart's).
KUBERNETES_VALUES = {"resources", "podSecurityContext", "securityContext", "affinity"}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        resolved: dict[str, Any] = SCHEMA["definitions"][node["$ref"].rpartition("/")[2]]
        return resolved
    return node


# --- what the chart renders ---------------------------------------------------------------------


def test_defaults_render_the_operator_cluster_wide(defaults: list[Manifest]) -> None:
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in defaults)
    assert kinds == sorted(
        [
            ("ClusterRole", FULLNAME),
            ("ClusterRole", f"{FULLNAME}-kopf"),
            ("ClusterRole", f"{FULLNAME}-edit"),
            ("ClusterRole", f"{FULLNAME}-view"),
            ("ClusterRoleBinding", FULLNAME),
            ("ClusterRoleBinding", f"{FULLNAME}-kopf"),
            ("CustomResourceDefinition", "dataingests.kubeforge.dev"),
            ("CustomResourceDefinition", "trainingjobs.kubeforge.dev"),
            ("Deployment", FULLNAME),
            ("Service", f"{FULLNAME}-metrics"),
            ("ServiceAccount", FULLNAME),
        ]
    )
    deployment = one(defaults, "Deployment")
    spec = deployment["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"kubeforge/operator:{CHART_YAML['appVersion']}"
    assert container["args"] == [
        "--metrics-port=8080",
        "--health-port=8081",
        f"--crawler-image=kubeforge/crawler:{CHART_YAML['appVersion']}",
    ]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert pod["serviceAccountName"] == FULLNAME
    service = one(defaults, "Service")
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_operator_pod_meets_the_restricted_pod_security_profile(defaults: list[Manifest]) -> None:
    pod = one(defaults, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert {volume["name"]: volume for volume in pod["volumes"]}["tmp"]["emptyDir"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod


def test_crds_are_the_generated_ones_gated_and_kept() -> None:
    kept = by_kind(render(), "CustomResourceDefinition")
    assert {crd["metadata"]["name"]: crd["spec"] for crd in kept} == {
        build_crd(resource)["metadata"]["name"]: build_crd(resource)["spec"]
        for resource in RESOURCES
    }
    for crd in kept:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "kf"
    unkept = by_kind(render({"crds.keep": False}), "CustomResourceDefinition")
    assert len(unkept) == 2
    assert all("annotations" not in crd["metadata"] for crd in unkept)
    assert by_kind(render({"crds.enabled": False}), "CustomResourceDefinition") == []


def test_namespaced_watching_grants_roles_only_in_the_watched_namespaces() -> None:
    cluster = render()
    namespaced = render(NAMESPACED)
    operator_rules = rules_of(one(cluster, "ClusterRole", FULLNAME))
    roles = by_kind(namespaced, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_of(role) == operator_rules
        binding = one(
            [
                b
                for b in by_kind(namespaced, "RoleBinding")
                if b["metadata"]["namespace"] == role["metadata"]["namespace"]
            ],
            "RoleBinding",
        )
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": "kubeforge-system"}
        ]
    cluster_roles = {role["metadata"]["name"] for role in by_kind(namespaced, "ClusterRole")}
    assert cluster_roles == {f"{FULLNAME}-kopf", f"{FULLNAME}-edit", f"{FULLNAME}-view"}
    assert [b["metadata"]["name"] for b in by_kind(namespaced, "ClusterRoleBinding")] == [
        f"{FULLNAME}-kopf"
    ]
    (container,) = one(namespaced, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"][-2:] == ["--namespace=team-a", "--namespace=team-b"]
    # The one cluster-wide grant of a namespaced install: kopf's read-only observation.
    assert rules_of(one(namespaced, "ClusterRole", f"{FULLNAME}-kopf")) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }


def test_operator_rules_cover_what_the_operator_watches_and_applies(
    defaults: list[Manifest],
) -> None:
    granted = rules_of(one(defaults, "ClusterRole", FULLNAME))
    applied = {(group, plural) for group, _, plural, _ in handlers.OWNED_KINDS}
    applied |= {(group, plural) for group, _, plural, _ in handlers.INGEST_OWNED_KINDS}
    applied.add(("batch", "jobs"))
    for key in applied:
        assert {"list", "watch", "create", "patch"} <= granted[key], key
    for key in [("kubeforge.dev", "trainingjobs"), ("kubeforge.dev", "dataingests"), ("", "pods")]:
        assert {"list", "watch"} <= granted[key], key
    assert granted[("kubeforge.dev", "trainingjobs/status")] == {"patch"}
    assert granted[("kubeforge.dev", "dataingests/status")] == {"patch"}
    # The least that works: no wildcard, no enumeration of Secrets, no pods of its own, no exec,
    # and no escalate or bind (it grants a progress writer only what it holds itself).
    assert granted[("", "secrets")] == {"get"}
    assert granted[("", "events")] == {"create"}
    assert "create" not in granted[("", "pods")]
    assert not any("*" in key or "*" in verbs for key, verbs in granted.items())
    assert ("", "pods/exec") not in granted
    assert not any({"escalate", "bind", "impersonate"} & verbs for verbs in granted.values())
    assert {"get", "patch"} <= granted[("", "configmaps")]


def test_rbac_rules_carry_their_purpose() -> None:
    """Each rule of the operator's role is preceded by a comment saying who needs it and why."""
    text = (CHART / "templates" / "_rbac.tpl").read_text()
    rules = text[text.index('define "kubeforge.operatorRules"') :].splitlines()
    for index, line in enumerate(rules):
        if line.startswith("- apiGroups:"):
            assert rules[index - 1].startswith("# "), f"rule without a comment: {line}"
            comment = []
            for previous in reversed(rules[:index]):
                if not previous.startswith("#"):
                    break
                comment.append(previous)
            assert re.search(r"\b(kopf|kubeforge)\b", " ".join(comment)), line


def test_pod_disruption_budget_and_service_monitor_are_optional(defaults: list[Manifest]) -> None:
    assert by_kind(defaults, "PodDisruptionBudget") == []
    assert by_kind(defaults, "ServiceMonitor") == []
    pdb = one(render({"podDisruptionBudget.enabled": True}), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    rendered = render(EVERYTHING_ON)
    pdb = one(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    deployment = one(rendered, "Deployment")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    monitor = one(rendered, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert (
        monitor["spec"]["selector"]["matchLabels"] == one(rendered, "Service")["spec"]["selector"]
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    both = {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}
    assert "not both" in render_error(both)
    orphan = {"metrics.serviceMonitor.enabled": True, "metrics.service.enabled": False}
    assert "needs metrics.service.enabled" in render_error(orphan)
    assert by_kind(render({"metrics.service.enabled": False}), "Service") == []


def test_image_service_account_and_replicas_follow_the_values() -> None:
    digest = "sha256:" + "a" * 64
    (container,) = one(render({"image.digest": digest}), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == f"kubeforge/operator@{digest}"
    (container,) = one(render({"image.tag": "0.2.0"}), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == "kubeforge/operator:0.2.0"
    crawler = {"crawler.image": {"repository": "registry.example/crawler", "digest": digest}}
    (container,) = one(render(crawler), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert f"--crawler-image=registry.example/crawler@{digest}" in container["args"]
    assert one(render({"replicaCount": 0}), "Deployment")["spec"]["replicas"] == 0
    existing = render({"serviceAccount.create": False, "serviceAccount.name": "ops"})
    assert by_kind(existing, "ServiceAccount") == []
    assert one(existing, "ClusterRoleBinding", FULLNAME)["subjects"][0]["name"] == "ops"
    assert "must name an existing ServiceAccount" in render_error({"serviceAccount.create": False})
    assert by_kind(render({"rbac.create": False}), "ClusterRole") == []
    aggregated = render({"rbac.aggregateToDefaultRoles": False})
    assert f"{FULLNAME}-edit" not in {m["metadata"]["name"] for m in aggregated}


def test_aggregated_roles_extend_the_built_in_ones(defaults: list[Manifest]) -> None:
    edit = one(defaults, "ClusterRole", f"{FULLNAME}-edit")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "create" in rules_of(edit)[("kubeforge.dev", "trainingjobs")]
    assert rules_of(edit)[("kubeforge.dev", "trainingjobs/scale")] == {"get", "update", "patch"}
    view = one(defaults, "ClusterRole", f"{FULLNAME}-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert rules_of(view)[("kubeforge.dev", "dataingests")] == {"get", "list", "watch"}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rendered_objects_are_valid_kubernetes(values: dict[str, Any]) -> None:
    """Against the Kubernetes 1.36 schemas, strict: an unknown or misplaced field is an error."""
    unchecked = []
    for manifest in render(values):
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.append(manifest["kind"])
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {error}")
    # Only the Prometheus Operator's kind has no schema there.
    assert set(unchecked) <= {"ServiceMonitor"}


def test_validation_does_catch_a_misplaced_field(defaults: list[Manifest]) -> None:
    broken = copy.deepcopy(one(defaults, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --- the kustomize install, generated from the chart --------------------------------------------


def test_install_manifests_are_the_rendered_chart(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, str(RENDER_INSTALL), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, f"{check.stderr}regenerate with `python {RENDER_INSTALL.name}`"
    subprocess.run([sys.executable, str(RENDER_INSTALL), "--root", str(tmp_path)], check=True)
    written = tmp_path / "manifests" / "install" / "kubeforge.yaml"
    assert written.read_text() == (INSTALL / "kubeforge.yaml").read_text()
    written.write_text(written.read_text().replace("Recreate", "RollingUpdate"))
    drift = subprocess.run(
        [sys.executable, str(RENDER_INSTALL), "--root", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
    )
    assert drift.returncode == 1
    assert "kubeforge.yaml" in drift.stderr


def test_install_manifests_carry_no_helm_bookkeeping() -> None:
    text = (INSTALL / "kubeforge.yaml").read_text()
    assert "helm.sh/" not in text
    assert "managed-by: Helm" not in text
    manifests = [doc for doc in yaml.safe_load_all(text) if doc]
    assert {m["metadata"].get("namespace", "kubeforge-system") for m in manifests} == {
        "kubeforge-system"
    }
    assert len(by_kind(manifests, "CustomResourceDefinition")) == 2
    kustomization = yaml.safe_load((INSTALL / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["namespace.yaml", "kubeforge.yaml"]
    namespace = yaml.safe_load((INSTALL / "namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- custom resources kept in Git, against the CRDs' schemas ------------------------------------


def strict_crd_schema(kind: str) -> dict[str, Any]:
    """The CRD's openAPIV3Schema with unknown fields refused where the apiserver's strict field
    validation (kubectl's default) refuses them."""
    (resource,) = [r for r in RESOURCES if r.names.kind == kind]
    schema: dict[str, Any] = copy.deepcopy(
        build_crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    )
    for _, node in _schema_nodes(schema):
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


CUSTOM_RESOURCES = [
    REPO_ROOT / "manifests" / "samples" / "trainingjob.yaml",
    REPO_ROOT / "manifests" / "samples" / "dataingest.yaml",
    GITOPS / "training-run" / "trainingjob.yaml",
]


@pytest.mark.parametrize("path", CUSTOM_RESOURCES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_custom_resources_in_git_match_the_crd_schemas(path: Path) -> None:
    resource = yaml.safe_load(path.read_text())
    jsonschema.Draft4Validator(strict_crd_schema(resource["kind"])).validate(resource)


def test_crd_schema_check_catches_a_typo() -> None:
    resource = yaml.safe_load(CUSTOM_RESOURCES[2].read_text())
    resource["spec"]["trainer"]["stepz"] = resource["spec"]["trainer"].pop("steps")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(strict_crd_schema("TrainingJob")).validate(resource)


# --- GitOps -------------------------------------------------------------------------------------


def gitops_documents() -> list[Manifest]:
    """The objects of manifests/gitops (kustomize's own kustomization.yaml files aside)."""
    return [
        doc
        for path in sorted(GITOPS.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and "metadata" in doc
    ]


def test_gitops_sources_point_at_paths_that_exist() -> None:
    documents = gitops_documents()
    applications = by_kind(documents, "Application")
    assert {app["metadata"]["name"] for app in applications} == {"kubeforge", "docs-gpt"}
    for app in applications:
        assert (REPO_ROOT / app["spec"]["source"]["path"]).is_dir()
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    release = one(documents, "HelmRelease")
    assert (REPO_ROOT / release["spec"]["chart"]["spec"]["chart"]).resolve() == CHART
    assert release["spec"]["values"]["crds"] == {"enabled": True, "keep": True}
    flux_run = one(documents, "Kustomization", "docs-gpt")
    assert (REPO_ROOT / flux_run["spec"]["path"] / "kustomization.yaml").is_file()
    assert flux_run["spec"]["wait"] is True
    source = one(documents, "GitRepository")
    assert release["spec"]["chart"]["spec"]["sourceRef"]["name"] == source["metadata"]["name"]


def test_argocd_health_checks_cover_both_kinds() -> None:
    health = GITOPS / "argocd" / "health"
    kustomization = yaml.safe_load((health / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "argocd-cm"
    files = dict(entry.split("=") for entry in generator["files"])
    assert set(files) == {
        f"resource.customizations.health.{r.names.group}_{r.names.kind}" for r in RESOURCES
    }
    assert all((health / script).is_file() for script in files.values())
