"""Generates the CustomResourceDefinitions of kubeforge's resources from the API models.

`build_crd` is pure: it turns a `CustomResource` (a root pydantic model from `kubeforge.api` plus
what only a CRD says: printer columns, the scale subresource) into an apiextensions.k8s.io/v1
CustomResourceDefinition. `structural_schema` turns pydantic's JSON schema into the structural
OpenAPI subset the apiserver requires and refuses anything it cannot translate faithfully.

`python -m kubeforge_operator.crds` writes one file per resource into every target directory: the
plain manifests (`manifests/crds/`) and the Helm chart's templates (`charts/kubeforge/templates/
crds/`, the same CRD wrapped in `crds.enabled` and annotated `helm.sh/resource-policy: keep` under
`crds.keep`). With `--check` it writes nothing and fails when a committed file differs from what it
would write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kubeforge.api.dataingest import DATA_INGEST, DataIngest
from kubeforge.api.meta import ResourceNames
from kubeforge.api.trainingjob import TRAINING_JOB, TrainingJob
from kubeforge_operator.generated import write_or_check

REGENERATE_COMMAND = "python -m kubeforge_operator.crds"

Schema = dict[str, Any]

# Keywords a CRD's JSONSchemaProps accepts that pass through unchanged. Anything else pydantic
# emits is either translated below or refused, so the generator never silently drops a rule.
_PASSED_THROUGH = frozenset(
    {
        "description",
        "type",
        "format",
        "default",
        "enum",
        "minimum",
        "maximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
    }
)
_EXCLUSIVE_BOUNDS = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]

# The object envelope every resource shares; the apiserver owns metadata's schema.
_ENVELOPE: dict[str, Schema] = {
    "apiVersion": {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object.",
    },
    "kind": {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object "
        "represents.",
    },
    # The apiserver refuses any more than this (a description included) for metadata.
    "metadata": {"type": "object"},
}


class UnsupportedSchema(ValueError):
    """pydantic's schema says something a structural CRD schema cannot say faithfully."""


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`, read from the object at a simple JSON path."""

    name: str
    json_path: str
    type: str
    description: str
    priority: int = 0

    def as_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


# A printer column's type where it differs from the schema type of the field it shows.
_COLUMN_SCHEMA_TYPES = {"date": "string"}

AGE_COLUMN = PrinterColumn(
    "Age", ".metadata.creationTimestamp", "date", "Time since the object was created."
)


@dataclass(frozen=True)
class ScaleSubresource:
    """Where `kubectl scale` and autoscalers find the desired and observed replicas."""

    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None

    def as_crd(self) -> dict[str, str]:
        scale = {
            "specReplicasPath": self.spec_replicas_path,
            "statusReplicasPath": self.status_replicas_path,
        }
        if self.label_selector_path is not None:
            scale["labelSelectorPath"] = self.label_selector_path
        return scale


@dataclass(frozen=True)
class CustomResource:
    """A kubeforge resource as a CRD: its names, its root model and its presentation."""

    names: ResourceNames
    model: type[BaseModel]
    printer_columns: tuple[PrinterColumn, ...] = ()
    scale: ScaleSubresource | None = None


TRAINING_JOB_RESOURCE = CustomResource(
    names=TRAINING_JOB,
    model=TrainingJob,
    printer_columns=(
        PrinterColumn("Phase", ".status.phase", "string", "Where the job is in its life."),
        PrinterColumn("Replicas", ".spec.replicas", "integer", "Workers wanted."),
        PrinterColumn("Ready", ".status.replicas.ready", "integer", "Workers running and ready."),
        PrinterColumn("Step", ".status.progress.step", "integer", "Optimiser steps done."),
        PrinterColumn("Loss", ".status.progress.loss", "number", "Latest training loss."),
        PrinterColumn(
            "Val-Loss",
            ".status.progress.validation.loss",
            "number",
            "Latest loss on the held-out split (trainer.validation).",
        ),
        PrinterColumn(
            "Goodput", ".status.goodput.ratio", "number", "Productive time over wall time."
        ),
        PrinterColumn(
            "Restarts", ".status.restarts.count", "integer", "Restarts charged to the budget."
        ),
        AGE_COLUMN,
    ),
    scale=ScaleSubresource(
        spec_replicas_path=".spec.replicas",
        status_replicas_path=".status.replicas.current",
        label_selector_path=".status.selector",
    ),
)

DATA_INGEST_RESOURCE = CustomResource(
    names=DATA_INGEST,
    model=DataIngest,
    printer_columns=(
        PrinterColumn("Phase", ".status.phase", "string", "Where the ingest is in its life."),
        PrinterColumn("Shards", ".spec.shards", "integer", "Crawler pods run in parallel."),
        PrinterColumn(
            "Documents", ".status.counters.documentsKept", "integer", "Documents kept so far."
        ),
        PrinterColumn(
            "Version", ".status.dataset.version", "integer", "Latest published dataset version."
        ),
        PrinterColumn(
            "Dataset", ".status.dataset.uri", "string", "Latest published dataset.", priority=1
        ),
        AGE_COLUMN,
    ),
)

RESOURCES: tuple[CustomResource, ...] = (TRAINING_JOB_RESOURCE, DATA_INGEST_RESOURCE)


def structural_schema(json_schema: Mapping[str, Any]) -> Schema:
    """The structural CRD schema of a pydantic JSON schema (validation mode, by alias).

    References are inlined, titles dropped, `X | None` becomes X (a null is pruned by the
    apiserver), free-form objects preserve unknown fields, and every node keeps its description.
    """
    return _convert(json_schema, json_schema.get("$defs", {}), "")


def _convert(node: Mapping[str, Any], definitions: Mapping[str, Any], path: str) -> Schema:
    node = _inline(node, definitions, path)
    converted: Schema = {}
    for key, value in node.items():
        if key in {"title", "$defs"} or (key == "default" and value is None):
            continue
        if key == "description":
            converted[key] = " ".join(value.split())
        elif key == "properties":
            converted[key] = {
                name: _convert(child, definitions, f"{path}.{name}")
                for name, child in value.items()
            }
        elif key == "items":
            converted[key] = _convert(value, definitions, f"{path}[]")
        elif key == "additionalProperties":
            if value is True or value == {}:
                converted["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                converted[key] = _convert(value, definitions, f"{path}{{}}")
        elif key == "anyOf":
            if value != _INT_OR_STRING or not node.get("x-kubernetes-int-or-string"):
                raise UnsupportedSchema(
                    f"{_where(path)}: a union of several types is not structural"
                )
            converted[key] = value
        elif key == "const":
            converted["enum"] = [value]
        elif key in _EXCLUSIVE_BOUNDS:
            # JSON Schema's numeric exclusive bound is OpenAPI v3.0's bound plus a flag.
            converted[_EXCLUSIVE_BOUNDS[key]] = value
            converted[key] = True
        elif key in _PASSED_THROUGH:
            converted[key] = value
        else:
            raise UnsupportedSchema(f"{_where(path)}: cannot translate {key}={value!r}")
    if not ({"type", "x-kubernetes-int-or-string"} & converted.keys()):
        raise UnsupportedSchema(f"{_where(path)}: has no type")
    return converted


def _where(path: str) -> str:
    return path or "<root>"


def _inline(
    node: Mapping[str, Any], definitions: Mapping[str, Any], path: str
) -> Mapping[str, Any]:
    """`node` with its $ref, single allOf and null alternative resolved into one schema."""
    while True:
        rest = {k: v for k, v in node.items() if k not in {"$ref", "allOf", "anyOf"}}
        if "$ref" in node:
            node = _merge(definitions[node["$ref"].rpartition("/")[2]], rest)
        elif len(node.get("allOf", ())) == 1:
            node = _merge(node["allOf"][0], rest)
        elif {"type": "null"} in node.get("anyOf", ()):
            alternatives = [a for a in node["anyOf"] if a != {"type": "null"}]
            if len(alternatives) != 1:
                raise UnsupportedSchema(
                    f"{_where(path)}: a union of several types is not structural"
                )
            node = _merge(alternatives[0], rest)
        else:
            return node


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with the keys of `overrides` on top; CEL rules of both are kept."""
    merged = {**base, **overrides}
    rules = [
        *base.get("x-kubernetes-validations", ()),
        *overrides.get("x-kubernetes-validations", ()),
    ]
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _without_defaults(schema: Schema) -> Schema:
    """The schema with every default removed: status is written by the operator alone."""
    stripped: Schema = {}
    for key, value in schema.items():
        if key == "default":
            continue
        if key == "properties":
            stripped[key] = {name: _without_defaults(child) for name, child in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            stripped[key] = _without_defaults(value)
        else:
            stripped[key] = value
    return stripped


def resource_schema(model: type[BaseModel]) -> Schema:
    """The openAPIV3Schema of a resource whose root model has `spec` (and maybe `status`)."""
    json_schema = model.model_json_schema(mode="validation", by_alias=True)
    definitions = json_schema.get("$defs", {})
    properties: dict[str, Schema] = dict(_ENVELOPE)
    for name, child in json_schema["properties"].items():
        if name in _ENVELOPE:
            continue
        converted = _convert(child, definitions, f".{name}")
        properties[name] = _without_defaults(converted) if name == "status" else converted
    schema: Schema = {
        "type": "object",
        "description": " ".join(json_schema["description"].split()),
        "properties": properties,
    }
    required = [name for name in json_schema.get("required", ()) if name not in _ENVELOPE]
    if required:
        schema["required"] = required
    return schema


def schema_at(schema: Schema, json_path: str) -> Schema:
    """The node of `schema` that a simple JSON path (`.status.progress.step`) names."""
    node = schema
    for name in json_path.removeprefix(".").split("."):
        if node.get("type") == "array":
            node = node["items"]
        if name not in node.get("properties", {}):
            raise ValueError(f"{json_path} names no field of the schema")
        node = node["properties"][name]
    return node


def _check_paths(resource: CustomResource, schema: Schema) -> None:
    """Refuses printer columns and scale paths that name no field or a field of another type."""
    expected = {
        column.json_path: _COLUMN_SCHEMA_TYPES.get(column.type, column.type)
        for column in resource.printer_columns
        if not column.json_path.startswith(".metadata.")
    }
    if resource.scale is not None:
        expected[resource.scale.spec_replicas_path] = "integer"
        expected[resource.scale.status_replicas_path] = "integer"
        if resource.scale.label_selector_path is not None:
            expected[resource.scale.label_selector_path] = "string"
    for json_path, schema_type in expected.items():
        found = schema_at(schema, json_path).get("type")
        if found != schema_type:
            raise ValueError(f"{json_path} is of type {found}, not {schema_type}")


def build_crd(resource: CustomResource) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of a resource."""
    names = resource.names
    schema = resource_schema(resource.model)
    _check_paths(resource, schema)
    subresources: dict[str, Any] = {}
    if "status" in schema["properties"]:
        subresources["status"] = {}
    if resource.scale is not None:
        subresources["scale"] = resource.scale.as_crd()
    version: dict[str, Any] = {
        "name": names.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": subresources,
    }
    if resource.printer_columns:
        version["additionalPrinterColumns"] = [c.as_crd() for c in resource.printer_columns]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": names.crd_name,
            "labels": {"app.kubernetes.io/part-of": "kubeforge"},
        },
        "spec": {
            "group": names.group,
            "names": {
                "kind": names.kind,
                "listKind": f"{names.kind}List",
                "plural": names.plural,
                "singular": names.singular,
                "shortNames": list(names.short_names),
                "categories": list(names.categories),
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


YAML_1_1_BOOLEANS = frozenset(
    f(word)
    for word in ("y", "yes", "n", "no", "on", "off", "true", "false")
    for f in (str.lower, str.upper, str.capitalize)
)
"""Plain words that kubectl and Helm (YAML 1.1, through go-yaml) read as booleans, though
PyYAML (YAML 1.1 without y and n) writes some of them unquoted: a property named `n` in a list's
map keys would reach the apiserver as `false`."""


class _CrdDumper(yaml.SafeDumper):
    """Writes every string YAML 1.1 could read as a boolean quoted, and no anchors or aliases
    (a schema repeated is written out again)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if value in YAML_1_1_BOOLEANS else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CrdDumper.add_representer(str, _string)


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.dump(dict(document), Dumper=_CrdDumper, sort_keys=True, width=100)


def render_manifest(crd: Mapping[str, Any]) -> str:
    """A CRD as a plain YAML manifest, marked as generated."""
    header = f"# Generated by `{REGENERATE_COMMAND}` from kubeforge.api. Do not edit.\n"
    return header + _dump(crd)


CHART_TEMPLATE = """\
{{{{- /* Generated by `{command}` from kubeforge.api. Do not edit. */}}}}
{{{{- if .Values.crds.enabled }}}}
apiVersion: {api_version}
kind: {kind}
metadata:
  name: {name}
  labels:
{labels}    {{{{- include "kubeforge.releaseLabels" . | nindent 4 }}}}
  {{{{- if .Values.crds.keep }}}}
  annotations:
    # Uninstalling the release leaves the CRD, and so every TrainingJob and DataIngest, in place.
    helm.sh/resource-policy: keep
  {{{{- end }}}}
{spec}{{{{- end }}}}
"""


def render_chart_template(crd: Mapping[str, Any]) -> str:
    """A CRD as a template of the Helm chart: installed when `crds.enabled`, kept on uninstall
    when `crds.keep`, labelled like the rest of the release."""
    spec = _dump({"spec": crd["spec"]})
    if "{{" in spec or "}}" in spec:
        raise UnsupportedSchema(f"{crd['metadata']['name']}: Helm would read {{{{ as a template")
    labels = "".join(
        f"    {key}: {value}\n" for key, value in sorted(crd["metadata"]["labels"].items())
    )
    return CHART_TEMPLATE.format(
        command=REGENERATE_COMMAND,
        api_version=crd["apiVersion"],
        kind=crd["kind"],
        name=crd["metadata"]["name"],
        labels=labels,
        spec=spec,
    )


@dataclass(frozen=True)
class Target:
    """A directory (relative to the repository root) that holds one file per CRD."""

    directory: str
    render: Callable[[Mapping[str, Any]], str] = render_manifest


TARGETS: tuple[Target, ...] = (
    Target("manifests/crds"),
    Target("charts/kubeforge/templates/crds", render_chart_template),
)


def generated_files(
    root: Path,
    resources: Sequence[CustomResource] = RESOURCES,
    targets: Sequence[Target] = TARGETS,
) -> dict[Path, str]:
    """Every file the generator owns under `root`, with the text it should hold."""
    crds = [build_crd(resource) for resource in resources]
    return {
        root / target.directory / f"{crd['metadata']['name']}.yaml": target.render(crd)
        for target in targets
        for crd in crds
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE_COMMAND, description="Write kubeforge's CRDs from the API models."
    )
    parser.add_argument("--root", type=Path, default=Path(), help="repository root (default: .)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if a file is out of date"
    )
    args = parser.parse_args(argv)
    return write_or_check(
        generated_files(args.root), check=args.check, regenerate_command=REGENERATE_COMMAND
    )


if __name__ == "__main__":
    sys.exit(main())
