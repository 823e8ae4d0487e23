"""Five steps on a big prepared text: the final evaluation bounded, memory flat (issue 22, item 8).

    python benchmarks/big_validation.py                      # 30 MB and 300 MB, results/big_validation.json
    python benchmarks/big_validation.py --mb 300

For each size, tiny Shakespeare repeated to that many megabytes (in a temporary folder outside the
repository) is prepared once (`tinygpt prepare`, char tokenizer, the default 0.1 held out: 30M
validation tokens at 300 MB), then `tinygpt train --data DIR --max-iters 5` runs with every other
setting at its default (the default model, its thread rule, `--final-eval-tokens` 262,144), in a
process of its own whose wall time and peak resident memory are measured. Then `tinygpt eval` on the
run says how long a whole-split pass would take (the benchmark stops it after that line), and
`tinygpt eval --max-tokens 262144` reproduces the final evaluation's number.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prepared_data import timed  # benchmarks/prepared_data.py: a command's wall time and peak memory

from tinygpt.data import shakespeare_path

HERE = Path(__file__).resolve().parent


def first_line_of_long_eval(run: Path) -> tuple[str, float]:
    """Start `tinygpt eval RUN` (the whole split), read what it says about its length, and stop it."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tinygpt", "eval", str(run)], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline().strip()
    seconds = time.perf_counter() - start
    proc.kill()
    proc.wait()
    return line, seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, nargs="+", default=[30, 300], help="sizes in megabytes (default: 30 300)")
    ap.add_argument("--json", default=str(HERE / "results" / "big_validation.json"), help="where to write results")
    args = ap.parse_args(argv)
    base = shakespeare_path().read_text(encoding="utf-8")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.mb:
            text = Path(tmp) / f"text{mb}.txt"
            with open(text, "w", encoding="utf-8") as f:
                written = 0
                while written < mb * 1_000_000:
                    f.write(base)
                    written += len(base)
            prepared = timed(["prepare", str(text), "--out", str(Path(tmp) / f"data{mb}")])
            run = Path(tmp) / f"run{mb}"
            train = timed(["train", "--data", str(Path(tmp) / f"data{mb}"), "--max-iters", "5", "--out", str(run),
                           "--no-progress", "--sample-tokens", "0"])
            said, after = first_line_of_long_eval(run)
            subset = timed(["eval", str(run), "--max-tokens", "262144", "--json"])
            last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
            row = {"mb": mb, "characters": written, "prepare_s": round(prepared["wall_s"], 1),
                   "train_5_steps_s": round(train["wall_s"], 1), "train_peak_mb": round(train["peak_rss_mb"]),
                   "banner": next(line for line in train["output"].splitlines() if line.startswith("tinygpt ")),
                   "final_val_loss": last["val_loss"], "eval_subset": json.loads(subset["output"]),
                   "eval_whole_says": said, "eval_whole_said_after_s": round(after, 1)}
            rows.append(row)
            print(f"{mb} MB: prepare {row['prepare_s']} s; train 5 steps {row['train_5_steps_s']} s, peak "
                  f"{row['train_peak_mb']} MB; final val {row['final_val_loss']:.4f}, eval --max-tokens 262144 "
                  f"{row['eval_subset']['loss']:.4f}; eval of the whole split says after "
                  f"{row['eval_whole_said_after_s']} s: {said}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
