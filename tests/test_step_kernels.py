"""The CPU training step's own kernels (issue 26) compute what PyTorch's general paths compute, and are taken
where they say: RMSNorm's and QK-norm's leaner backward, causal attention as two products for short windows,
Muon's Newton-Schulz with the scalings inside the products. (What they buy: benchmarks/step_parts.py.)"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tinygpt.config import ModelConfig
from tinygpt.model import attention as attention_module
from tinygpt.model import build_model
from tinygpt.model.attention import causal_attention_products
from tinygpt.model.layers import RMSNorm, make_norm, rms_norm
from tinygpt.training.optim import newton_schulz


def values_and_grads(fn, inputs, grad):
    """fn's output and the gradients of its inputs, for `grad` flowing back into the output."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(grad)
    return out.detach(), [leaf.grad for leaf in leaves]


# ---- RMSNorm and QK-norm ------------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [True, False], ids=["RMSNorm", "QK-norm"])
@pytest.mark.parametrize("shape", [(4, 7, 32), (2, 3, 5, 16)])
def test_rms_norm_gives_torchs_values_bit_for_bit_and_its_gradients_to_rounding(shape, weighted):
    gen = torch.Generator().manual_seed(0)
    inputs = [3 * torch.randn(shape, generator=gen)] + ([torch.randn(shape[-1], generator=gen)] if weighted else [])
    grad = torch.randn(shape, generator=gen)
    ours, our_grads = values_and_grads(rms_norm, inputs, grad)
    torchs, torch_grads = values_and_grads(lambda x, *w: F.rms_norm(x, (shape[-1],), *w), inputs, grad)
    assert torch.equal(ours, torchs)
    for a, b in zip(our_grads, torch_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_rms_norm_takes_its_own_backward_only_in_float32_cpu_training():
    x = torch.randn(2, 3, 8, requires_grad=True)
    assert type(rms_norm(x).grad_fn).__name__ == "LeanRMSNormBackward"
    assert "Lean" not in type(rms_norm(x.bfloat16()).grad_fn).__name__  # other dtypes: torch's own
    with torch.no_grad():
        assert torch.equal(rms_norm(x), F.rms_norm(x, (8,)))  # sampling and evaluating: torch's own


def test_the_rmsnorm_of_a_model_is_nn_rmsnorm_with_the_same_parameter():
    norm = make_norm(ModelConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16, norm="rmsnorm"))
    assert isinstance(norm, RMSNorm) and isinstance(norm, nn.RMSNorm)
    reference = nn.RMSNorm(16)
    reference.load_state_dict(norm.state_dict())  # checkpoints move between the two
    x = torch.randn(3, 16)
    assert torch.equal(norm(x), reference(x))


# ---- attention ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 5, 64])
def test_causal_attention_products_compute_scaled_dot_product_attention(T):
    gen = torch.Generator().manual_seed(T)
    q, k, v, grad = (torch.randn(3, 2, T, 8, generator=gen) for _ in range(4))
    ours, our_grads = values_and_grads(lambda *t: causal_attention_products(*t, 0.3), [q, k, v], grad)
    fused, fused_grads = values_and_grads(lambda *t: F.scaled_dot_product_attention(*t, is_causal=True, scale=0.3),
                                          [q, k, v], grad)
    assert torch.allclose(ours, fused, atol=1e-6)
    for a, b in zip(our_grads, fused_grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_cpu_training_takes_the_products_for_short_windows_with_enough_work_only(monkeypatch):
    calls = []
    products = attention_module.causal_attention_products
    monkeypatch.setattr(attention_module, "causal_attention_products",
                        lambda q, *rest: calls.append(tuple(q.shape)) or products(q, *rest))
    model = build_model(ModelConfig(vocab_size=13, block_size=256, n_layer=1, n_head=2, n_embd=32).validate())

    def forward(batch, T, grad=True):
        with torch.set_grad_enabled(grad):
            x = torch.randint(13, (batch, T))
            return model(x, x)

    forward(16, 64)  # 64 tokens x 32 wide = 2,048 numbers a window: the products
    forward(1, 32)  # 1,024: the products, whatever the batch (a batch split in two takes the same kernel)
    assert calls == [(16, 2, 64, 16), (1, 2, 32, 16)]
    forward(16, 64, grad=False)  # evaluating and sampling: the fused kernel
    forward(16, 16)  # too little work a window (512): the fused kernel's one call is faster
    forward(2, 256)  # a long window: the fused kernel
    assert len(calls) == 2

    x = torch.randint(13, (16, 64))
    products_logits, _ = model(x)
    monkeypatch.setattr(attention_module, "SHORT_WINDOW", 0)
    fused_logits, _ = model(x)
    assert len(calls) == 3 and torch.allclose(products_logits, fused_logits, atol=1e-5)


# ---- Newton-Schulz ------------------------------------------------------------------------------------

def newton_schulz_written_out(g, steps=5):
    """The iteration with its products, scalings and sums as separate operations (the form before)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.mT if g.size(-2) > g.size(-1) else g
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if g.size(-2) > g.size(-1) else x


@pytest.mark.parametrize("shape", [(24, 8), (8, 24), (3, 16, 16), (2, 40, 12)])
def test_newton_schulz_is_the_iteration_written_out(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours = newton_schulz(g)
    assert ours.shape == g.shape
    assert torch.allclose(ours, newton_schulz_written_out(g), atol=1e-5)
