"""Which attention scale reproduces the tutorial's rhyme model: its sqrt(n_embd) or sqrt(head_size)?

    python benchmarks/rhyme_scale.py [--seeds 5] [--threads 1] [--out runs/rhyme-scale]

The tutorial's code divides attention scores by sqrt(n_embd) = sqrt(32) although its heads are 16
wide (SPEC 1), and reports a final loss of about 0.22. This trains the `rhyme` preset with each
scale over the same seeds, side by side in one process, and records for every run the preset's own
final measurement (the mean loss of 50 random training batches, what the tutorial prints) and one
exact pass over the whole text (`Run.evaluate`). Results go to benchmarks/results/rhyme_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import tinygpt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "rhyme_scale.json"
SCALES = ("n_embd", "head_size")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1337, 1338, ... (1337 is the preset's)")
    parser.add_argument("--out", default="runs/rhyme-scale", help="where the runs are written")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (1: steadiest on a shared machine)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    runs = []
    for seed in range(1337, 1337 + args.seeds):
        for scale in SCALES:  # interleaved, so both scales see the same machine load
            out = Path(args.out) / f"{scale}-{seed}"
            start = time.perf_counter()
            result = tinygpt.train(preset="rhyme", out=str(out), attn_scale=scale, seed=seed, threads=args.threads,
                                   progress=False, sample_tokens=0, log=lambda line: None)
            wall = time.perf_counter() - start
            whole = tinygpt.load(out, checkpoint="latest").evaluate()  # the final weights
            whole_loss = whole["loss"]  # here the whole text (split "train")
            runs.append({"scale": scale, "seed": seed, "train_loss": result.train_loss,
                         "whole_text_loss": whole_loss, "wall_s": round(wall, 2)})
            print(f"{scale:>9} seed {seed}: train loss {result.train_loss:.4f}, whole text {whole_loss:.4f}, "
                  f"{wall:.1f}s", flush=True)

    summary = {}
    for scale in SCALES:
        mine = [r for r in runs if r["scale"] == scale]
        summary[scale] = {
            "median_train_loss": statistics.median(r["train_loss"] for r in mine),
            "min_train_loss": min(r["train_loss"] for r in mine),
            "max_train_loss": max(r["train_loss"] for r in mine),
            "median_whole_text_loss": statistics.median(r["whole_text_loss"] for r in mine),
        }
        print(f"{scale:>9}: median train loss {summary[scale]['median_train_loss']:.4f} "
              f"({summary[scale]['min_train_loss']:.4f}-{summary[scale]['max_train_loss']:.4f}), "
              f"median whole-text loss {summary[scale]['median_whole_text_loss']:.4f}")
    RESULTS.write_text(json.dumps({
        "command": f"python benchmarks/rhyme_scale.py --seeds {args.seeds} --threads {args.threads}",
        "published": 0.22,
        "summary": summary,
        "runs": runs,
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "torch": __import__("torch").__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
