"""`tinygpt inspect`: gather what was asked for about one prompt, as one dict and as text.

The dict is what `--json` prints; `as_text` lays the same numbers out as tables.
"""

from __future__ import annotations

from . import plots, probe

BAR = 30  # characters of the widest probability bar


def inspect_run(run, prompt: str, k: int = 5, all_positions: bool = False, attention: str = "",
                neighbours: str = "", embeddings: str = "") -> dict:
    """Tokens, ids and top-k next tokens; attention maps, embedding neighbours and PCA when asked.

    Output paths are checked before any work, so a bad one fails at once.
    """
    for path in (attention, embeddings):
        if path:
            plots.check_output(path)
    result = {"run": str(run.dir), **probe.top_k(run, prompt, k, all_positions)}
    if attention:
        t = probe.trace(run, result["ids"])
        shown = f"the last {len(t.ids)} tokens of {prompt!r}" if result["note"] else repr(prompt)
        causal = run.model_config.arch != "encoder"
        how = "grey: later positions, masked" if causal else "an encoder: every position sees every other"
        drawn = plots.plot_attention(t.weights.numpy(), t.tokens, attention, f"Attention weights for {shown} ({how})",
                                     causal=causal)
        result["attention"] = {"file": drawn["path"], "layers": len(t.blocks), "heads": run.model_config.n_head,
                               "weights": drawn["weights"].round(6).tolist()}
    if neighbours:
        result["neighbours"] = probe.neighbours(run, neighbours, k=max(k, 5))
    if embeddings:
        pca = probe.pca_2d(run)
        drawn = plots.plot_embeddings(pca["points"], pca["labels"], embeddings, pca["explained"],
                                      f"Token embeddings of {run.dir.name}, projected to 2-D by PCA")
        result["embeddings"] = {"file": drawn["path"], "explained": pca["explained"],
                                "points": [{"token": s, "x": float(x), "y": float(y)}
                                           for s, (x, y) in zip(pca["labels"], pca["points"])]}
    return result


def inspect_cross_attention(run, source: str, target: str, path: str) -> dict:
    """`tinygpt inspect RUN --source TEXT --target TEXT --cross-attention FILE.png`: the alignment picture."""
    plots.check_output(path)
    found = probe.cross_attention(run, source, target)
    drawn = plots.plot_attention(found["weights"].numpy(), found["rows"], path,
                                 f"Cross-attention: which source tokens each target token read ({source!r} -> "
                                 f"{target!r})", columns=found["columns"], causal=False,
                                 labels=("target token written", "source token read"))
    return {"run": str(run.dir), "file": drawn["path"], "rows": found["rows"], "columns": found["columns"],
            "layers": len(run.model.blocks), "heads": run.model_config.n_head,
            "weights": drawn["weights"].round(6).tolist()}


def as_text(result: dict) -> list[str]:
    lines = [f"run: {result['run']}"]
    if result["note"]:
        lines.append(f"note: {result['note']}")
    width = max(5, *(len(t) for t in result["tokens"]))
    lines.append(f"prompt: {len(result['ids'])} tokens")
    lines.append(f"  pos  {'token':<{width}}  id")
    for pos, (tok, i) in enumerate(zip(result["tokens"], result["ids"])):
        lines.append(f"  {pos:>3}  {tok:<{width}}  {i}")
    for row in result["positions"]:
        lines.append("")
        if result.get("reads") == "at":
            lines.append(f"token at position {row['position']} ({row['token']!r}), read from both sides:")
        else:
            lines.append(f"next token after {row['token']!r} (position {row['position']}):")
        w = max(5, *(len(x["token"]) for x in row["top"]))
        lines.append(f"  rank  {'token':<{w}}  {'id':>5}  probability")
        for rank, x in enumerate(row["top"], 1):
            bar = "#" * max(1 if x["prob"] >= 0.005 else 0, round(x["prob"] * BAR))
            lines.append(f"  {rank:>4}  {x['token']:<{w}}  {x['id']:>5}  {x['prob']:>11.4f}  {bar}")
    if "neighbours" in result:
        n = result["neighbours"]
        lines.append("")
        lines.append(f"nearest tokens to {n['token']!r} (cosine similarity of the token embeddings):")
        w = max(5, *(len(x["token"]) for x in n["neighbours"]))
        for x in n["neighbours"]:
            lines.append(f"  {x['token']:<{w}}  {x['cosine']:+.3f}")
    if "attention" in result:
        a = result["attention"]
        lines.append("")
        lines.append(f"attention maps ({a['layers']} layers x {a['heads']} heads) drawn to {a['file']}")
    if "embeddings" in result:
        e = result["embeddings"]
        lines.append(f"embeddings of {len(e['points'])} tokens drawn to {e['file']} (the two axes hold "
                     f"{e['explained'][0]:.0%} and {e['explained'][1]:.0%} of the variance)")
    return lines
