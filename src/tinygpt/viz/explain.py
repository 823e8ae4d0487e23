"""`tinygpt explain`: what a trained GPT does with one prompt, told in plain words with its real numbers.

    text -> tokens -> ids -> embedding vectors -> each block (attention, MLP) -> logits
         -> probabilities -> the next token

Every number printed comes from `probe.trace`, i.e. from the model's own forward pass.
"""

from __future__ import annotations

from ..core.errors import TinyGPTError
from .probe import display_token, trace

SHOW_POSITIONS = 8  # a long prompt is summarised by its last positions
SHOW_VALUES = 3  # how many numbers of a vector to print
NORM_NAMES = {"layernorm": "LayerNorm", "handwritten": "LayerNorm (the hand-written one)", "rmsnorm": "RMSNorm"}


def _vec(v, n: int = SHOW_VALUES) -> str:
    values = ", ".join(f"{x:+.2f}" for x in v[:n].tolist())
    return f"[{values}, ...]" if len(v) > n else f"[{values}]"


def _prob(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _shown(T: int) -> range:
    return range(max(0, T - SHOW_POSITIONS), T)


def explain(run, prompt: str, out=print, top: int = 5) -> dict:
    """Print the walkthrough line by line through `out`; return its key numbers (for tests and tools)."""
    cfg, tok = run.model_config, run.tokenizer
    if cfg.arch == "encoder":
        raise TinyGPTError(f"explain follows a GPT's next-token prediction; {run.dir} is an encoder, which fills in "
                           "hidden tokens: try tinygpt fill RUN --prompt '... <mask> ...', or inspect --attention")
    t = trace(run, prompt)
    T, C, V = len(t.ids), cfg.n_embd, cfg.vocab_size
    shown = _shown(T)
    skipped = f" (the last {SHOW_POSITIONS} of {T} shown)" if T > SHOW_POSITIONS else ""
    norm = NORM_NAMES.get(cfg.norm)
    n_params = run.model.num_params()
    out(f"What this GPT does with {prompt!r}")
    blocks = f"{cfg.n_layer} block{'s' if cfg.n_layer > 1 else ''}"
    heads = f"{cfg.n_head} attention head{'s' if cfg.n_head > 1 else ''}"
    out(f"(run {run.dir}: {n_params:,} parameters; {blocks} of {heads}, "
        f"vectors of {C} numbers, context of {cfg.block_size} tokens)")
    out("")

    # 1-2. text -> tokens -> ids
    how = {"word": "splits the text at whitespace, one token per word",
           "char": "makes every character a token", "bpe": "cuts the text into byte-pair pieces",
           "wordpiece": "cuts words into the longest pieces its vocabulary has",
           "unigram": "cuts the text into the likeliest sequence of its pieces",
           "wordlevel": "looks each word up in its vocabulary"}.get(tok.kind, "cuts the text into pieces")
    out(f"1. Text -> tokens. The {tok.kind} tokenizer {how}: {' | '.join(t.tokens)} ({T} tokens).")
    if t.note:
        out(f"   Note: {t.note}.")
    pairs = ", ".join(f"{s}={i}" for s, i in zip(t.tokens, t.ids))
    out(f"2. Tokens -> ids. Each token is replaced by its number in the vocabulary of {V}: {pairs}.")
    out("   From here on the model sees only these numbers.")

    # 3. ids -> vectors
    out(f"3. Ids -> vectors. Row `id` of the token embedding table ({V} x {C}) turns each id into {C} numbers,")
    if t.pos_emb is not None:
        out(f"   and row `position` of the position table ({cfg.block_size} x {C}) is added, so the same token at "
            "another place looks different:")
        for p in shown:
            out(f"   {t.tokens[p]:>10} @ {p}: token {_vec(t.tok_emb[p])} + position {_vec(t.pos_emb[p])} "
                f"= {_vec(t.x0[p])}")
    else:
        out("   with no position table: rotary embeddings will turn queries and keys by an angle that grows with the")
        out("   position, inside each attention layer, so attention scores depend on how far apart tokens are:")
        for p in shown:
            out(f"   {t.tokens[p]:>10} @ {p}: {_vec(t.x0[p])}")
    out(f"   The result is a matrix of shape ({T}, {C}), one row per token{skipped}: the 'residual stream'")
    out("   that every block reads from and adds to.")

    # 4. blocks
    step = 4
    attended = []
    for i, (block, b) in enumerate(zip(run.model.blocks, t.blocks)):
        out("")
        out(f"{step}. Block {i + 1} of {cfg.n_layer}.")
        step += 1
        pre = f"{norm} rescales each row, then " if norm else ""
        out(f"   Attention: {pre}each of {cfg.n_head} heads makes a query, a key and a value "
            f"({cfg.head_size} numbers each)")
        out("   for every position: what it looks for, what it offers, and what it passes on.")
        scale = cfg.head_size if cfg.attn_scale == "head_size" else cfg.n_embd
        out(f"   A position's weights over itself and earlier positions are softmax(query . key / sqrt({scale})),")
        out("   later positions get weight 0 (the causal mask). Where each position looks hardest:")
        layer = []
        for h in range(cfg.n_head):
            picks = []
            for p in range(T):
                j = int(b.weights[h, p, : p + 1].argmax())
                picks.append({"position": p, "attends_to": j, "weight": float(b.weights[h, p, j])})
            layer.append(picks)
            text = "  ".join(f"{t.tokens[x['position']]}->{t.tokens[x['attends_to']]} {x['weight']:.2f}"
                             for x in picks if x["position"] in shown)
            out(f"     head {h + 1}: {text}")
        attended.append(layer)
        joined = f"joined into ({T}, {C})" + (", projected" if block.attn.proj is not None else "")
        into = "added to the stream" if cfg.residual else "replacing the stream"
        out(f"   Each head's output is its weights times the values, ({T}, {cfg.head_size});")
        out(f"   the heads are {joined} and {into}.")
        if b.mlp_out is not None:
            hidden = b.mlp_hidden[T - 1]
            active = int((hidden > 0).sum())
            act = {"relu": "ReLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "relu2": "ReLU squared"}[cfg.activation]
            pre = f"after {norm}, " if norm else ""
            out(f"   MLP: {pre}each position on its own goes {C} -> {hidden.numel()} numbers -> {act} -> back to {C},")
            out(f"   {into}; for {t.tokens[-1]!r}, {active} of {hidden.numel()} hidden units are active.")
        last = b.out[T - 1]
        out(f"   After the block, the row of {t.tokens[-1]!r} is {_vec(last)} (length {float(last.norm()):.2f}).")

    # logits, probabilities, the choice
    last = t.logits[T - 1]
    probs = t.probs[T - 1]
    order = probs.argsort(descending=True)[:top].tolist()
    names = [_display(run, j) for j in order]
    out("")
    final = f"{norm} once more, then " if norm else ""
    tied = " (the token embedding table, reused)" if cfg.tie_weights else ""
    out(f"{step}. Logits. Only the last row matters for what comes next: {final}the output layer{tied}")
    out(f"   maps its {C} numbers to {V} scores, one per token. The highest: "
        + ", ".join(f"{n} {float(last[j]):.2f}" for n, j in zip(names, order)) + ".")
    out(f"{step + 1}. Probabilities. softmax: exp(score) / sum of exp(all scores), so they are positive and sum to "
        f"{float(probs.sum()):.3f}:")
    out("   " + ", ".join(f"{n} {_prob(float(probs[j]))}" for n, j in zip(names, order)) + ".")
    best = order[0]
    out(f"{step + 2}. Next token: {names[0]!r}, the likeliest (what --temperature 0 picks);")
    out(f"   sampling at temperature 1 picks it {float(probs[best]):.1%} of the time.")
    out(f"   Append it to the prompt and run everything again to get the token after that: "
        f"`tinygpt sample {run.dir} --prompt ...`.")
    return {"tokens": t.tokens, "ids": t.ids, "attended": attended, "next_token": names[0], "next_id": best,
            "next_prob": float(probs[best]), "top": [(n, j, float(probs[j])) for n, j in zip(names, order)]}


def _display(run, i: int) -> str:
    return display_token(run.tokenizer.token(i))
