"""Pictures of a run: attention maps and token embeddings (loss curves: training/curves.py).

Each `plot_*` function writes one image and returns the data it drew, with the picture's size in
pixels and where its panels are, so a test can check the picture against the numbers. Figures are
made with matplotlib's object interface on the Agg canvas, never through pyplot, so drawing here
leaves the caller's matplotlib backend and open figures alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap

from ..training.curves import check_output, new_figure, pixel_box, save

MASKED = "#d9d9d9"  # the future positions a causal model may not look at


# ----------------------------------------------------------------------------- attention

def plot_attention(weights, tokens: list[str], path: str | Path, title: str = "", columns: list[str] | None = None,
                   causal: bool = True, labels: tuple[str, str] = ("query: position t", "key: attended-to position"),
                   ) -> dict:
    """Every layer x head attention map as a grid of heatmaps: rows are layers, columns heads.

    weights: (n_layer, n_head, T, S) array; row t of a map is how much query t takes from each key.
    Self-attention: S = T, the keys are `tokens` too, and with `causal` the future above the diagonal is
    masked and drawn grey (an encoder's maps are full). Cross-attention: `columns` are the S source tokens.
    Returns {"weights", "tokens", "panels": [{"layer", "head", "box"}], "size": (width, height)}.
    """
    path = check_output(path)
    w = np.asarray(weights, dtype=np.float64)  # (L, H, T, S)
    L, H, T, S = w.shape
    columns = list(tokens) if columns is None else list(columns)
    n = max(T, S)
    panel = min(max(3.0, 0.3 * n + 1.6), 8.0)  # inches: room for the labels on each axis, within reason
    every = math.ceil(n / 40)  # a long prompt labels every n-th position so the labels stay readable
    fig = new_figure(panel * H + 1.2, panel * L + 0.6, layout="constrained")
    cmap = ListedColormap(_blues(256)).with_extremes(bad=MASKED)
    hidden = np.triu(np.ones((T, S), dtype=bool), k=1) if causal else np.zeros((T, S), dtype=bool)
    panels, image = [], None
    for layer in range(L):
        for head in range(H):
            ax = fig.add_subplot(L, H, layer * H + head + 1)
            shown = np.ma.masked_array(w[layer, head], mask=hidden)
            image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks(range(0, S, every), [columns[i] for i in range(0, S, every)], rotation=90, fontsize=8)
            ax.set_yticks(range(0, T, every), [tokens[i] for i in range(0, T, every)], fontsize=8)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=10)
            if n <= 12:  # few enough cells to print each weight in it
                for i in range(T):
                    for j in range(S):
                        if hidden[i, j]:
                            continue
                        value = w[layer, head, i, j]
                        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                                color="white" if value > 0.55 else "black")
            if head == 0:
                ax.set_ylabel(labels[0])
            if layer == L - 1:
                ax.set_xlabel(labels[1])
            panels.append({"layer": layer, "head": head, "ax": ax})
    colorbar = fig.colorbar(image, ax=[p["ax"] for p in panels], shrink=0.8)
    colorbar.set_label("attention weight (each row sums to 1)")
    fig.suptitle(title or "Attention weights (grey: the future, masked)", fontsize=12)
    fig.canvas.draw()
    for p in panels:
        p["box"] = pixel_box(fig, p.pop("ax"))
    size = save(fig, path)
    return {"weights": w, "tokens": list(tokens), "columns": columns, "panels": panels, "size": size,
            "path": str(path)}


def _blues(n: int) -> np.ndarray:
    """White to dark blue: a weight near 0 looks empty, and the grey mask stays distinct from it."""
    from matplotlib import colormaps

    return colormaps["Blues"](np.linspace(0.0, 1.0, n))


def cell_centre(box: tuple[int, int, int, int], T: int, row: int, col: int) -> tuple[int, int]:
    """Pixel (x, y) at the centre of cell (row, col) of a T x T heatmap drawn in `box`."""
    left, top, right, bottom = box
    return (round(left + (col + 0.5) * (right - left) / T), round(top + (row + 0.5) * (bottom - top) / T))


# ----------------------------------------------------------------------------- embeddings

def plot_embeddings(points, labels: list[str], path: str | Path, explained=(None, None), title: str = "",
                    max_labels: int = 120) -> dict:
    """A 2-D scatter of token embeddings (e.g. from `probe.pca_2d`), each point labelled with its token.

    With more tokens than `max_labels`, every point is drawn but only an evenly spaced selection is
    labelled. Returns {"points", "labels", "labelled", "panels", "size", "path"}.
    """
    path = check_output(path)
    xy = np.asarray(points, dtype=np.float64)  # (V, 2)
    fig = new_figure(8.0, 8.0)
    fig.subplots_adjust(left=0.1, right=0.96, bottom=0.08, top=0.92)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(xy[:, 0], xy[:, 1], s=18, color="tab:blue", alpha=0.7)
    step = max(1, math.ceil(len(labels) / max_labels))
    labelled = list(range(0, len(labels), step))
    for i in labelled:
        ax.annotate(labels[i], (xy[i, 0], xy[i, 1]), xytext=(3, 3), textcoords="offset points", fontsize=9)
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.axvline(0, color="0.85", lw=0.8, zorder=0)
    ex1, ex2 = explained
    ax.set_xlabel("first principal component" + (f" ({ex1:.0%} of the variance)" if ex1 is not None else ""))
    ax.set_ylabel("second principal component" + (f" ({ex2:.0%} of the variance)" if ex2 is not None else ""))
    more = f"; {len(labelled)} of {len(labels)} labelled" if step > 1 else ""
    ax.set_title(title or f"Token embeddings projected to 2-D ({len(labels)} tokens{more})")
    fig.canvas.draw()
    box = pixel_box(fig, ax)
    size = save(fig, path)
    return {"points": xy, "labels": list(labels), "labelled": labelled, "panels": [{"box": box}], "size": size,
            "path": str(path)}
