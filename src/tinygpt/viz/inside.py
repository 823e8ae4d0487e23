"""The Inside view's numbers: one forward pass of the user's own model on their text, as plain data.

    view = inside(run, "mary had a little")        # what the playground's Inside mode draws
    view["attention"][layer][head][t]               # the weights position t gives positions 0..t (causal)
    view["lens"][layer]["tokens"][t]                # the likeliest next token after block `layer`, at t
    view["next"]["logits"]                          # the last position's logits, for the temperature slider

Everything comes from `probe.trace` (the model's own forward pass, recorded), so the attention weights are
the ones `tinygpt inspect --json` prints, and the logit lens's last layer is the model's own prediction.
Shapes are named as the lecture names them: B (batch), T (time: tokens), C (channels: n_embd),
head_size, vocab_size.

A whole payload grows with n_layer x n_head x T x T (half that for a causal model, whose rows stop at their
own position); past `ATTENTION_NUMBERS` weights the maps are left out and
fetched a layer at a time (`layer=i`), so no request is large.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import TinyGPTError
from . import probe

ATTENTION_NUMBERS = 400_000  # attention weights sent at once (about 3 MB of JSON); past it, a layer at a time
FULL_VOCAB = 4096  # up to this vocabulary the slider gets every logit, past it the likeliest `TOP_LOGITS`
TOP_LOGITS = 512
DIGITS = 6  # decimals of the weights and probabilities sent (as `inspect --json` rounds them)


def trace(run, text: str) -> probe.Trace | dict:
    """One recorded forward pass on `text` (cut to the model's context from the left, as sampling reads it,
    the Trace's `note` saying so): what `inside` draws from. An encoder-decoder's is `translation`'s view."""
    if run.model_config.arch == "encoder-decoder":
        return translation(run, text)
    prompt = probe.encode_prompt(run, text)
    t = probe.trace(run, prompt.ids)
    t.note = prompt.note
    return t


def inside(run, text: str, layer: int | None = None, traced: probe.Trace | dict | None = None,
           millionths: bool = False) -> dict:
    """The Inside view of `text` (see `trace`); `traced`: that trace, already made (the server keeps the
    last one, for the layers a page asks for one at a time).

    layer: only that layer's attention maps (1-based, as the page numbers layers), for a payload too
    large to send whole; everything else is left out. millionths: the weights as whole numbers of
    millionths (the same 6 decimals, half the JSON and a third of the time to write it: what the page asks).
    """
    cfg = run.model_config
    t = traced if traced is not None else trace(run, text)
    if isinstance(t, dict):  # an encoder-decoder's view: small enough (target x source) to send whole
        maps = [_rounded(w, False, millionths) for w in t["weights"]]
        if layer is not None:
            return {"layer": layer, "attention": maps[layer - 1]}
        return {**{k: v for k, v in t.items() if k != "weights"}, "attention": maps}
    T, L = len(t.ids), len(t.blocks)
    causal = cfg.arch != "encoder"
    if layer is not None:
        if not 1 <= layer <= L:
            raise TinyGPTError(f"layer must be from 1 to {L} (the model's n_layer), got {layer}")
        return {"layer": layer, "attention": _rounded(t.blocks[layer - 1].weights, causal, millionths)}
    whole = L * cfg.n_head * (T * (T + 1) // 2 if causal else T * T) <= ATTENTION_NUMBERS
    return {
        "arch": cfg.arch,
        "causal": causal,
        "tokens": t.tokens, "ids": t.ids, "note": t.note,
        "config": {"n_layer": L, "n_head": cfg.n_head, "n_embd": cfg.n_embd, "head_size": cfg.n_embd // cfg.n_head,
                   "block_size": cfg.block_size, "vocab_size": cfg.vocab_size},
        "stages": stages(run, t),
        "attention": [_rounded(b.weights, causal, millionths) for b in t.blocks] if whole else None,
        "lens": lens(run, t),
        "next": next_logits(run, t),
        "embeddings": embeddings(run, t.ids),
    }


def translation(run, source: str) -> dict:
    """An encoder-decoder's Inside view: the target it writes for `source` (greedy) and the cross-attention
    of each target token over the source tokens, per decoder layer and head: row t is what the decoder read
    of the source while writing target token t (the target's tokens, then <|eos|>)."""
    cfg = run.model_config
    if not source.strip():
        raise TinyGPTError("the text is empty; give a source to translate")
    target = run.translate(source, max_new_tokens=cfg.block_size - 1)
    found = probe.cross_attention(run, source, target)  # weights (L, nh, T, S)
    weights = found["weights"]
    return {
        "arch": cfg.arch, "causal": False, "tokens": found["rows"], "columns": found["columns"],
        "written": target, "note": "", "ids": [],
        "config": {"n_layer": weights.size(0), "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                   "head_size": cfg.n_embd // cfg.n_head, "block_size": cfg.block_size, "vocab_size": cfg.vocab_size},
        "weights": weights,  # (L, nh, T, S): `inside` writes them out as asked
    }


def stages(run, t: probe.Trace) -> list[dict]:
    """The tensors of the forward pass in order, with their shapes (B = 1) and what each holds."""
    cfg = run.model_config
    T, C, nh, V = len(t.ids), cfg.n_embd, cfg.n_head, cfg.vocab_size
    hs, causal = C // nh, cfg.arch != "encoder"
    scaled_by = "head_size" if cfg.attn_scale == "head_size" else "n_embd"  # the lecture's first code: n_embd
    out = [{"name": "idx", "shape": [1, T], "dims": "(B, T)", "what": "the token ids"},
           {"name": "tok_emb", "shape": [1, T, C], "dims": "(B, T, C)", "what": "each token's embedding row"}]
    if t.pos_emb is not None:
        out.append({"name": "pos_emb", "shape": [T, C], "dims": "(T, C)", "what": "each position's embedding, added"})
    else:
        out.append({"name": "rotary", "shape": [T, hs], "dims": "(T, head_size)",
                    "what": "positions as rotations of each head's queries and keys (no position table)"})
    for i, b in enumerate(t.blocks, 1):
        out += [{"name": f"block {i}: q, k, v", "shape": [1, nh, T, hs], "dims": "(B, n_head, T, head_size)",
                 "what": "each head's queries, keys and values"},
                {"name": f"block {i}: wei", "shape": [1, nh, T, T], "dims": "(B, n_head, T, T)",
                 "what": f"softmax(q @ k^T / sqrt({scaled_by}))" + (", masked: no peeking ahead" if causal else "")},
                {"name": f"block {i}: wei @ v", "shape": [1, T, C], "dims": "(B, T, C)",
                 "what": "the heads' outputs side by side, projected, added to the residual stream"}]
        if b.mlp_hidden is not None:
            out.append({"name": f"block {i}: MLP", "shape": [1, T, b.mlp_hidden.size(-1)],
                        "dims": f"(B, T, {b.mlp_hidden.size(-1) // C} C)",
                        "what": "the feed-forward's hidden layer, then back to (B, T, C), added"})
    out += [{"name": "ln_f", "shape": [1, T, C], "dims": "(B, T, C)", "what": "the final normalisation"},
            {"name": "logits", "shape": [1, T, V], "dims": "(B, T, vocab_size)",
             "what": "a score for every token of the vocabulary, at every position"}]
    return out


@torch.no_grad()
def lens(run, t: probe.Trace) -> list[dict]:
    """The logit lens: each block's output read through the final norm and the output layer, as if the
    model ended there: the likeliest next token at each position, and its probability."""
    model = run.model
    out = []
    for i, b in enumerate(t.blocks, 1):
        x = b.out.to(run.device, next(model.parameters()).dtype)  # (T, C)
        probs = F.softmax(model.lm_head(model.ln_f(x[None]))[0].float(), dim=-1).cpu()  # (T, V)
        best, ids = probs.max(dim=-1)  # (T,), (T,)
        out.append({"layer": i, "ids": ids.tolist(), "tokens": [_token(run, j) for j in ids.tolist()],
                    "probs": [round(p, DIGITS) for p in best.tolist()]})
    return out


def next_logits(run, t: probe.Trace) -> dict:
    """The last position's logits (every one for a small vocabulary, else the likeliest TOP_LOGITS), largest
    first: the page's temperature, top-k and top-p controls reshape softmax(logits / T) from these."""
    logits = t.logits[-1]  # (V,)
    k = logits.numel() if logits.numel() <= FULL_VOCAB else TOP_LOGITS
    values, ids = logits.topk(k)
    return {"position": len(t.ids) - 1, "all": k == logits.numel(), "ids": ids.tolist(),
            "tokens": [_token(run, j) for j in ids.tolist()], "logits": [round(v, DIGITS) for v in values.tolist()]}


_pca: dict = {}  # the last model's PCA, and the weights it was of


def embeddings(run, ids: list[int]) -> dict:
    """The token embeddings projected to 2-D (PCA), with the text's tokens marked; for a large vocabulary
    only the first FULL_VOCAB tokens and the text's own are sent."""
    table = run.model.tok_emb.weight
    # The PCA depends on the weights alone: computed again only when they change (a new checkpoint copied in
    # bumps the tensor's version), not for every text.
    key = (id(run.model), table.data_ptr(), table._version)
    if _pca.get("key") != key:
        _pca.update(key=key, pca=probe.pca_2d(run))
    pca = _pca["pca"]
    keep = sorted(set(range(min(len(pca["labels"]), FULL_VOCAB))) | set(ids))
    return {"explained": [round(e, 4) for e in pca["explained"]], "marked": sorted(set(ids)),
            "points": [{"id": i, "token": pca["labels"][i], "x": round(float(pca["points"][i][0]), 4),
                        "y": round(float(pca["points"][i][1]), 4)} for i in keep]}


def _token(run, i: int) -> str:
    return probe.display_token(run.tokenizer.token(i))


def _rounded(weights: torch.Tensor, causal: bool, millionths: bool = False) -> list:
    """(n_head, T, T) weights as nested lists, rounded as `inspect --json` rounds them (or those 6 decimals as
    whole millionths); a causal model's rows stop at their own position (row t holds t + 1 weights: the later
    ones are masked, 0), half the payload."""
    rounded = weights.double().numpy().round(DIGITS)
    heads = (rounded * 10**DIGITS).round().astype("int64").tolist() if millionths else rounded.tolist()
    return [[row[: t + 1] for t, row in enumerate(rows)] for rows in heads] if causal else heads
