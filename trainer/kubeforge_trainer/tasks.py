"""What the trainer trains: a model, its sample source and its cost, from the worker config.

Every task is next-label prediction with cross-entropy: the MLP predicts a digit per image, the
language models (GPT, Llama) the next token at every position, over the vocabulary of the
tokenizer the config names (or, for a Llama that starts from a Hugging Face folder, the folder's,
which holds the tokenizer's). A task says how many loss terms a sample has (1 or the context
length), so the loss of a global batch is the mean over all its terms whatever the world size,
and how many FLOPs a sample costs, for MFU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kubeforge.api.trainingjob import ModelArchitecture, ModelConfig
from kubeforge.plan import WorkerConfig
from kubeforge.storage import open_store
from kubeforge_trainer import digits, hugging_face, text
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.llama import Llama
from kubeforge_trainer.llama_shapes import shape_of
from kubeforge_trainer.loader import SampleSource
from kubeforge_trainer.mlp import MLP
from kubeforge_trainer.throughput import transformer_flops_per_token
from kubeforge_trainer.tokenizer import TextTokenizer, load_tokenizer
from kubeforge_trainer.validation import ValidationSet

MLP_DEFAULTS = {"layers": 2, "hidden_size": 256}
GPT_DEFAULTS = {"layers": 4, "hidden_size": 256, "heads": 4, "context_length": 256}


@dataclass(frozen=True)
class Task:
    model: nn.Module
    source: SampleSource
    loss_terms_per_sample: int
    tokens_per_sample: int | None
    flops_per_sample: float
    test_set: digits.DigitsSource | None = None
    tokenizer: TextTokenizer | None = None
    validation: ValidationSet | None = None


def _size(model: ModelConfig, name: str, defaults: dict[str, int]) -> int:
    value = getattr(model, name)
    return int(value) if value is not None else defaults[name]


def build_task(config: WorkerConfig) -> Task:
    """The task the config describes; call after seeding, since it initialises the weights."""
    spec = config.trainer.model
    if spec.architecture == ModelArchitecture.MLP:
        mlp = MLP(
            digits.INPUTS,
            digits.CLASSES,
            layers=_size(spec, "layers", MLP_DEFAULTS),
            hidden_size=_size(spec, "hidden_size", MLP_DEFAULTS),
        )
        parameters = sum(p.numel() for p in mlp.parameters())
        return Task(
            model=mlp,
            source=digits.DigitsSource("train"),
            loss_terms_per_sample=1,
            tokens_per_sample=None,
            flops_per_sample=6.0 * parameters,
            test_set=digits.DigitsSource("test"),
        )
    if not config.dataset_uri:
        raise ValueError(
            f"the {spec.architecture} model trains on a dataset: the TrainingJob needs spec.dataset"
        )
    dataset = open_store(config.dataset_uri)
    tokenizer = load_tokenizer(config.trainer.tokenizer, dataset, spec.init_from)
    language_model = build_language_model(spec, tokenizer.vocab_size)
    if isinstance(language_model, Llama) and spec.init_from:
        hugging_face.load_weights(open_store(spec.init_from), language_model)
    context = language_model.context_length
    held_out = config.trainer.validation
    source = text.TextSource(dataset, context, tokenizer, held_out.fraction if held_out else 0.0)
    validation = None
    if held_out is not None:
        windows = held_out.batches * config.trainer.batch.global_size
        validation = ValidationSet.build(source.held_out_texts, tokenizer, context, windows)
        source.held_out_texts.clear()  # the set holds what it needs of them
    return Task(
        model=language_model,
        source=source,
        loss_terms_per_sample=context,
        tokens_per_sample=context,
        flops_per_sample=context * flops_per_token(language_model),
        tokenizer=tokenizer,
        validation=validation,
    )


def build_language_model(spec: ModelConfig, vocab_size: int) -> GPT | Llama:
    """The GPT or Llama the model settings describe, over the tokenizer's vocabulary, with the
    architecture's defaults for omitted sizes; a Llama that starts from a Hugging Face folder
    has the folder's shape and vocabulary, which must hold the tokenizer's (its weights are not
    loaded yet)."""
    if spec.architecture == ModelArchitecture.LLAMA:
        if spec.init_from is None:
            return Llama(vocab_size, shape_of(spec))
        llama = hugging_face.read_llama(open_store(spec.init_from), spec.context_length)
        rows = llama.token_embedding.num_embeddings
        if vocab_size > rows:
            raise ValueError(
                f"the tokenizer's {vocab_size} tokens exceed the {rows} of {spec.init_from}"
            )
        return llama
    if spec.architecture != ModelArchitecture.GPT:
        raise ValueError(f"{spec.architecture} is not a language model")
    return GPT(
        vocab_size,
        _size(spec, "context_length", GPT_DEFAULTS),
        layers=_size(spec, "layers", GPT_DEFAULTS),
        hidden_size=_size(spec, "hidden_size", GPT_DEFAULTS),
        heads=_size(spec, "heads", GPT_DEFAULTS),
    )


def flops_per_token(model: GPT | Llama) -> float:
    """Training FLOPs per token of a language model at its full context: every parameter but
    those only looked up (positions; a Llama's untied token embedding) is a matmul weight."""
    weights = sum(p.numel() for p in model.parameters()) - model.lookup_parameters()
    return transformer_flops_per_token(
        weights, len(model.blocks), model.hidden_size, model.context_length
    )


def loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over every prediction of a micro-batch."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum"
    )


@torch.no_grad()
def accuracy(model: nn.Module, test_set: digits.DigitsSource, device: torch.device) -> float:
    """Fraction of the test set classified correctly."""
    was_training = model.training
    model.eval()
    predictions = model(test_set.inputs.to(device)).argmax(dim=-1).cpu()
    model.train(was_training)
    return float((predictions == test_set.labels).float().mean())
