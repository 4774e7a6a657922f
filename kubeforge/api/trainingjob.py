"""The TrainingJob resource: distributed, elastic PyTorch training that survives losing machines.

The operator reads these models to reconcile a TrainingJob into torchrun workers, the trainer reads
its `trainer` section as its config, and the local runner validates resources with them. Condition
types, reasons, phases and restart causes are named here, next to the types that carry them.

Every field's description becomes `kubectl explain` text, so it is written for a user.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, Field

from kubeforge.api.meta import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    CaBundle,
    CamelModel,
    CelRule,
    Condition,
    Int32,
    Int64,
    ObjectMeta,
    PodStartFailure,
    ResourceNames,
    ResourceRequirements,
    StatusModel,
    cel_rule,
    defaulted,
    immutable,
    unique,
)

TRAINING_JOB = ResourceNames(
    kind="TrainingJob",
    plural="trainingjobs",
    singular="trainingjob",
    short_names=("tj",),
    categories=("kubeforge",),
)

RESTART_HISTORY_LIMIT = 10
"""How many restarts status.restarts.history keeps; older ones are dropped (the count goes on)."""

EXIT_CODE_RULES_LIMIT = 64
"""The most exit codes one failure-policy list holds (bounds the apiserver's CEL cost)."""
ENV_LIMIT = 256
"""The most variables spec.env holds, and its longest name (bounds the CEL cost of looking
through them)."""

DEFAULT_LOG_INTERVAL_STEPS = 100
"""Steps between the built-in trainer's measurements unless trainer.logIntervalSteps says."""

OBJECT_URI = r"^(s3|file)://.+$"
URI_MAX_LENGTH = 2048


class TrainingJobPhase(StrEnum):
    """Where a TrainingJob is in its life, in one word."""

    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class TrainingJobConditionType(StrEnum):
    """The condition types of a TrainingJob: kstatus' Ready, Reconciling and Stalled, then ours."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class TrainingJobReason(StrEnum):
    """Why a TrainingJob condition has its status: the `reason` of its conditions and Events."""

    # Waiting to start.
    WAITING_FOR_DATASET = "WaitingForDataset"
    QUEUED = "Queued"
    WORKERS_STARTING = "WorkersStarting"
    # A worker cannot start; these fail the job once startDeadlineSeconds has passed.
    IMAGE_PULL_BACK_OFF = PodStartFailure.IMAGE_PULL_BACK_OFF.value
    ERR_IMAGE_PULL = PodStartFailure.ERR_IMAGE_PULL.value
    CREATE_CONTAINER_CONFIG_ERROR = PodStartFailure.CREATE_CONTAINER_CONFIG_ERROR.value
    UNSCHEDULABLE = PodStartFailure.UNSCHEDULABLE.value
    # Running, changing shape, paused, done.
    WORKERS_RUNNING = "WorkersRunning"
    SCALING = "Scaling"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    COMPLETED = "Completed"
    # Restart causes (see RestartCause).
    RETRYABLE_EXIT_CODE = "RetryableExitCode"
    OOM_KILLED = "OOMKilled"
    HUNG = "Hung"
    NODE_LOST = "NodeLost"
    PREEMPTED = "Preempted"
    EVICTED = "Evicted"
    POD_DELETED = "PodDeleted"
    # Terminal failures.
    START_DEADLINE_EXCEEDED = "StartDeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    PERMANENT_EXIT_CODE = "PermanentExitCode"
    DEADLINE_EXCEEDED = "DeadlineExceeded"


class RestartCause(StrEnum):
    """Why the worker group restarted. Disruptions are not the job's fault and cost no budget."""

    RETRYABLE_EXIT_CODE = TrainingJobReason.RETRYABLE_EXIT_CODE.value
    OOM_KILLED = TrainingJobReason.OOM_KILLED.value
    HUNG = TrainingJobReason.HUNG.value
    NODE_LOST = TrainingJobReason.NODE_LOST.value
    PREEMPTED = TrainingJobReason.PREEMPTED.value
    EVICTED = TrainingJobReason.EVICTED.value
    POD_DELETED = TrainingJobReason.POD_DELETED.value

    @property
    def is_disruption(self) -> bool:
        """True when the cause is outside the job (a lost node, preemption, eviction, deletion)."""
        return self in {
            RestartCause.NODE_LOST,
            RestartCause.PREEMPTED,
            RestartCause.EVICTED,
            RestartCause.POD_DELETED,
        }


class TrainerStage(StrEnum):
    """What rank 0 of an attempt is doing. Each stage is timed on its own by
    progressDeadlineSeconds, so a long start (a big checkpoint's restore, compilation) is not
    taken for a hang while each of its stages still ends within the deadline."""

    LOADING = "Loading"
    """Reading the dataset's index and the tokenizer, building the model."""
    RESTORING = "Restoring"
    """Reading and loading the newest checkpoint."""
    FIRST_STEP = "FirstStep"
    """The attempt's first step, compilation included."""
    TRAINING = "Training"
    """Steps: each one restarts the deadline's clock."""
    FINISHING = "Finishing"
    """After the last step: the final checkpoint and the model's artifacts."""


class ModelArchitecture(StrEnum):
    """The built-in trainer's models."""

    MLP = "mlp"
    GPT = "gpt"
    LLAMA = "llama"


class ModelSize(StrEnum):
    """The llama architecture's named shapes: kubeforge's own small ones and the published Llama
    3.x shapes (their vocabulary aside: the model takes the dataset's)."""

    TINY = "tiny"
    SIZE_125M = "125m"
    SIZE_350M = "350m"
    LLAMA_3_2_1B = "llama-3.2-1b"
    LLAMA_3_2_3B = "llama-3.2-3b"
    LLAMA_3_1_8B = "llama-3.1-8b"


class OptimizerName(StrEnum):
    """The built-in trainer's optimisers."""

    ADAM = "adam"
    ADAMW = "adamw"


class Precision(StrEnum):
    """The numeric precision the built-in trainer computes in."""

    BF16 = "bf16"
    FP32 = "fp32"


class TokenizerType(StrEnum):
    """Where a language model's tokenizer comes from."""

    BYTES = "bytes"
    DATASET = "dataset"
    URI = "uri"
    MODEL = "model"


class ParallelStrategy(StrEnum):
    """How the built-in trainer spreads the model over its processes."""

    DDP = "ddp"
    FSDP = "fsdp"


class ActivationCheckpointing(StrEnum):
    """Which activations the built-in trainer recomputes in the backward pass instead of keeping."""

    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


class GangScheduler(StrEnum):
    """Which gang scheduler places all workers together, or none."""

    NONE = "none"
    VOLCANO = "volcano"
    SCHEDULER_PLUGINS = "scheduler-plugins"


ExitCode = Annotated[int, Field(ge=1, le=255)]
ObjectUri = Annotated[str, Field(pattern=OBJECT_URI, max_length=URI_MAX_LENGTH)]


class ModelConfig(CamelModel):
    """The model the built-in trainer trains; omitted sizes take the architecture's defaults (for
    llama: those of `size`, or of the tiny shape)."""

    architecture: ModelArchitecture = Field(
        description="Model family: mlp (a classifier of 28x28 images into 10 classes), gpt (a "
        "GPT-2-style language model over the dataset's text) or llama (a Llama-3-style one: "
        "RMSNorm, rotary positions, SwiGLU, grouped-query attention)."
    )
    size: ModelSize | None = Field(
        default=None,
        description="A named llama shape: tiny, 125m, 350m, or the published llama-3.2-1b, "
        "llama-3.2-3b and llama-3.1-8b (with the dataset's vocabulary). Excludes the shape's "
        "own dimensions (layers, hiddenSize, heads, kvHeads, intermediateSize, tieEmbeddings); "
        "contextLength and ropeTheta may still be set (llama only).",
    )
    layers: Int32 | None = Field(default=None, ge=1, description="Number of layers.")
    hidden_size: Int32 | None = Field(
        default=None,
        ge=1,
        description="Width of the hidden layers (the embedding size for gpt and llama).",
    )
    heads: Int32 | None = Field(
        default=None, ge=1, description="Attention heads per layer (gpt and llama only)."
    )
    kv_heads: Int32 | None = Field(
        default=None,
        ge=1,
        description="Key and value heads per layer, shared by groups of query heads (grouped-"
        "query attention; equal to heads: multi-head attention). A divisor of heads, set only with "
        "it; omitted: equal to it (llama only).",
    )
    intermediate_size: Int32 | None = Field(
        default=None,
        ge=1,
        description="Width of the SwiGLU MLP's hidden layer (llama only). Omitted with "
        "hiddenSize set: 8/3 of it, rounded up to a multiple of 128.",
    )
    context_length: Int32 | None = Field(
        default=None, ge=1, description="Tokens per training sequence (gpt and llama only)."
    )
    tie_embeddings: bool | None = Field(
        default=None,
        description="Whether the output layer shares the token embedding's weights (llama "
        "only; gpt always ties them).",
    )
    rope_theta: float | None = Field(
        default=None,
        gt=0,
        description="Base of the rotary position embedding's frequencies (llama only; default "
        "500000, as Llama 3).",
    )
    init_from: ObjectUri | None = Field(
        default=None,
        description="A Hugging Face Llama model folder (s3:// in the job's storage, or file://; "
        "never a hub) whose weights the model starts from, to continue pretraining or fine-tune: "
        "its config.json (architectures LlamaForCausalLM) gives the shape and vocabulary, its "
        "model.safetensors (or the shards model.safetensors.index.json names) the weights, and "
        "its tokenizer.json the tokenizer unless tokenizer.type names another. The shape is the "
        "folder's: size and the dimensions other than contextLength must not be set with it "
        "(llama only). A checkpoint of the job, when there is one, is resumed instead.",
    )

    @cel_rule(
        "self.architecture != 'mlp' || (!has(self.heads) && !has(self.contextLength))",
        "heads and contextLength apply only to the gpt and llama architectures",
    )
    def _attention_settings_only_for_language_models(self) -> bool:
        return self.architecture != ModelArchitecture.MLP or (
            self.heads is None and self.context_length is None
        )

    @cel_rule(
        "self.architecture == 'llama' || (!has(self.size) && !has(self.kvHeads) && "
        "!has(self.intermediateSize) && !has(self.tieEmbeddings) && !has(self.ropeTheta) && "
        "!has(self.initFrom))",
        "size, kvHeads, intermediateSize, tieEmbeddings, ropeTheta and initFrom apply only to the "
        "llama architecture",
    )
    def _llama_settings_only_for_llama(self) -> bool:
        return self.architecture == ModelArchitecture.LLAMA or all(
            value is None
            for value in (
                self.size,
                self.kv_heads,
                self.intermediate_size,
                self.tie_embeddings,
                self.rope_theta,
                self.init_from,
            )
        )

    @cel_rule(
        "!has(self.initFrom) || (!has(self.size) && !has(self.layers) && !has(self.hiddenSize) && "
        "!has(self.heads) && !has(self.kvHeads) && !has(self.intermediateSize) && "
        "!has(self.tieEmbeddings) && !has(self.ropeTheta))",
        "initFrom's config.json gives the shape: size, layers, hiddenSize, heads, kvHeads, "
        "intermediateSize, tieEmbeddings and ropeTheta must not be set with it",
        field_path=".initFrom",
    )
    def _shape_from_init_folder(self) -> bool:
        return self.init_from is None or all(
            value is None for value in (self.size, self.rope_theta, *self._dimensions())
        )

    @cel_rule(
        "!has(self.size) || (!has(self.layers) && !has(self.hiddenSize) && !has(self.heads) && "
        "!has(self.kvHeads) && !has(self.intermediateSize) && !has(self.tieEmbeddings))",
        "size names the whole shape: layers, hiddenSize, heads, kvHeads, intermediateSize and "
        "tieEmbeddings must not be set with it",
        field_path=".size",
    )
    def _size_or_dimensions(self) -> bool:
        return self.size is None or all(value is None for value in self._dimensions())

    def _dimensions(self) -> tuple[int | bool | None, ...]:
        """The settings a named size or a Hugging Face folder fixes (but the rotary base)."""
        return (
            self.layers,
            self.hidden_size,
            self.heads,
            self.kv_heads,
            self.intermediate_size,
            self.tie_embeddings,
        )

    @cel_rule(
        "self.architecture != 'llama' || (has(self.hiddenSize) == has(self.heads) && "
        "(!has(self.kvHeads) || has(self.heads)))",
        "a llama's hiddenSize and heads are set together, and kvHeads only with them",
    )
    def _llama_attention_shape_whole(self) -> bool:
        # The rules below can then check every head shape; none is left to the defaults.
        return self.architecture != ModelArchitecture.LLAMA or (
            (self.hidden_size is None) == (self.heads is None)
            and (self.kv_heads is None or self.heads is not None)
        )

    @cel_rule(
        "!has(self.heads) || !has(self.hiddenSize) || self.hiddenSize % self.heads == 0",
        "hiddenSize must be a multiple of heads",
        field_path=".hiddenSize",
    )
    def _heads_divide_hidden_size(self) -> bool:
        return self.heads is None or self.hidden_size is None or self.hidden_size % self.heads == 0

    @cel_rule(
        "!has(self.kvHeads) || !has(self.heads) || self.heads % self.kvHeads == 0",
        "heads must be a multiple of kvHeads",
        field_path=".kvHeads",
    )
    def _kv_heads_divide_heads(self) -> bool:
        return self.kv_heads is None or self.heads is None or self.heads % self.kv_heads == 0

    @cel_rule(
        "self.architecture != 'llama' || !has(self.heads) || !has(self.hiddenSize) || "
        "self.hiddenSize / self.heads % 2 == 0",
        "hiddenSize / heads (the head size) must be even for rotary positions",
        field_path=".hiddenSize",
    )
    def _head_size_even(self) -> bool:
        return (
            self.architecture != ModelArchitecture.LLAMA
            or self.heads is None
            or self.hidden_size is None
            or self.hidden_size // self.heads % 2 == 0
        )


class OptimizerConfig(CamelModel):
    """The built-in trainer's optimiser and learning-rate schedule (linear warmup, then cosine)."""

    name: OptimizerName = Field(default=OptimizerName.ADAMW, description="adam or adamw.")
    learning_rate: float = Field(default=3e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="Weight decay coefficient.")
    warmup_steps: Int64 = Field(
        default=0, ge=0, description="Steps of linear warmup to the peak learning rate."
    )
    grad_clip_norm: float = Field(
        default=1.0, ge=0, description="Gradients are clipped to this global norm; 0 turns it off."
    )


class BatchConfig(CamelModel):
    """Batch sizes; the global batch stays fixed when the number of workers changes."""

    global_size: Int32 = Field(
        default=64,
        ge=1,
        description="Samples per optimiser step across all processes. Gradient accumulation "
        "keeps it fixed when the world size changes.",
    )
    micro_size: Int32 | None = Field(
        default=None,
        ge=1,
        description="Samples per forward pass in each process. Omitted: globalSize divided by "
        "the world size, without accumulation.",
    )

    @cel_rule(
        "!has(self.microSize) || self.microSize <= self.globalSize",
        "microSize must not exceed globalSize",
        field_path=".microSize",
    )
    def _micro_batch_fits_global(self) -> bool:
        return self.micro_size is None or self.micro_size <= self.global_size


class TokenizerConfig(CamelModel):
    """The tokenizer that turns the dataset's text into a language model's tokens (and back
    into text); its vocabulary sizes the model's embeddings. Read from object storage when the
    job starts, never downloaded."""

    type: TokenizerType | None = Field(
        default=None,
        description="bytes: each UTF-8 byte is a token, plus an end-of-document token (257 in "
        "all), nothing to train; dataset: the tokenizer.json published with the dataset version "
        "(DataIngest output.tokenizer); uri: the tokenizer.json named by uri; model: the "
        "tokenizer.json of the folder model.initFrom names. Omitted: model when model.initFrom "
        "is set, else bytes.",
    )
    uri: ObjectUri | None = Field(
        default=None,
        description="A Hugging Face tokenizer.json (s3:// in the job's storage, or file://) "
        "whose vocabulary has an end-of-document token. Set exactly when type is uri.",
    )

    @cel_rule(
        # `type` may be absent: the apiserver checks the rule on the field's default ({}) too.
        "(has(self.type) && self.type == 'uri') == has(self.uri)",
        "uri is set exactly when type is uri",
        field_path=".uri",
    )
    def _uri_only_for_uri_type(self) -> bool:
        return (self.type == TokenizerType.URI) == (self.uri is not None)


class ParallelismConfig(CamelModel):
    """How the built-in trainer spreads the model, its gradients and optimiser state over the
    processes, and trades compute for activation memory."""

    strategy: ParallelStrategy = Field(
        default=ParallelStrategy.DDP,
        description="ddp: every process holds the whole model and optimiser state, gradients are "
        "averaged; fsdp: parameters, gradients and optimiser state are sharded over the processes "
        "(FSDP2, one unit per transformer block), and checkpoints are sharded too.",
    )
    activation_checkpointing: ActivationCheckpointing = Field(
        default=ActivationCheckpointing.NONE,
        description="none: keep every activation; selective: in each transformer block keep the "
        "matmul and attention outputs and recompute the rest (norms, activations); full: keep "
        "only each block's input and recompute the block in the backward pass.",
    )
    cpu_offload: bool = Field(
        default=False,
        description="fsdp only: keep the sharded parameters, gradients and optimiser state in "
        "host memory and run the optimiser step there (fits larger models on GPUs, slower).",
    )

    @cel_rule(
        # has(): the rule also checks the schema's default ({}), whose fields are not defaulted.
        "!has(self.cpuOffload) || !self.cpuOffload || "
        "(has(self.strategy) && self.strategy == 'fsdp')",
        "cpuOffload needs strategy fsdp",
        field_path=".cpuOffload",
    )
    def _offload_only_when_sharded(self) -> bool:
        return not self.cpu_offload or self.strategy == ParallelStrategy.FSDP


class ValidationConfig(CamelModel):
    """A held-out split of a language model's dataset, evaluated during training. Set, it
    changes which documents train: checkpoints of a run without it (or with another fraction)
    do not resume with it."""

    fraction: float = Field(
        default=0.005,
        gt=0,
        le=0.5,
        description="Share of the documents held out: a document is held out when its content "
        "hash (sha256 of its text) falls below this fraction, so the split depends only on the "
        "text, never on the world size, the seed, a restart or the dataset version. Held-out "
        "documents never train.",
    )
    every_steps: Int64 = Field(
        default=DEFAULT_LOG_INTERVAL_STEPS,
        ge=1,
        description="Steps between evaluations; the last step is always evaluated.",
    )
    batches: Int32 = Field(
        default=10,
        ge=1,
        description="Global batches (batch.globalSize windows each) of held-out windows evaluated "
        "each time: the first ones of the held-out text, the same at every evaluation; fewer "
        "when the held-out text holds fewer.",
    )


class TrainerConfig(CamelModel):
    """Configuration of kubeforge's built-in trainer (python -m kubeforge_trainer)."""

    model: ModelConfig = immutable("The model to train.")
    tokenizer: TokenizerConfig = defaulted(
        TokenizerConfig, "The tokenizer of a language model's text (the mlp has none)."
    )
    optimizer: OptimizerConfig = defaulted(OptimizerConfig, "Optimiser and learning-rate schedule.")
    batch: BatchConfig = defaulted(BatchConfig, "Batch sizes.")
    steps: Int64 = Field(ge=1, description="Total optimiser steps to train for.")
    log_interval_steps: Int64 = Field(
        default=DEFAULT_LOG_INTERVAL_STEPS,
        ge=1,
        description="Steps between measurements (loss, throughput, the mlp's test accuracy) in "
        "the logs, status.progress and the final metrics; the first and last steps are always "
        "measured.",
    )
    precision: Precision = Field(
        default=Precision.BF16,
        description="bf16: mixed precision with bfloat16 autocast on GPUs (runs on CPU stay "
        "fp32); fp32: full precision everywhere.",
    )
    parallelism: ParallelismConfig = defaulted(
        ParallelismConfig,
        "How the model is spread over the processes (ddp or fsdp) and activation checkpointing.",
    )
    compile: bool = Field(
        default=False,
        description="Compile the model with torch.compile: faster steps on GPUs after a slower "
        "start (each restart compiles again).",
    )
    seed: Int64 = Field(
        default=0,
        ge=0,
        description="Seed of the model's initial weights and of the data order. The data order "
        "depends only on it, never on the number of workers.",
    )
    validation: ValidationConfig | None = Field(
        default=None,
        description="Language models (gpt, llama) only: hold out a share of the dataset's "
        "documents and report the validation loss, perplexity and bits per byte every "
        "everySteps steps. Omitted: no validation, every document trains.",
    )

    @cel_rule(
        "self.model.architecture != 'mlp' || !has(self.tokenizer) || !has(self.tokenizer.type) "
        "|| self.tokenizer.type == 'bytes'",
        "tokenizer applies only to language models, not the mlp",
        field_path=".tokenizer",
    )
    def _no_tokenizer_for_mlp(self) -> bool:
        return self.model.architecture != ModelArchitecture.MLP or self.tokenizer.type in (
            None,
            TokenizerType.BYTES,
        )

    @cel_rule(
        "!has(self.tokenizer) || !has(self.tokenizer.type) || self.tokenizer.type != 'model' "
        "|| has(self.model.initFrom)",
        "tokenizer.type model reads the folder model.initFrom names: set it",
        field_path=".tokenizer.type",
    )
    def _model_tokenizer_needs_init_folder(self) -> bool:
        return self.tokenizer.type != TokenizerType.MODEL or self.model.init_from is not None

    @cel_rule(
        "self.model.architecture != 'mlp' || !has(self.validation)",
        "validation applies only to the language models (gpt, llama); the mlp reports its "
        "digits test accuracy instead",
        field_path=".validation",
    )
    def _no_validation_for_mlp(self) -> bool:
        return self.model.architecture != ModelArchitecture.MLP or self.validation is None


class DatasetRef(CamelModel):
    """A DataIngest in the TrainingJob's namespace whose published dataset is trained on."""

    name: str = Field(
        max_length=253, pattern=DNS1123_SUBDOMAIN, description="Name of the DataIngest."
    )
    version: Int32 | None = Field(
        default=None,
        ge=1,
        description="Dataset version to train on. Omitted: the latest version published when "
        "the job starts.",
    )


class DatasetSource(CamelModel):
    """Where the training data comes from: a DataIngest, or shards already in object storage."""

    dataset_ref: DatasetRef | None = Field(
        default=None,
        description="A DataIngest whose dataset to train on; the job waits (WaitingForDataset) "
        "until it is published.",
    )
    uri: ObjectUri | None = Field(
        default=None,
        description="URI (s3:// or file://) of a dataset in kubeforge's format (a manifest and "
        "shards).",
    )

    @cel_rule(
        "has(self.datasetRef) != has(self.uri)",
        "exactly one of datasetRef or uri must be set",
    )
    def _one_source(self) -> bool:
        return (self.dataset_ref is None) != (self.uri is None)


class EnvVar(CamelModel):
    """An environment variable of the worker containers."""

    name: str = Field(min_length=1, max_length=ENV_LIMIT, description="Name of the variable.")
    value: str | None = Field(default=None, description="Value of the variable.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="Source of the value, as in a container's env[].valueFrom (secretKeyRef, "
        "configMapKeyRef, fieldRef, resourceFieldRef).",
    )

    @cel_rule(
        "!(has(self.value) && has(self.valueFrom))",
        "value and valueFrom are mutually exclusive",
    )
    def _one_value(self) -> bool:
        return self.value is None or self.value_from is None


class CheckpointPolicy(CamelModel):
    """Where and how often training state is saved; a restarted worker resumes from the latest."""

    uri: ObjectUri = immutable(
        "URI (s3:// or file://) under which checkpoints are written and resumed from."
    )
    interval_steps: Int64 | None = Field(
        default=None, ge=1, description="Save a checkpoint every this many optimiser steps."
    )
    interval_seconds: Int64 | None = Field(
        default=None,
        ge=1,
        description="Save a checkpoint at least this often. With intervalSteps too, whichever "
        "comes first.",
    )
    keep: Int32 = Field(default=3, ge=1, description="How many recent checkpoints to keep.")

    @cel_rule(
        "has(self.intervalSteps) || has(self.intervalSeconds)",
        "at least one of intervalSteps or intervalSeconds must be set",
    )
    def _has_interval(self) -> bool:
        return self.interval_steps is not None or self.interval_seconds is not None


class StoragePolicy(CamelModel):
    """How the workers reach object storage (the dataset, checkpoints). The endpoint, region and
    credentials come from env (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID from a Secret) or
    from workload identity."""

    ca_bundle: CaBundle | None = Field(
        default=None,
        description="CA certificates that an https S3 endpoint signed by a private CA is verified "
        "with in the worker pods (mounted, and named by AWS_CA_BUNDLE), instead of the system's.",
    )


class FailurePolicy(CamelModel):
    """How failures are counted and when they end the job.

    A restart of the worker group is charged to maxRestarts unless it was caused by a disruption
    (preemption, eviction, a lost node), which never counts.
    """

    max_restarts: Int32 = Field(
        default=3,
        ge=0,
        description="Total restarts of the worker group charged to this job over its whole "
        "life; one more failure fails it with reason BackoffLimitExceeded. Disruptions "
        "(preemption, eviction, node loss) are never charged.",
    )
    retryable_exit_codes: Annotated[list[ExitCode], AfterValidator(unique)] = Field(
        default_factory=list,
        max_length=EXIT_CODE_RULES_LIMIT,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Exit codes that restart the group (charged to maxRestarts). When set, any "
        "other non-zero exit code fails the job at once; empty: every non-zero exit code not "
        "listed in permanentExitCodes is retryable.",
    )
    permanent_exit_codes: Annotated[list[ExitCode], AfterValidator(unique)] = Field(
        default_factory=list,
        max_length=EXIT_CODE_RULES_LIMIT,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Exit codes that fail the job at once with reason PermanentExitCode, "
        "e.g. a configuration error that no restart fixes.",
    )
    unreachable_node_seconds: Int64 = Field(
        default=60,
        ge=0,
        description="Seconds a worker stays bound to a node that stopped answering (the "
        "node.kubernetes.io/unreachable or not-ready taint) before Kubernetes evicts it, so that "
        "its replacement can start elsewhere; the loss is recorded as NodeLost (not charged). "
        "Kubernetes' own default is 300. Ignored when spec.tolerations already tolerates these "
        "taints.",
    )
    stuck_termination_seconds: Int64 = Field(
        default=30,
        ge=0,
        description="Seconds a worker pod may stay terminating past its grace period (its "
        "kubelet no longer answers, as on a lost node) before the operator force-deletes it, so "
        "that the Job controller, which waits for it to be gone, can replace it.",
    )

    @cel_rule(
        "!has(self.retryableExitCodes) || !has(self.permanentExitCodes) || "
        "!self.retryableExitCodes.exists(c, c in self.permanentExitCodes)",
        "an exit code cannot be both retryable and permanent",
        field_path=".permanentExitCodes",
    )
    def _exit_code_rules_disjoint(self) -> bool:
        return not set(self.retryable_exit_codes) & set(self.permanent_exit_codes)

    def is_permanent(self, exit_code: int | None) -> bool:
        """Whether a worker that exited with this code fails the job at once (no restart)."""
        return exit_code in self.permanent_exit_codes or bool(
            self.retryable_exit_codes and exit_code not in self.retryable_exit_codes
        )


class SchedulingPolicy(CamelModel):
    """How the workers are queued and placed."""

    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Kueue LocalQueue to submit to. The job stays suspended until Kueue admits "
        "it (reason Queued).",
    )
    gang: GangScheduler = immutable(
        "Gang scheduler that starts all workers together or none: none, volcano (a Volcano "
        "PodGroup) or scheduler-plugins (a coscheduling PodGroup).",
        default=GangScheduler.NONE,
    )


def _env_names_unique(env: list[EnvVar]) -> list[EnvVar]:
    unique([variable.name for variable in env])
    return env


class TrainingJobSpec(CamelModel):
    """The desired state of a TrainingJob."""

    transition_rules = (
        CelRule(
            "!has(oldSelf.dataset) || has(self.dataset)",
            "dataset cannot be removed once set",
            field_path=".dataset",
        ),
        CelRule(
            "!has(oldSelf.checkpoint) || has(self.checkpoint)",
            "checkpoint cannot be removed once set",
            field_path=".checkpoint",
        ),
    )

    image: str = Field(min_length=1, max_length=1024, description="Container image of the workers.")
    trainer: TrainerConfig | None = Field(
        default=None,
        description="Run kubeforge's built-in trainer with this configuration. Exactly one of "
        "trainer and command is set.",
    )
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Run your own program instead of the built-in trainer: what torchrun "
        "launches in every process, a script and its arguments (train.py --lr 3e-4) or a module "
        "(-m mypackage.train). Exactly one of trainer and command is set.",
    )
    dataset: DatasetSource | None = immutable(
        "The data to train on; the built-in trainer's mlp needs none.", default=None
    )
    replicas: Int32 = Field(
        default=1,
        ge=1,
        description="Number of worker pods (torchrun agents, one per node) to run. Changed by "
        "kubectl scale; the group re-forms with the new number.",
    )
    min_replicas: Int32 | None = Field(
        default=None,
        ge=1,
        description="Fewest workers training continues with (torchrun --nnodes min). Omitted: "
        "replicas, i.e. not elastic downwards.",
    )
    max_replicas: Int32 | None = Field(
        default=None,
        ge=1,
        description="Most workers the group may grow to (torchrun --nnodes max). Omitted: "
        "replicas.",
    )
    nproc_per_node: Int32 = Field(
        default=1,
        ge=1,
        description="Training processes per worker pod, usually its number of GPUs "
        "(torchrun --nproc-per-node).",
    )
    resources: ResourceRequirements = defaulted(
        ResourceRequirements, "Compute resources of each worker pod."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels a worker's node must have, as in a pod's nodeSelector.",
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tolerations of the worker pods, as in a pod's tolerations (e.g. for GPU "
        "nodes tainted nvidia.com/gpu).",
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="Affinity of the worker pods, as in a pod's affinity."
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="PriorityClass of the worker pods.",
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="ServiceAccount the worker pods run as (e.g. for workload identity to "
        "object storage).",
    )
    env: Annotated[list[EnvVar], AfterValidator(_env_names_unique)] = Field(
        default_factory=list,
        max_length=ENV_LIMIT,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Environment variables added to the worker containers.",
    )
    checkpoint: CheckpointPolicy | None = Field(
        default=None,
        description="Where and how often to checkpoint. Omitted: no checkpoints, so a restart "
        "starts training over.",
    )
    storage: StoragePolicy | None = Field(
        default=None,
        description="How the workers reach object storage over TLS (storage.caBundle).",
    )
    failure_policy: FailurePolicy = defaulted(
        FailurePolicy, "How failures are counted and when they end the job."
    )
    start_deadline_seconds: Int64 = Field(
        default=600,
        ge=1,
        description="Seconds one start of the worker group may take: from the moment it began "
        "(the workers' creation after admission and the dataset, or the moment a running group "
        "lost a worker) to all workers Running. A worker stuck in ImagePullBackOff, "
        "ErrImagePull, CreateContainerConfigError or Unschedulable fails the job when it "
        "passes, with reason StartDeadlineExceeded. Counted anew at every restart; never from "
        "the job's creation.",
    )
    termination_grace_period_seconds: Int64 = Field(
        default=120,
        ge=0,
        description="Seconds a worker has after SIGTERM (preemption, eviction, deletion, "
        "suspension) before it is killed. The built-in trainer commits a checkpoint inside it, "
        "so it must exceed one checkpoint save: the default is ample for models up to about a "
        "billion parameters on a fast object store.",
    )
    progress_deadline_seconds: Int64 | None = Field(
        default=None,
        ge=1,
        description="Seconds without a new training step (status.progress.step) after which "
        "the group is restarted as hung (cause Hung, charged to maxRestarts). Each stage of a "
        "start that the program reports (status.progress.stage: loading, restoring a "
        "checkpoint, the first step with its compilation) and the final save get the same "
        "seconds of their own, so set it above the longest of them. Omitted: hangs are not "
        "detected; set it only for programs that report progress.",
    )
    active_deadline_seconds: Int64 | None = Field(
        default=None,
        ge=1,
        description="Seconds the job may run from its start time, across restarts; past it the "
        "job fails with reason DeadlineExceeded.",
    )
    ttl_seconds_after_finished: Int64 | None = Field(
        default=None,
        ge=0,
        description="Seconds after the job succeeds or fails that it is deleted, with its "
        "workers. Omitted: kept.",
    )
    suspend: bool = Field(
        default=False,
        description="True removes the workers and keeps the job; false again resumes it from "
        "its latest checkpoint.",
    )
    scheduling: SchedulingPolicy = defaulted(
        SchedulingPolicy, "How the workers are queued and placed."
    )

    @cel_rule(
        "has(self.trainer) != has(self.command)",
        "exactly one of trainer or command must be set",
    )
    def _runs_one_program(self) -> bool:
        return (self.trainer is None) != (self.command is None)

    @cel_rule(
        "!has(self.storage) || !has(self.storage.caBundle) || !has(self.env) || "
        "!self.env.exists(v, v.name == 'AWS_CA_BUNDLE')",
        "storage.caBundle sets AWS_CA_BUNDLE: env must not set it too",
        field_path=".env",
    )
    def _one_storage_ca(self) -> bool:
        return (
            self.storage is None
            or self.storage.ca_bundle is None
            or all(variable.name != "AWS_CA_BUNDLE" for variable in self.env)
        )

    @cel_rule(
        "!has(self.minReplicas) || self.minReplicas <= self.replicas",
        "minReplicas must not exceed replicas",
        field_path=".minReplicas",
    )
    def _min_replicas_within_replicas(self) -> bool:
        return self.min_replicas is None or self.min_replicas <= self.replicas

    @cel_rule(
        "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
        "replicas must not exceed maxReplicas",
        field_path=".replicas",
    )
    def _replicas_within_max_replicas(self) -> bool:
        return self.max_replicas is None or self.replicas <= self.max_replicas


class ReplicaStatus(StatusModel):
    """How many workers the job wants and has."""

    desired: Int32 = Field(
        default=0, description="Workers wanted now: spec.replicas, or 0 while suspended."
    )
    current: Int32 = Field(default=0, description="Worker pods that exist and are not terminating.")
    ready: Int32 = Field(default=0, description="Worker pods that are Running and ready.")


class RestartRecord(StatusModel):
    """One restart of the worker group."""

    time: AwareDatetime = Field(description="When the restart was decided.")
    cause: RestartCause = Field(
        description="Why: RetryableExitCode, OOMKilled, Hung (charged to maxRestarts), or "
        "NodeLost, Preempted, Evicted, PodDeleted (disruptions, never charged). Workers that "
        "stop because the group broke are part of the same restart, not restarts of their own."
    )
    charged: bool = Field(description="Whether the restart was charged to maxRestarts.")
    pod: str | None = Field(default=None, description="The worker pod that failed first.")
    exit_code: Int32 | None = Field(
        default=None, description="Exit code of its failed container, when it exited."
    )
    reason: str | None = Field(
        default=None,
        max_length=1024,
        description="Kubernetes' own word for it, e.g. the container's terminated reason (Error, "
        "OOMKilled) or the pod's DisruptionTarget reason (PreemptionByScheduler).",
    )


class RestartStatus(StatusModel):
    """Restarts of the worker group so far."""

    count: Int32 = Field(default=0, description="Restarts charged to failurePolicy.maxRestarts.")
    disruptions: Int32 = Field(
        default=0, description="Restarts caused by disruptions, which are not charged."
    )
    history: list[RestartRecord] = Field(
        default_factory=list,
        max_length=RESTART_HISTORY_LIMIT,
        description=f"The latest {RESTART_HISTORY_LIMIT} restarts, oldest first.",
    )


class CheckpointRecord(StatusModel):
    """A checkpoint that was committed."""

    step: Int64 = Field(description="Training step the checkpoint holds.")
    uri: str = Field(description="Where the checkpoint is.")
    time: AwareDatetime = Field(description="When it was committed.")


class ValidationProgress(StatusModel):
    """One evaluation of a language model on its held-out split."""

    step: Int64 = Field(description="The optimiser step evaluated after.")
    loss: float = Field(description="Mean cross-entropy per held-out token, in nats.")
    perplexity: float = Field(description="exp(loss).")
    bits_per_byte: float = Field(
        description="The held-out tokens' total loss in bits over their text's UTF-8 bytes: "
        "comparable across tokenizers."
    )
    tokens: Int64 = Field(description="Held-out tokens evaluated.")


class ProgressStatus(StatusModel):
    """Live training progress, as rank 0 of the trainer reports it."""

    step: Int64 | None = Field(default=None, description="Optimiser steps done.")
    total_steps: Int64 | None = Field(default=None, description="Steps the run will do in all.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    samples_per_second: float | None = Field(
        default=None, description="Training throughput in samples per second, all workers."
    )
    tokens_per_second: float | None = Field(
        default=None, description="Training throughput in tokens per second, for language models."
    )
    mfu: float | None = Field(
        default=None,
        description="Model FLOPs utilisation, 0 to 1, on GPUs whose peak the trainer knows.",
    )
    data_wait_seconds: float | None = Field(
        default=None, description="Seconds rank 0 has waited for data since the run started."
    )
    checkpoint_wait_seconds: float | None = Field(
        default=None,
        description="Seconds rank 0 has been blocked by checkpoints since the run started.",
    )
    last_checkpoint: CheckpointRecord | None = Field(
        default=None, description="The latest committed checkpoint."
    )
    storage_waiting_since: AwareDatetime | None = Field(
        default=None,
        description="Set while rank 0's requests to the object store fail and are retried (an "
        "outage of the store): when the wait began. progressDeadlineSeconds does not run "
        "meanwhile; the wait is bounded by the store's retries (KUBEFORGE_S3_MAX_ATTEMPTS).",
    )
    updated_at: AwareDatetime | None = Field(
        default=None,
        description="When the training step last advanced (not when the report was written): "
        "progressDeadlineSeconds counts from it, or from stageSince when that is later.",
    )
    started_at: AwareDatetime | None = Field(
        default=None,
        description="When this attempt's rank 0 training process started; a new value means "
        "the worker group started again.",
    )
    first_step_at: AwareDatetime | None = Field(
        default=None, description="When this attempt's first training step finished."
    )
    stage: TrainerStage | None = Field(
        default=None,
        description="What rank 0 is doing: Loading, Restoring, FirstStep, Training or "
        "Finishing. Reported when it changes.",
    )
    stage_since: AwareDatetime | None = Field(
        default=None,
        description="When the stage began: progressDeadlineSeconds counts from the latest of "
        "it and updatedAt, so each stage of a start is timed on its own.",
    )
    validation: ValidationProgress | None = Field(
        default=None,
        description="The latest evaluation of the held-out split (trainer.validation).",
    )


Seconds = Annotated[float, Field(ge=0)]
"""A duration in seconds."""


class GoodputAttempt(StatusModel):
    """One attempt of the worker group: from the job's first start, or from the failure that
    ended the attempt before it, to the failure that ends it (or to now)."""

    began_at: AwareDatetime = Field(
        description="When the attempt began: the workers' first creation, or the failure (the "
        "restart's time) that ended the attempt before."
    )
    started_at: AwareDatetime | None = Field(
        default=None, description="When its rank 0 training process started, as it reported."
    )
    first_step_at: AwareDatetime | None = Field(
        default=None, description="When its first training step finished."
    )
    last_step_at: AwareDatetime | None = Field(
        default=None, description="When its latest reported training step finished."
    )
    last_checkpoint_at: AwareDatetime | None = Field(
        default=None, description="When the latest checkpoint it committed was committed."
    )
    time_to_first_step_seconds: Seconds | None = Field(
        default=None,
        description="Seconds from the attempt's beginning to its first training step.",
    )
    rework_seconds: Seconds = Field(
        default=0,
        description="Seconds of training the failure that began this attempt threw away: what "
        "the attempt before trained after its last checkpoint, redone from that checkpoint.",
    )
    lost_seconds: Seconds | None = Field(
        default=None,
        description="Seconds this (re)start cost: from its beginning to its first training step "
        "(or to its end, when it had none), plus reworkSeconds. Set once known.",
    )


class GoodputStatus(StatusModel):
    """How much of the job's wall time went into training: productive time over wall time."""

    ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Goodput: productiveSeconds over wallSeconds, 0 to 1.",
    )
    wall_seconds: Seconds = Field(
        default=0,
        description="Seconds since the workers were first created, to completion once finished.",
    )
    productive_seconds: Seconds = Field(
        default=0,
        description="Seconds of training that the model kept: wallSeconds less startupSeconds "
        "and lostSeconds.",
    )
    startup_seconds: Seconds = Field(
        default=0,
        description="Seconds from the workers' first creation to the first training step.",
    )
    lost_seconds: Seconds = Field(
        default=0,
        description="Seconds lost to restarts in all, the one under way included: for each, from "
        "the failure to the first training step after it, plus the training it threw away.",
    )
    attempts: list[GoodputAttempt] = Field(
        default_factory=list,
        max_length=RESTART_HISTORY_LIMIT + 1,
        description=f"The first attempt and the latest {RESTART_HISTORY_LIMIT}, oldest first; "
        "the attempt after each restart shows what that restart cost.",
    )
    earlier_lost_seconds: Seconds = Field(
        default=0,
        description="Seconds lost to the restarts whose attempts the list above no longer holds.",
    )


class TrainingJobStatus(StatusModel):
    """The observed state of a TrainingJob, written by the operator."""

    phase: TrainingJobPhase | None = Field(
        default=None,
        description="Pending, Starting, Running, Restarting, Suspended, Succeeded or Failed.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Reconciling and Stalled (kstatus), Running, Succeeded, Failed and "
        "Suspended, each with a reason such as ImagePullBackOff or NodeLost.",
    )
    observed_generation: Int64 | None = Field(
        default=None, description="The metadata.generation this status describes."
    )
    replicas: ReplicaStatus = Field(
        default_factory=ReplicaStatus, description="Desired, current and ready workers."
    )
    selector: str | None = Field(
        default=None,
        description="Label selector of the worker pods, serialised (for the scale subresource).",
    )
    restarts: RestartStatus = Field(
        default_factory=RestartStatus, description="Restarts so far, with their causes."
    )
    progress: ProgressStatus | None = Field(default=None, description="Live training progress.")
    world_size: Int32 | None = Field(
        default=None,
        description="Training processes in the current group: workers times nprocPerNode.",
    )
    start_time: AwareDatetime | None = Field(
        default=None, description="When the workers were first created."
    )
    completion_time: AwareDatetime | None = Field(
        default=None, description="When the job succeeded or failed."
    )
    goodput: GoodputStatus | None = Field(
        default=None,
        description="Productive training time over wall time, the time each restart lost and "
        "each attempt's time to its first step.",
    )


class TrainingJob(CamelModel):
    """TrainingJob runs distributed, elastic PyTorch training (torchrun) on a group of worker
    pods, restarts it from its latest checkpoint after failures and reports live progress."""

    api_version: Literal["kubeforge.dev/v1alpha1"] = Field(
        default="kubeforge.dev/v1alpha1", description="kubeforge.dev/v1alpha1."
    )
    kind: Literal["TrainingJob"] = Field(default="TrainingJob", description="TrainingJob.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: TrainingJobSpec = Field(description="The desired state of the training job.")
    status: TrainingJobStatus = Field(
        default_factory=TrainingJobStatus, description="The observed state, set by the operator."
    )
