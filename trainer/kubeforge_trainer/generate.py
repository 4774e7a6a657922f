"""`python -m kubeforge_trainer.generate --model URI [--prompt TEXT]...`: text from a trained
language model (GPT or Llama).

Reads a finished run's `final/config.yaml` and `final/model.pt` under URI (the TrainingJob's
checkpoint URI, s3:// or file://) and continues each prompt byte by byte, sampling the next byte
from the `top_k` most likely ones at a temperature, until the end-of-document token or `--bytes`
bytes. Prints one JSON object per prompt and line: `{"prompt": ..., "text": ...}`. The local
runner's report calls it as a program, so the core never imports torch.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence

import torch
import yaml

from kubeforge.plan import WorkerConfig
from kubeforge.storage import ObjectStore, open_store
from kubeforge_trainer import text
from kubeforge_trainer.artifacts import DIRECTORY
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.llama import Llama
from kubeforge_trainer.tasks import build_language_model

DEFAULT_PROMPTS = ("The ", "Return ", "This module ")


def load_language_model(store: ObjectStore) -> GPT | Llama:
    """The trained language model of a finished run."""
    config = WorkerConfig.model_validate(yaml.safe_load(store.get(f"{DIRECTORY}/config.yaml")))
    model = build_language_model(config.trainer.model, text.VOCAB_SIZE)
    weights = torch.load(io.BytesIO(store.get(f"{DIRECTORY}/model.pt")), weights_only=True)
    model.load_state_dict(weights)
    return model.eval()


@torch.no_grad()
def continue_text(
    model: GPT | Llama,
    prompt: str,
    *,
    max_bytes: int,
    temperature: float,
    top_k: int,
    generator: torch.Generator,
) -> str:
    """The bytes the model writes after the prompt, decoded (invalid UTF-8 replaced)."""
    tokens = [int(token) for token in text.encode(prompt)[:-1]]  # no end-of-document yet
    written: list[int] = []
    for _ in range(max_bytes):
        window = torch.tensor([tokens[-model.context_length :]])
        logits = model(window)[0, -1] / temperature
        top = torch.topk(logits, min(top_k, logits.numel()))
        pick = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)
        token = int(top.indices[pick])
        if token == text.END_OF_DOCUMENT:
            break
        tokens.append(token)
        written.append(token)
    return bytes(written).decode("utf-8", errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubeforge_trainer.generate",
        description="Sample text from a trained language model.",
    )
    parser.add_argument("--model", required=True, help="the run's checkpoint URI")
    parser.add_argument("--prompt", action="append", help="text to continue (repeatable)")
    parser.add_argument("--bytes", type=int, default=200, help="most bytes written per prompt")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    try:
        model = load_language_model(open_store(arguments.model))
    except (KeyError, ValueError) as error:
        print(f"{arguments.model}: {error}", file=sys.stderr)
        return 2
    generator = torch.Generator().manual_seed(arguments.seed)
    for prompt in arguments.prompt or DEFAULT_PROMPTS:
        written = continue_text(
            model,
            prompt,
            max_bytes=arguments.bytes,
            temperature=arguments.temperature,
            top_k=arguments.top_k,
            generator=generator,
        )
        print(json.dumps({"prompt": prompt, "text": written}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
