"""`python -m kubeforge_trainer.generate` on a finished run's artifacts in a file:// store: text
from either language model, and a clear refusal of a run that trained no language model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeforge.api.trainingjob import TrainerConfig
from kubeforge.plan import WorkerConfig
from kubeforge.storage import FileStore
from kubeforge_trainer import generate
from kubeforge_trainer.artifacts import write_final_artifacts
from kubeforge_trainer.mlp import MLP
from kubeforge_trainer.tasks import build_language_model
from kubeforge_trainer.tokenizer import ByteTokenizer

LANGUAGE_MODELS = {
    "gpt": {"architecture": "gpt", "layers": 1, "hiddenSize": 32, "heads": 2, "contextLength": 16},
    "llama": {"architecture": "llama", "size": "tiny", "contextLength": 16},
}


def worker_config(model_settings: dict[str, object]) -> WorkerConfig:
    trainer = TrainerConfig.model_validate({"model": model_settings, "steps": 1})
    return WorkerConfig(job_name="run", trainer=trainer)


@pytest.mark.parametrize("architecture", LANGUAGE_MODELS)
def test_a_trained_language_model_continues_the_prompts(
    architecture: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = worker_config(LANGUAGE_MODELS[architecture])
    model = build_language_model(config.trainer.model, ByteTokenizer.vocab_size)
    write_final_artifacts(
        FileStore(tmp_path), model.state_dict(), config, {}, model, ByteTokenizer()
    )
    arguments = ["--model", tmp_path.as_uri(), "--prompt", "The ", "--tokens", "12"]
    assert generate.main(arguments) == 0
    (line,) = capsys.readouterr().out.splitlines()
    written = json.loads(line)
    assert written["prompt"] == "The "
    assert isinstance(written["text"], str)


def test_a_run_of_the_mlp_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = worker_config({"architecture": "mlp"})
    mlp = MLP(784, 10, 1, 8)
    write_final_artifacts(FileStore(tmp_path), mlp.state_dict(), config, {}, mlp, None)
    assert generate.main(["--model", tmp_path.as_uri()]) == 2
    assert "mlp is not a language model" in capsys.readouterr().err
