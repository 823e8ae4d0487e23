"""Memory of each process when N processes train one model: DDP (whole copies) against FSDP (slices).

    python benchmarks/fsdp_memory.py                         # 2 CPU processes, 12 layers x 768 (85M parameters)
    python benchmarks/fsdp_memory.py --n-layer 6 --n-embd 384 --json benchmarks/results/fsdp_memory_lecture.json

Runs `torchrun --nproc-per-node=N -m tinygpt train --preset lecture --n-layer L --n-embd C --max-iters 2
--batch-size 2N` once with `--parallel ddp` and once with `--parallel fsdp` (gloo on CPU; nccl on GPUs),
each worker reporting its own peak resident memory. Under DDP each worker holds the weights, their
gradients (and DDP's gradient buckets) and AdamW's two moments whole (85M float32 numbers are 340 MB
a copy); under FSDP a 1/N slice of each, with one block's weights gathered at a time. Rank 0 also
keeps a whole copy on the CPU for the checkpoints it writes (on a GPU, the memory FSDP saves is the
GPU's). The final losses of the two runs are printed too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARK = "fsdp_memory worker:"


def worker(args: list[str]) -> int:
    """One torchrun worker: `tinygpt ARGS`, then its own rank and peak resident memory (Linux: KB)."""
    import os
    import resource

    from tinygpt.cli import main as tinygpt

    status = tinygpt(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(MARK, json.dumps({"rank": int(os.environ.get("RANK", "0")), "peak_mb": round(peak), "rc": status}),
          flush=True)
    return status


def measure(parallel: str, procs: int, shape: list[str], folder: Path) -> dict:
    out = folder / parallel
    args = ["train", "--preset", "lecture", *shape, "--max-iters", "2", "--eval-interval", "2", "--eval-iters", "1",
            "--batch-size", str(2 * procs), "--threads", "1", "--no-progress", "--sample-tokens", "0",
            "--parallel", parallel, "--out", str(out)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
           str(Path(__file__).resolve()), "--worker", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    workers = sorted((json.loads(line.split(MARK, 1)[1]) for line in proc.stdout.splitlines() if MARK in line),
                     key=lambda w: w["rank"])
    if proc.returncode != 0 or len(workers) != procs or any(w["rc"] for w in workers):
        raise SystemExit(f"fsdp_memory: the {parallel} run failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {"parallel": parallel, "procs": procs, "peak_rss_mb": [w["peak_mb"] for w in workers],
            "wall_s": round(wall, 1), "train_loss": last["train_loss"], "val_loss": last["val_loss"],
            "command": "torchrun --standalone --nproc-per-node=" + f"{procs} -m tinygpt " + " ".join(args)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Per-process memory of the lecture model under DDP and FSDP.")
    parser.add_argument("--procs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--n-layer", type=int, default=12, help="the model's layers (default 12, GPT-2 small's)")
    parser.add_argument("--n-embd", type=int, default=768, help="its width (default 768); the lecture model: 6 x 384")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # run by torchrun
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tinygpt-fsdp-") as tmp:
        shape = ["--n-layer", str(args.n_layer), "--n-embd", str(args.n_embd), "--n-head", str(args.n_embd // 64)]
        rows = [measure(parallel, args.procs, shape, Path(tmp)) for parallel in ("ddp", "fsdp")]
    print(f"| {args.n_layer} x {args.n_embd}, {args.procs} processes | peak memory, rank 0 (writes) | the others | "
          "wall | val loss after 2 steps |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        others = ", ".join(f"{mb:,}" for mb in r["peak_rss_mb"][1:])
        print(f"| --parallel {r['parallel']} | {r['peak_rss_mb'][0]:,} MB | {others} MB | {r['wall_s']:.1f} s | "
              f"{r['val_loss']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - started)},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
