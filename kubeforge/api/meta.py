"""What every kubeforge resource shares: model bases, CEL rules, conditions, object metadata, a
pod's compute resources, why a pod cannot start, and CA bundle references.

Resource modules (`trainingjob`, `dataingest`) build on these pieces; the CRD generator
turns the models' JSON schema into a structural schema. Field names are snake_case in Python and
camelCase on the wire (`model_dump(by_alias=True)`), as Kubernetes APIs are.

A model states a CEL rule once, with `cel_rule` on the method that checks the same thing in
Python: the rule lands in the CRD as `x-kubernetes-validations` and the check runs when the model
is validated, so the apiserver and the local runner refuse the same specs with the same message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

GROUP = "kubeforge.dev"
VERSION = "v1alpha1"

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = (
    r"^(?P<mantissa>[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+))"
    r"([KMGTPE]i|[numkMGTPE]|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
"""Kubernetes' quantity grammar; the exponent is an integer, as its parser wants (no `1e3.5`)."""

Int32 = Annotated[int, Field(json_schema_extra={"format": "int32"})]
Int64 = Annotated[int, Field(json_schema_extra={"format": "int64"})]


@dataclass(frozen=True)
class ResourceNames:
    """How a custom resource is named on the API server and on the command line."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    group: str = GROUP
    version: str = VERSION

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry of a CRD schema, evaluated by the apiserver.

    `field_path` (e.g. `.minReplicas`) points the apiserver's error at a field below the object
    that holds the rule. A rule that reads `oldSelf` is a transition rule: it runs on updates only.
    """

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, Any]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        return entry


ModelT = TypeVar("ModelT", bound="CamelModel")
ItemT = TypeVar("ItemT")
Check = Callable[[ModelT], bool]
_CEL_RULE = "__kubeforge_cel_rule__"


def cel_rule(
    rule: str, message: str, *, field_path: str | None = None
) -> Callable[[Check[ModelT]], Check[ModelT]]:
    """Declares that the decorated method (true when valid) is the Python form of a CEL rule."""

    def register(check: Check[ModelT]) -> Check[ModelT]:
        setattr(check, _CEL_RULE, CelRule(rule, message, field_path))
        return check

    return register


def immutable(description: str, **constraints: Any) -> Any:
    """A field the apiserver refuses to change once it is set (a `self == oldSelf` rule).

    Updates only exist on the apiserver, so there is no Python check: a model holds one version.
    """
    rule = CelRule("self == oldSelf", "is immutable once set")
    return Field(
        description=f"{description} Immutable once set.",
        json_schema_extra={"x-kubernetes-validations": [rule.as_schema()]},
        **constraints,
    )


def set_of(description: str, max_length: int) -> Any:
    """A list field of unique items, empty when omitted."""
    return Field(
        default_factory=list,
        max_length=max_length,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description=description,
    )


def defaulted(model: type[BaseModel], description: str) -> Any:
    """A nested object that exists with its own defaults when omitted.

    On the apiserver `default: {}` makes the object appear so its fields' defaults apply.
    """
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


CEL_RULE_ERROR = "cel_rule"
"""The pydantic error type of a CEL rule on one value (a rule on an object raises ValueError)."""
QUANTITY_MAX_LENGTH = 64
_INT64 = range(-(2**63), 2**63)

# The grammar refuses what the parser alone would read as zero (`Gi`, `+`, `.`); isQuantity adds
# the parser's own limit (an exponent beyond int64). The sign is compared with zero because the
# CRD CEL environment of Kubernetes 1.36 has no `sign()` on quantities.
NON_NEGATIVE_QUANTITY = CelRule(
    f"string(self).matches('{QUANTITY}') && isQuantity(string(self))"
    " && !quantity(string(self)).isLessThan(quantity('0'))",
    "must be a non-negative quantity such as 500m, 4Gi or 2",
)


def _non_negative_quantity(value: int | str) -> int | str:
    """The Python form of NON_NEGATIVE_QUANTITY: Kubernetes' grammar, an exponent its parser
    reads as an int64, and no minus sign before a non-zero number (`-0` is zero)."""
    text = str(value)
    if len(text) > QUANTITY_MAX_LENGTH:
        raise PydanticCustomError(
            "string_too_long",
            "String should have at most {max_length} characters",
            {"max_length": QUANTITY_MAX_LENGTH},
        )
    parsed = re.fullmatch(QUANTITY, text)
    if (
        parsed is None
        or int(parsed["exponent"] or 0) not in _INT64
        or (text.startswith("-") and parsed["mantissa"].strip("-0.") != "")
    ):
        raise PydanticCustomError(CEL_RULE_ERROR, NON_NEGATIVE_QUANTITY.message)
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_non_negative_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "maxLength": QUANTITY_MAX_LENGTH,
            "x-kubernetes-validations": [NON_NEGATIVE_QUANTITY.as_schema()],
        }
    ),
]
"""A non-negative Kubernetes resource quantity (`2`, `500m`, `16Gi`), as in a container's
resources; the apiserver checks it with the quantity library of its CEL."""


ResourceList = Annotated[dict[str, Quantity], Field(max_length=32)]
"""Quantities by resource name (`cpu`, `memory`, `nvidia.com/gpu`). Bounded so that the CEL cost
the apiserver estimates for checking every quantity stays within its budget."""


@functools.cache
def _checked_rules(model: type[CamelModel]) -> tuple[tuple[CelRule, Check[Any]], ...]:
    """The model's CEL rules with their Python checks, in the order they are declared."""
    found: dict[str, tuple[CelRule, Check[Any]]] = {}
    for klass in reversed(model.__mro__):
        for name, attribute in vars(klass).items():
            declared = getattr(attribute, _CEL_RULE, None)
            if isinstance(declared, CelRule):
                found[name] = (declared, attribute)
    return tuple(found.values())


class CamelModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused, CEL rules checked.

    `transition_rules` holds CEL rules that compare with `oldSelf`: they go into the CRD only.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    transition_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _enforce_cel_rules(self) -> Self:
        for rule, check in _checked_rules(type(self)):
            if not check(self):
                raise ValueError(rule.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        rules = [rule for rule, _ in _checked_rules(cls)] + list(cls.transition_rules)
        if rules:
            handler.resolve_ref_schema(json_schema)["x-kubernetes-validations"] = [
                rule.as_schema() for rule in rules
            ]
        return json_schema


class StatusModel(CamelModel):
    """Base of status models: written by the operator, so fields from other versions are ignored."""

    model_config = ConfigDict(extra="ignore")


class ObjectMeta(CamelModel):
    """The parts of Kubernetes object metadata that kubeforge reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(default=None, description="Name of the object in its namespace.")
    namespace: str | None = Field(default=None, description="Namespace of the object.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the object.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the object."
    )
    uid: str | None = Field(default=None, description="Unique id the apiserver assigned.")
    generation: int | None = Field(
        default=None, description="Sequence number of the desired state (spec), set by the server."
    )


class ResourceRequirements(CamelModel):
    """Compute resources of each worker pod, as in a container's resources."""

    requests: ResourceList = Field(
        default_factory=dict,
        description="Minimum resources each worker is scheduled with, e.g. cpu: 8, memory: 64Gi.",
    )
    limits: ResourceList = Field(
        default_factory=dict,
        description="Maximum resources each worker may use, e.g. nvidia.com/gpu: 8 (GPUs are "
        "requested through limits).",
    )


class PodStartFailure(StrEnum):
    """Why a pod of a resource cannot start without a change: a container's waiting reason or the
    scheduler's. Each resource reports them as reasons of its own conditions, with these values."""

    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    ERR_IMAGE_PULL = "ErrImagePull"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    UNSCHEDULABLE = "Unschedulable"


class KeyRef(CamelModel):
    """One key of a ConfigMap or Secret in the resource's namespace."""

    name: str = Field(max_length=253, pattern=DNS1123_SUBDOMAIN, description="Name of the object.")
    key: str = Field(
        default="ca.crt",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key whose value is the PEM bundle.",
    )


class CaBundle(CamelModel):
    """PEM CA certificates trusted in addition to the system's, from a ConfigMap or a Secret."""

    config_map_key_ref: KeyRef | None = Field(
        default=None, description="A ConfigMap key holding the bundle."
    )
    secret_key_ref: KeyRef | None = Field(
        default=None, description="A Secret key holding the bundle."
    )

    @cel_rule(
        "has(self.configMapKeyRef) != has(self.secretKeyRef)",
        "exactly one of configMapKeyRef and secretKeyRef must be given",
    )
    def _one_source(self) -> bool:
        return (self.config_map_key_ref is None) != (self.secret_key_ref is None)


class ConditionStatus(StrEnum):
    """Whether a condition holds."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One aspect of the resource's state, in the shape of Kubernetes' metav1.Condition."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of condition in CamelCase, e.g. Ready, Running or Stalled.",
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    observed_generation: Int64 | None = Field(
        default=None,
        ge=0,
        description="metadata.generation the condition was set from; when it is lower than the "
        "current generation the condition is out of date.",
    )
    last_transition_time: AwareDatetime = Field(
        description="Last time the condition changed from one status to another."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Programmatic identifier in CamelCase for the last transition, e.g. "
        "ImagePullBackOff.",
    )
    message: str = Field(
        max_length=32768, description="Human-readable details about the last transition."
    )


def find_condition(conditions: Sequence[Condition], condition_type: str) -> Condition | None:
    """The condition of the given type, or None."""
    return next((c for c in conditions if c.type == condition_type), None)


def set_condition(conditions: Sequence[Condition], condition: Condition) -> list[Condition]:
    """A copy of `conditions` with `condition` in place of the one of its type (or appended).

    When the status is unchanged the earlier lastTransitionTime is kept, so that it tells when the
    status last changed rather than when the condition was last written.
    """
    previous = find_condition(conditions, condition.type)
    if previous is not None and previous.status == condition.status:
        condition = condition.model_copy(
            update={"last_transition_time": previous.last_transition_time}
        )
    updated = [condition if c.type == condition.type else c for c in conditions]
    return updated if previous is not None else [*updated, condition]


def set_conditions(conditions: Sequence[Condition], wanted: Iterable[Condition]) -> list[Condition]:
    """A copy of `conditions` with each of `wanted` set in place of its type's (`set_condition`)."""
    updated = list(conditions)
    for condition in wanted:
        updated = set_condition(updated, condition)
    return updated


def unique(values: list[ItemT]) -> list[ItemT]:
    """Refuses repeated items, as the apiserver does in a list of type `set` or `map`."""
    duplicates = sorted({repr(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate values: {', '.join(duplicates)}")
    return values
