"""How long a big text file takes to get going, and in how much memory.

    python benchmarks/big_corpus.py                    # 100 MB, char tokenizer
    python benchmarks/big_corpus.py --mb 20 --tokenizer bpe
    python benchmarks/big_corpus.py --json benchmarks/results/big_corpus.json

Writes a text of --mb megabytes (tiny Shakespeare repeated, in a temporary folder outside the
repository) and times `tinygpt train --data FILE --max-iters 1 --val-fraction 0.001` as a
subprocess: reading, tokenising, splitting, building the model, one step and two evaluations
of the small validation split. Reports the wall time and the process's peak resident memory.
The validation split is kept small on purpose: the final evaluation scores all of it, and that
cost grows with the held-out text, not with the start-up measured here.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinygpt.data import shakespeare_path


def measure(mb: int, tokenizer: str, folder: Path) -> dict:
    text = shakespeare_path().read_text(encoding="utf-8")
    path = folder / f"big-{mb}mb.txt"
    path.write_text(text * max(1, round(mb * 1e6 / len(text))), encoding="utf-8")
    cmd = [sys.executable, "-m", "tinygpt", "train", "--data", str(path), "--tokenizer", tokenizer, "--max-iters",
           "1", "--val-fraction", "0.001", "--no-progress", "--sample-tokens", "0", "--out", str(folder / "run")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"big_corpus: tinygpt failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    # The largest resident size of any child this process has waited for: here, that one run (Linux: KB).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"megabytes": round(path.stat().st_size / 1e6, 1), "tokenizer": tokenizer, "wall_s": round(wall, 2),
            "peak_rss_mb": round(peak_mb), "command": " ".join(cmd[1:])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Start-up time and memory of training on a big text file.")
    parser.add_argument("--mb", type=int, default=100, help="size of the text in megabytes (default 100)")
    parser.add_argument("--tokenizer", default="char", help="char, word or bpe (default char)")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tinygpt-big-") as tmp:
        result = measure(args.mb, args.tokenizer, Path(tmp))
    print(f"{result['megabytes']:.0f} MB, {args.tokenizer} tokenizer: first step and evaluations after "
          f"{result['wall_s']:.1f} s, peak memory {result['peak_rss_mb']:,} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
