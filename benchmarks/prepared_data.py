"""Memory and time of training on a big text: read into memory, against prepared once and mapped.

    python benchmarks/prepared_data.py                          # 100 MB and 400 MB, char tokenizer
    python benchmarks/prepared_data.py --mb 50 --tokenizer bpe
    python benchmarks/prepared_data.py --json benchmarks/results/prepared_data.json

For each size, tiny Shakespeare repeated to that many megabytes (in a temporary folder outside the
repository) is trained on for a few steps of a small GPT two ways, each command in a process of its
own whose peak resident memory is measured:
- `tinygpt train --data FILE`: the text read, tokenised and split in memory at every start;
- `tinygpt prepare FILE --out DIR` once, then `tinygpt train --data DIR`: train.bin mapped.
Both hold out the same 0.001 of the tokens and BPE learns from the whole text both ways (prepare's
default is the first 100M characters), so both runs train and score the same numbers; the benchmark
checks that their final losses agree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinygpt.data import shakespeare_path

MODEL = ["--n-layer", "2", "--n-head", "2", "--n-embd", "64", "--block-size", "64", "--batch-size", "12",
         "--max-iters", "20", "--eval-interval", "20", "--no-progress", "--sample-tokens", "0", "--threads", "1"]
# Runs `argv` as a child and prints its wall time and peak resident memory (Linux: KB) as JSON.
WRAPPER = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
           "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "print(json.dumps({'rc': p.returncode, 'wall_s': time.perf_counter() - t, "
           "'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 'out': p.stdout[-3000:], "
           "'err': p.stderr[-3000:]}))")


def timed(args: list[str]) -> dict:
    """`python -m tinygpt ARGS` in a process of its own: wall seconds, peak MB and its output."""
    cmd = [sys.executable, "-m", "tinygpt", *args]
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"prepared_data: `tinygpt {' '.join(args)}` failed:\n{result['out']}{result['err']}")
    return {"wall_s": round(result["wall_s"], 2), "peak_rss_mb": round(result["peak_mb"]), "output": result["out"],
            "command": "tinygpt " + " ".join(args)}


def final_losses(run: Path) -> tuple[float, float]:
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return last["train_loss"], last["val_loss"]


def measure(mb: int, tokenizer: str, folder: Path) -> dict:
    text = shakespeare_path().read_text(encoding="utf-8")
    path = folder / f"big-{mb}mb.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(max(1, round(mb * 1e6 / len(text)))):
            f.write(text)
    split = ["--val-fraction", "0.001"]
    read = timed(["train", "--data", str(path), "--tokenizer", tokenizer, *split, *MODEL, "--out",
                  str(folder / "read")])
    # BPE learns from all of the text here, as in memory (the default is its first 100M characters).
    prepare = timed(["prepare", str(path), "--out", str(folder / "tokens"), "--tokenizer", tokenizer, *split,
                     "--tokenizer-sample", str(10**10), "--quiet"])
    mapped = timed(["train", "--data", str(folder / "tokens"), *MODEL, "--out", str(folder / "mapped")])
    same = final_losses(folder / "read") == final_losses(folder / "mapped")
    path.unlink()
    return {"megabytes": mb, "tokenizer": tokenizer, "train_from_text": read, "prepare": prepare,
            "train_from_prepared": mapped, "same_losses": same, "final_losses": final_losses(folder / "mapped")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Training on a big text: in memory against prepared and mapped.")
    parser.add_argument("--mb", type=int, nargs="+", default=[100, 400], help="sizes in megabytes (default 100 400)")
    parser.add_argument("--tokenizer", default="char", help="char, word or bpe (default char)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rows = []
    started = time.perf_counter()
    print("| text | train --data FILE | prepare FILE | train --data DIR | same losses |")
    print("| --- | ---: | ---: | ---: | :---: |")
    for mb in args.mb:
        with tempfile.TemporaryDirectory(prefix="tinygpt-prepared-") as tmp:
            r = measure(mb, args.tokenizer, Path(tmp))
        rows.append(r)
        cells = [f"{r[k]['wall_s']:.1f} s, {r[k]['peak_rss_mb']:,} MB"
                 for k in ("train_from_text", "prepare", "train_from_prepared")]
        print(f"| {mb} MB, {args.tokenizer} | {' | '.join(cells)} | {'yes' if r['same_losses'] else 'NO'} |")
    if args.json:
        for r in rows:
            for k in ("train_from_text", "prepare", "train_from_prepared"):
                r[k].pop("output")
        Path(args.json).write_text(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - started)},
                                              indent=2) + "\n")
    return 0 if all(r["same_losses"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
