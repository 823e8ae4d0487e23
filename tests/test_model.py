"""The GPT: published parameter counts, the teaching path equal to the fused path, causality,
tied weights stored once, and settings checked before anything is built."""

import pytest
import torch

from tinygpt.config import ModelConfig, build_configs
from tinygpt.core.errors import TinyGPTError
from tinygpt.model import build_model
from tinygpt.model.layers import SPLIT_ROWS, ThreadedLinear
from tinygpt.store.checkpoint import load_tensors, save_weights


def gpt(**settings):
    base = dict(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16)
    return build_model(ModelConfig(**{**base, **settings}).validate())


# ---- parameter counts --------------------------------------------------------------------------------

def test_rhyme_model_has_the_tutorials_27747_parameters():
    # 35 words, context 6, n_embd 32, 2 heads, 2 layers, 4x ReLU MLP, LayerNorms, head with bias.
    assert gpt(vocab_size=35, block_size=6, n_embd=32, n_head=2, n_layer=2).num_params() == 27_747


def test_lecture_small_model_has_the_lectures_209729_parameters():
    # 65 characters, context 32, n_embd 64, 4 heads x 4 layers.
    assert gpt(vocab_size=65, block_size=32, n_embd=64, n_head=4, n_layer=4).num_params() == 209_729


def test_bigram_is_a_vocab_by_vocab_table():
    assert build_model(ModelConfig(arch="bigram", vocab_size=65).validate()).num_params() == 65 * 65


def test_tied_weights_are_counted_once():
    untied, tied = gpt(vocab_size=35, n_embd=32), gpt(vocab_size=35, n_embd=32, tie_weights=True)
    assert untied.num_params() - tied.num_params() == 35 * 32


# ---- the teaching path computes the fused path's function -------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"pos_emb": "rope"}, {"qk_norm": True}, {"pos_emb": "rope", "qk_norm": True},
                                   {"attn_scale": "n_embd", "bias": False}])
def test_heads_and_handwritten_norm_equal_fused_attention_with_the_same_weights(extra):
    torch.manual_seed(0)
    # PyTorch's default initialisation: larger weights than GPT-2's, so the logits differ clearly.
    fused = gpt(attention="fused", norm="layernorm", init="torch", **extra).eval()
    teaching = gpt(attention="heads", norm="handwritten", init="torch", **extra).eval()
    teaching.load_canonical_state_dict(fused.canonical_state_dict())
    idx = torch.randint(13, (3, 12))
    a, _ = fused(idx)
    b, _ = teaching(idx)
    assert a.shape == (3, 12, 13)
    assert (a - b).abs().max().item() < 1e-5
    assert a.std().item() > 0.1  # a real signal, not two near-zero outputs


def test_canonical_layout_is_the_same_for_both_paths():
    fused, teaching = gpt(attention="fused"), gpt(attention="heads")
    a, b = fused.canonical_state_dict(), teaching.canonical_state_dict()
    assert a.keys() == b.keys()
    assert a["blocks.0.attn.qkv.weight"].shape == b["blocks.0.attn.qkv.weight"].shape == (48, 16)


# ---- causality ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{"attention": "fused"}, {"attention": "heads"}, {"pos_emb": "rope"},
                                   {"attention": "heads", "pos_emb": "rope", "qk_norm": True}])
def test_changing_a_future_token_leaves_earlier_logits_unchanged(extra):
    torch.manual_seed(0)
    model = gpt(init="torch", **extra).eval()
    idx = torch.randint(13, (1, 12))
    changed = idx.clone()
    changed[0, 7] = (idx[0, 7] + 1) % 13
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)  # positions before 7 never see it
    assert (a[:, 7:] - b[:, 7:]).abs().max().item() > 1e-3  # positions from 7 on do


def test_loss_of_an_untrained_model_is_about_ln_vocab():
    torch.manual_seed(0)
    model = gpt(vocab_size=65, n_embd=32)
    idx = torch.randint(65, (4, 12))
    _, loss = model(idx, idx)
    assert abs(loss.item() - torch.log(torch.tensor(65.0)).item()) < 0.1  # small init: near-uniform guesses


def test_a_sequence_longer_than_the_context_is_refused():
    with pytest.raises(ValueError, match="longer than block_size 12"):
        gpt()(torch.zeros(1, 13, dtype=torch.long))


# ---- tied weights ------------------------------------------------------------------------------------

def test_tied_weights_are_saved_once_and_still_tied_after_reloading(tmp_path):
    torch.manual_seed(0)
    model = gpt(tie_weights=True)
    assert model.lm_head.weight is model.tok_emb.weight
    save_weights(tmp_path / "model.safetensors", model)
    state, _ = load_tensors(tmp_path / "model.safetensors")
    assert "lm_head.weight" not in state and "tok_emb.weight" in state
    torch.manual_seed(1)
    reloaded = gpt(tie_weights=True)
    reloaded.load_canonical_state_dict(state)
    assert reloaded.lm_head.weight is reloaded.tok_emb.weight
    assert torch.equal(reloaded.lm_head.weight, model.tok_emb.weight)
    idx = torch.randint(13, (2, 12))
    assert torch.equal(reloaded(idx)[0], model(idx)[0])


# ---- settings are checked --------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"n_embd": 30, "n_head": 4}, "n_embd (30) must be divisible by n_head (4); try n_embd=32"),
    ({"n_embd": -8}, "n_embd must be a positive integer, got -8"),
    ({"n_layer": 0}, "n_layer must be a positive integer, got 0"),
    ({"block_size": -1}, "block_size must be a positive integer, got -1"),
    ({"n_head": 0}, "n_head must be a positive integer, got 0"),
    ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ({"dropout": -0.1}, "dropout must be in [0, 1), got -0.1"),
    ({"attention": "flash"}, "attention must be one of fused, heads; got 'flash'"),
    ({"pos_emb": "rope", "n_embd": 18, "n_head": 2}, "rotary embeddings need an even head size, got 9"),
])
def test_invalid_model_settings_are_refused_with_the_reason(settings, message):
    with pytest.raises(TinyGPTError) as e:
        build_configs(settings)
    assert str(e.value) == message


def test_settings_from_text_are_converted_to_their_types():
    model, train = build_configs({"n_embd": "64", "dropout": "0.1", "bias": "false", "max_iters": "300"})
    assert (model.n_embd, model.dropout, model.bias, train.max_iters) == (64, 0.1, False, 300)
    with pytest.raises(TinyGPTError, match="setting n_embd expects int, got '6.5'"):
        build_configs({"n_embd": "6.5"})


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("out_features", [12, 13])
@pytest.mark.parametrize("rows", [1, 3, SPLIT_ROWS, SPLIT_ROWS + 1])
def test_the_row_split_linear_of_sampling_equals_the_ordinary_product(threads, bias, out_features, rows, monkeypatch):
    # A few rows without gradients take the chunked path when out_features divides among the threads.
    layer = ThreadedLinear(8, out_features, bias=bias)
    x = torch.randn(rows, 1, 8)
    batched = []
    for name in ("bmm", "baddbmm"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, **k: batched.append(1) or _real(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            y = layer(x)
    finally:
        torch.set_num_threads(before)
        monkeypatch.undo()
    assert len(batched) == (1 if out_features % threads == 0 and rows <= SPLIT_ROWS else 0)  # chunked when it can
    assert y.shape == (rows, 1, out_features)
    torch.testing.assert_close(y, torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=1e-6, atol=1e-6)
    assert layer(x).requires_grad  # with gradients on, the ordinary path (autograd works as usual)
