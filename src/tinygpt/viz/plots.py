"""Pictures of a run: attention maps, token embeddings, loss curves.

Each `plot_*` function writes one image and returns the data it drew, with the picture's size in
pixels and where its panels are, so a test can check the picture against the numbers. Figures are
made with matplotlib's object interface on the Agg canvas, never through pyplot, so drawing here
leaves the caller's matplotlib backend and open figures alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ..core.errors import TinyGPTError
from ..store.rundir import RunDir

DPI = 100
MASKED = "#d9d9d9"  # the future positions a causal model may not look at
X_AXES = {"step": ("step", "optimizer step"), "tokens": ("tokens", "training tokens seen"),
          "seconds": ("elapsed_s", "seconds of training")}


def check_output(path: str | Path) -> Path:
    """An image path whose folder exists and whose format matplotlib can write."""
    path = Path(path)
    if not path.parent.is_dir():
        raise TinyGPTError(f"cannot write {path}: the folder {path.parent} does not exist; create it or pick another")
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise TinyGPTError(f"cannot write {path}: {path.suffix or 'no ending'} is not a picture format; "
                           "end the name with .png (or .svg, .pdf)")
    return path


def _new_figure(width_in: float, height_in: float, layout: str | None = None) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> tuple[int, int]:
    """Write the figure at its own size (no tight cropping, so panel positions stay known)."""
    fig.savefig(path, dpi=DPI)
    width, height = fig.canvas.get_width_height()
    return width, height


def _pixel_box(fig: Figure, ax) -> tuple[int, int, int, int]:
    """An axes' drawing area in image pixels: (left, top, right, bottom), origin at the top left."""
    box = ax.get_window_extent()
    height = fig.canvas.get_width_height()[1]
    return round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0)


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
    fig = _new_figure(panel * H + 1.2, panel * L + 0.6, layout="constrained")
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
        p["box"] = _pixel_box(fig, p.pop("ax"))
    size = _save(fig, path)
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
    fig = _new_figure(8.0, 8.0)
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
    box = _pixel_box(fig, ax)
    size = _save(fig, path)
    return {"points": xy, "labels": list(labels), "labelled": labelled, "panels": [{"box": box}], "size": size,
            "path": str(path)}


# ----------------------------------------------------------------------------- loss curves

def loss_series(run_dir: str | Path, x: str = "step") -> dict:
    """A run's losses against `x` (step, tokens or seconds), read from its metrics.jsonl."""
    if x not in X_AXES:
        raise TinyGPTError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise TinyGPTError(f"run directory {run} does not exist")
    records = run.read_metrics()
    if not records:
        raise TinyGPTError(f"{run} has no metrics.jsonl (or an empty one), so it holds no training run; "
                           "pass directories written by `tinygpt train`")
    key = X_AXES[x][0]
    out = {"label": run.name, "x": [], "train": [], "val": []}
    for r in records:
        out["x"].append(r[key])
        out["train"].append(r.get("train_loss"))
        out["val"].append(r.get("val_loss"))
    return out


def plot_loss(run_dirs: list[str | Path], path: str | Path, x: str = "step", log: bool = False,
              title: str = "") -> dict:
    """Training (solid) and validation (dashed) loss of one or more runs, overlaid; one colour per run.

    Returns {"series": [{"label", "x", "train", "val"}], "lines": [legend labels], "panels", "size", "path"}.
    """
    path = check_output(path)
    series = [loss_series(d, x) for d in run_dirs]
    names = [s["label"] for s in series]
    if len(set(names)) < len(names):  # two runs with the same folder name: tell them apart by path
        for s, d in zip(series, run_dirs):
            s["label"] = str(d)
    fig = _new_figure(8.0, 5.0, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{i % 10}" for i in range(len(series))]
    lines = []
    for s, colour in zip(series, colours):
        for split, style in (("train", "-"), ("val", "--")):
            pts = [(a, b) for a, b in zip(s["x"], s[split]) if b is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            label = f"{s['label']} {split}"
            ax.plot(xs, ys, style, color=colour, marker="o", markersize=3, label=label)
            lines.append(label)
    if log:
        from matplotlib.ticker import LogLocator, ScalarFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))  # 0.3, 0.5, 1, 2, 3: plain numbers
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter("")
    ax.set_xlabel(X_AXES[x][1])
    ax.set_ylabel("loss (cross-entropy, nats per token)" + (", log scale" if log else ""))
    has_val = any(line.endswith(" val") for line in lines)
    ax.set_title(title or ("Loss curves (solid: training, dashed: validation)" if has_val else "Training loss"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    fig.canvas.draw()
    box = _pixel_box(fig, ax)
    size = _save(fig, path)
    return {"series": series, "lines": lines, "panels": [{"box": box}], "size": size, "path": str(path)}
