"""The CRD generator: structural schemas, CEL rules, presentation, and the committed files.

Pure functions on real pydantic models; nothing is faked. What only an apiserver can say (that
the schema is accepted and the CEL rules compile within their cost budget) is the integration
tier's job; these tests check the rules the apiserver is known to enforce on a CRD's shape. The
drift test compares the committed manifests and the Helm chart's CRD templates with a fresh
generation (tests/unit/test_chart.py renders those templates with the real helm).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from kubeforge.api.meta import CamelModel
from kubeforge.api.trainingjob import TrainingJob
from kubeforge_operator.crds import (
    REGENERATE_COMMAND,
    RESOURCES,
    TRAINING_JOB_RESOURCE,
    CustomResource,
    PrinterColumn,
    ScaleSubresource,
    UnsupportedSchema,
    build_crd,
    generated_files,
    main,
    render_chart_template,
    render_manifest,
    schema_at,
    structural_schema,
)
from kubeforge_operator.generated import stale_files

REPO_ROOT = Path(__file__).resolve().parents[2]
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def openapi_schema(resource: CustomResource) -> dict[str, Any]:
    schema: dict[str, Any] = build_crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path; properties as `.name`, list items as `[]`."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def cel_rules(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    for path, node in nodes(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule["rule"]


@pytest.fixture(params=RESOURCES, ids=lambda resource: resource.names.kind)
def schema(request: pytest.FixtureRequest) -> dict[str, Any]:
    return openapi_schema(request.param)


def test_every_node_has_a_type(schema: dict[str, Any]) -> None:
    untyped = [
        path
        for path, node in nodes(schema)
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


def test_every_field_has_a_description(schema: dict[str, Any]) -> None:
    undescribed = [
        f"{path}.{name}"
        for path, node in nodes(schema)
        for name, child in node.get("properties", {}).items()
        if not child.get("description", "").strip()
    ]
    # The apiserver refuses a CRD that says anything about metadata beyond its type.
    assert undescribed == [".metadata"]
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_only_structural_keywords_remain(schema: dict[str, Any]) -> None:
    offending: list[tuple[str, str]] = [
        (path, keyword)
        for path, node in nodes(schema)
        for keyword in (
            "$ref",
            "$defs",
            "allOf",
            "oneOf",
            "not",
            "title",
            "nullable",
            "uniqueItems",
        )
        if keyword in node
    ]
    offending += [
        (path, "anyOf")
        for path, node in nodes(schema)
        if "anyOf" in node
        and not (node.get("x-kubernetes-int-or-string") and node["anyOf"] == INT_OR_STRING)
    ]
    offending += [
        (path, "additionalProperties")
        for path, node in nodes(schema)
        if "additionalProperties" in node
        and ("properties" in node or not isinstance(node["additionalProperties"], dict))
    ]
    assert offending == []


def test_free_form_objects_preserve_unknown_fields() -> None:
    schema = openapi_schema(TRAINING_JOB_RESOURCE)
    for path in (".spec.affinity", ".spec.env[].valueFrom", ".spec.tolerations[]"):
        node = dict(nodes(schema))[path]
        assert node == {**node, "type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_every_cel_rule_of_the_models_reaches_the_crd() -> None:
    declared = []
    for definition in TrainingJob.model_json_schema()["$defs"].values():
        fields = list(definition.get("properties", {}).values())
        map_values = [f["additionalProperties"] for f in fields if "additionalProperties" in f]
        for node in [definition, *fields, *map_values]:
            declared += [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]
    generated = [rule for _, _, rule in cel_rules(openapi_schema(TRAINING_JOB_RESOURCE))]
    assert sorted(generated) == sorted(declared)
    assert len(generated) >= 10


def test_cel_rules_guard_optional_fields_with_has(schema: dict[str, Any]) -> None:
    """Reading an absent field is a runtime error in CEL, which the user sees as a refusal."""
    unguarded = []
    for path, node, rule in cel_rules(schema):
        properties = node.get("properties", {})
        for subject, name in re.findall(r"\b(self|oldSelf)\.(\w+)", rule):
            always_present = name in node.get("required", []) or "default" in properties.get(
                name, {}
            )
            if name in properties and not always_present and f"has({subject}.{name})" not in rule:
                unguarded.append((path, rule, name))
    assert unguarded == []


def test_lists_that_cel_iterates_are_bounded(schema: dict[str, Any]) -> None:
    """An unbounded list makes the apiserver's CEL cost estimate refuse the CRD."""
    unbounded = []
    for path, node, rule in cel_rules(schema):
        iterated = re.findall(r"self\.(\w+)\.(?:all|exists|exists_one|map|filter)\(", rule)
        iterated += re.findall(r"\bin self\.(\w+)", rule)
        for name in iterated:
            if "maxItems" not in node["properties"][name]:
                unbounded.append((path, name))
    assert unbounded == []


def test_maps_and_strings_that_cel_checks_are_bounded(schema: dict[str, Any]) -> None:
    """A rule on every value of a map is estimated at its cost times the most values the map
    may hold, and a string's cost grows with its length: both must be bounded."""
    unbounded = []
    for path, node in nodes(schema):
        values = node.get("additionalProperties")
        checked = isinstance(values, dict) and "x-kubernetes-validations" in values
        if checked and ("maxProperties" not in node or "maxLength" not in values):
            unbounded.append(path)
    assert unbounded == []


def test_defaults_reach_the_spec_and_never_the_status() -> None:
    schema = openapi_schema(TRAINING_JOB_RESOURCE)
    spec = schema["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == 1
    assert spec["nprocPerNode"]["default"] == 1
    assert spec["failurePolicy"]["default"] == {}
    assert spec["failurePolicy"]["properties"]["maxRestarts"]["default"] == 3
    assert spec["trainer"]["properties"]["precision"]["default"] == "bf16"
    assert "default" not in spec["dataset"], "an optional object without a default stays absent"
    defaulted_status = [
        path for path, node in nodes(schema["properties"]["status"]) if "default" in node
    ]
    assert defaulted_status == []


def test_trainingjob_crd_names_columns_and_subresources() -> None:
    crd = build_crd(TRAINING_JOB_RESOURCE)
    assert crd["metadata"]["name"] == "trainingjobs.kubeforge.dev"
    assert crd["spec"]["names"]["shortNames"] == ["tj"]
    assert crd["spec"]["names"]["categories"] == ["kubeforge"]
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert {"Phase", "Ready", "Step", "Loss", "Age"} <= set(columns)
    assert columns[-1] == "Age"
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas.current",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    conditions = schema_at(openapi_schema(TRAINING_JOB_RESOURCE), ".status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status", "reason", "message"}


def test_a_date_column_may_show_a_date_time_field() -> None:
    started = CustomResource(
        names=TRAINING_JOB_RESOURCE.names,
        model=TrainingJob,
        printer_columns=(PrinterColumn("Started", ".status.startTime", "date", "Start."),),
    )
    (version,) = build_crd(started)["spec"]["versions"]
    assert version["additionalPrinterColumns"][0]["jsonPath"] == ".status.startTime"


def test_a_printer_column_must_name_a_field_of_its_type() -> None:
    missing = CustomResource(
        names=TRAINING_JOB_RESOURCE.names,
        model=TrainingJob,
        printer_columns=(PrinterColumn("Epoch", ".status.progress.epoch", "integer", "Epoch."),),
    )
    with pytest.raises(ValueError, match=r"\.status\.progress\.epoch names no field"):
        build_crd(missing)
    mistyped = CustomResource(
        names=TRAINING_JOB_RESOURCE.names,
        model=TrainingJob,
        scale=ScaleSubresource(".spec.image", ".status.replicas.current"),
    )
    with pytest.raises(ValueError, match=r"\.spec\.image is of type string, not integer"):
        build_crd(mistyped)


class Leaf(CamelModel):
    """A leaf."""

    size: int = Field(description="Size.")


class Branch(CamelModel):
    """A branch."""

    width: int = Field(description="Width.")


def converted(model: type[BaseModel]) -> dict[str, Any]:
    return structural_schema(model.model_json_schema(mode="validation"))


def test_optional_fields_are_inlined_without_null() -> None:
    class Tree(CamelModel):
        """A tree."""

        leaf_node: Leaf | None = Field(default=None, description="The leaf.")
        ratio: float = Field(default=0.5, gt=0, lt=1, description="A ratio.")

    assert converted(Tree) == {
        "type": "object",
        "description": "A tree.",
        "properties": {
            "leafNode": {
                "type": "object",
                "description": "The leaf.",
                "properties": {"size": {"type": "integer", "description": "Size."}},
                "required": ["size"],
            },
            "ratio": {
                "type": "number",
                "description": "A ratio.",
                "default": 0.5,
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1,
                "exclusiveMaximum": True,
            },
        },
    }


def test_a_union_of_types_is_refused() -> None:
    class Tree(CamelModel):
        """A tree."""

        part: Leaf | Branch = Field(description="A leaf or a branch.")

    with pytest.raises(UnsupportedSchema, match=r"\.part: a union of several types"):
        converted(Tree)


def test_a_field_without_a_type_is_refused() -> None:
    class Tree(CamelModel):
        """A tree."""

        anything: Any = Field(description="Anything at all.")

    with pytest.raises(UnsupportedSchema, match=r"\.anything: has no type"):
        converted(Tree)


def test_a_keyword_a_crd_cannot_express_is_refused() -> None:
    class Tree(CamelModel):
        """A tree."""

        rings: set[int] = Field(description="Rings.")

    with pytest.raises(UnsupportedSchema, match=r"\.rings: cannot translate uniqueItems"):
        converted(Tree)


def test_rendered_manifest_is_marked_generated_and_parses_back() -> None:
    crd = build_crd(TRAINING_JOB_RESOURCE)
    text = render_manifest(crd)
    assert text.startswith(f"# Generated by `{REGENERATE_COMMAND}`")
    assert yaml.safe_load(text) == crd


def test_committed_crds_match_the_models() -> None:
    stale = stale_files(generated_files(REPO_ROOT))
    assert not stale, (
        f"{', '.join(str(path.relative_to(REPO_ROOT)) for path in stale)} differ from the API "
        f"models; regenerate with `{REGENERATE_COMMAND}` from the repository root"
    )


def test_chart_template_is_the_same_crd_gated_and_kept() -> None:
    crd = build_crd(TRAINING_JOB_RESOURCE)
    text = render_chart_template(crd)
    lines = text.splitlines()
    assert lines[0].startswith(f"{{{{- /* Generated by `{REGENERATE_COMMAND}`")
    assert (lines[1], lines[-1]) == ("{{- if .Values.crds.enabled }}", "{{- end }}")
    keep = lines.index("  {{- if .Values.crds.keep }}")
    assert lines[keep + 1 : keep + 4] == [
        "  annotations:",
        "    # Uninstalling the release leaves the CRD, and so every TrainingJob and DataIngest, "
        "in place.",
        "    helm.sh/resource-policy: keep",
    ]
    spec = text[text.index("\nspec:\n") + 1 : text.rindex("{{- end }}")]
    assert yaml.safe_load(spec) == {"spec": crd["spec"]}


def test_a_schema_helm_would_read_as_a_template_is_refused() -> None:
    crd = build_crd(TRAINING_JOB_RESOURCE)
    crd["spec"]["names"]["categories"] = ["{{ .Values.x }}"]
    with pytest.raises(UnsupportedSchema, match="Helm would read"):
        render_chart_template(crd)


@pytest.mark.parametrize(
    "generated",
    [
        "manifests/crds/trainingjobs.kubeforge.dev.yaml",
        "charts/kubeforge/templates/crds/dataingests.kubeforge.dev.yaml",
    ],
)
def test_main_writes_every_target_and_check_detects_drift(tmp_path: Path, generated: str) -> None:
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    written = tmp_path / generated
    written.write_text(written.read_text().replace("shortNames", "shortNamez"))
    assert main(["--root", str(tmp_path), "--check"]) == 1


class _Yaml11Loader(yaml.SafeLoader):
    """Reads y, n, yes, no, on and off in any case as booleans, as go-yaml does for kubectl and
    Helm (YAML 1.1); PyYAML's own loader does not for y and n."""


_YAML_1_1_BOOL = "tag:kubeforge.dev,2026:yaml-1.1-bool"
_Yaml11Loader.add_implicit_resolver(_YAML_1_1_BOOL, re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def _yaml_1_1_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node) in "yY"


_Yaml11Loader.add_constructor(_YAML_1_1_BOOL, _yaml_1_1_bool)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda resource: resource.names.kind)
def test_kubectl_and_helm_read_the_crds_as_written(resource: CustomResource) -> None:
    """No plain word of the generated YAML turns into a boolean under YAML 1.1: a list-map key
    `n` written unquoted reached the apiserver as `false`, and server-side apply refused it."""
    crd = build_crd(resource)
    manifest = render_manifest(crd)
    read = yaml.load(manifest, _Yaml11Loader)  # noqa: S506 (a SafeLoader with one resolver more)
    assert read == yaml.safe_load(manifest) == crd
