"""The kubeforge API: pydantic models of the custom resources, their conditions and reasons.

These models are the single source of truth for the API. The operator generates the CRDs from
them (`kubeforge_operator.crds`), and the workloads and the local runner validate resources with
them, so a spec the apiserver refuses is refused locally with the same message.

- `meta`: pieces every resource shares (camelCase models, CEL rules, conditions, object metadata,
  a pod's compute resources, the reasons a pod cannot start).
- `trainingjob`: the TrainingJob resource.
- `dataingest`: the DataIngest resource.
"""
