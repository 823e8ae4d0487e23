"""`ModelConfig`: the shape and wiring of the network, saved in every run's config.json.

The lecture's names: `block_size`, `n_embd`, `n_head`, `n_layer`. It is all that is needed to
rebuild the model; the lecture's build-up steps, nanoGPT's recipes, the modern speedrun recipe
and GPT-2 are all values of it. `gpt2_misfits` says which settings GPT-2's own architecture cannot
compute: the form `tinygpt export --to hf` takes, and so the module names a LoRA adapter is saved under.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import TinyGPTError
from .fields import check_choices, check_numbers
from .fields import setting as _setting


@dataclass
class ModelConfig:
    """The shape and wiring of a GPT, an encoder, an encoder-decoder (or the bigram baseline)."""

    arch: str = _setting(
        "gpt", "model family: a GPT (decoder), the lecture's bigram lookup table, a reward model (a GPT trunk scoring "
        "text, made by `tinygpt reward`), an encoder (the same blocks without the causal mask, trained to fill in "
        "masked tokens: `tinygpt fill`) or the original encoder-decoder Transformer (trained on source/target pairs: "
        "`tinygpt translate`)", ("gpt", "bigram", "reward", "encoder", "encoder-decoder"))
    vocab_size: int = _setting(0, "number of token ids; set from the tokenizer, never by hand")
    source_vocab_size: int = _setting(
        0, "encoder-decoder with a source tokenizer of its own: its number of ids (0: the sources share the "
        "target's tokenizer and token table); set from the tokenizer, never by hand")
    block_size: int = _setting(64, "context length: how many tokens the model sees at once")
    n_layer: int = _setting(4, "number of transformer blocks (of the decoder, in an encoder-decoder)")
    n_encoder_layer: int = _setting(0, "encoder-decoder: number of encoder blocks; 0 = as many as n_layer")
    n_head: int = _setting(4, "attention heads per block (n_embd must divide by it)")
    n_embd: int = _setting(128, "width of the embeddings and the residual stream")
    dropout: float = _setting(0.0, "dropout probability in [0, 1) (attention weights, projections, MLP)")
    bias: bool = _setting(True, "biases in projections, MLP, norms and head (query/key/value: see qkv_bias)")
    qkv_bias: bool = _setting(False, "biases on the query/key/value projections (GPT-2 has them)")
    head_bias: bool = _setting(True, "a bias on the output head, when bias is on (GPT-2's tied head has none)")
    # The teaching path and the fast path compute the same function; see model/attention.py.
    attention: str = _setting(
        "fused", "fused: one scaled_dot_product_attention call; heads: one module per head, as taught",
        ("fused", "heads"))
    norm: str = _setting(
        "layernorm", "normalisation before attention/MLP and after the last block",
        ("layernorm", "handwritten", "rmsnorm", "none"))
    norm_position: str = _setting(
        "pre", "where each block normalises: pre (before attention and MLP, as GPTs do) or post (after each residual "
        "sum, as the original Transformer did; then no final norm)", ("pre", "post"))
    # Switches that let the lecture's build-up steps be expressed as configurations.
    residual: bool = _setting(True, "add each block's attention and MLP output to its input")
    attn_proj: bool = _setting(True, "project the concatenated heads back to n_embd")
    mlp_ratio: int = _setting(4, "MLP hidden width as a multiple of n_embd; 0 removes the MLP")
    mlp_proj: bool = _setting(True, "MLP output projection (without it the MLP is one linear + activation)")
    activation: str = _setting(
        "relu", "MLP non-linearity; gelu_tanh is GELU's tanh approximation (GPT-2's)",
        ("relu", "gelu", "gelu_tanh", "relu2"))
    attn_scale: str = _setting(
        "head_size", "divide attention scores by sqrt(head_size) (correct) or sqrt(n_embd) "
        "(the lecture's early code)", ("head_size", "n_embd"))
    # Modern levers (see benchmarks/README.md for what each buys).
    pos_emb: str = _setting("learned", "position information: learned table or rotary (RoPE)", ("learned", "rope"))
    rope_base: float = _setting(10000.0, "rotary embedding base frequency")
    qk_norm: bool = _setting(False, "RMS-normalise queries and keys per head before attention")
    tie_weights: bool = _setting(False, "share the token embedding with the output head")
    init: str = _setting(
        "normal", "weight initialisation: normal(0, 0.02) as in GPT-2, or PyTorch's layer defaults",
        ("normal", "torch"))
    zero_init_proj: bool = _setting(False, "start residual projections at zero (each block begins as identity)")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def encoder_layers(self) -> int:
        """How many encoder blocks an encoder-decoder has."""
        return self.n_encoder_layer or self.n_layer

    def validate(self) -> "ModelConfig":
        check_choices(self)
        check_numbers(self)
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise TinyGPTError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.vocab_size < 0 or self.source_vocab_size < 0:
            raise TinyGPTError(f"vocab_size must be positive, got {min(self.vocab_size, self.source_vocab_size)}")
        if self.n_embd % self.n_head:
            raise TinyGPTError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}")
        if not 0.0 <= self.dropout < 1.0:
            raise TinyGPTError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mlp_ratio < 0:
            raise TinyGPTError(f"mlp_ratio must be 0 or more, got {self.mlp_ratio}")
        if self.mlp_ratio and not self.mlp_proj and self.mlp_ratio != 1:
            raise TinyGPTError("an MLP without an output projection needs mlp_ratio 1")
        if not self.residual and self.zero_init_proj:
            raise TinyGPTError("zero_init_proj needs residual connections (the block would output zeros)")
        if self.source_vocab_size and self.arch != "encoder-decoder":
            raise TinyGPTError("a source vocabulary of its own is for --arch encoder-decoder")
        if self.n_encoder_layer < 0:
            raise TinyGPTError(f"n_encoder_layer must be 0 (as many as n_layer) or more, got {self.n_encoder_layer}")
        if self.n_encoder_layer and self.arch != "encoder-decoder":
            raise TinyGPTError(f"n_encoder_layer is for --arch encoder-decoder; a {self.arch} model has n_layer blocks")
        if self.norm_position == "post" and self.norm == "none":
            raise TinyGPTError("norm_position post needs a norm to place; choose --norm layernorm (or rmsnorm)")
        if not self.rope_base > 1:
            raise TinyGPTError(f"rope_base must be above 1 (rotary frequencies are rope_base ** (-2i / head_size)), "
                               f"got {self.rope_base}; its default is 10000")
        if self.pos_emb == "rope" and self.head_size % 2:
            raise TinyGPTError(f"rotary embeddings need an even head size, got {self.head_size}")
        return self


# GPT-2's activations, its own spelling first: what a plain GPT-2 export writes (convert/gpt2.py).
EXPORT_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}


def gpt2_misfits(cfg: ModelConfig) -> list[str]:
    """The settings of `cfg` that GPT-2's architecture cannot compute (none: it is a GPT-2)."""
    if cfg.arch != "gpt":
        return [f"arch {cfg.arch} (not a GPT)"]
    checks = [(cfg.pos_emb == "rope", "rotary positions (pos_emb rope)"),
              (cfg.norm == "rmsnorm", "RMSNorm (norm rmsnorm)"),
              (cfg.norm == "none", "no normalisation (norm none)"),
              (cfg.qk_norm, "QK-norm (qk_norm)"),
              (not cfg.residual, "no residual connections (residual false)"),
              (not cfg.attn_proj, "no attention output projection (attn_proj false)"),
              (cfg.mlp_ratio == 0, "no MLP (mlp_ratio 0)"),
              (cfg.mlp_ratio > 0 and not cfg.mlp_proj, "no MLP output projection (mlp_proj false)"),
              (cfg.activation not in EXPORT_ACTIVATIONS, f"activation {cfg.activation} (GPT-2 has "
               f"{', '.join(EXPORT_ACTIVATIONS)})"),
              (cfg.bias and cfg.head_bias, "a bias on the output head (bias with head_bias)")]
    return [why for fails, why in checks if fails]
