"""Reading kubeforge resources from YAML and checking them offline, with the apiserver's words.

Every document of a file is validated with the API models, which carry the same constraints and
CEL rules as the CRDs, and every problem is reported as the apiserver reports it: the resource,
then `path.to.field: Invalid value: ...` (or `Required value`, `Unsupported value`). A CEL rule
that names a field (`fieldPath`) is reported at that field, as the apiserver does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from kubeforge.api.dataingest import DataIngest
from kubeforge.api.meta import CEL_RULE_ERROR, DNS1123_SUBDOMAIN, CamelModel, _checked_rules
from kubeforge.api.trainingjob import TrainingJob

Resource = TrainingJob | DataIngest
KINDS: dict[str, type[TrainingJob] | type[DataIngest]] = {
    "DataIngest": DataIngest,
    "TrainingJob": TrainingJob,
}
_PYDANTIC_TAGS = {"int", "str", "float", "bool", "none", "dict", "list"}


class InvalidResources(Exception):
    """Some documents are not valid resources; `problems` says which field of which, and why."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load_resources(path: Path) -> list[Resource]:
    """Every resource of a YAML file, in file order; raises InvalidResources with all problems."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise InvalidResources([f"{path}: {error}"]) from None
    resources: list[Resource] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for number, document in enumerate(documents, start=1):
        where = f"{path} (document {number})"
        try:
            resource = parse_resource(document)
        except InvalidResources as invalid:
            problems += [f"{where}: {problem}" for problem in invalid.problems]
            continue
        key = (resource.kind, resource.metadata.name or "")
        if key in seen:
            problems.append(f'{where}: {resource.kind} "{key[1]}" appears twice')
        seen.add(key)
        resources.append(resource)
    if problems:
        raise InvalidResources(problems)
    if not resources:
        raise InvalidResources([f"{path}: no DataIngest or TrainingJob in the file"])
    return resources


def parse_resource(document: Any) -> Resource:
    """One resource from its parsed YAML; raises InvalidResources in the apiserver's words."""
    if not isinstance(document, dict):
        raise InvalidResources(["Invalid value: the document is not an object"])
    kind = document.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        supported = ", ".join(f'"{name}"' for name in sorted(KINDS))
        raise InvalidResources(
            [f"kind: Unsupported value: {json.dumps(kind)}: supported values: {supported}"]
        )
    metadata = document.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    subject = f'{kind} "{name}"' if isinstance(name, str) else str(kind)
    problems = []
    if not isinstance(name, str) or not name:
        problems.append("metadata.name: Required value: name is required")
    elif len(name) > 253 or not re.fullmatch(DNS1123_SUBDOMAIN, name):
        problems.append(
            f"metadata.name: Invalid value: {json.dumps(name)}: a lowercase RFC 1123 subdomain "
            "must consist of lower case alphanumeric characters, '-' or '.'"
        )
    try:
        resource = model.model_validate(document)
    except ValidationError as error:
        problems += [describe(model, detail) for detail in error.errors()]
    if problems:
        raise InvalidResources([f"{subject} is invalid: {problem}" for problem in problems])
    return resource


def describe(model: type[BaseModel], detail: ErrorDetails) -> str:
    """One validation error as the apiserver words it: `field.path: What: details`."""
    loc = [item for item in detail["loc"] if _is_field(item)]
    path = _path(loc)
    kind = detail["type"]
    if kind == "missing":
        return f"{path}: Required value"
    if kind == "extra_forbidden":
        return f'{path}: Forbidden: unknown field "{path}"'
    if kind in {"enum", "literal_error"}:
        expected = str((detail.get("ctx") or {}).get("expected", ""))
        supported = ", ".join(f'"{value}"' for value in re.findall(r"'([^']*)'", expected))
        return f"{path}: Unsupported value: {_json(detail['input'])}: supported values: {supported}"
    message = detail["msg"].removeprefix("Value error, ").removeprefix("Input ")
    if kind == "value_error" and isinstance(detail["input"], dict):
        # A CEL rule of the object at `loc`: reported at its fieldPath, if it names one.
        field_path = _rule_field_path(_model_at(model, loc), message)
        return f'{path}{field_path}: Invalid value: "object": {message}'
    if kind == CEL_RULE_ERROR and _is_map_key(model, loc):
        # The apiserver's CEL validator writes a map key in brackets: `limits[nvidia.com/gpu]`.
        path = f"{_path(loc[:-1])}[{loc[-1]}]"
    return f"{path}: Invalid value: {_json(detail['input'])}: {message}"


def _is_map_key(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    """Whether a location ends with a key of a map field, e.g. `resources.limits.cpu`."""
    holder = _model_at(model, loc[:-2]) if len(loc) >= 2 else None
    if holder is None:
        return False
    field = _fields(holder).get(str(loc[-2]))
    return field is not None and get_origin(field.annotation) is dict


def _is_field(item: int | str) -> bool:
    """False for the tags pydantic adds to a location inside unions and validators."""
    return isinstance(item, int) or not ("[" in item or "(" in item or item in _PYDANTIC_TAGS)


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for item in loc:
        path += f"[{item}]" if isinstance(item, int) else f".{item}"
    return path.lstrip(".") or "<root>"


def _json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def _model_in(annotation: Any) -> type[CamelModel] | None:
    """The API model an annotation holds (directly, optional, or as list or map items)."""
    if isinstance(annotation, type) and issubclass(annotation, CamelModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _fields(model: type[CamelModel]) -> dict[str, FieldInfo]:
    """The model's fields by their name on the wire."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[CamelModel] | None:
    """The API model of the object at a location (list indexes and map keys stay in the model)."""
    current: type[CamelModel] | None = model if issubclass(model, CamelModel) else None
    for item in loc:
        if current is None:
            return None
        fields = _fields(current)
        if isinstance(item, str) and item in fields:
            current = _model_in(fields[item].annotation)
    return current


def _rule_field_path(model: type[CamelModel] | None, message: str) -> str:
    if model is None:
        return ""
    for rule, _ in _checked_rules(model):
        if rule.message == message:
            return rule.field_path or ""
    return ""
