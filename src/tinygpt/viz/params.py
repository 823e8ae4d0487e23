"""Where a model's parameters are (`tinygpt params`): per component and per layer, summing to the
total, with each one's share, and the model's scale against GPT-2 and GPT-3 and the data each saw.

Components are read off the parameter names the models use (tok_emb, pos_emb, blocks.N.attn,
blocks.N.mlp, blocks.N.ln1/ln2, ln_f, lm_head; the bigram's table; the reward model's head). A name
that fits none is counted as "other", so the parts always add up to the total.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

COMPONENTS = ("embeddings", "attention", "feed-forward", "norms", "head", "other")

# What the lecture compares its model with (SPEC 2; the papers' own figures).
REFERENCES = (
    {"name": "GPT-2 (smallest)", "params": 124_000_000, "data": "WebText, 40 GB of web text", "tokens": None},
    {"name": "GPT-3", "params": 175_000_000_000, "data": "300 billion tokens", "tokens": 300_000_000_000},
)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    count: int
    component: str
    layer: int | None  # 0-based block index, None outside the blocks


def component_of(name: str) -> tuple[str, int | None]:
    """('attention', 0) for 'blocks.0.attn.qkv.weight', ('embeddings', None) for 'tok_emb.weight', ..."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 2 and parts[1].isdigit():
        layer, part = int(parts[1]), parts[2]
        if part.startswith("attn"):
            return "attention", layer
        if part.startswith("mlp"):
            return "feed-forward", layer
        if part.startswith(("ln", "norm")):
            return "norms", layer
        return "other", layer
    if parts[0] in ("tok_emb", "pos_emb", "table"):  # the bigram's table is its embedding and its output
        return "embeddings", None
    if parts[0].startswith(("ln", "norm")):
        return "norms", None
    if parts[0] in ("lm_head", "head"):
        return "head", None
    return "other", None


def _size(n: float) -> str:
    """124000000 -> "124M", 175e9 -> "175B", 27747 -> "27,747"."""
    for unit, scale in (("B", 1e9), ("M", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:,.0f}"


def count_parameters(model: nn.Module, tied: bool = False) -> dict:
    """Every parameter tensor with its component and layer, and the sums. A tied head shares the token
    embedding's tensor, which named_parameters() (and so the total) counts once, under the embedding."""
    tensors = [Tensor(name, tuple(p.shape), p.numel(), *component_of(name)) for name, p in model.named_parameters()]
    total = sum(t.count for t in tensors)
    components = {c: sum(t.count for t in tensors if t.component == c) for c in COMPONENTS}
    layers = sorted({t.layer for t in tensors if t.layer is not None})
    per_layer = [{c: sum(t.count for t in tensors if t.layer == i and t.component == c) for c in COMPONENTS}
                 for i in layers]
    return {
        "total": total,
        "components": {c: {"params": n, "share": n / total} for c, n in components.items() if n},
        "layers": [{**{c: n for c, n in row.items() if n}, "total": sum(row.values())} for row in per_layer],
        "outside_layers": {c: sum(t.count for t in tensors if t.layer is None and t.component == c)
                           for c in COMPONENTS if any(t.layer is None and t.component == c for t in tensors)},
        "tensors": [{"name": t.name, "shape": list(t.shape), "params": t.count, "component": t.component}
                    for t in tensors],
        "tied_head": tied,
    }


def tensor_kinds(tensors: list[dict]) -> list[dict]:
    """The tensors with layer (and head) numbers replaced by *, each kind once: its shape, its size,
    and how many there are (blocks.*.attn.qkv.weight: (96, 32), 3,072, 2 of them)."""
    kinds: dict[str, dict] = {}
    for t in tensors:
        pattern = ".".join("*" if part.isdigit() else part for part in t["name"].split("."))
        kind = kinds.setdefault(pattern, {"name": pattern, "shape": t["shape"], "each": t["params"], "count": 0,
                                          "params": 0})
        kind["count"] += 1
        kind["params"] += t["params"]
    return list(kinds.values())


def scale(total: int, training: tuple[int, int, int] | None, data_tokens: int | None) -> dict:
    """This model against GPT-2 and GPT-3: how many times more parameters each has (and, where the
    paper gives it in tokens, how many times more text it was trained on). training: (steps, sequences
    per step, tokens per sequence), or None when a time budget decides the steps."""
    references = []
    for ref in REFERENCES:
        data_times = ref["tokens"] / data_tokens if ref["tokens"] and data_tokens else None
        references.append({**ref, "times": ref["params"] / total, "data_times": data_times})
    tokens_trained = training[0] * training[1] * training[2] if training else None
    return {"training": list(training) if training else None, "tokens_trained": tokens_trained,
            "data_tokens": data_tokens, "references": references}


def as_text(title: str, counts: dict, compared: dict) -> list[str]:
    total = counts["total"]
    lines = [title, "", f"{'component':<14}{'parameters':>12}{'share':>8}"]
    for name, c in counts["components"].items():
        lines.append(f"{name:<14}{c['params']:>12,}{c['share']:>8.1%}")
    lines.append(f"{'total':<14}{total:>12,}{1:>8.1%}")
    if counts["tied_head"]:
        lines.append("(the head shares the token embedding's weights, so they are counted once, as embeddings)")
    if counts["layers"]:
        shown = [c for c in COMPONENTS if any(c in row for row in counts["layers"])]
        lines += ["", f"{'layer':<7}" + "".join(f"{c:>14}" for c in shown) + f"{'total':>12}"]
        for i, row in enumerate(counts["layers"], start=1):
            lines.append(f"{i:<7}" + "".join(f"{row.get(c, 0):>14,}" for c in shown) + f"{row['total']:>12,}")
        outside = ", ".join(f"{c} {n:,}" for c, n in counts["outside_layers"].items())
        lines.append(f"outside the layers: {outside}")
    kinds = tensor_kinds(counts["tensors"])
    width = max(len(k["name"]) for k in kinds) + 2
    lines += ["", f"{'tensor':<{width}}{'shape':>12}{'each':>12}{'x':>4}{'parameters':>13}"]
    for k in kinds:
        lines.append(f"{k['name']:<{width}}{' x '.join(map(str, k['shape'])):>12}{k['each']:>12,}{k['count']:>4}"
                     f"{k['params']:>13,}")
    lines += ["", "scale:"]
    trained = ""
    if compared["training"]:
        steps, batch, block = compared["training"]
        trained = f"; trains on {steps:,} steps x {batch} x {block} = {compared['tokens_trained']:,} tokens"
        if compared["data_tokens"]:
            trained += f" of a {compared['data_tokens']:,}-token text"
    lines.append(f"  {'this model':<18}{_size(total):>6} parameters{trained}")
    for ref in compared["references"]:
        data = f" ({_size(ref['data_times'])} times this text)" if ref["data_times"] else ""
        lines.append(f"  {ref['name']:<18}{_size(ref['params']):>6} parameters, {_size(ref['times'])} times as many;"
                     f" trained on {ref['data']}{data}")
    return lines
