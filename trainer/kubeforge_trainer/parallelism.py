"""Spreading the model over the group: DDP or FSDP2, and activation checkpointing.

`parallelize` turns the bare model into what the training loop calls (`Parallel.network`) and
says how to skip the gradient synchronisation of all but a step's last micro-batch
(`Parallel.gradient_sync`).

- ddp: the whole model on every rank, gradients averaged by DDP (a group of one runs the model
  as it is: DDP would only copy every gradient through its buckets).
- fsdp: FSDP2's `fully_shard` on each transformer block (a model's `blocks`, a ModuleList, as the
  GPT and the llama have), then on the root for what is left (embeddings, final norm, head):
  each block's parameters are gathered just before it runs and freed after, so a rank holds one
  block's full parameters at a time, and its shard of the rest. On a GPU with bf16 the
  parameters are cast to bf16 for compute while gradients are reduced in fp32
  (`MixedPrecisionPolicy`); on a CPU everything stays fp32. CPU offload keeps the shards in host
  memory (meaningless when the device is the CPU: there it is ignored with a note).

Activation checkpointing wraps each block's forward in `torch.utils.checkpoint` without changing
the module tree, so parameter names (and checkpoints) are the same with and without it. `full`
keeps only a block's input; `selective` keeps the outputs of its matmuls and attention (the costly
ops) and recomputes the cheap rest (norms, activations, residual adds).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

from kubeforge.api.trainingjob import ActivationCheckpointing, ParallelismConfig, ParallelStrategy
from kubeforge_trainer.distributed import Distributed

log = logging.getLogger(__name__)

_aten = torch.ops.aten
SAVED_BY_SELECTIVE = {
    _aten.mm.default,
    _aten.addmm.default,
    _aten.bmm.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
}
"""The ops whose outputs selective activation checkpointing keeps."""


@dataclass(frozen=True)
class Parallel:
    """The model as the training loop runs it."""

    network: Callable[[torch.Tensor], torch.Tensor]
    gradient_sync: Callable[[bool], AbstractContextManager[Any]]
    """`gradient_sync(False)` around a micro-batch's backward skips the gradient reduction."""
    sharded: bool
    """Whether parameters are DTensors sharded over the group (collectives in every forward)."""


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks (its `blocks` ModuleList), or none."""
    blocks = getattr(model, "blocks", None)
    return list(blocks) if isinstance(blocks, nn.ModuleList) else []


def parallelize(
    model: nn.Module, settings: ParallelismConfig, group: Distributed, *, bf16: bool, compile: bool
) -> Parallel:
    """Applies activation checkpointing and the strategy to `model` (in place, on the group's
    device) and returns what to run."""
    for block in blocks_of(model):
        checkpoint_activations(block, settings.activation_checkpointing)
    if settings.strategy == ParallelStrategy.FSDP:
        shard(model, group, bf16=bf16, cpu_offload=settings.cpu_offload)
        return Parallel(
            torch.compile(model) if compile else model, _fsdp_gradient_sync(model), sharded=True
        )
    compiled = torch.compile(model) if compile else model
    if group.world_size == 1:
        return Parallel(compiled, lambda _: nullcontext(), sharded=False)
    cuda = group.device.type == "cuda"
    ddp = DistributedDataParallel(compiled, device_ids=[group.device.index] if cuda else None)
    return Parallel(ddp, lambda sync: nullcontext() if sync else ddp.no_sync(), sharded=False)


def shard(model: nn.Module, group: Distributed, *, bf16: bool, cpu_offload: bool) -> None:
    """FSDP2 over the whole group: each block a unit of its own, then the root."""
    cuda = group.device.type == "cuda"
    mesh = init_device_mesh(group.device.type, (group.world_size,))
    precision = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if cuda and bf16
        else MixedPrecisionPolicy()
    )
    if cpu_offload and not cuda:
        log.info("cpuOffload has no effect on the CPU: the parameters are in host memory already")
    offload = CPUOffloadPolicy() if cpu_offload and cuda else OffloadPolicy()
    for block in blocks_of(model):
        fully_shard(block, mesh=mesh, mp_policy=precision, offload_policy=offload)
    fully_shard(model, mesh=mesh, mp_policy=precision, offload_policy=offload)


def _fsdp_gradient_sync(model: nn.Module) -> Callable[[bool], AbstractContextManager[Any]]:
    assert isinstance(model, FSDPModule)  # fully_shard made it one

    @contextmanager
    def gradient_sync(sync: bool) -> Any:
        model.set_requires_gradient_sync(sync)
        yield

    return gradient_sync


def checkpoint_activations(block: nn.Module, mode: ActivationCheckpointing) -> None:
    """Makes the block recompute its activations in the backward pass (`mode`), keeping its
    module tree and parameter names."""
    if mode == ActivationCheckpointing.NONE:
        return
    context_fn: Callable[[], Any] | None = None
    if mode == ActivationCheckpointing.SELECTIVE:
        context_fn = functools.partial(create_selective_checkpoint_contexts, _keep_costly_outputs)
    forward = block.forward
    options: dict[str, Any] = {"use_reentrant": False}
    if context_fn is not None:
        options["context_fn"] = context_fn
    # An instance attribute shadows the class's forward: nn.Module.__call__ (and the hooks FSDP
    # registers on it) still runs around it.
    block.forward = functools.partial(checkpoint, forward, **options)


def _keep_costly_outputs(context: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    if op in SAVED_BY_SELECTIVE:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE
