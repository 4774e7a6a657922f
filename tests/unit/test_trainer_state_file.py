"""The checkpoint state file (pure): a training state of the real models, optimisers, schedule and
RNG survives encode → decode exactly, training continues from it bit for bit as from the original,
its tensors are writable views of the buffer, and what the format cannot hold is refused.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from kubeforge.api.trainingjob import OptimizerConfig, OptimizerName
from kubeforge_trainer import state_file
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.llama import Llama
from kubeforge_trainer.llama_shapes import LlamaShape
from kubeforge_trainer.mlp import MLP
from kubeforge_trainer.schedule import warmup_cosine
from kubeforge_trainer.trainer import build_optimizer


def as_buffer(encoded: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(encoded), dtype=torch.uint8)


def round_trip(state: object) -> Any:
    return state_file.decode(as_buffer(state_file.encode(state)))


def assert_same(restored: object, original: object, path: str = "state") -> None:
    """Equal values of the very same types, tensors bit for bit (NaN equal to NaN)."""
    if isinstance(original, torch.Tensor):
        assert type(restored) is torch.Tensor, path
    elif isinstance(original, dict):  # an OrderedDict comes back as a dict, in the same order
        assert isinstance(restored, dict), path
        assert getattr(restored, "_metadata", None) == getattr(original, "_metadata", None), path
    else:
        assert type(restored) is type(original), f"{path}: {type(restored)} is not {type(original)}"
    if isinstance(original, torch.Tensor):
        assert isinstance(restored, torch.Tensor)
        assert (restored.dtype, restored.shape) == (original.dtype, original.shape), path
        bits = original.detach().contiguous().reshape(-1).view(torch.uint8)
        assert torch.equal(restored.reshape(-1).view(torch.uint8), bits), path
    elif isinstance(original, dict):
        assert isinstance(restored, dict)
        assert list(restored) == list(original), path
        for key, value in original.items():
            assert_same(restored[key], value, f"{path}[{key!r}]")
    elif isinstance(original, list | tuple):
        assert isinstance(restored, list | tuple)
        assert len(restored) == len(original), path
        for index, (left, right) in enumerate(zip(restored, original, strict=True)):
            assert_same(left, right, f"{path}[{index}]")
    elif isinstance(original, float) and math.isnan(original):
        assert isinstance(restored, float), path
        assert math.isnan(restored), path
    else:
        assert restored == original, path


class Run:
    """A model, its optimiser and schedule as the trainer builds them, trained on fixed data."""

    def __init__(self, architecture: str) -> None:
        torch.manual_seed(0)
        self.architecture = architecture
        if architecture == "mlp":
            self.model: nn.Module = MLP(784, 10, layers=2, hidden_size=32)
            config = OptimizerConfig(name=OptimizerName.ADAM, learning_rate=1e-3)
        else:
            if architecture == "gpt":
                self.model = GPT(257, 16, layers=2, hidden_size=32, heads=2)
            else:
                shape = LlamaShape(2, 32, 4, 2, 64, context_length=16, tie_embeddings=False)
                self.model = Llama(257, shape)
            config = OptimizerConfig(name=OptimizerName.ADAMW, weight_decay=0.1, warmup_steps=2)
        self.optimizer = build_optimizer(self.model, config, fused=False)
        self.scheduler = LambdaLR(self.optimizer, warmup_cosine(config.warmup_steps, 20))
        self.step = 0

    def train(self, steps: int) -> None:
        for _ in range(steps):
            generator = torch.Generator().manual_seed(self.step)
            if self.architecture == "mlp":
                inputs = torch.randn(8, 784, generator=generator)
                targets = torch.randint(0, 10, (8,), generator=generator)
            else:
                inputs = torch.randint(0, 257, (4, 16), generator=generator)
                targets = torch.randint(0, 257, (4, 16), generator=generator)
            logits = self.model(inputs)
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.view(-1)
            )
            loss = loss + 0.01 * torch.rand(()).item()  # draws from the CPU generator
            torch.autograd.backward(loss)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data": {"consumed": 24, "seed": 7, "num_samples": 1797, "fingerprint": "digits-v1"},
            "progress": {"history": [{"step": 1, "loss": 2.3, "mfu": None}, {"loss": math.nan}]},
            # A CUDA generator's state is a uint8 tensor too (the test has no GPU to take it from).
            "rng": [
                {"cpu": torch.get_rng_state()},
                {"cpu": torch.get_rng_state(), "cuda": torch.arange(16, dtype=torch.uint8)},
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"][0]["cpu"])


@pytest.mark.parametrize("architecture", ["mlp", "gpt", "llama"])
def test_training_resumes_from_a_decoded_state_bit_for_bit(architecture: str) -> None:
    original = Run(architecture)
    original.train(3)
    state = original.state_dict()
    restored_state = round_trip(state)
    assert_same(restored_state, state)
    assert all(
        isinstance(tensor_state["step"], torch.Tensor)
        for tensor_state in restored_state["optimizer"]["state"].values()
    )

    resumed = Run(architecture)
    resumed.load_state_dict(restored_state)
    torch.set_rng_state(state["rng"][0]["cpu"])
    original.train(3)
    torch.set_rng_state(restored_state["rng"][0]["cpu"])
    resumed.train(3)
    for (name, left), right in zip(
        original.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(left, right), name
    assert resumed.scheduler.get_last_lr() == original.scheduler.get_last_lr()
    assert_same(resumed.optimizer.state_dict(), original.optimizer.state_dict())


def test_tensors_of_every_kind_round_trip() -> None:
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(5, 7, generator=generator)
    tensors = {
        "bf16": torch.randn(3, 33, generator=generator).to(torch.bfloat16),
        "fp16": torch.randn(9, generator=generator).to(torch.float16),
        "fp64": torch.randn(2, 2, 2, generator=generator, dtype=torch.float64),
        "int64": torch.arange(-5, 6),
        "int8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "bool": torch.tensor([True, False, True]),
        "complex": torch.randn(4, generator=generator, dtype=torch.complex64),
        "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 3),
        "transposed": matrix.t(),
        "slice": matrix[1:4, ::2],
        "parameter": nn.Parameter(torch.ones(2)),
    }
    restored = round_trip(tensors)
    assert_same(restored, tensors)
    assert not restored["parameter"].requires_grad


def test_containers_and_scalars_keep_their_types() -> None:
    state = {
        "betas": (0.9, 0.95),
        "by_index": {0: "a", 11: {"nested": [1, 2.0, None, True]}},
        "by_tuple": {(1, "x"): 1},
        "looks_like_a_tag": {"@tensor": 0, "@tuple": [1]},
        "floats": [math.inf, -math.inf, math.nan, 1e-300, 1.0],
        "ints": [0, -1, 2**70],
        "text": "naïve ✓",
        "empty": [{}, [], ()],
    }
    assert_same(round_trip(state), state)


def test_decoded_tensors_are_writable_views_of_the_buffer() -> None:
    weights = torch.arange(1000, dtype=torch.float32)
    buffer = as_buffer(state_file.encode({"w": weights, "m": torch.zeros(3, dtype=torch.bfloat16)}))
    restored = state_file.decode(buffer)
    start = buffer.data_ptr()
    for tensor in restored.values():
        assert start <= tensor.data_ptr() < start + len(buffer)
        assert (tensor.data_ptr() - start) % state_file.ALIGNMENT == 0
    restored["w"] += 1  # an optimiser updates its state in place
    assert torch.equal(state_file.decode(buffer)["w"], weights + 1)


def test_encoding_is_a_snapshot() -> None:
    weights = torch.zeros(4)
    encoded = state_file.encode({"w": weights})
    weights += 1
    assert torch.equal(state_file.decode(as_buffer(encoded))["w"], torch.zeros(4))


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ({"a": [object()]}, r"state.a\[0\]: a object cannot be saved"),
        ({"s": {1, 2}}, "state.s: a set cannot"),
        ({torch.zeros(1): 1}, "a Tensor key cannot be saved"),
        ({"sparse": torch.zeros(2, 2).to_sparse()}, "state.sparse: only dense tensors"),
    ],
)
def test_what_the_format_cannot_hold_is_refused(state: object, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        state_file.encode(state)


def test_other_bytes_are_not_decoded() -> None:
    with pytest.raises(ValueError, match="not a state file"):
        state_file.decode(as_buffer(b"PK\x03\x04 a zip file, as torch.save writes"))
    encoded = bytearray(state_file.encode({"w": torch.zeros(100)}))
    with pytest.raises(ValueError, match="past its end"):
        state_file.decode(as_buffer(bytes(encoded[:200])))
    encoded[30] = ord("}")  # inside the JSON header
    with pytest.raises(ValueError, match="header is malformed"):
        state_file.decode(as_buffer(bytes(encoded)))
