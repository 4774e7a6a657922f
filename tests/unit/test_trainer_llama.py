"""The Llama model: its shapes (the published ones to the parameter), grouped-query attention,
causality, rotary positions' relative property, bf16 autocast and the language models' FLOPs per
token. Real modules on the CPU; the large shapes are built on the meta device, which allocates
nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kubeforge.api.trainingjob import ModelConfig, ModelSize
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.llama import Block, Llama, rotary_tables, rotate
from kubeforge_trainer.llama_shapes import NAMED_SHAPES, LlamaShape, shape_of, swiglu_width
from kubeforge_trainer.tasks import build_language_model, flops_per_token

LLAMA_3_VOCAB = 128256
SMALL = LlamaShape(2, 32, 4, 2, 64, context_length=16, tie_embeddings=False)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("size", "count"),
    [
        # Meta's model cards: 1.23B, 3.21B, 8.03B.
        (ModelSize.LLAMA_3_2_1B, 1_235_814_400),
        (ModelSize.LLAMA_3_2_3B, 3_212_749_824),
        (ModelSize.LLAMA_3_1_8B, 8_030_261_248),
    ],
)
def test_the_published_shapes_have_their_parameter_counts(size: ModelSize, count: int) -> None:
    with torch.device("meta"):
        model = Llama(LLAMA_3_VOCAB, NAMED_SHAPES[size])
    assert parameters(model) == count
    assert len(model.blocks) == NAMED_SHAPES[size].layers


def test_tied_embeddings_share_one_matrix_and_untied_have_two() -> None:
    tied = Llama(100, shape_of(ModelConfig.model_validate({"architecture": "llama"})))
    assert tied.head.weight is tied.token_embedding.weight
    untied = Llama(100, SMALL)
    assert untied.head.weight is not untied.token_embedding.weight
    tied_small = Llama(100, replace(SMALL, tie_embeddings=True))
    assert parameters(untied) - parameters(tied_small) == 100 * 32


def test_logits_cover_the_vocabulary_at_every_position() -> None:
    model = Llama(257, SMALL)
    tokens = torch.randint(0, 257, (3, 10))
    assert model(tokens).shape == (3, 10, 257)
    with pytest.raises(ValueError, match="17 tokens exceed the context length 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_grouped_query_attention_equals_multi_head_attention_with_shared_heads() -> None:
    # A key-value head serves `heads / kv_heads` query heads: the same model with every query
    # head owning a copy of its group's key and value weights computes the same logits.
    torch.manual_seed(0)
    grouped = Llama(50, SMALL)
    multi_head = Llama(50, replace(SMALL, kv_heads=SMALL.heads))
    state = grouped.state_dict()
    group = SMALL.heads // SMALL.kv_heads
    for name, weight in list(state.items()):
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            per_head = weight.view(SMALL.kv_heads, SMALL.head_size, SMALL.hidden_size)
            state[name] = per_head.repeat_interleave(group, dim=0).reshape(-1, SMALL.hidden_size)
    multi_head.load_state_dict(state)
    tokens = torch.randint(0, 50, (2, 12))
    torch.testing.assert_close(multi_head(tokens), grouped(tokens))


def test_future_tokens_do_not_change_earlier_logits() -> None:
    model = Llama(50, SMALL)
    tokens = torch.randint(0, 50, (1, 16))
    changed = tokens.clone()
    changed[0, 9:] = (changed[0, 9:] + 1) % 50
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(after[:, :9], before[:, :9])
    assert not torch.allclose(after[:, 9:], before[:, 9:])


def test_rotary_scores_depend_only_on_the_distance_between_positions() -> None:
    shape = replace(SMALL, context_length=64)
    cos, sin = rotary_tables(shape, torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, shape.head_size, generator=generator, dtype=torch.float64)

    def score(query_position: int, key_position: int) -> float:
        query = rotate(q, cos[query_position].double(), sin[query_position].double())
        key = rotate(k, cos[key_position].double(), sin[key_position].double())
        return float(query @ key)

    assert score(7, 3) == pytest.approx(score(47, 43), rel=1e-5)
    assert score(20, 20) == pytest.approx(float(q @ k), rel=1e-5)
    assert score(7, 3) != pytest.approx(score(7, 4), rel=1e-3)


def test_flops_per_token_are_6_per_matmul_weight_plus_attention() -> None:
    model = Llama(100, SMALL)
    per_block = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32  # q, o; k, v; MLP; norms
    matmul_weights = 2 * per_block + 32 + 100 * 32  # blocks, final norm, output layer
    attention = 12 * 2 * 32 * 16
    assert flops_per_token(model) == 6 * matmul_weights + attention
    tied = replace(SMALL, tie_embeddings=True)
    assert flops_per_token(Llama(100, tied)) == flops_per_token(model)


def test_the_gpt_counts_the_same_way_its_position_embedding_aside() -> None:
    gpt = GPT(100, 16, layers=2, hidden_size=32, heads=4)
    weights = parameters(gpt) - 16 * 32  # the tied token embedding counts once, as the output
    assert flops_per_token(gpt) == 6 * weights + 12 * 2 * 32 * 16


def test_bf16_autocast_computes_the_logits_the_fp32_model_does_within_bf16_precision() -> None:
    model = Llama(50, SMALL)
    tokens = torch.randint(0, 50, (2, 16))
    with torch.autocast("cpu", torch.bfloat16):
        low = model(tokens)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), model(tokens), atol=0.05, rtol=0.05)


def test_a_named_size_takes_the_context_and_rope_base_it_is_given() -> None:
    spec = ModelConfig.model_validate(
        {"architecture": "llama", "size": "llama-3.2-1b", "contextLength": 2048, "ropeTheta": 1e4}
    )
    shape = shape_of(spec)
    assert (shape.layers, shape.hidden_size, shape.heads, shape.kv_heads) == (16, 2048, 32, 8)
    assert (shape.intermediate_size, shape.tie_embeddings) == (8192, True)
    assert (shape.context_length, shape.rope_theta) == (2048, 1e4)


def test_explicit_dimensions_default_to_multi_head_and_an_8_3_swiglu() -> None:
    spec = ModelConfig.model_validate(
        {"architecture": "llama", "layers": 3, "hiddenSize": 96, "heads": 6}
    )
    shape = shape_of(spec)
    assert (shape.layers, shape.hidden_size, shape.heads, shape.kv_heads) == (3, 96, 6, 6)
    assert shape.intermediate_size == swiglu_width(96) == 256
    assert [swiglu_width(width) for width in (128, 768, 1024)] == [384, 2048, 2816]


@pytest.mark.parametrize(
    ("hidden_size", "heads", "kv_heads", "refusal"),
    [
        (100, 8, 8, "hiddenSize 100 is not a multiple of heads 8"),
        (64, 8, 3, "heads 8 is not a multiple of kvHeads 3"),
        (20, 4, 2, "the head size 5 is odd"),
    ],
)
def test_an_impossible_shape_is_refused_naming_its_dimensions(
    hidden_size: int, heads: int, kv_heads: int, refusal: str
) -> None:
    # The API refuses these first; a shape built directly checks itself the same way.
    with pytest.raises(ValueError, match=refusal):
        replace(SMALL, hidden_size=hidden_size, heads=heads, kv_heads=kv_heads)


def test_the_model_takes_the_vocabulary_it_is_given() -> None:
    spec = ModelConfig.model_validate({"architecture": "llama", "size": "tiny"})
    assert build_language_model(spec, 32768).token_embedding.num_embeddings == 32768
    assert build_language_model(spec, 257).head.out_features == 257


def test_weights_start_as_torchtitan_and_hugging_face_do() -> None:
    torch.manual_seed(0)
    untied = Llama(1000, replace(SMALL, hidden_size=256, heads=4))
    assert float(untied.token_embedding.weight.detach().std()) == pytest.approx(1.0, rel=0.05)
    assert float(untied.head.weight.detach().std()) == pytest.approx(256**-0.5, rel=0.1)
    deepest = untied.blocks[-1]
    assert isinstance(deepest, Block)
    assert float(deepest.attention.o_proj.weight.detach().std()) == pytest.approx(0.02 / 2, rel=0.1)
    tied = Llama(1000, replace(SMALL, hidden_size=256, tie_embeddings=True))
    assert float(tied.token_embedding.weight.detach().std()) == pytest.approx(0.02, rel=0.05)
