"""Pictures of training: a run's loss curves (RUN/loss.png as it trains, `tinygpt plot` for several
runs), and the figure helpers every picture of tinygpt uses (viz/plots.py draws the others).

Figures are made with matplotlib's object interface on the Agg canvas, never through pyplot, so
drawing here leaves the caller's matplotlib backend and open figures alone.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.errors import TinyGPTError
from ..store.rundir import RunDir

DPI = 100
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


def new_figure(width_in: float, height_in: float, layout: str | None = None) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> tuple[int, int]:
    """Write the figure at its own size (no tight cropping, so panel positions stay known), whole or not at all:
    to a temporary name renamed over `path`, so a full disk leaves the picture before it as it was; the error
    then names the picture (matplotlib's names no file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".").lower() or None)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not e.errno:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None
    width, height = fig.canvas.get_width_height()
    return width, height


def pixel_box(fig: Figure, ax) -> tuple[int, int, int, int]:
    """An axes' drawing area in image pixels: (left, top, right, bottom), origin at the top left."""
    box = ax.get_window_extent()
    height = fig.canvas.get_width_height()[1]
    return round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0)


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
    fig = new_figure(8.0, 5.0, layout="constrained")
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
    box = pixel_box(fig, ax)
    size = save(fig, path)
    return {"series": series, "lines": lines, "panels": [{"box": box}], "size": size, "path": str(path)}
