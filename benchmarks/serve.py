"""Issue 12's numbers: `tinygpt serve` under concurrent streaming clients, against `tinygpt sample`'s batch.

    python benchmarks/serve.py                          # trains a 1-step lecture run (10.8M) first
    python benchmarks/serve.py --run runs/lecture-1     # or serves this run
    python benchmarks/serve.py --quick                  # a smoke run of every figure (numbers meaningless)
    python benchmarks/serve.py --json benchmarks/results/serve.json

In one run, on the same model (the `lecture` preset: 6 layers, 6 heads, 384 wide, block 256; the
weights do not change the speed, so one training step is enough):

1. The server (`tinygpt serve RUN --port 0 --quiet`, its own process) with 1, 8 and 32 clients, each
   sending streaming /v1/completions requests of 200 tokens back to back: total tokens/s, and p50/p99
   of the time to first token and of the gap between a request's tokens.
2. `tinygpt sample`'s batch: `run.generate(prompt, num_samples=32, max_new_tokens=200)` in this
   process (what `tinygpt sample --num-samples 32` runs), tokens/s summed over the batch, taking
   turns with the 32 clients --repeats times (the server idles meanwhile): the ratio is of medians,
   and each turn's ratio is reported too.
3. The soak: 64 streaming clients for --soak seconds; every response must be complete (200 tokens,
   finish_reason "length", ends with [DONE]); the server's resident memory every 5 s, and how much
   it grew after the first 30 s (the batch filling up and every shape's first allocation).

The clients are plain asyncio sockets reading the event stream line by line (no HTTP library), so
they take as little of the two cores from the server as possible. Load averages are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "ROMEO:"
TOKENS = 200


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def make_run(out: Path) -> Path:
    cmd = [sys.executable, "-m", "tinygpt", "train", "--preset", "lecture", "--max-iters", "1", "--eval-iters", "1",
           "--sample-tokens", "0", "--device", "cpu", "--no-progress", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def sample_batch(run_dir: Path, batch: int, tokens: int) -> float:
    """tokens/s of `tinygpt sample --num-samples batch`: one generate call, timed (after a warm-up)."""
    import tinygpt

    run = tinygpt.load(run_dir, device="cpu")
    run.generate(PROMPT, max_new_tokens=8, num_samples=batch, seed=0)
    start = time.perf_counter()
    run.generate(PROMPT, max_new_tokens=tokens, num_samples=batch, seed=1, temperature=1.0)
    return batch * tokens / (time.perf_counter() - start)


async def stream_one(port: int, model: str, tokens: int, seed: int) -> dict:
    """One streaming request over a raw socket: when each piece came, and whether the answer is whole."""
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 1.0, "seed": seed,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter()
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    times, usage, reason, done, status = [], None, None, False, None
    while line := await reader.readline():
        if status is None:
            status = int(line.split()[1])
        if not line.startswith(b"data: "):
            continue
        if line.startswith(b"data: [DONE]"):
            done = True
            continue
        event = json.loads(line[6:])
        if event.get("usage"):
            usage = event["usage"]
        for choice in event["choices"]:
            times.append(time.perf_counter())
            reason = choice["finish_reason"] or reason
    writer.close()
    ok = status == 200 and done and reason == "length" and usage and usage["completion_tokens"] == tokens
    return {"start": start, "times": times, "ok": bool(ok), "tokens": usage["completion_tokens"] if usage else 0}


async def clients(port: int, model: str, n: int, tokens: int, seconds: float | None = None,
                  requests_each: int = 1) -> dict:
    """n clients sending requests back to back: for `requests_each` requests, or until `seconds` pass."""
    results = []
    end = time.perf_counter() + seconds if seconds else None

    async def client(i: int):
        k = 0
        while (end is None and k < requests_each) or (end is not None and time.perf_counter() < end):
            results.append(await stream_one(port, model, tokens, seed=1000 * i + k))
            k += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(n)))
    wall = time.perf_counter() - start
    ttft = [r["times"][0] - r["start"] for r in results if r["times"]]
    gaps = [b - a for r in results for a, b in zip(r["times"], r["times"][1:])]
    ms = lambda x: round(1000 * x, 1)
    return {"clients": n, "requests": len(results), "complete": sum(r["ok"] for r in results),
            "tokens": sum(r["tokens"] for r in results), "seconds": round(wall, 2),
            "tokens_per_s": round(sum(r["tokens"] for r in results) / wall, 1),
            "ttft_ms_p50": ms(statistics.median(ttft)), "ttft_ms_p99": ms(percentile(ttft, 0.99)),
            "token_ms_p50": ms(statistics.median(gaps)), "token_ms_p99": ms(percentile(gaps, 0.99))}


def start_server(run_dir: Path, threads: int | None) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "tinygpt", "serve", str(run_dir), "--port", "0", "--quiet", "--device", "cpu"]
    cmd += ["--threads", str(threads)] if threads else []
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()  # "serving NAME at http://127.0.0.1:PORT/v1 ..."
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    server.stdout.readline()
    return server, port


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a lecture-shaped run to serve (default: train one)")
    ap.add_argument("--soak", type=float, default=120.0, help="seconds of the 64-client soak (default: 120)")
    ap.add_argument("--repeats", type=int, default=3, help="turns of 32 clients and sample's batch (default: 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads, here and in the server "
                    "(default: PyTorch's)")
    ap.add_argument("--quick", action="store_true", help="few tokens, short soak: checks the script runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = ap.parse_args()
    tokens = 20 if args.quick else TOKENS
    soak = 5.0 if args.quick else args.soak
    tmp = tempfile.TemporaryDirectory()
    run_dir = args.run or make_run(Path(tmp.name) / "lecture")
    model = run_dir.resolve().name
    out = {"command": "python " + " ".join(sys.argv), "tokens_per_request": tokens, "load_start": load()}
    print(f"load {out['load_start']}", flush=True)

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    server, port = start_server(run_dir, args.threads)
    try:
        asyncio.run(clients(port, model, 2, 8))  # warm-up
        out["concurrency"] = []
        for n, each in ((1, 3), (8, 2)):
            result = asyncio.run(clients(port, model, n, tokens, requests_each=each))
            out["concurrency"].append(result)
            print(json.dumps(result), flush=True)
        # The machine is shared: 32 clients and `tinygpt sample`'s batch of 32 take turns, --repeats times.
        sampled, served = [], []
        for _ in range(args.repeats):
            sampled.append(round(sample_batch(run_dir, 32, tokens), 1))
            served.append(asyncio.run(clients(port, model, 32, tokens, requests_each=1)))
            print(f"tinygpt sample, batch 32: {sampled[-1]} tokens/s; 32 clients: {json.dumps(served[-1])}", flush=True)
        middle = sorted(range(args.repeats), key=lambda i: served[i]["tokens_per_s"])[args.repeats // 2]
        out["concurrency"].append(served[middle])  # the median run of 32 clients
        out["serve32_tokens_per_s_each_repeat"] = [r["tokens_per_s"] for r in served]
        out["sample_batch32_tokens_per_s_each_repeat"] = sampled
        out["sample_batch32_tokens_per_s"] = statistics.median(sampled)
        out["serve32_vs_sample32_each_repeat"] = [round(r["tokens_per_s"] / t, 3) for r, t in zip(served, sampled)]
        one, many = out["concurrency"][0]["tokens_per_s"], out["concurrency"][-1]["tokens_per_s"]
        out["speedup_32_vs_1"] = round(many / one, 2)
        out["serve32_vs_sample32"] = round(many / out["sample_batch32_tokens_per_s"], 3)
        print(f"32 clients / 1 client: {out['speedup_32_vs_1']}x; 32 clients / sample batch 32 (medians): "
              f"{out['serve32_vs_sample32']}; side by side: {out['serve32_vs_sample32_each_repeat']}", flush=True)

        out["soak_rss_mb_start"] = round(rss_mb(server.pid), 1)
        samples = []

        async def soak_with_memory():
            async def watch():
                while True:
                    samples.append(round(rss_mb(server.pid), 1))
                    await asyncio.sleep(5)

            watcher = asyncio.ensure_future(watch())
            result = await clients(port, model, 64, tokens, seconds=soak)
            watcher.cancel()
            return result

        out["soak"] = asyncio.run(soak_with_memory())
        out["soak_rss_mb_end"] = round(rss_mb(server.pid), 1)
        out["soak_rss_mb_every_5s"] = samples  # the first is taken as the soak starts, the batch still growing
        # Flat: once the batch is full and every shape has been seen (the first 30 s), nothing more.
        out["soak_rss_mb_growth_after_30s"] = round(samples[-1] - samples[min(6, len(samples) - 1)], 1)
        print(json.dumps(out["soak"]), flush=True)
        print(f"server RSS before the soak {out['soak_rss_mb_start']} MB, at its end {out['soak_rss_mb_end']} MB, "
              f"{out['soak_rss_mb_growth_after_30s']:+} MB after its first 30 s; every 5 s: {samples}", flush=True)
    finally:
        server.terminate()
        server.wait()
    out["load_end"] = load()
    print(f"load {out['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TINYGPT_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    main()
