"""Why `tinygpt serve` sets glibc's malloc (serve/server.py `steady_malloc`): a server's memory under
glibc's defaults, one arena, and one arena with a fixed mmap threshold.

    python benchmarks/serve_memory.py --run /tmp/serve_lecture --seconds 90 --threads 2
    python benchmarks/serve_memory.py --run /tmp/serve_lecture --trace      # and Python's own heap

For each setting, one child process with that MALLOC_* environment serves the run in-process (the
engine, the app and uvicorn as `tinygpt serve` builds them, but without `steady_malloc`, so the
environment decides), while 64 streaming clients (benchmarks/serve.py's) in a grandchild run for
--seconds. The child prints its RSS every 15 s (and, with --trace, what tracemalloc counts of
Python's heap). Results: benchmarks/results/serve_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = {"glibc's defaults": {},
            "one arena": {"MALLOC_ARENA_MAX": "1"},
            "one arena, mmap threshold 128 KiB": {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}}


def serve_and_watch(run_dir: str, seconds: float, threads: int, trace: bool) -> dict:
    """In the child: serve `run_dir`, let 64 clients stream for `seconds`, read the memory every 15 s."""
    import gc
    import tracemalloc

    import torch

    sys.path.insert(0, str(HERE))
    import serve as bench

    from tinygpt.serve.app import create_app
    from tinygpt.serve.engine import Engine
    from tinygpt.serve.server import Server, load_runs

    torch.set_num_threads(threads)
    runs = load_runs([run_dir], device="cpu")
    engine = Engine(runs).start()
    server = Server(create_app(engine, quiet=True), port=0).start()
    if trace:
        tracemalloc.start()
    model = next(iter(runs))
    clients = subprocess.Popen([sys.executable, "-c", f"import asyncio, json, sys; sys.path.insert(0, {str(HERE)!r}); "
                                f"import serve; print(json.dumps(asyncio.run(serve.clients({server.port}, {model!r}, "
                                f"64, 200, seconds={seconds}))))"], stdout=subprocess.PIPE, text=True)
    readings, start = [], time.perf_counter()
    while clients.poll() is None:
        time.sleep(15)
        gc.collect()
        reading = {"s": round(time.perf_counter() - start), "rss_mb": round(bench.rss_mb(os.getpid()), 1)}
        if trace:
            reading["python_heap_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
        readings.append(reading)
    soak = json.loads(clients.stdout.read())
    server.stop()
    engine.stop()
    return {"soak": soak, "readings": readings}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a lecture-shaped run (see benchmarks/serve.py)")
    ap.add_argument("--seconds", type=float, default=90.0, help="seconds of 64 clients per setting (default: 90)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the server (default: 2)")
    ap.add_argument("--trace", action="store_true", help="also count Python's heap (tracemalloc; slower)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "serve_memory.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(serve_and_watch(str(args.run), args.seconds, args.threads, args.trace)))
        return
    out = {"command": "python " + " ".join(sys.argv), "machine": f"{os.cpu_count()} CPU cores",
           "load_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]), "settings": {}}
    for name, env in SETTINGS.items():
        child = [sys.executable, __file__, "--child", "--run", str(args.run), "--seconds", str(args.seconds),
                 "--threads", str(args.threads)] + (["--trace"] if args.trace else [])
        done = subprocess.run(child, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.splitlines()[-1])
        rss = [r["rss_mb"] for r in result["readings"]]
        result.update(environment=env, growth_after_15s_mb=round(rss[-1] - rss[0], 1))
        out["settings"][name] = result
        print(f"{name}: RSS every 15 s {rss} MB ({result['growth_after_15s_mb']:+} after the first reading); "
              f"{result['soak']['complete']} of {result['soak']['requests']} complete, "
              f"{result['soak']['tokens_per_s']} tokens/s", flush=True)
    out["load_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
