"""Issue 30's GPU profile: training MFU with and without torch.compile, sampling, serving, FSDP on one GPU.

    python benchmarks/gpu_profile.py                                   # every part, on the GPU (planned: < 8 min)
    python benchmarks/gpu_profile.py --nanogpt-dir /tmp/nanoGPT        # and nanoGPT's sampler (or $NANOGPT_DIR)
    python benchmarks/gpu_profile.py --parts train,serve --json /tmp/gpu_profile.json
    python benchmarks/gpu_profile.py --smoke --device cpu --json /tmp/gpu_profile_smoke.json  # ~1 min, a CPU

Prepared to run unattended on a machine with one NVIDIA GPU (H100/H200) in under ~8 minutes;
`benchmarks/gpu_check.sh profile RESULTS` runs it. On the lecture model (`--preset lecture`: 6 layers,
6 heads, n_embd 384, block 256, char-level tiny Shakespeare, 10.8M parameters, batch 64):

1. train   tinygpt.train(preset="lecture") in this process, eager and then with `compile` on (bf16
           autocast where the GPU has it): after --warmup steps (the compile happens in them), the
           tokens/s of the next --steps steps, and the model FLOP utilisation against the GPU's bf16
           dense peak (a small table keyed on torch.cuda.get_device_name; --peak-tflops overrides;
           null on a CPU). Evaluations are kept out of the timed window.
2. sample  tinygpt.load(run).generate([...]) with the KV cache at batch 1 and 64: 200 new tokens
           from a one-token prompt, temperature 0.8, top-k 200 (nanoGPT's sampling settings), median
           of --repeats. With a nanoGPT checkout, benchmarks/nanogpt_side.py --what sample runs its
           GPT.generate (no KV cache) as a subprocess; that script samples on the CPU, so tinygpt is
           then timed on the CPU too, for a like-for-like ratio. Without one it is skipped, said so.
3. serve   `tinygpt serve RUN --device DEV` (its own process) with 1 and with 64 streaming clients
           (POST /v1/completions, "stream": true; the asyncio clients of benchmarks/serve.py, which
           itself serves on the CPU only): aggregate tokens/s, time to first token, gap per token.
4. fsdp    `python -m torch.distributed.run --standalone --nproc_per_node 1 -m tinygpt train --preset
           lecture --parallel fsdp ...`: it must exit 0; its wall time, and whether the log says the
           model was sharded (a world of one process is a plain run in tinygpt; see --fsdp-nproc).

One JSON file holds everything (torch version, device name, the commands and settings, each part's
numbers or its error); it is rewritten after each part, so a part that hangs leaves the others'.
Runs go under --work-dir (default: a temporary folder, removed at the end), never into the repository.

Results: not yet measured on a GPU (no session has been lent one); smoke-run on a CPU with --smoke
only (numbers meaningless). They are filled into benchmarks/README.md after a GPU run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PARTS = ("train", "sample", "serve", "fsdp")

# bf16 dense (no sparsity) tensor-core peaks, TFLOP/s, from NVIDIA's data sheets: the first entry whose
# key is in torch.cuda.get_device_name() (case-insensitive) wins, so the specific names come first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),
    ("H100", 989.0),  # SXM: "NVIDIA H100 80GB HBM3"
    ("H200", 989.0),
    ("A100", 312.0),
)

PROMPT = ""  # the tokenizer's start token: a one-token prompt, as nanoGPT's sampler
TEMPERATURE, TOP_K = 0.8, 200

FULL = dict(warmup=30, steps=500, sample_tokens=200, sample_batches=[1, 64], repeats=3, nanogpt_repeats=1,
            serve_tokens=200, serve_clients=[1, 64], serve_requests={1: 3, 64: 2}, fsdp_steps=50, overrides={})
# A model of 1 layer, 32 wide, context 32 and a few steps and tokens: every code path, in about a minute.
SMOKE = dict(warmup=2, steps=5, sample_tokens=8, sample_batches=[1, 64], repeats=1, nanogpt_repeats=1,
             serve_tokens=8, serve_clients=[1, 64], serve_requests={1: 2, 64: 1}, fsdp_steps=2,
             overrides=dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8))


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def flops_per_token(n_params: int, n_layer: int, n_embd: int, block_size: int) -> int:
    """Training FLOPs per token, the estimate nanoGPT uses (from the PaLM paper's appendix).

    Each parameter costs 6 FLOPs per token: a multiply and an add in the forward pass, twice that in
    the backward pass (gradients for the inputs and for the weights). Attention adds what the
    weights do not count: per layer, the scores q.k and the weighted sum of the values each take
    2 * n_embd * block_size FLOPs per token forward, and again 3 times that with the backward pass,
    12 * n_layer * n_embd * block_size in all (taking every position to attend to a full block).
    n_params: every parameter tinygpt counts, embeddings included (nanoGPT leaves out the position
    table, 98,304 of the lecture model's 10.8M, under 1%).
    """
    return 6 * n_params + 12 * n_layer * n_embd * block_size


# --------------------------------------------------------------------------------------------- helpers


def sync(device: str):
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def inside_repo(path: Path) -> bool:
    return path.resolve() == REPO or REPO in path.resolve().parents


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_dir_name(path: Path) -> str:
    return path.resolve().name


def run_group(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """subprocess.run in a session of its own: past the timeout its children go too (torchrun's workers,
    nanogpt_side.py's sampler), so nothing left behind runs on into the next part."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    import torch

    import tinygpt

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "tinygpt": tinygpt.__version__, "device": device, "device_name": cpu_name(), "cpu": cpu_name(),
           "logical_cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "load_avg_at_start": list(os.getloadavg())}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        env.update(device_name=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   bf16=torch.cuda.is_bf16_supported())
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                           timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


# ----------------------------------------------------------------------------------------------- train


def train_settings(args, cfg: dict, compile_: bool, out: Path) -> dict:
    steps = cfg["warmup"] + cfg["steps"]
    return dict(cfg["overrides"], device=args.device, compile=compile_, max_iters=steps,
                eval_interval=steps + 1,  # no evaluation inside the loop: only step 0's and the final one
                eval_iters=2, sample_tokens=0, progress=False, out=str(out))


def train_one(args, cfg: dict, compile_: bool, work: Path) -> dict:
    """One tinygpt.train run; the timed window is steps warmup..warmup+steps, both ends synchronised."""
    import torch

    import tinygpt

    out = work / ("train-compile" if compile_ else "train-eager")
    settings = train_settings(args, cfg, compile_, out)
    marks: dict[int, tuple[float, int]] = {}
    step_ends: list[float] = []
    lines: list[str] = []

    def on_step(trainer):
        if trainer.step in (cfg["warmup"], cfg["warmup"] + cfg["steps"]):
            sync(args.device)  # the window's ends wait for the GPU; the steps between run as training does
            marks[trainer.step] = (time.perf_counter(), trainer.progress.tokens)
            if trainer.step == cfg["warmup"]:
                marks["model"] = (trainer.model.num_params(), trainer.model_cfg.n_layer, trainer.model_cfg.n_embd,
                                  trainer.model_cfg.block_size, trainer.objective.tokens_per_batch,
                                  trainer.cfg.grad_accum, trainer.runtime.threads)
        step_ends.append(time.perf_counter())

    def log(line: str):
        lines.append(line)
        print(f"  | {line}", flush=True)

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = tinygpt.train(preset="lecture", log=log, on_step=on_step, **settings)
    wall = time.perf_counter() - started
    if compile_:
        torch._dynamo.reset()  # the next run (or part) starts without this one's compiled graphs
    (t0, tok0), (t1, tok1) = marks[cfg["warmup"]], marks[cfg["warmup"] + cfg["steps"]]
    n_params, n_layer, n_embd, block, tokens_per_batch, grad_accum, threads = marks["model"]
    tokens_per_s = (tok1 - tok0) / (t1 - t0)
    fpt = flops_per_token(n_params, n_layer, n_embd, block)
    peak = args.peak_tflops if args.peak_tflops else peak_tflops(args.device_name) if args.is_cuda else None
    # Host-side gaps between steps (not synchronised: the GPU may still be working through the queue).
    gaps = [b - a for a, b in zip(step_ends[cfg["warmup"] - 1 : -1], step_ends[cfg["warmup"] :])]
    row = {"compile": compile_, "settings": {"preset": "lecture", **settings}, "n_params": n_params,
           "tokens_per_step": tokens_per_batch * grad_accum, "warmup_steps": cfg["warmup"],
           "timed_steps": cfg["steps"], "timed_s": round(t1 - t0, 4), "tokens_per_s": round(tokens_per_s, 1),
           "ms_per_step": round(1000 * (t1 - t0) / cfg["steps"], 3),
           "host_ms_per_step_median": round(1000 * statistics.median(gaps), 3) if gaps else None,
           "warmup_s": round(t0 - started, 2), "wall_s": round(wall, 2), "flops_per_token": fpt,
           "model_tflops": round(tokens_per_s * fpt / 1e12, 3), "peak_tflops": peak,
           "mfu": round(tokens_per_s * fpt / (peak * 1e12), 4) if peak else None,
           "final_train_loss": round(result.train_loss, 4), "threads": threads, "describe": lines[0] if lines else None}
    if args.device.startswith("cuda"):
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    row["run_dir"] = str(out)
    return row


def part_train(args, cfg: dict, work: Path, report: dict) -> dict:
    rows = []
    report["train"] = {"runs": rows}  # what is done stays in the report if a later run fails
    for compile_ in (False, True):
        print(f"train: lecture, compile {'on' if compile_ else 'off'}, {cfg['warmup']} warm-up + {cfg['steps']} "
              f"timed steps on {args.device} ...", flush=True)
        rows.append(train_one(args, cfg, compile_, work))
        r = rows[-1]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"  {r['tokens_per_s']:,.0f} tokens/s, {r['ms_per_step']:.2f} ms/step, MFU {mfu} "
              f"(warm-up took {r['warmup_s']} s)", flush=True)
        if not compile_:  # the eager run is the one the sample and serve parts load
            report.setdefault("_runs", {})["train"] = r["run_dir"]
    if args.is_cuda:
        import torch

        torch.cuda.empty_cache()  # what the two runs cached goes back before the server takes its share
    out = {"flops_formula": "6 * n_params + 12 * n_layer * n_embd * block_size per token (nanoGPT / PaLM)",
           "runs": rows}
    if rows[0]["tokens_per_s"]:
        out["compile_speedup"] = round(rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"], 3)
    return out


def lecture_run(args, cfg: dict, work: Path, report: dict) -> Path:
    """A lecture-shaped run to sample and serve: the train part's eager run, else one step of a new one."""
    made = report.get("_runs", {}).get("train")
    if made:
        return Path(made)
    import tinygpt

    out = work / "lecture-1step"
    if not (out / "config.json").exists():
        print("making a lecture-shaped run (1 step; speed does not depend on the weights) ...", flush=True)
        tinygpt.train(preset="lecture", log=lambda line: None,
                      **dict(cfg["overrides"], device=args.device, max_iters=1, eval_iters=1, sample_tokens=0,
                             progress=False, out=str(out)))
    return out


# ---------------------------------------------------------------------------------------------- sample


def time_sampling(run_dir: Path, device: str, batch: int, tokens: int, repeats: int) -> dict:
    import tinygpt

    run = tinygpt.load(run_dir, device=device)
    prompts, seeds = [PROMPT] * batch, list(range(batch))
    run.generate(prompts, max_new_tokens=min(8, tokens), temperature=TEMPERATURE, top_k=TOP_K, seed=seeds)  # warm-up
    seconds = []
    for r in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        outs = run.generate(prompts, max_new_tokens=tokens, temperature=TEMPERATURE, top_k=TOP_K,
                            seed=[1000 * (r + 1) + s for s in seeds])
        sync(device)
        seconds.append(time.perf_counter() - t0)
    med = statistics.median(seconds)
    return {"batch": batch, "new_tokens": tokens, "device": device, "kv_cache": True,
            "seconds": [round(s, 4) for s in seconds],
            "tokens_per_s": round(batch * tokens / med, 1), "ms_per_step": round(1000 * med / tokens, 3),
            # a char-level run writes one character per token: a short row would show here
            "chars_out": sum(len(o) for o in outs), "tokenizer": run.tokenizer.kind}


def part_sample(args, cfg: dict, work: Path, report: dict) -> dict:
    import torch

    run_dir = lecture_run(args, cfg, work, report)
    out = {"run": str(run_dir), "prompt": "one token (the tokenizer's start)", "temperature": TEMPERATURE,
           "top_k": TOP_K, "tinygpt": []}
    report["sample"] = out  # what is done stays in the report if a later step fails
    for batch in cfg["sample_batches"]:
        print(f"sample: tinygpt, batch {batch}, {cfg['sample_tokens']} tokens, KV cache, on {args.device} ...",
              flush=True)
        out["tinygpt"].append(time_sampling(run_dir, args.device, batch, cfg["sample_tokens"], cfg["repeats"]))
        print(f"  {out['tinygpt'][-1]['tokens_per_s']:,.1f} tokens/s", flush=True)

    nanogpt_dir = args.nanogpt_dir or os.environ.get("NANOGPT_DIR")
    if not nanogpt_dir:
        out["nanogpt"] = {"skipped": "no nanoGPT checkout: pass --nanogpt-dir DIR or set NANOGPT_DIR"}
        print(f"sample: nanoGPT skipped ({out['nanogpt']['skipped']})", flush=True)
        return out
    batches = ",".join(str(b) for b in cfg["sample_batches"])
    cmd = [sys.executable, str(HERE / "nanogpt_side.py"), "--nanogpt-dir", nanogpt_dir, "--what", "sample",
           "--sample-batches", batches, "--repeats", str(cfg["nanogpt_repeats"]),
           "--sample-tokens", str(cfg["sample_tokens"]), "--work-dir", str(work / "nanogpt"),
           "--json", str(work / "nanogpt_sample.json"), "--quiet"]
    print(f"sample: nanoGPT's GPT.generate on the CPU (nanogpt_side.py samples there), batches {batches} ...",
          flush=True)
    started = time.perf_counter()
    proc = run_group(cmd, args.nanogpt_timeout)
    ng = {"command": " ".join(cmd), "rc": proc.returncode, "wall_s": round(time.perf_counter() - started, 1),
          "device": "cpu"}
    if proc.returncode != 0:
        ng["error"] = tail(proc.stdout + proc.stderr)
        out["nanogpt"] = ng
        raise RuntimeError(f"nanogpt_side.py failed (status {proc.returncode}):\n{ng['error']}")
    side = json.loads((work / "nanogpt_sample.json").read_text())
    ng["runs"] = side["sample"]["runs"]
    ng["model"] = side["sample"]["model"]  # the lecture's shape without biases: nanoGPT's default
    ng["torch_threads"] = side["environment"]["torch_threads"]
    out["nanogpt"] = ng
    # Like for like: tinygpt's sampler on the CPU too, in this process, with the same shapes.
    mine = out["tinygpt"] if args.device == "cpu" else []
    if args.device != "cpu":
        out["tinygpt_cpu"] = mine
        for batch in cfg["sample_batches"]:
            mine.append(time_sampling(run_dir, "cpu", batch, cfg["sample_tokens"], cfg["nanogpt_repeats"]))
    out["tinygpt_cpu_threads"] = torch.get_num_threads()
    out["cpu_vs_nanogpt"] = {}
    for t, n in zip(mine, ng["runs"]):
        ratio = round(t["tokens_per_s"] / n["tokens_per_s"], 2)
        out["cpu_vs_nanogpt"][f"batch_{t['batch']}"] = ratio
        print(f"  batch {t['batch']}: nanoGPT {n['tokens_per_s']:,.1f} tokens/s, tinygpt on the CPU "
              f"{t['tokens_per_s']:,.1f} ({ratio}x)", flush=True)
    return out


# ----------------------------------------------------------------------------------------------- serve


def start_server(run_dir: Path, device: str, log_path: Path) -> tuple[subprocess.Popen, int, list[str]]:
    cmd = [sys.executable, "-m", "tinygpt", "serve", str(run_dir), "--port", "0", "--quiet", "--device", device]
    log = open(log_path, "w")
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    line = server.stdout.readline()  # "serving NAME at http://127.0.0.1:PORT/v1 (playground: ...); Ctrl-C stops"
    if "http://127.0.0.1:" not in line:
        server.kill()
        server.wait()
        raise RuntimeError(f"tinygpt serve did not start: {line!r}\n{tail(log_path.read_text())}")
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    server.stdout.readline()  # "try: curl ..."
    return server, port, cmd


def part_serve(args, cfg: dict, work: Path, report: dict) -> dict:
    sys.path.insert(0, str(HERE))
    import serve as serve_bench  # benchmarks/serve.py: its streaming clients (it serves on the CPU only)

    run_dir = lecture_run(args, cfg, work, report)
    model = run_dir_name(run_dir)
    server, port, cmd = start_server(run_dir, args.device, work / "serve.log")
    out = {"command": " ".join(cmd), "tokens_per_request": cfg["serve_tokens"], "prompt": serve_bench.PROMPT,
           "temperature": 1.0, "clients": []}
    report["serve"] = out  # what is done stays in the report if a later step fails
    try:
        for n in (2, max(cfg["serve_clients"])):  # warm-up: the first requests and the largest batch's shapes
            asyncio.run(serve_bench.clients(port, model, n, min(8, cfg["serve_tokens"])))
        for n in cfg["serve_clients"]:
            each = cfg["serve_requests"].get(n, 1)
            print(f"serve: {n} streaming client(s), {each} request(s) each of {cfg['serve_tokens']} tokens ...",
                  flush=True)
            cpu0 = time.process_time()
            result = asyncio.run(serve_bench.clients(port, model, n, cfg["serve_tokens"], requests_each=each))
            # The clients' own CPU time: near the wall time, they (not the server) set the pace.
            result["client_cpu_s"] = round(time.process_time() - cpu0, 2)
            out["clients"].append(result)
            print(f"  {result['tokens_per_s']:,.1f} tokens/s in all, {result['complete']}/{result['requests']} "
                  f"complete, first token p50 {result['ttft_ms_p50']} ms, per token p50 {result['token_ms_p50']} "
                  f"ms (clients' CPU {result['client_cpu_s']} s of {result['seconds']} s)", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    incomplete = [r for r in out["clients"] if r["complete"] != r["requests"]]
    if incomplete:
        out["error"] = f"incomplete responses: {incomplete}"
        raise RuntimeError(out["error"])
    one = next((r for r in out["clients"] if r["clients"] == 1), None)
    many = next((r for r in out["clients"] if r["clients"] == max(cfg["serve_clients"])), None)
    if one and many and many is not one:
        out[f"speedup_{many['clients']}_vs_1"] = round(many["tokens_per_s"] / one["tokens_per_s"], 2)
    return out


# ------------------------------------------------------------------------------------------------ fsdp


def part_fsdp(args, cfg: dict, work: Path, report: dict) -> dict:
    out_dir = work / "fsdp"
    steps = cfg["fsdp_steps"]
    overrides = []
    for key, value in cfg["overrides"].items():
        overrides += [f"--{key.replace('_', '-')}", str(value)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.fsdp_nproc}",
           "-m", "tinygpt", "train", "--preset", "lecture", "--parallel", "fsdp", "--device", args.device,
           "--max-iters", str(steps), "--eval-interval", str(steps), "--eval-iters", "2", "--sample-tokens", "0",
           "--no-progress", *overrides, "--out", str(out_dir)]
    print(f"fsdp: {' '.join(cmd[1:])} ...", flush=True)
    started = time.perf_counter()
    proc = run_group(cmd, args.fsdp_timeout)
    wall = time.perf_counter() - started
    describe = next((line for line in proc.stdout.splitlines() if line.startswith("tinygpt ")), "")
    out = {"command": " ".join(cmd), "rc": proc.returncode, "wall_s": round(wall, 2), "nproc": args.fsdp_nproc,
           "describe": describe, "finished": f"done: step {steps}" in proc.stdout,
           # tinygpt says "on DEVICE xN processes" when it joined a process group; a world of one process
           # (WORLD_SIZE=1) is a plain run, in which --parallel fsdp shards nothing.
           "sharded": " processes," in describe, "stdout_tail": tail(proc.stdout, 6),
           "stderr_tail": tail(proc.stderr, 6)}
    metrics = out_dir / "metrics.jsonl"
    if metrics.exists():
        out["last_record"] = json.loads(metrics.read_text().splitlines()[-1])
    print(f"  exit {proc.returncode} after {wall:.1f} s; finished: {out['finished']}; sharded: {out['sharded']}",
          flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited {proc.returncode}:\n{tail(proc.stderr)}")
    return out


# ------------------------------------------------------------------------------------------------ main


def table(report: dict) -> str:
    env = report["environment"]
    lines = ["", f"gpu_profile: {env['device_name']} ({env['device']}), torch {env['torch']}, "
                 f"tinygpt {env['tinygpt']}" + (" -- SMOKE settings, numbers meaningless" if report["smoke"] else "")]
    rows = []
    tr = report.get("train", {})
    for r in tr.get("runs", []):
        mfu = f"MFU {100 * r['mfu']:.1f}%" if r["mfu"] is not None else "MFU n/a"
        rows.append(("train", f"compile {'on' if r['compile'] else 'off'}",
                     f"{r['tokens_per_s']:,.0f} tokens/s, {r['ms_per_step']:.2f} ms/step, {mfu}"))
    sa = report.get("sample", {})
    for r in sa.get("tinygpt", []):
        rows.append(("sample", f"tinygpt batch {r['batch']} ({r['device']})", f"{r['tokens_per_s']:,.1f} tokens/s"))
    for r in sa.get("tinygpt_cpu", []):
        rows.append(("sample", f"tinygpt batch {r['batch']} (cpu)", f"{r['tokens_per_s']:,.1f} tokens/s"))
    ng = sa.get("nanogpt", {})
    for r in ng.get("runs", []):
        rows.append(("sample", f"nanoGPT batch {r['batch']} (cpu)", f"{r['tokens_per_s']:,.1f} tokens/s"))
    if "skipped" in ng:
        rows.append(("sample", "nanoGPT", "skipped: no checkout"))
    for r in report.get("serve", {}).get("clients", []):
        rows.append(("serve", f"{r['clients']} streaming client(s)",
                     f"{r['tokens_per_s']:,.1f} tokens/s, ttft p50 {r['ttft_ms_p50']} ms, "
                     f"{r['complete']}/{r['requests']} complete"))
    fs = report.get("fsdp")
    if fs:
        rows.append(("fsdp", f"torchrun x{fs['nproc']}", f"exit {fs['rc']}, {fs['wall_s']} s, sharded {fs['sharded']}"))
    for part in report.get("failed", []):
        rows.append((part, "FAILED", report[part]["error"].splitlines()[0][:100]))
    w1, w2 = max([len(a) for a, _, _ in rows] + [4]), max([len(b) for _, b, _ in rows] + [4])
    lines += [f"  {a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows]
    lines.append(f"  wall time {report['wall_s']} s; part seconds {report['part_seconds']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {','.join(PARTS)} (default: all)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available, else cpu)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, few steps and tokens: checks that every part "
                    "runs (about a minute on a CPU with --device cpu); numbers meaningless")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (default: "
                    "benchmarks/results/gpu_profile.json; with --smoke, gpu_profile.json in the work dir)")
    ap.add_argument("--work-dir", type=Path, default=None, help="scratch folder for the runs (default: a temporary "
                    "folder, removed at the end); never inside the repository")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 dense peak in TFLOP/s for MFU "
                    "(default: from a table of GPU names: H100 SXM/H200 989, H100 PCIe 756, H100/H200 NVL 835, "
                    "A100 312; on a CPU, MFU is null unless this is given)")
    ap.add_argument("--warmup", type=int, default=None, help=f"train: untimed steps first (default {FULL['warmup']})")
    ap.add_argument("--steps", type=int, default=None, help=f"train: timed steps (default {FULL['steps']})")
    ap.add_argument("--sample-tokens", type=int, default=None,
                    help=f"sample: new tokens per generation (default {FULL['sample_tokens']})")
    ap.add_argument("--repeats", type=int, default=None, help=f"sample: timed generations (default {FULL['repeats']})")
    ap.add_argument("--nanogpt-dir", default=None, help="a nanoGPT checkout outside the repository, for its "
                    "sampler (default: $NANOGPT_DIR; neither: skipped)")
    ap.add_argument("--nanogpt-timeout", type=int, default=300, help="seconds nanoGPT's sampling may take (300)")
    ap.add_argument("--fsdp-nproc", type=int, default=1, help="fsdp: processes (default 1, one GPU; each process "
                    "needs a GPU of its own)")
    ap.add_argument("--fsdp-timeout", type=int, default=300, help="seconds the fsdp run may take (300)")
    args = ap.parse_args(argv)

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        ap.error(f"--parts: choose from {','.join(PARTS)}, got {args.parts!r}")
    cfg = dict(SMOKE if args.smoke else FULL)
    for key in ("warmup", "steps", "sample_tokens", "repeats"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if cfg["warmup"] < 1 or cfg["steps"] < 1:
        ap.error("--warmup and --steps must be at least 1")

    data_dir = REPO.parent / "shared" / "data"
    if "TINYGPT_DATA_DIR" not in os.environ and (data_dir / "tinyshakespeare.txt").is_file():
        os.environ["TINYGPT_DATA_DIR"] = str(data_dir)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.is_cuda = args.device.startswith("cuda")
    if args.is_cuda and not torch.cuda.is_available():
        ap.error("--device cuda, but torch sees no CUDA GPU")

    if args.work_dir:
        work, cleanup = args.work_dir.expanduser().resolve(), None
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="gpu-profile-"))
        cleanup = None if args.keep else work
    if inside_repo(work):
        ap.error(f"--work-dir {work} is inside the repository; use a scratch folder")
    json_path = args.json or (work / "gpu_profile.json" if args.smoke else HERE / "results" / "gpu_profile.json")
    if cleanup and json_path.resolve().is_relative_to(work):
        cleanup = None  # the results would go with it

    env = environment(args.device)
    args.device_name = env["device_name"]
    report = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "smoke": args.smoke, "parts": parts, "environment": env, "work_dir": str(work),
              "settings": {k: v for k, v in cfg.items()}, "part_seconds": {}}
    report["settings"]["serve_requests"] = {str(k): v for k, v in cfg["serve_requests"].items()}
    if args.is_cuda:
        peak = args.peak_tflops or peak_tflops(env["device_name"])
        report["environment"]["peak_bf16_tflops"] = peak
        report["environment"]["peak_source"] = "--peak-tflops" if args.peak_tflops else (
            "table" if peak else "unknown GPU: MFU null; pass --peak-tflops")
    print(f"gpu_profile: {', '.join(parts)} on {args.device} ({env['device_name']}), torch {env['torch']}; "
          f"work dir {work}; results {json_path}", flush=True)

    def write():
        public = {k: v for k, v in report.items() if not k.startswith("_")}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(public, indent=2) + "\n")

    started = time.perf_counter()
    failed = []
    runners = {"train": part_train, "sample": part_sample, "serve": part_serve, "fsdp": part_fsdp}
    try:
        for part in parts:
            t0 = time.perf_counter()
            try:
                report[part] = runners[part](args, cfg, work, report)
            except Exception as e:  # one part failing must not lose the others' numbers
                failed.append(part)
                report[part] = {**report.get(part, {}), "error": f"{type(e).__name__}: {e}",
                                "traceback": tail(traceback.format_exc(), 25)}
                print(f"{part}: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            report["part_seconds"][part] = round(time.perf_counter() - t0, 1)
            report["wall_s"] = round(time.perf_counter() - started, 1)
            write()
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["environment"]["load_avg_at_end"] = list(os.getloadavg())
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    report["failed"] = failed
    write()
    print(table(report))
    print(f"wrote {json_path}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
