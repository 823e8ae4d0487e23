"""A tinygpt model in Hugging Face transformers, for exports that GPT-2's architecture cannot hold.

`tinygpt export --to hf` copies this file beside the weights and points config.json's `auto_map` at
it, so `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` builds the model. It
needs torch and transformers only, not tinygpt, and computes every tinygpt configuration: rotary or
learned positions, LayerNorm / RMSNorm / none, QK-norm, ReLU / GELU / ReLU squared, with or without
residuals, projections, MLP or biases, tied or untied heads, and the bigram table. The tensor names
are tinygpt's own checkpoint names (tok_emb, blocks.{i}.attn.qkv, ...), with the same layouts.

There is no KV cache: each generation step runs the whole window again (at most block_size tokens,
the last ones, as tinygpt does past its context), which tiny models can afford.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput


class TinyGPTConfig(PretrainedConfig):
    """tinygpt's ModelConfig, under its own names (see tinygpt's config/model.py for each)."""

    model_type = "tinygpt"
    attribute_map = {"hidden_size": "n_embd", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer",
                     "max_position_embeddings": "block_size"}

    def __init__(self, arch="gpt", vocab_size=0, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
                 bias=True, qkv_bias=False, head_bias=True, norm="layernorm", residual=True, attn_proj=True,
                 mlp_ratio=4, mlp_proj=True, activation="relu", attn_scale="head_size", pos_emb="learned",
                 rope_base=10000.0, qk_norm=False, tie_weights=False, **kwargs):
        self.arch, self.vocab_size, self.block_size = arch, vocab_size, block_size
        self.n_layer, self.n_head, self.n_embd, self.dropout = n_layer, n_head, n_embd, dropout
        self.bias, self.qkv_bias, self.head_bias, self.norm = bias, qkv_bias, head_bias, norm
        self.residual, self.attn_proj, self.mlp_ratio, self.mlp_proj = residual, attn_proj, mlp_ratio, mlp_proj
        self.activation, self.attn_scale, self.pos_emb, self.rope_base = activation, attn_scale, pos_emb, rope_base
        self.qk_norm, self.tie_weights = qk_norm, tie_weights
        self.use_cache = kwargs.pop("use_cache", False)  # there is no cache to use
        # tie_weights says whether the head is tied; transformers' name for it comes back in every config
        # it saved (save_pretrained, to_dict), and passing it twice would be a TypeError.
        kwargs.pop("tie_word_embeddings", None)
        super().__init__(tie_word_embeddings=tie_weights, **kwargs)


def make_norm(cfg, dim):
    if cfg.norm in ("layernorm", "handwritten"):  # the lecture's handwritten LayerNorm is the same function
        return nn.LayerNorm(dim, bias=cfg.bias)
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(dim)
    return nn.Identity()


def rotate(x, cos, sin):  # x: (B, nh, T, hs), cos/sin: (B, 1, T, hs/2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.head_size = cfg.n_head, cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias) if cfg.attn_proj else None
        self.qk_norm, self.dropout = cfg.qk_norm, cfg.dropout
        self.scale = (self.head_size if cfg.attn_scale == "head_size" else cfg.n_embd) ** -0.5
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope, mask):  # x: (B, T, C); mask: None (causal) or (B, 1, T, T) booleans
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        if self.qk_norm:
            q, k = F.rms_norm(q, (self.head_size,)), F.rms_norm(k, (self.head_size,))
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=dropout,
                                           scale=self.scale)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side
        return self.resid_drop(self.proj(y)) if self.proj is not None else y


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias) if cfg.mlp_proj else None
        self.activation = cfg.activation
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        h = self.fc(x)
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        elif self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:  # relu2
            h = F.relu(h).square()
        return self.drop(self.proj(h) if self.proj is not None else h)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.residual = cfg.residual
        self.ln1, self.attn = make_norm(cfg, cfg.n_embd), Attention(cfg)
        self.ln2 = make_norm(cfg, cfg.n_embd) if cfg.mlp_ratio else None
        self.mlp = MLP(cfg) if cfg.mlp_ratio else None

    def forward(self, x, rope, mask):
        a = self.attn(self.ln1(x), rope, mask)
        x = x + a if self.residual else a
        if self.mlp is not None:
            m = self.mlp(self.ln2(x))
            x = x + m if self.residual else m
        return x


class Head(nn.Module):
    """The output layer; a tied head has no weight of its own and uses the token embedding's."""

    def __init__(self, cfg):
        super().__init__()
        tied = cfg.tie_weights
        self.weight = None if tied else nn.Parameter(torch.empty(cfg.vocab_size, cfg.n_embd))
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size)) if cfg.bias and cfg.head_bias else None

    def forward(self, x, embedding):
        return F.linear(x, self.weight if self.weight is not None else embedding, self.bias)


class TinyGPTForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = TinyGPTConfig
    base_model_prefix = ""
    _no_split_modules = ["Block"]

    def __init__(self, config: TinyGPTConfig):
        super().__init__(config)
        cfg = config
        if cfg.arch == "bigram":
            self.table = nn.Embedding(cfg.vocab_size, cfg.vocab_size)
        else:
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos_emb == "learned" else None
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
            self.ln_f = make_norm(cfg, cfg.n_embd)
            self.lm_head = Head(cfg)
        self.post_init()

    def _init_weights(self, module):  # only for weights a checkpoint lacks: GPT-2's N(0, 0.02)
        if isinstance(module, (nn.Linear, nn.Embedding)) or (isinstance(module, Head) and module.weight is not None):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self):
        return self.table if self.config.arch == "bigram" else self.tok_emb

    def get_output_embeddings(self):
        return None  # the head is Head, not a Linear to tie or resize

    def rotary(self, positions):  # (B, T) -> cos, sin (B, 1, T, hs/2): tinygpt's table, the same products
        hs = self.config.n_embd // self.config.n_head
        inv_freq = self.config.rope_base ** (-torch.arange(0, hs, 2, dtype=torch.float32,
                                                            device=positions.device) / hs)
        angles = positions.float()[..., None] * inv_freq  # (B, T, hs/2)
        dtype = self.tok_emb.weight.dtype
        return angles.cos()[:, None].to(dtype), angles.sin()[:, None].to(dtype)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None, **kwargs):
        """input_ids: (B, T). attention_mask: (B, T), 0 at padding; position_ids: (B, T), by default
        counted from each row's first real token. labels: (B, T), -100 where no loss is wanted."""
        cfg = self.config
        if cfg.arch == "bigram":
            logits = self.table(input_ids)  # (B, T, vocab_size)
        else:
            B, T = input_ids.shape
            if position_ids is None and attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            elif position_ids is None:
                position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
            mask = None  # no padding: plain causal attention
            if attention_mask is not None and not bool(attention_mask.all()):
                causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
                mask = causal & attention_mask.bool()[:, None, None, :]  # (B, 1, T, T): no padded keys
                mask = mask | torch.eye(T, dtype=torch.bool, device=input_ids.device)  # a padded query sees itself
            x = self.tok_emb(input_ids)  # (B, T, C)
            if self.pos_emb is not None:
                x = x + self.pos_emb(position_ids)
            x = self.drop(x)
            rope = self.rotary(position_ids) if cfg.pos_emb == "rope" else None
            for block in self.blocks:
                x = block(x, rope, mask)
            logits = self.lm_head(self.ln_f(x), self.tok_emb.weight)  # (B, T, vocab_size)
        loss = None
        if labels is not None:  # position t predicts token t + 1
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        window = self.config.block_size  # past the context, the last block_size tokens, as tinygpt samples
        inputs = {"input_ids": input_ids[:, -window:]}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask[:, -window:]
        return inputs
