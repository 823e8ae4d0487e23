"""Reproduce the systems of SPEC.md: train each preset with one command and check its number.

    python benchmarks/reproduce.py                      # every preset this machine can run
    python benchmarks/reproduce.py bigram lecture-1head # just these
    python benchmarks/reproduce.py lecture-ffwd --set n_layer=3 --set mlp_ratio=4 --set mlp_proj=true \\
        --set attn_proj=true --label lecture-ffwd-3blocks   # a variant, saved under its own label
    python benchmarks/reproduce.py --table              # print the saved table, train nothing

Each preset runs exactly as a user would run it, as a subprocess:

    tinygpt train --preset NAME --out RUNS/LABEL --no-progress [--SETTING VALUE ...]
    tinygpt eval RUNS/LABEL --json --checkpoint latest

and is judged by the `check` block of its preset file (params, metric, published, max or within).
"measured" is the preset's own measurement at the last step (the lecture's presets average 200
random batches, as the lecture did); "whole split" is `tinygpt eval` of the final weights: one
exact pass over the whole validation split (over the whole text for `rhyme`, which has no split).
A variant run with --set is reported but never judged: the bound belongs to the recipe.

Results, with each run's learning curve (its metrics.jsonl) and the machine it ran on, are merged
into benchmarks/results/reproduce.json under the run's label; tests/test_presets.py compares short
runs against those curves. Presets whose check says `needs: gpu` are skipped without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import tinygpt
from tinygpt.config import ALL_FIELDS, coerce
from tinygpt.config.presets import load_preset, preset_names
from tinygpt.core.devices import pick_device
from tinygpt.store.checkpoint import read_metrics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "reproduce.json"
RHYME_WORDS = ("mary", "the", "it", "little", "lamb")
# SPEC.md's order: the tutorial, the lecture's steps, its two full models, nanoGPT's two recipes.
SPEC_ORDER = ["rhyme", "rhyme-head-size", "bigram", "lecture-1head", "lecture-multihead", "lecture-ffwd",
              "lecture-noresidual", "lecture-residual", "lecture-layernorm", "lecture-small", "lecture", "nanogpt-cpu",
              "nanogpt"]


def all_presets() -> list[str]:
    return [n for n in SPEC_ORDER if n in preset_names()] + [n for n in preset_names() if n not in SPEC_ORDER]


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "tinygpt": tinygpt.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()
    except OSError:
        return ""


def run_timed(cmd: list[str], log_path: Path) -> tuple[int, float, float]:
    """Run `cmd` with its output in `log_path`; (exit status, wall seconds, peak resident MB)."""
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024  # Linux reports KiB


def judge(check: dict, measured: float | None) -> bool | None:
    if measured is None:
        return None
    if "max" in check:
        return measured <= check["max"]
    if "within" in check:
        return abs(measured - check["published"]) <= check["within"]
    if "min" in check:  # a recipe that shows what goes wrong without something (lecture-noresidual)
        return measured >= check["min"]
    return None


def bound_text(check: dict) -> str:
    if "max" in check:
        return f"<= {check['max']:.2f}"
    if "within" in check:
        lo, hi = check["published"] - check["within"], check["published"] + check["within"]
        return f"{lo:.2f}-{hi:.2f}"
    if "min" in check:
        return f">= {check['min']:.2f}"
    return "-"


def rhyme_windows(run_dir: Path) -> dict:
    """Samples from the five start words, and the share of each one's 3-word windows found in the corpus."""
    from tinygpt.data import rhyme_text

    corpus = " ".join(line + " <END>" for line in rhyme_text().splitlines() if line.strip()).split()
    known = {tuple(corpus[i : i + 3]) for i in range(len(corpus) - 2)}
    run = tinygpt.load(run_dir, device="cpu", checkpoint="latest")
    samples = {}
    for i, word in enumerate(RHYME_WORDS):
        words = (word + run.generate(word, max_new_tokens=14, temperature=1.0, seed=i)).split()
        windows = [tuple(words[j : j + 3]) for j in range(len(words) - 2)]
        samples[word] = {"text": " ".join(words), "windows_in_corpus": sum(w in known for w in windows) / len(windows)}
    return samples


def reproduce(name: str, label: str, overrides: dict[str, str], runs_dir: Path, logs_dir: Path,
              threads: int = 0) -> dict:
    doc = load_preset(name)
    check = doc.get("check", {})
    out = runs_dir / label
    if (out / "config.json").is_file():
        shutil.rmtree(out)  # a previous run of this script; the trainer refuses to overwrite a run
    cmd = ["tinygpt", "train", "--preset", name, "--out", str(out), "--no-progress"]
    for key, value in overrides.items():
        flag = key.replace("_", "-")
        if isinstance(ALL_FIELDS[key].default, bool):  # booleans are --flag / --no-flag
            cmd.append(f"--{flag}" if coerce(key, value) else f"--no-{flag}")
        else:
            cmd += [f"--{flag}", value]
    if threads:  # how many cores compute the recipe, not part of it: the run is still judged
        cmd += ["--threads", str(threads)]
    log = logs_dir / f"{label}.log"
    load_before = os.getloadavg()
    print(f"[{label}] {' '.join(cmd)}  (log: {log})", flush=True)
    status, wall, peak_mb = run_timed(cmd, log)
    if status != 0:
        print(f"[{label}] failed with exit status {status}; see {log}", flush=True)
        return {"label": label, "preset": name, "command": " ".join(cmd), "error": f"exit status {status}"}
    ev = subprocess.run(["tinygpt", "eval", str(out), "--json", "--checkpoint", "latest"],
                        capture_output=True, text=True, check=True)
    whole = json.loads(ev.stdout)
    keys = ("step", "elapsed_s", "train_loss", "val_loss")
    curve = [{k: r[k] for k in keys} for r in read_metrics(out / "metrics.jsonl")]
    run_doc = json.loads((out / "config.json").read_text())
    last = curve[-1]
    metric = check.get("metric", "val_loss")
    if metric == "best_val_loss":
        measured = min(r["val_loss"] for r in curve if r["val_loss"] is not None)
    elif metric == "val_loss_per_char":  # nats a character: comparable across tokenizers (char's val_loss)
        measured = whole["bits_per_char"] * math.log(2)
    else:
        measured = last[metric]
    result = {
        "label": label, "preset": name, "overrides": overrides, "command": " ".join(cmd),
        "reproduces": doc.get("reproduces", ""), "params": run_doc["num_params"],
        "expected_params": check.get("params"), "metric": metric, "published": check.get("published"),
        "bound": bound_text(check), "measured": measured, "final_train_loss": last["train_loss"],
        "whole_split": {"split": whole["split"], "loss": whole["loss"], "tokens": whole["tokens"]},
        "steps": last["step"], "wall_s": round(wall, 1), "train_s": last["elapsed_s"],
        "peak_rss_mb": round(peak_mb), "device": pick_device(run_doc["train"]["device"]).type,
        "passed": None if overrides else judge(check, measured) and run_doc["num_params"] == check.get("params"),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(), "commit": git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "curve": curve,
    }
    if name.startswith("rhyme"):  # the tutorial's other claim: its samples continue the rhyme
        result["rhyme_samples"] = rhyme_windows(out)
        most = all(s["windows_in_corpus"] > 0.5 for s in result["rhyme_samples"].values())
        result["passed"] = result["passed"] and most if result["passed"] is not None else None
    return result


def save(results_path: Path, result: dict):
    saved = json.loads(results_path.read_text()) if results_path.is_file() else {}
    saved[result["label"]] = result
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(saved, indent=1) + "\n")


def fmt(x, spec=".4f"):
    return "-" if x is None else format(x, spec)


def print_table(results: dict, labels: list[str]):
    rows = [("preset", "params", "published", "expected", "measured", "whole split", "wall", "result")]
    for label in labels:
        r = results.get(label)
        if r is None:
            check = load_preset(label).get("check", {}) if label in preset_names() else {}
            why = "not measured: needs a GPU" if check.get("needs") == "gpu" else "not measured"
            rows.append((label, fmt(check.get("params"), ",d"), fmt(check.get("published"), "g"),
                         bound_text(check), "-", "-", "-", why))
            continue
        if "error" in r:
            rows.append((label, "-", "-", "-", "-", "-", "-", r["error"]))
            continue
        verdict = {True: "pass", False: "FAIL", None: "variant"}[r["passed"]]
        rows.append((label, f"{r['params']:,}", fmt(r["published"], "g"), r["bound"], fmt(r["measured"]),
                     fmt(r["whole_split"]["loss"]), f"{r['wall_s'] / 60:.1f} min", verdict))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train presets and check them against their published numbers.")
    parser.add_argument("presets", nargs="*", help="preset names (default: all that this machine can run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting (makes a variant, which is reported but not judged)")
    parser.add_argument("--label", default="", help="save under this label (default: the preset name)")
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "reproduce"), help="where the runs go")
    parser.add_argument("--results", default=str(RESULTS), help="JSON file the results are merged into")
    parser.add_argument("--force", action="store_true", help="run GPU presets even without a GPU")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per run (default: the trainer's "
                        "one per core; 1 is far faster on a loaded shared machine)")
    parser.add_argument("--table", action="store_true", help="print the saved results; train nothing")
    args = parser.parse_args(argv)

    results_path = Path(args.results)
    names = args.presets or all_presets()
    unknown = [n for n in names if n not in preset_names()]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(preset_names())}")
    if args.table:
        saved = json.loads(results_path.read_text()) if results_path.is_file() else {}
        labels = list(args.presets) if args.presets else all_presets() + sorted(set(saved) - set(preset_names()))
        print_table(saved, labels)
        return 0
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.label and len(names) != 1:
        parser.error("--label names one run; give exactly one preset with it")
    runs_dir, logs_dir = Path(args.runs_dir), Path(args.runs_dir) / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in names:
        label = args.label or name
        if load_preset(name).get("check", {}).get("needs") == "gpu" and not torch.cuda.is_available() \
                and not args.force:
            print(f"[{label}] skipped: needs a GPU (--force runs it anyway)", flush=True)
            continue
        result = reproduce(name, label, overrides, runs_dir, logs_dir, args.threads)
        save(results_path, result)
        done[label] = result
        print_table(done, [label])
    print()
    print_table(done, list(done))
    return 0 if all(r.get("passed") is not False and "error" not in r for r in done.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
