"""Same numbers under any load, and what the fixed thread count costs.

    python benchmarks/determinism.py                 # quiet, then with a spinner on every core (~10 min)
    python benchmarks/determinism.py --modes busy    # only the busy machine

For each machine state it runs the groundwork issue's check with the default settings:

    tinygpt train --data shakespeare --tokenizer char --max-iters 60 --seed 7            (straight)
    tinygpt train ... --max-iters 30, then tinygpt train --resume RUN --max-iters 60      (stopped, resumed)

and compares the final validation losses bit for bit, then the same straight run with `--threads 1`,
to show what the default (one thread per core, fixed for the run) costs or gains against one thread
on a quiet and on a busy machine. "Busy" is one process spinning on every core for the whole
measurement. Results go to benchmarks/results/determinism.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMAND = ["--data", "shakespeare", "--tokenizer", "char", "--seed", "7", "--no-progress", "--sample-tokens", "0"]


def train(out: Path, *extra: str) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tinygpt", "train", "--out", str(out), *COMMAND, *extra],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"training failed: {done.stderr.strip().splitlines()[-1]}")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    threads = next(line for line in done.stdout.splitlines() if " threads; out " in line)
    return {"val_loss": last["val_loss"], "step": last["step"], "wall_s": round(wall, 2),
            "threads": int(threads.split(" threads; out ")[0].rsplit(", ", 1)[1])}


def measure(mode: str, folder: Path) -> dict:
    spinners = []
    if mode == "busy":
        code = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass"
        spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
    try:
        load_start = os.getloadavg()[0]
        straight = train(folder / f"{mode}-straight", "--max-iters", "60")
        train(folder / f"{mode}-stopped", "--max-iters", "30")
        resumed = train(folder / f"{mode}-stopped", "--resume", str(folder / f"{mode}-stopped"), "--max-iters", "60")
        one = train(folder / f"{mode}-one-thread", "--max-iters", "60", "--threads", "1")
        load_end = os.getloadavg()[0]
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    return {"straight": straight, "resumed": resumed, "one_thread": one,
            "resumed_equals_straight": resumed["val_loss"] == straight["val_loss"],
            "one_thread_equals_default": one["val_loss"] == straight["val_loss"],
            "default_over_one_thread_wall": round(straight["wall_s"] / one["wall_s"], 2),
            "load_start": load_start, "load_end": load_end}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="quiet,busy", help="comma-separated: quiet, busy (default: both)")
    parser.add_argument("--out", default=str(HERE / "results" / "determinism.json"), help="results file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TINYGPT_DATA_DIR", str(HERE.parent.parent / "shared" / "data"))
    report = {"command": "python benchmarks/determinism.py --modes " + args.modes,
              "cores": len(os.sched_getaffinity(0)), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            report[mode] = measure(mode, Path(tmp))
            print(mode, json.dumps(report[mode]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
