"""`python -m kubeforge_trainer.generate --model URI [--prompt TEXT]...`: text from a trained
language model (GPT or Llama).

Reads a finished run's `final/config.yaml` under URI (the TrainingJob's checkpoint URI, s3:// or
file://), then a Llama and its tokenizer from the Hugging Face folder `final/hf`, or a GPT from
`final/model.pt` and the tokenizer the run trained with (from its dataset or URI, as the trainer
did), and continues each prompt token by token, sampling the next token from
the `top_k` most likely ones at a temperature, until the end-of-document token or `--tokens`
tokens; the tokenizer decodes what was written. Prints one JSON object per prompt and line:
`{"prompt": ..., "text": ...}`. The local runner's report calls it as a program, so the core
never imports torch.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence

import torch
import yaml

from kubeforge.api.trainingjob import ModelArchitecture
from kubeforge.plan import WorkerConfig
from kubeforge.storage import ObjectStore, open_store
from kubeforge_trainer import hugging_face
from kubeforge_trainer.artifacts import DIRECTORY, HUGGING_FACE_DIRECTORY
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.llama import Llama
from kubeforge_trainer.tasks import build_language_model
from kubeforge_trainer.tokenizer import TextTokenizer, folder_tokenizer, load_tokenizer

DEFAULT_PROMPTS = ("The ", "Return ", "This module ")


def load_language_model(store: ObjectStore) -> tuple[GPT | Llama, TextTokenizer]:
    """The trained language model of a finished run, and its tokenizer."""
    config = WorkerConfig.model_validate(yaml.safe_load(store.get(f"{DIRECTORY}/config.yaml")))
    if config.trainer.model.architecture == ModelArchitecture.LLAMA:
        folder = open_store(f"{store.uri}/{HUGGING_FACE_DIRECTORY}")
        llama = hugging_face.read_llama(folder, context_length=None)
        hugging_face.load_weights(folder, llama)
        return llama.eval(), folder_tokenizer(folder)
    dataset = open_store(config.dataset_uri) if config.dataset_uri else None
    tokenizer = load_tokenizer(config.trainer.tokenizer, dataset)
    model = build_language_model(config.trainer.model, tokenizer.vocab_size)
    weights = torch.load(io.BytesIO(store.get(f"{DIRECTORY}/model.pt")), weights_only=True)
    model.load_state_dict(weights)
    return model.eval(), tokenizer


@torch.no_grad()
def continue_text(
    model: GPT | Llama,
    tokenizer: TextTokenizer,
    prompt: str,
    *,
    max_tokens: int,
    temperature: float,
    top_k: int,
    generator: torch.Generator,
) -> str:
    """The tokens the model writes after the prompt, decoded."""
    tokens = tokenizer.encode(prompt)
    written: list[int] = []
    for _ in range(max_tokens):
        window = torch.tensor([tokens[-model.context_length :]])
        logits = model(window)[0, -1] / temperature
        top = torch.topk(logits, min(top_k, logits.numel()))
        pick = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)
        token = int(top.indices[pick])
        if token == tokenizer.end_of_document:
            break
        tokens.append(token)
        written.append(token)
    return tokenizer.decode(written)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubeforge_trainer.generate",
        description="Sample text from a trained language model.",
    )
    parser.add_argument("--model", required=True, help="the run's checkpoint URI")
    parser.add_argument("--prompt", action="append", help="text to continue (repeatable)")
    parser.add_argument("--tokens", type=int, default=200, help="most tokens written per prompt")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    try:
        model, tokenizer = load_language_model(open_store(arguments.model))
    except (KeyError, ValueError) as error:
        print(f"{arguments.model}: {error}", file=sys.stderr)
        return 2
    generator = torch.Generator().manual_seed(arguments.seed)
    for prompt in arguments.prompt or DEFAULT_PROMPTS:
        written = continue_text(
            model,
            tokenizer,
            prompt,
            max_tokens=arguments.tokens,
            temperature=arguments.temperature,
            top_k=arguments.top_k,
            generator=generator,
        )
        print(json.dumps({"prompt": prompt, "text": written}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
