"""A Llama that starts from a Hugging Face folder and ends as one, under real torchrun on the
rig's S3, checked with `transformers` itself (local folders, never the hub).

A tiny randomly initialised LlamaForCausalLM and a BPE tokenizer, saved by `transformers`, are
put in object storage; two workers train from them (`model.initFrom`, the job naming no
tokenizer: the folder's), and the loss of their first step equals the one `transformers`
computes on the same batch. The run's export, `final/hf`, loads in AutoModelForCausalLM and
AutoTokenizer, and gives the logits of the trained weights in `final/model.pt`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from kubeforge.dataset import END_OF_DOCUMENT_TOKEN
from kubeforge.storage import FileStore, S3Store
from kubeforge_trainer import hugging_face
from kubeforge_trainer.text import TextSource
from kubeforge_trainer.tokenizer import folder_tokenizer
from tests.conftest import Rig
from tests.hugging_face_models import tiny_llama_config
from tests.workloads.trainer_runs import (
    ConsumedSamples,
    Launch,
    module_docs,
    run_stopped_at,
    training_job,
    write_text_dataset,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

CONTEXT = 32
GLOBAL_BATCH = 8
MODULES = ["json", "csv", "textwrap"]


def save_tiny_llama(folder: Path, texts: list[str]) -> None:
    """A byte-level BPE of 400 tokens fitted to the texts, and a random Llama over it, both saved
    by `transformers` as a model folder."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[END_OF_DOCUMENT_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=END_OF_DOCUMENT_TOKEN)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(3)
    config = tiny_llama_config(
        len(tokenizer), tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id
    )
    LlamaForCausalLM(config).save_pretrained(folder)


def test_a_llama_trains_from_a_hugging_face_folder_and_is_exported_as_one(
    rig: Rig, bucket: str, s3: S3Client, tmp_path: Path
) -> None:
    texts = [text for part in module_docs(MODULES) for text in part]
    saved = tmp_path / "saved"
    save_tiny_llama(saved, texts)
    models_store = S3Store(bucket, "models/tiny", s3)
    for path in saved.iterdir():
        models_store.put(path.name, path.read_bytes())
    dataset = S3Store(bucket, "datasets/docs/v1", s3)
    write_text_dataset(dataset, module_docs(MODULES))
    spec = {
        "trainer": {
            # The shape is the folder's; the job trains it at a shorter context.
            "model": {
                "architecture": "llama",
                "initFrom": models_store.uri,
                "contextLength": CONTEXT,
            },
            "optimizer": {"learningRate": 0.01},
            "batch": {"globalSize": GLOBAL_BATCH, "microSize": 2},
            "steps": 3,
            "logIntervalSteps": 1,
        },
        "dataset": {"uri": dataset.uri},
        "checkpoint": {"uri": f"s3://{bucket}/ckpt", "intervalSteps": 100},
    }
    launch = Launch(training_job("from-hf", 2, spec), tmp_path, rig, dataset_uri=dataset.uri)
    codes = run_stopped_at(launch, None)
    assert codes == [0, 0], launch.output()

    # Step 1's loss is the folder's weights' on the first global batch, as transformers has it.
    checkpoints = S3Store(bucket, "ckpt", s3)
    metrics = json.loads(checkpoints.get("final/metrics.json"))
    first = metrics["history"][0]
    assert first["step"] == 1
    consumed = ConsumedSamples.read(launch.sample_log)
    batch = np.array([consumed.by_position[position] for position in range(GLOBAL_BATCH)])
    source = TextSource(dataset, CONTEXT, folder_tokenizer(models_store))
    inputs, targets = source.collate(batch)
    windows = torch.cat((inputs, targets[:, -1:]), dim=1)
    reference = AutoModelForCausalLM.from_pretrained(saved, local_files_only=True).eval()
    with torch.no_grad():
        expected = reference(windows, labels=windows).loss
    assert first["loss"] == pytest.approx(float(expected), rel=1e-5)

    # The export loads in transformers with the trained weights' logits and the tokenizer's ids.
    exported = tmp_path / "exported"
    prefix = "final/hf/"
    for key in checkpoints.list(prefix):
        (exported / key.removeprefix(prefix)).parent.mkdir(parents=True, exist_ok=True)
        (exported / key.removeprefix(prefix)).write_bytes(checkpoints.get(key))
    loaded = AutoModelForCausalLM.from_pretrained(exported, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported, local_files_only=True)
    ids = tokenizer(texts[0][:200], add_special_tokens=False)["input_ids"][:CONTEXT]
    assert ids == folder_tokenizer(models_store).encode(texts[0][:200])[:CONTEXT]
    trained = hugging_face.read_llama(FileStore(exported), context_length=None)
    weights = torch.load(io.BytesIO(checkpoints.get("final/model.pt")), weights_only=True)
    trained.load_state_dict(weights)
    assert not torch.equal(weights["head.weight"], reference.lm_head.weight)
    tokens = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens).logits, trained.eval()(tokens))
