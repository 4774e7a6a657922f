"""TrainingJob specs for tests of every tier: a minimal one, a full one, and invalid ones.

Each invalid spec names the field the refusal is about and a fragment that both the API models'
message and the apiserver's message contain, so the same table checks the local runner (unit
tier) and the CRD's schema and CEL rules on a real apiserver (integration tier).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

IMAGE = "registry.invalid/kubeforge/trainer:1"
NOT_A_QUANTITY = "must be a non-negative quantity"

MINIMAL_SPEC: dict[str, Any] = {
    "image": IMAGE,
    "trainer": {"model": {"architecture": "mlp"}, "steps": 1000},
}

FULL_SPEC: dict[str, Any] = {
    "image": IMAGE,
    "trainer": {
        "model": {
            "architecture": "gpt",
            "layers": 4,
            "hiddenSize": 256,
            "heads": 8,
            "contextLength": 512,
        },
        "optimizer": {
            "name": "adamw",
            "learningRate": 6e-4,
            "weightDecay": 0.1,
            "warmupSteps": 100,
            "gradClipNorm": 1.0,
        },
        "tokenizer": {"type": "dataset"},
        "batch": {"globalSize": 256, "microSize": 16},
        "steps": 5000,
        "parallelism": {
            "strategy": "fsdp",
            "activationCheckpointing": "selective",
            "cpuOffload": True,
        },
        "precision": "bf16",
        "validation": {"fraction": 0.01, "everySteps": 250, "batches": 4},
    },
    "dataset": {"datasetRef": {"name": "web-text", "version": 2}},
    "replicas": 4,
    "minReplicas": 2,
    "maxReplicas": 8,
    "nprocPerNode": 8,
    "resources": {
        "requests": {"cpu": "16", "memory": "128Gi"},
        "limits": {"nvidia.com/gpu": 8, "memory": "128Gi"},
    },
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app": "trainer"}},
                    },
                }
            ]
        }
    },
    "priorityClassName": "training-low",
    "serviceAccountName": "trainer",
    "env": [
        {"name": "NCCL_DEBUG", "value": "WARN"},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "id"}}},
    ],
    "checkpoint": {"uri": "s3://checkpoints/gpt", "intervalSteps": 500, "intervalSeconds": 900},
    "storage": {"caBundle": {"configMapKeyRef": {"name": "s3-ca", "key": "bundle.pem"}}},
    "failurePolicy": {
        "maxRestarts": 5,
        "retryableExitCodes": [1, 134],
        "permanentExitCodes": [2],
    },
    "startDeadlineSeconds": 900,
    "progressDeadlineSeconds": 1800,
    "activeDeadlineSeconds": 86400,
    "ttlSecondsAfterFinished": 3600,
    "suspend": False,
    "scheduling": {"queueName": "team-a", "gang": "volcano"},
}


@dataclass(frozen=True)
class InvalidSpec:
    """A spec that must be refused, the field the refusal names and words its message holds."""

    id: str
    spec: dict[str, Any]
    field: str
    message: str


def minimal_with(**changes: Any) -> dict[str, Any]:
    """MINIMAL_SPEC with top-level fields replaced (a value of None removes the field)."""
    spec = copy.deepcopy(MINIMAL_SPEC)
    for name, value in changes.items():
        if value is None:
            spec.pop(name, None)
        else:
            spec[name] = value
    return spec


def trainer_with(**changes: Any) -> dict[str, Any]:
    """MINIMAL_SPEC's trainer with fields replaced."""
    return {**MINIMAL_SPEC["trainer"], **changes}


INVALID_SPECS: tuple[InvalidSpec, ...] = (
    InvalidSpec(
        "no-program", minimal_with(trainer=None), "spec", "exactly one of trainer or command"
    ),
    InvalidSpec(
        "trainer-and-command",
        minimal_with(command=["train.py"]),
        "spec",
        "exactly one of trainer or command",
    ),
    InvalidSpec(
        "empty-command",
        minimal_with(trainer=None, command=[]),
        "spec.command",
        "at least 1 item",
    ),
    InvalidSpec("no-image", minimal_with(image=None), "spec.image", "required"),
    InvalidSpec(
        "zero-replicas", minimal_with(replicas=0), "spec.replicas", "greater than or equal to 1"
    ),
    InvalidSpec(
        "min-replicas-above-replicas",
        minimal_with(replicas=2, minReplicas=3),
        "spec.minReplicas",
        "minReplicas must not exceed replicas",
    ),
    InvalidSpec(
        "replicas-above-max-replicas",
        minimal_with(replicas=5, maxReplicas=4),
        "spec.replicas",
        "replicas must not exceed maxReplicas",
    ),
    InvalidSpec(
        "dataset-ref-and-uri",
        minimal_with(dataset={"datasetRef": {"name": "web"}, "uri": "s3://data/web"}),
        "spec.dataset",
        "exactly one of datasetRef or uri",
    ),
    InvalidSpec(
        "empty-dataset",
        minimal_with(dataset={}),
        "spec.dataset",
        "exactly one of datasetRef or uri",
    ),
    InvalidSpec(
        "dataset-uri-scheme",
        minimal_with(dataset={"uri": "https://example.com/data"}),
        "spec.dataset.uri",
        "should match",
    ),
    InvalidSpec(
        "dataset-ref-name",
        minimal_with(dataset={"datasetRef": {"name": "Web_Text"}}),
        "spec.dataset.datasetRef.name",
        "should match",
    ),
    InvalidSpec(
        "checkpoint-without-interval",
        minimal_with(checkpoint={"uri": "s3://checkpoints/run"}),
        "spec.checkpoint",
        "at least one of intervalSteps or intervalSeconds",
    ),
    InvalidSpec(
        "exit-code-retryable-and-permanent",
        minimal_with(failurePolicy={"retryableExitCodes": [1, 3], "permanentExitCodes": [3]}),
        "spec.failurePolicy.permanentExitCodes",
        "cannot be both retryable and permanent",
    ),
    InvalidSpec(
        "exit-code-zero",
        minimal_with(failurePolicy={"retryableExitCodes": [0]}),
        "spec.failurePolicy.retryableExitCodes[0]",
        "greater than or equal to 1",
    ),
    InvalidSpec(
        "duplicate-exit-code",
        minimal_with(failurePolicy={"permanentExitCodes": [3, 3]}),
        "spec.failurePolicy.permanentExitCodes[1]",
        "duplicate value",
    ),
    InvalidSpec(
        "too-many-exit-codes",
        minimal_with(failurePolicy={"permanentExitCodes": list(range(1, 66))}),
        "spec.failurePolicy.permanentExitCodes",
        "at most 64 items",
    ),
    InvalidSpec(
        "negative-max-restarts",
        minimal_with(failurePolicy={"maxRestarts": -1}),
        "spec.failurePolicy.maxRestarts",
        "greater than or equal to 0",
    ),
    InvalidSpec(
        "unknown-gang-scheduler",
        minimal_with(scheduling={"gang": "slurm"}),
        "spec.scheduling.gang",
        "scheduler-plugins",
    ),
    InvalidSpec(
        "queue-name",
        minimal_with(scheduling={"queueName": "Team A"}),
        "spec.scheduling.queueName",
        "should match",
    ),
    InvalidSpec(
        "unknown-precision",
        minimal_with(trainer=trainer_with(precision="fp8")),
        "spec.trainer.precision",
        "fp32",
    ),
    InvalidSpec(
        "trainer-without-steps",
        minimal_with(trainer={"model": {"architecture": "mlp"}}),
        "spec.trainer.steps",
        "required",
    ),
    InvalidSpec(
        "zero-learning-rate",
        minimal_with(trainer=trainer_with(optimizer={"learningRate": 0})),
        "spec.trainer.optimizer.learningRate",
        "greater than 0",
    ),
    InvalidSpec(
        "heads-on-mlp",
        minimal_with(trainer=trainer_with(model={"architecture": "mlp", "heads": 4})),
        "spec.trainer.model",
        "apply only to the gpt and llama architectures",
    ),
    InvalidSpec(
        "kv-heads-on-gpt",
        minimal_with(trainer=trainer_with(model={"architecture": "gpt", "kvHeads": 2})),
        "spec.trainer.model",
        "apply only to the llama architecture",
    ),
    InvalidSpec(
        "unknown-llama-size",
        minimal_with(trainer=trainer_with(model={"architecture": "llama", "size": "70b"})),
        "spec.trainer.model.size",
        "llama-3.1-8b",
    ),
    InvalidSpec(
        "llama-size-and-layers",
        minimal_with(
            trainer=trainer_with(model={"architecture": "llama", "size": "tiny", "layers": 4})
        ),
        "spec.trainer.model.size",
        "size names the whole shape",
    ),
    InvalidSpec(
        "llama-hidden-size-without-heads",
        minimal_with(trainer=trainer_with(model={"architecture": "llama", "hiddenSize": 100})),
        "spec.trainer.model",
        "hiddenSize and heads are set together",
    ),
    InvalidSpec(
        "heads-not-multiple-of-kv-heads",
        minimal_with(
            trainer=trainer_with(
                model={"architecture": "llama", "hiddenSize": 96, "heads": 6, "kvHeads": 4}
            )
        ),
        "spec.trainer.model.kvHeads",
        "heads must be a multiple of kvHeads",
    ),
    InvalidSpec(
        "odd-llama-head-size",
        minimal_with(
            trainer=trainer_with(model={"architecture": "llama", "hiddenSize": 36, "heads": 4})
        ),
        "spec.trainer.model.hiddenSize",
        "must be even for rotary positions",
    ),
    InvalidSpec(
        "zero-rope-theta",
        minimal_with(trainer=trainer_with(model={"architecture": "llama", "ropeTheta": 0})),
        "spec.trainer.model.ropeTheta",
        "greater than 0",
    ),
    InvalidSpec(
        "tokenizer-on-mlp",
        minimal_with(trainer=trainer_with(tokenizer={"type": "dataset"})),
        "spec.trainer.tokenizer",
        "tokenizer applies only to language models",
    ),
    InvalidSpec(
        "validation-on-mlp",
        minimal_with(trainer=trainer_with(validation={"fraction": 0.01})),
        "spec.trainer.validation",
        "validation applies only to the language models",
    ),
    InvalidSpec(
        "validation-fraction-above-half",
        minimal_with(
            trainer=trainer_with(model={"architecture": "gpt"}, validation={"fraction": 0.6})
        ),
        "spec.trainer.validation.fraction",
        "less than or equal to 0.5",
    ),
    InvalidSpec(
        "tokenizer-uri-without-type-uri",
        minimal_with(
            trainer=trainer_with(
                model={"architecture": "gpt"},
                tokenizer={"type": "dataset", "uri": "s3://tokenizers/web/tokenizer.json"},
            )
        ),
        "spec.trainer.tokenizer.uri",
        "uri is set exactly when type is uri",
    ),
    InvalidSpec(
        "tokenizer-type-uri-without-uri",
        minimal_with(
            trainer=trainer_with(model={"architecture": "gpt"}, tokenizer={"type": "uri"})
        ),
        "spec.trainer.tokenizer.uri",
        "uri is set exactly when type is uri",
    ),
    InvalidSpec(
        "init-from-on-gpt",
        minimal_with(
            trainer=trainer_with(model={"architecture": "gpt", "initFrom": "s3://models/llama"})
        ),
        "spec.trainer.model",
        "initFrom apply only to the llama architecture",
    ),
    InvalidSpec(
        "init-from-with-a-shape",
        minimal_with(
            trainer=trainer_with(
                model={"architecture": "llama", "size": "tiny", "initFrom": "s3://models/llama"}
            )
        ),
        "spec.trainer.model.initFrom",
        "initFrom's config.json gives the shape",
    ),
    InvalidSpec(
        "init-from-on-the-hub",
        minimal_with(
            trainer=trainer_with(
                model={"architecture": "llama", "initFrom": "hf://meta-llama/Llama-3.2-1B"}
            )
        ),
        "spec.trainer.model.initFrom",
        "should match",
    ),
    InvalidSpec(
        "tokenizer-type-model-without-init-from",
        minimal_with(
            trainer=trainer_with(model={"architecture": "llama"}, tokenizer={"type": "model"})
        ),
        "spec.trainer.tokenizer.type",
        "tokenizer.type model reads the folder model.initFrom names",
    ),
    InvalidSpec(
        "hidden-size-not-multiple-of-heads",
        minimal_with(
            trainer=trainer_with(model={"architecture": "gpt", "hiddenSize": 100, "heads": 8})
        ),
        "spec.trainer.model.hiddenSize",
        "hiddenSize must be a multiple of heads",
    ),
    InvalidSpec(
        "micro-batch-above-global",
        minimal_with(trainer=trainer_with(batch={"globalSize": 32, "microSize": 64})),
        "spec.trainer.batch.microSize",
        "microSize must not exceed globalSize",
    ),
    InvalidSpec(
        "cpu-offload-without-fsdp",
        minimal_with(trainer=trainer_with(parallelism={"strategy": "ddp", "cpuOffload": True})),
        "spec.trainer.parallelism.cpuOffload",
        "cpuOffload needs strategy fsdp",
    ),
    InvalidSpec(
        "unknown-parallel-strategy",
        minimal_with(trainer=trainer_with(parallelism={"strategy": "tp"})),
        "spec.trainer.parallelism.strategy",
        "ddp",
    ),
    InvalidSpec(
        "negative-gpu-limit",
        minimal_with(resources={"limits": {"nvidia.com/gpu": -1}}),
        "spec.resources.limits[nvidia.com/gpu]",
        NOT_A_QUANTITY,
    ),
    InvalidSpec(
        "negative-memory-request",
        minimal_with(resources={"requests": {"memory": "-4Gi"}}),
        "spec.resources.requests[memory]",
        NOT_A_QUANTITY,
    ),
    InvalidSpec(
        "malformed-quantity",
        minimal_with(resources={"limits": {"cpu": "lots"}}),
        "spec.resources.limits[cpu]",
        NOT_A_QUANTITY,
    ),
    InvalidSpec(
        "fractional-exponent",
        minimal_with(resources={"requests": {"example.com/fpga": "1e3.5"}}),
        "spec.resources.requests[example.com/fpga]",
        NOT_A_QUANTITY,
    ),
    InvalidSpec(
        "too-many-resource-names",
        minimal_with(resources={"limits": {f"example.com/r{i}": 1 for i in range(33)}}),
        "spec.resources.limits",
        "at most 32",
    ),
    InvalidSpec(
        "env-value-and-value-from",
        minimal_with(env=[{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]),
        "spec.env[0]",
        "mutually exclusive",
    ),
    InvalidSpec(
        "duplicate-env-name",
        minimal_with(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
        "duplicate value",
    ),
    InvalidSpec(
        "storage-ca-bundle-of-two-sources",
        minimal_with(
            storage={
                "caBundle": {"configMapKeyRef": {"name": "ca"}, "secretKeyRef": {"name": "ca"}}
            }
        ),
        "spec.storage.caBundle",
        "exactly one of configMapKeyRef and secretKeyRef",
    ),
    InvalidSpec(
        "storage-ca-bundle-and-aws-ca-bundle-variable",
        minimal_with(
            storage={"caBundle": {"secretKeyRef": {"name": "ca"}}},
            env=[{"name": "AWS_CA_BUNDLE", "value": "/etc/ssl/ca.pem"}],
        ),
        "spec.env",
        "storage.caBundle sets AWS_CA_BUNDLE",
    ),
    InvalidSpec(
        "negative-ttl",
        minimal_with(ttlSecondsAfterFinished=-1),
        "spec.ttlSecondsAfterFinished",
        "greater than or equal to 0",
    ),
)
