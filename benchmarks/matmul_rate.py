"""Measure this machine's float32 matrix-multiply rate with torch, in GFLOP/s.

What is measured
    For each shape (m, k, n) we time ``torch.mm(A, B, out=C)`` with A of shape (m, k) and B of
    shape (k, n), counting 2*m*k*n floating-point operations per call. Each repeat runs the
    multiply enough times to last at least ``--min-time`` seconds; the figure reported for a
    shape is the median over ``--repeats`` such repeats, after one untimed warm-up. ``peak`` is
    the best median over all shapes: a practical ceiling for what the CPU (with the number of
    torch threads shown) can do, against which a training or sampling throughput can be judged.

The default shapes are the ones that dominate the models we benchmark:
    * the nanoGPT CPU recipe (batch 12 x block 64 = 768 rows, width 128, MLP 512, vocab 65),
    * the lecture-sized model (batch 64 x block 256 = 16384 rows, width 384, MLP 1536),
    * single-sequence sampling of the lecture model (a 200-token context, width 384),
    * and two big squares (1024, 2048) that show the machine's best case.

How to run
    python benchmarks/matmul_rate.py                 # table + peak
    python benchmarks/matmul_rate.py --threads 1     # single-thread rate
    python benchmarks/matmul_rate.py --json out.json

From another benchmark script::

    from matmul_rate import measure          # with benchmarks/ on sys.path
    info = measure(repeats=3)
    info["peak_gflops"], info["threads"], info["results"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

# (name, m, k, n): C[m, n] = A[m, k] @ B[k, n]
DEFAULT_SHAPES: list[tuple[str, int, int, int]] = [
    ("cpu-recipe qkv    (12*64)x128x384", 12 * 64, 128, 384),
    ("cpu-recipe mlp-up (12*64)x128x512", 12 * 64, 128, 512),
    ("cpu-recipe mlp-dn (12*64)x512x128", 12 * 64, 512, 128),
    ("cpu-recipe head   (12*64)x128x65", 12 * 64, 128, 65),
    ("lecture mlp-up  (64*256)x384x1536", 64 * 256, 384, 1536),
    ("lecture sample qkv  200x384x1152", 200, 384, 1152),
    ("square 1024", 1024, 1024, 1024),
    ("square 2048", 2048, 2048, 2048),
]


def _time_shape(m: int, k: int, n: int, repeats: int, min_time: float, dtype: torch.dtype) -> dict:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen, dtype=dtype)
    b = torch.randn(k, n, generator=gen, dtype=dtype)
    c = torch.empty(m, n, dtype=dtype)
    flops = 2.0 * m * k * n

    # warm-up, and a calibration of how many calls fill min_time
    torch.mm(a, b, out=c)
    t0 = time.perf_counter()
    torch.mm(a, b, out=c)
    one = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(min_time / one))

    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b, out=c)
        per_call.append((time.perf_counter() - t0) / calls)
    med = statistics.median(per_call)
    return {
        "m": m,
        "k": k,
        "n": n,
        "calls_per_repeat": calls,
        "seconds_per_call": med,
        "gflops": flops / med / 1e9,
        "gflops_best": flops / min(per_call) / 1e9,
        "gflops_all_repeats": [flops / s / 1e9 for s in per_call],
    }


def measure(
    shapes: list[tuple[str, int, int, int]] | None = None,
    repeats: int = 5,
    min_time: float = 0.2,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Time float matrix multiplies and return a JSON-serialisable dict.

    Keys: ``threads`` (torch intra-op threads used), ``torch``, ``dtype``, ``cpu``, ``repeats``,
    ``min_time_s``, ``results`` (one dict per shape with name, m, k, n, gflops = median GFLOP/s,
    seconds_per_call, gflops_best = best repeat), and ``peak_gflops`` / ``peak_shape`` (the best
    median). If ``threads`` is given, torch's thread count is set for the measurement and
    restored afterwards.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    shapes = DEFAULT_SHAPES if shapes is None else shapes
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        results = []
        for name, m, k, n in shapes:
            r = _time_shape(m, k, n, repeats, min_time, dtype)
            results.append({"name": name, **r})
    finally:
        torch.set_num_threads(old_threads)
    best = max(results, key=lambda r: r["gflops"])
    return {
        "threads": used,
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "repeats": repeats,
        "min_time_s": min_time,
        "results": results,
        "peak_gflops": best["gflops"],
        "peak_shape": best["name"],
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(info: dict) -> str:
    lines = [
        f"float32 matmul rate  (torch {info['torch']}, {info['threads']} thread(s), "
        f"{info['logical_cpus']} logical CPUs, {info['cpu']})",
        f"median of {info['repeats']} repeats, each >= {info['min_time_s']:.2f} s",
        "",
        f"{'shape':<36} {'m':>6} {'k':>5} {'n':>5} {'ms/call':>9} {'GFLOP/s':>9} {'best':>7}",
    ]
    for r in info["results"]:
        lines.append(
            f"{r['name']:<36} {r['m']:>6} {r['k']:>5} {r['n']:>5} "
            f"{r['seconds_per_call'] * 1e3:>9.3f} {r['gflops']:>9.1f} {r['gflops_best']:>7.1f}"
        )
    lines.append("")
    lines.append(f"peak: {info['peak_gflops']:.1f} GFLOP/s  (best median, {info['peak_shape'].strip()})")
    return "\n".join(lines)


def _parse_shape(text: str) -> tuple[str, int, int, int]:
    try:
        m, k, n = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape must look like MxKxN, e.g. 768x128x512, got {text!r}"
        ) from None
    return (f"{m}x{k}x{n}", m, k, n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Measure float32 matrix-multiply GFLOP/s with torch (median of repeats).",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per shape (default 5)")
    p.add_argument("--min-time", type=float, default=0.2,
                   help="minimum seconds per repeat; small shapes are looped (default 0.2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--shape", type=_parse_shape, action="append", default=None, metavar="MxKxN",
                   help="measure this shape instead of the defaults (repeatable)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")

    info = measure(shapes=args.shape, repeats=args.repeats, min_time=args.min_time, threads=args.threads)
    print(format_table(info))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
