"""Looking inside a trained model: pure data, no pictures.

    run = tinygpt.load("runs/rhyme")
    t = trace(run, "mary had a little")   # every stage of one forward pass
    t.blocks[0].weights                   # (n_head, T, T) attention weights of layer 1
    top_k(run, "mary had a little")       # the likeliest next tokens
    neighbours(run, "lamb")               # tokens whose embeddings point the same way
    pca_2d(run)                           # every token embedding projected to 2-D

`trace` runs the model's own forward pass and records, with forward hooks, what each module read
and wrote, so nothing the model computes is re-implemented here. The one thing the model does not
hand out is its attention weights: the fused path asks `scaled_dot_product_attention` for the
weighted sum only. `attention_weights` recomputes them from the attention module's own input with
the module's own projections, QK-norm, rotary table, scale and mask; tests/test_viz.py checks that
weights @ values, projected, equal the module's actual output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.errors import TinyGPTError
from ..core.tokens import MASK
from ..model.attention import CausalSelfAttention, score_scale
from ..model.cached import causal_mask, heads_qkv
from ..model.layers import prepare_qk


def display_token(text: str) -> str:
    """A token as it should be printed or drawn: whitespace made visible."""
    return text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "\u2423") or "''"


@dataclass
class Prompt:
    ids: list[int]
    tokens: list[str]  # display form, one per id
    note: str  # what was changed to fit the model, or ""


def encode_prompt(run, prompt: str) -> Prompt:
    """The prompt's ids, cut to the model's context; unknown tokens fail in the tokenizer, by name."""
    if run.model_config.arch != "encoder":  # an encoder's outputs are its guesses at each position's own token
        run.require_text_model("be inspected or explained (they look at next-token probabilities)")
    if not prompt or not prompt.strip() and run.tokenizer.kind == "word":
        raise TinyGPTError("the prompt is empty; pass some text with --prompt, e.g. --prompt 'mary had a little'")
    ids = run.tokenizer.encode(prompt)
    note = ""
    block = run.model_config.block_size
    if len(ids) > block:
        note = f"the prompt is {len(ids)} tokens; the model sees at most {block}, so only the last {block} are used"
        ids = ids[-block:]
    return Prompt(ids, [display_token(run.tokenizer.token(i)) for i in ids], note)


# ----------------------------------------------------------------------------- next-token probabilities

@torch.no_grad()
def next_token_probs(run, ids: list[int]) -> torch.Tensor:
    """(T, vocab_size) probabilities of the next token after each position."""
    idx = torch.tensor([ids], dtype=torch.long, device=run.device)  # (1, T)
    logits, _ = run.model(idx)  # (1, T, V)
    return F.softmax(logits[0].float(), dim=-1).cpu()  # (T, V)


def top_k(run, prompt: str, k: int = 5, all_positions: bool = False) -> dict:
    """The prompt's tokens and ids, and the k likeliest next tokens after the last (or every) position;
    for an encoder, the k likeliest tokens at each <mask> (or, with none, at the last or every position).

    Returns {"tokens", "ids", "note", "positions": [{"position", "token", "top": [{"token", "id", "prob"}]}]}.
    """
    if k < 1:
        raise TinyGPTError(f"--top-k must be at least 1, got {k}")
    p = encode_prompt(run, prompt)
    probs = next_token_probs(run, p.ids)  # (T, V)
    k = min(k, probs.size(-1))
    positions = range(len(p.ids)) if all_positions else [len(p.ids) - 1]
    if run.model_config.arch == "encoder" and not all_positions:
        mask_id = run.tokenizer.token_to_id(MASK)
        positions = [t for t, i in enumerate(p.ids) if i == mask_id] or positions  # the gaps to fill
    rows = []
    for t in positions:
        values, order = probs[t].topk(k)
        top = [{"token": display_token(run.tokenizer.token(i)), "id": i, "prob": v}
               for v, i in zip(values.tolist(), order.tolist())]
        rows.append({"position": t, "token": p.tokens[t], "top": top})
    # A decoder's output at position t guesses the token after it; an encoder's, the token at t itself.
    reads = "at" if run.model_config.arch == "encoder" else "after"
    return {"tokens": p.tokens, "ids": p.ids, "note": p.note, "positions": rows, "reads": reads}


# ----------------------------------------------------------------------------- one forward pass, recorded

@dataclass
class BlockTrace:
    """What one transformer block read and wrote, for a batch of one sequence of T tokens."""

    attn_in: torch.Tensor  # (T, C): norm(x), what the attention read
    weights: torch.Tensor  # (nh, T, T): row t = how much position t takes from each position
    values: torch.Tensor  # (nh, T, hs): what each position offers to the others
    attn_out: torch.Tensor  # (T, C): the attention module's own output
    mlp_hidden: torch.Tensor | None  # (T, mlp_ratio * C): after the non-linearity; None without an MLP
    mlp_out: torch.Tensor | None  # (T, C)
    out: torch.Tensor  # (T, C): the residual stream after the block


@dataclass
class Trace:
    ids: list[int]
    tokens: list[str]
    note: str
    tok_emb: torch.Tensor  # (T, C)
    pos_emb: torch.Tensor | None  # (T, C); None with rotary embeddings
    x0: torch.Tensor  # (T, C): what the first block reads
    blocks: list[BlockTrace]
    final: torch.Tensor  # (T, C): after the final norm
    logits: torch.Tensor  # (T, V)
    probs: torch.Tensor  # (T, V)

    @property
    def weights(self) -> torch.Tensor:
        """(n_layer, n_head, T, T): every attention map."""
        return torch.stack([b.weights for b in self.blocks])


def _require_gpt(model):
    if model.config.arch == "encoder-decoder":
        raise TinyGPTError("this run is an encoder-decoder: look at which source tokens its target read with "
                           "tinygpt inspect RUN --source TEXT --target TEXT --cross-attention FILE.png")
    if not hasattr(model, "blocks"):
        raise TinyGPTError("this run is the bigram model: a lookup table with no attention or blocks to look into; "
                           "inspect a GPT run instead (e.g. tinygpt train --preset rhyme)")


@torch.no_grad()
def attention_weights(attn, x: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention weights and values of one attention module for its input x (B, T, C), start 0.

    The module's own projections, QK-norm, rotary table, score scale and causal mask, so the weights
    are the ones it used. Returns weights (B, nh, T, T) and values (B, nh, T, hs).
    """
    T = x.size(1)
    q, k, v = heads_qkv(attn, x)  # (B, nh, T, hs) each, from either attention path's projections
    rotary = attn.rotary if isinstance(attn, CausalSelfAttention) else attn.heads[0].rotary
    q, k = prepare_qk(q, k, cfg.qk_norm, rotary, start=0)
    scores = (q @ k.transpose(-2, -1)).float() * score_scale(cfg)  # (B, nh, T, T)
    if attn.causal:  # a decoder: no peeking ahead (an encoder sees every position)
        scores = scores.masked_fill(~causal_mask(T, 0, x.device), float("-inf"))
    return F.softmax(scores, dim=-1), v.float()  # (B, nh, T, T), (B, nh, T, hs)


@torch.no_grad()
def heads_to_output(attn, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """weights (B, nh, T, T) @ values (B, nh, T, hs), heads side by side, projected: (B, T, C)."""
    y = weights @ values  # (B, nh, T, hs)
    y = y.transpose(1, 2).flatten(2)  # (B, T, C)
    proj = attn.proj
    return proj(y.to(proj.weight.dtype)) if proj is not None else y


@torch.no_grad()
def trace(run, prompt: str | list[int]) -> Trace:
    """Run the model on the prompt and record every stage (see `Trace`)."""
    model, cfg = run.model, run.model_config
    _require_gpt(model)
    if isinstance(prompt, str):
        p = encode_prompt(run, prompt)
    else:
        p = Prompt(list(prompt), [display_token(run.tokenizer.token(i)) for i in prompt], "")
    seen: dict[str, torch.Tensor] = {}
    hooks = []

    def keep_output(name):
        return lambda module, args, output: seen.__setitem__(name, output[0])  # drop the batch of one

    def keep_input(name):
        return lambda module, args: seen.__setitem__(name, args[0][0])

    hooks.append(model.tok_emb.register_forward_hook(keep_output("tok_emb")))
    if model.pos_emb is not None:
        hooks.append(model.pos_emb.register_forward_hook(lambda m, a, out: seen.__setitem__("pos_emb", out)))
    hooks.append(model.blocks[0].register_forward_pre_hook(keep_input("x0")))
    hooks.append(model.ln_f.register_forward_hook(keep_output("final")))
    for i, block in enumerate(model.blocks):
        hooks.append(block.attn.register_forward_pre_hook(keep_input(f"{i}.attn_in")))
        hooks.append(block.attn.register_forward_hook(keep_output(f"{i}.attn_out")))
        hooks.append(block.register_forward_hook(keep_output(f"{i}.out")))
        if block.mlp is not None:
            hooks.append(block.mlp.register_forward_hook(keep_output(f"{i}.mlp_out")))
            if block.mlp.proj is not None:  # its input is the hidden layer after the non-linearity
                hooks.append(block.mlp.proj.register_forward_pre_hook(keep_input(f"{i}.mlp_hidden")))
            else:
                hooks.append(block.mlp.register_forward_hook(keep_output(f"{i}.mlp_hidden")))
    idx = torch.tensor([p.ids], dtype=torch.long, device=run.device)  # (1, T)
    try:
        logits, _ = model(idx)  # (1, T, V)
    finally:
        for h in hooks:
            h.remove()
    blocks = []
    for i, block in enumerate(model.blocks):
        attn_in = seen[f"{i}.attn_in"]  # (T, C)
        weights, values = attention_weights(block.attn, attn_in[None], cfg)
        blocks.append(BlockTrace(attn_in.cpu(), weights[0].cpu(), values[0].cpu(), seen[f"{i}.attn_out"].cpu(),
                                 _cpu(seen.get(f"{i}.mlp_hidden")), _cpu(seen.get(f"{i}.mlp_out")),
                                 seen[f"{i}.out"].cpu()))
    logits = logits[0].float().cpu()  # (T, V)
    return Trace(p.ids, p.tokens, p.note, seen["tok_emb"].cpu(), _cpu(seen.get("pos_emb")), seen["x0"].cpu(),
                 blocks, seen["final"].cpu(), logits, F.softmax(logits, dim=-1))


@torch.no_grad()
def cross_attention(run, source: str, target: str) -> dict:
    """Which source tokens each target token read, per decoder layer and head, with the target as the
    model reads it (<|bos|> first) and each row labelled by the token written there (the target's, then
    <|eos|>). Returns {"weights": (n_layer, n_head, T, S) tensor, rows summing to 1, "rows", "columns"}."""
    from ..core.tokens import BOS, EOS
    from ..model.cross_attention import cross_weights

    model, tok = run.model, run.tokenizer
    if run.model_config.arch != "encoder-decoder":
        raise TinyGPTError(f"{run.dir} is a {run.model_config.arch} model: it has no cross-attention; "
                           "--cross-attention needs an encoder-decoder run (tinygpt train --arch encoder-decoder)")
    if not source.strip():
        raise TinyGPTError("the source is empty; give --source TEXT (and --target TEXT)")
    src, tgt = run.source_tokenizer.encode(source), tok.encode(target)
    idx = [tok.token_to_id(BOS)] + tgt
    if max(len(src), len(idx)) > run.model_config.block_size:
        raise TinyGPTError(f"the source or target is longer than the model's context ({run.model_config.block_size} "
                           "tokens); shorten it")
    seen = {}
    hooks = [block.cross.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0]))
             for i, block in enumerate(model.blocks)]
    try:
        memory = model.encode(torch.tensor([src], device=run.device))
        model.decode(torch.tensor([idx], device=run.device), memory)
    finally:
        for h in hooks:
            h.remove()
    weights = torch.stack([cross_weights(block.cross, seen[i], memory.kv[i])[0]
                           for i, block in enumerate(model.blocks)])  # (L, nh, T, S)
    rows = [display_token(tok.token(i)) for i in tgt] + [EOS]
    columns = [display_token(run.source_tokenizer.token(i)) for i in src]
    return {"weights": weights.float().cpu(), "rows": rows, "columns": columns}


def _cpu(t):
    return None if t is None else t.cpu()


# ----------------------------------------------------------------------------- embeddings

def _embedding_matrix(run) -> torch.Tensor:
    model = run.model
    table = model.tok_emb if hasattr(model, "tok_emb") else model.table  # the bigram's rows are its embeddings
    return table.weight.detach().float().cpu()  # (V, C)


def token_id(run, token: str) -> int:
    """The id of one token, written as it prints (a word, a character, or text that is one BPE token)."""
    tok = run.tokenizer
    if tok.kind == "word" and len(token.split()) != 1:
        raise TinyGPTError(f"--neighbours takes one word, got {token!r}")
    ids = tok.encode(token.replace("\u2423", " ").replace("\\n", "\n"))
    if len(ids) != 1:
        raise TinyGPTError(f"{token!r} is {len(ids)} tokens for this model's {tok.kind} tokenizer; "
                           "--neighbours takes exactly one token")
    return ids[0]


def neighbours(run, token: str, k: int = 8) -> dict:
    """The k tokens whose embedding vectors are most similar to `token`'s, by cosine similarity."""
    i = token_id(run, token)
    emb = F.normalize(_embedding_matrix(run), dim=-1)  # (V, C): unit rows, so a dot product is a cosine
    sims = emb @ emb[i]  # (V,)
    sims[i] = -2.0  # not its own neighbour
    k = min(k, len(sims) - 1)
    values, order = sims.topk(k)
    return {"token": display_token(run.tokenizer.token(i)), "id": i,
            "neighbours": [{"token": display_token(run.tokenizer.token(j)), "id": j, "cosine": v}
                           for v, j in zip(values.tolist(), order.tolist())]}


def pca_2d(run) -> dict:
    """Every token embedding projected on the two directions along which the embeddings vary most.

    Returns {"points": (V, 2) array, "labels": [token per row], "explained": [fraction of variance
    along each of the two axes]}.
    """
    emb = _embedding_matrix(run)  # (V, C)
    centred = emb - emb.mean(dim=0, keepdim=True)
    axes, variance = principal_axes(centred)
    # An axis's sign is arbitrary; fix it so the same model always gives the same picture.
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))  # (2, 1)
    points = centred @ (axes * signs).T  # (V, 2)
    return {"points": points.numpy(), "labels": [display_token(run.tokenizer.token(i)) for i in range(len(emb))],
            "explained": (variance[:2] / variance.sum()).tolist()}


SVD_ROWS = 4096  # up to this many rows an exact SVD is quick; past it, the C x C covariance's eigenvectors


def principal_axes(centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two directions along which the rows of `centred` (N, C) vary most, (2, C), and the variance along
    every direction, largest first (C,). A GPT-2-sized vocabulary (50,257 x 768) takes an SVD 10 s or more
    on a laptop CPU; the covariance (C, C) gives the same directions in about a second."""
    if centred.size(0) <= SVD_ROWS:
        _, S, Vh = torch.linalg.svd(centred, full_matrices=False)  # centred = U diag(S) Vh
        return Vh[:2], S.square()
    values, vectors = torch.linalg.eigh((centred.T @ centred).double())  # ascending eigenvalues
    order = values.flip(0)
    return vectors[:, -2:].flip(1).T.float(), order.clamp(min=0).float()

