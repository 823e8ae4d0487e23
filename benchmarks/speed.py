"""Issue 4's table in one command: how fast tinygpt gets to a good model, against nanoGPT, on this machine.

    python benchmarks/speed.py                                  # everything tinygpt-side, 3 repeats
    python benchmarks/speed.py --nanogpt-dir /path/to/nanoGPT  # and nanoGPT side by side (or $NANOGPT_DIR)
    python benchmarks/speed.py --what speedrun,sample --repeats 5
    python benchmarks/speed.py --what budget --budget-versus speedrun-cpu        # 3 minutes, BPE against char
    python benchmarks/speed.py --what speedrun --repeats 8 --versus '{"window_schedule": "", "max_iters": 180}'
    python benchmarks/speed.py --what speedrun --repeats 8 --baseline-src OTHER_CHECKOUT/src   # code against code
    python benchmarks/speed.py --what speedrun --repeats 5 --threads 1 --baseline-src OTHER_CHECKOUT/src
    python benchmarks/speed.py --quick                          # a smoke run of every figure (numbers meaningless)
    python benchmarks/speed.py --json speed.json

The figures (medians of --repeats runs; tiny Shakespeare, char level, the 90/10 split; every
validation loss is one exact pass over the whole validation split):

1. time to val <= 1.88   `tinygpt train --preset speedrun-cpu`, as a subprocess: wall time of the whole
                         process (start-up, data, training, evaluations, exit) and its final val loss.
2. best val in 3 min     `tinygpt train --preset speedrun-cpu-3m` (--budget changes its time budget,
                         --budget-preset the recipe, --budget-versus adds another taking turns): the
                         final whole-split val loss in nats a character (`tinygpt eval`'s bits per
                         character x ln 2: its tokens are BPE's, a char run's equals its val loss),
                         a token, and the whole process's wall time.
3. training throughput   nanoGPT's CPU recipe shape (preset nanogpt-cpu: 4 layers, 128 wide, block 64,
                         batch 12, 2000 steps): median milliseconds per training step (steps that
                         include an evaluation left out), tokens/s, and the model FLOP rate it implies
                         (nanoGPT's estimate: 6 x parameters + 12 x layers x block x width FLOPs per
                         token) as a fraction of this machine's float32 matmul rate, measured in the
                         same run by benchmarks/matmul_rate.py (best median over its shapes).
4. sampling              the 10.8M-parameter lecture model (6 layers, 6 heads, 384 wide, block 256;
                         random weights: speed does not depend on them), 200 new tokens from a
                         1-token prompt, temperature 0.8, top-k 200 (nanoGPT's sampling settings),
                         KV cache on; tokens/s summed over the batch, at batch 1 and 64.
6. memory                peak resident memory (the process's ru_maxrss) of the nanogpt-cpu run of 3.
7. the main job          `tinygpt train` (the rhyme model) as a process of its own: wall seconds. With
                         --baseline-src DIR (another checkout's src/), its runs alternate with that
                         code's, so the two share the machine's moods.

With a nanoGPT checkout, benchmarks/nanogpt_side.py runs nanoGPT's own CPU recipe (same shape,
2000 iterations) and its sampler on the same model shape, so every figure has its nanoGPT
counterpart from the same run. Runs go to a temporary directory outside the repository.

Timings are only comparable on an otherwise idle machine: the load average at the start and end is
printed with the table. Figure 5 (GPU) is not measured here; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import matmul_rate  # noqa: E402
import nanogpt_side  # noqa: E402

# Issue 26's targets (the second lap); issue 4's were 30 s, 1.65 and 300 tokens/s.
TARGETS = {"time_to_loss": 1.88, "time_to_loss_s": 12.0, "budget_loss": 1.50, "mfu": 0.70,
           "sample_b1": 450.0, "sample_b64": 2000.0, "mainjob_s": 5.0}
CHILD_MARK = "SPEED_CHILD_RESULT "
WHAT = ("speedrun", "budget", "throughput", "sample", "matmul", "mainjob")


# ----------------------------------------------------------------------------- tinygpt runs

def child_train(preset: str, overrides: dict) -> None:
    """In the child process: train, timing every optimizer step, and print one result line."""
    from tinygpt.app.launch import train
    from tinygpt.core.devices import process_start
    from tinygpt.store.rundir import RunDir

    stamps, threads = [], []

    def on_step(trainer):
        stamps.append((trainer.step, time.perf_counter()))
        threads[:] = [trainer.runtime.threads]

    # As `tinygpt train` does: a time budget covers the whole process, Python's start-up included.
    res = train(preset, started_at=process_start(), on_step=on_step, **overrides)
    config = RunDir(res.out_dir).read_config()
    model_cfg, train_cfg = config.model, config.train
    # A step's time runs from the end of the previous step; steps that evaluated are left out.
    steps = [(s, b - a) for (_, a), (s, b) in zip(stamps, stamps[1:])]
    plain = [dt for s, dt in steps if s % train_cfg.eval_interval != 0] or [dt for _, dt in steps] or [0.0]
    print(CHILD_MARK + json.dumps({
        "val_loss": res.val_loss, "best_val_loss": res.best_val_loss, "steps": res.step, "tokens": res.tokens,
        "train_s": res.elapsed_s, "params": res.num_params, "threads": threads[0],
        "ms_per_step_median": 1000 * statistics.median(plain),
        "tokens_per_step": train_cfg.batch_size * model_cfg.block_size * train_cfg.grad_accum}), flush=True)


def flops_per_token(n_layer: int, n_embd: int, block_size: int, vocab_size: int, mlp_ratio: int = 4) -> float:
    """nanoGPT's estimate of training FLOPs per token: 6 per weight of every matmul, plus attention.

    The weights counted are the ones multiplied: the blocks' projections and the output head (an
    embedding lookup does no arithmetic). Attention scores and their use add 12 x layers x block x width.
    """
    matmul_params = n_layer * (4 + 2 * mlp_ratio) * n_embd * n_embd + n_embd * vocab_size
    return 6 * matmul_params + 12 * n_layer * block_size * n_embd


def run_tinygpt(preset: str, overrides: dict, out: Path, label: str, src: str | None = None,
                per_char: bool = False) -> dict:
    """One training run as its own process; wall time and peak memory are that process's. src: another
    checkout's src/ to run instead of this one's. per_char: also `tinygpt eval` the final weights, after the
    process, for the validation loss in nats a character (val_loss_per_char: what compares across tokenizers;
    a char run's is its val_loss)."""
    overrides = dict(overrides, out=str(out), progress=False)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", preset, json.dumps(overrides)]
    print(f"  {label}: tinygpt train --preset {preset} " +
          " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items() if k not in ("out", "progress")),
          flush=True)
    child = run_child(cmd, env={"PYTHONPATH": src} if src else None)
    if child["rc"] != 0:
        tail = "\n".join(child["output"].splitlines()[-15:])
        raise SystemExit(f"speed: {label} failed (status {child['rc']}):\n{tail}")
    res = nanogpt_side._result_from_output(child["output"].replace(CHILD_MARK, nanogpt_side.RESULT_MARK), label)
    res.update(wall_s=child["wall_s"], cpu_s=child["cpu_s"], peak_rss_mb=child["peak_rss_mb"],
               load=os.getloadavg()[0])
    if per_char:
        ev = run_child([sys.executable, "-m", "tinygpt", "eval", str(out), "--json", "--checkpoint", "latest"],
                       env={"PYTHONPATH": src} if src else None)
        if ev["rc"] != 0:
            raise SystemExit(f"speed: scoring {label} a character failed:\n{ev['output'][-2000:]}")
        res["val_loss_per_char"] = json.loads(ev["output"])["bits_per_char"] * math.log(2)
    print(f"    {res['wall_s']:.1f} s wall ({res['cpu_s']:.1f} s CPU, {res['threads']} threads), val "
          f"{res['val_loss']:.4f}" + (f" ({res['val_loss_per_char']:.4f} a character)" if per_char else "") +
          f", {res['steps']} steps, {res['ms_per_step_median']:.1f} ms/step, "
          f"peak {res['peak_rss_mb']:.0f} MB, load {res['load']:.1f}", flush=True)
    return res


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command; its exit status, wall and CPU seconds, peak resident memory and output.

    CPU seconds tell what the wall time would be on a machine that is not shared: on a busy one
    the wall time is longer, the CPU time (nearly) is not.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return {"rc": proc.returncode, "wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "output": output}


def main_job(repeats: int, out_dir, baseline_src: str | None = None) -> dict:
    """Wall seconds of `tinygpt train` (the rhyme model, everything included), this code's runs alternating
    with baseline_src's (another checkout's src/) when given; medians."""
    versions = {"wall_s": str(HERE.parent / "src")}
    if baseline_src:
        versions["baseline_wall_s"] = str(Path(baseline_src).resolve())
    times = {key: [] for key in versions}
    for i in range(repeats):
        for key, src in versions.items():
            cmd = [sys.executable, "-m", "tinygpt", "train", "--out", str(out_dir()), "--no-progress"]
            child = run_child(cmd, env={"PYTHONPATH": src})
            if child["rc"] != 0:
                raise SystemExit(f"speed: the main job failed ({src}):\n{child['output'][-2000:]}")
            times[key].append(child["wall_s"])
            print(f"  run {i + 1} ({'baseline' if key != 'wall_s' else 'this code'}): {child['wall_s']:.2f} s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    return {"runs": times, **{key: statistics.median(values) for key, values in times.items()}}


def median(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


# ----------------------------------------------------------------------------- sampling


def sample_speed(batch: int, new_tokens: int, repeats: int, context: str = "exact") -> dict:
    """tokens/s of cached sampling from the lecture-shaped model at this batch size (median of repeats);
    context: what a sample longer than block_size reads (generation/decoder.py; benchmarks/context_shift.py)."""
    import torch

    from tinygpt.config import build_configs
    from tinygpt.config.presets import load_preset
    from tinygpt.core.devices import choose_threads
    from tinygpt.generation import SamplingConfig, generate_ids
    from tinygpt.model import build_model

    model_cfg, _ = build_configs(load_preset("lecture")["settings"])
    model_cfg.vocab_size = 65
    torch.manual_seed(1337)
    model = build_model(model_cfg).eval()
    prompt = torch.zeros((batch, 1), dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    generate_ids(model, prompt, SamplingConfig(max_new_tokens=8), gen)  # warm-up
    sampling = SamplingConfig(max_new_tokens=new_tokens, temperature=0.8, top_k=200)
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        torch.set_num_threads(choose_threads(0))  # as the trainer does
        t0, c0 = time.perf_counter(), time.process_time()
        out = generate_ids(model, prompt, sampling, gen, context=context)
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
    assert out.shape == (batch, 1 + new_tokens)
    s, c = statistics.median(seconds), statistics.median(cpu_seconds)
    return {"batch": batch, "new_tokens": new_tokens, "context": context, "seconds": seconds,
            "tokens_per_s": batch * new_tokens / s, "tokens_per_cpu_s": batch * new_tokens / c,
            "params": model.num_params(), "threads": torch.get_num_threads(), "load": os.getloadavg()[0]}


# ----------------------------------------------------------------------------- the table


def fmt(value, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def verdict(ok) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def format_table(report: dict) -> str:
    env, t, ng = report["machine"], report.get("tinygpt", {}), report.get("nanogpt", {})
    lines = ["", f"machine: {env['cpu']}, {env['logical_cpus']} logical CPUs, torch {env['torch']} "
             f"({env['threads']} threads); load average {env['load_start']:.2f} at start, "
             f"{env.get('load_end', 0):.2f} at end; median of {report['repeats']} run(s)", ""]
    rows = [("figure", "tinygpt", "nanoGPT", "target", "met")]
    sr = t.get("speedrun")
    if sr:
        ok = sr["val_loss"] <= TARGETS["time_to_loss"] and sr["wall_s"] <= TARGETS["time_to_loss_s"]
        ng_tr = ng.get("train")
        rows.append(("1. time to val <= 1.88 (s, whole process)", fmt(sr["wall_s"], ".1f"),
                     fmt(ng_tr and ng_tr["wall_s"], ".1f"), f"<= {TARGETS['time_to_loss_s']:g}", verdict(ok)))
        rows.append(("   CPU seconds of that process", fmt(sr["cpu_s"], ".1f"), "", "", ""))
        rows.append(("   val loss reached (whole split)", fmt(sr["val_loss"], ".4f"),
                     fmt(ng_tr and ng_tr.get("val_loss_full"), ".4f"), "<= 1.88", ""))
        vs = t.get("speedrun_versus")
        if vs:
            rows.append((f"   versus {json.dumps(vs['settings'])}, taking turns: s, val", f"{vs['wall_s']:.1f}, "
                         f"{vs['val_loss']:.4f}", "", "", f"{sr['wall_s'] / vs['wall_s']:.2f}x the time"))
        bl = t.get("speedrun_baseline")
        if bl:
            rows.append(("   the --baseline-src code, taking turns: s, val",
                         f"{bl['wall_s']:.1f}, {bl['val_loss']:.4f}", "", "",
                         f"{sr['wall_s'] / bl['wall_s']:.2f}x the time"))
    bd = t.get("budget")
    if bd:
        ng_tr = ng.get("train")
        rows.append((f"2. best val in {report['budget']}, a character (whole split)",
                     fmt(bd["val_loss_per_char"], ".4f"),
                     fmt(ng_tr and ng_tr.get("val_loss_full"), ".4f") + (
                         f" @{ng_tr['wall_s']:.0f}s" if ng_tr else ""), f"<= {TARGETS['budget_loss']:g}",
                     verdict(bd["val_loss_per_char"] <= TARGETS["budget_loss"])))
        rows.append((f"   {bd['preset']}: val a token; wall / CPU seconds", f"{bd['val_loss']:.4f}; "
                     f"{bd['wall_s']:.1f} / {bd['cpu_s']:.1f}", "", "", ""))
        bv = t.get("budget_versus")
        if bv:
            rows.append((f"   {bv['preset']}, taking turns: a character", fmt(bv["val_loss_per_char"], ".4f"), "", "",
                         ""))
    tp = t.get("throughput")
    if tp:
        ng_tr = ng.get("train")
        ng_tok = ng_tr and ng_tr.get("tokens_per_s_median")
        rows.append(("3. training tokens/s, nanoGPT CPU shape", fmt(tp["tokens_per_s"], ",.0f"),
                     fmt(ng_tok, ",.0f"), ">= nanoGPT", verdict(ng_tok and tp["tokens_per_s"] >= ng_tok)))
        rows.append(("   ms per step (median)", fmt(tp["ms_per_step_median"], ".1f"),
                     fmt(ng_tr and ng_tr.get("ms_per_iter_median"), ".1f"), "", ""))
        if "mfu" in tp:
            ng_mfu = ng_tok and ng_tok * tp["flops_per_token"] / 1e9 / report["matmul"]["peak_gflops"]
            rows.append(("   model GFLOP/s / matmul peak", f"{tp['gflops']:.0f} / {report['matmul']['peak_gflops']:.0f}"
                         f" = {100 * tp['mfu']:.0f}%", fmt(ng_mfu and 100 * ng_mfu, ".0f", "%"), ">= 70%",
                         verdict(tp["mfu"] >= TARGETS["mfu"])))
        rows.append(("   same recipe, 2000 steps: wall (s)", fmt(tp["wall_s"], ".1f"),
                     fmt(ng_tr and ng_tr["wall_s"], ".1f"), "", ""))
        rows.append(("   same recipe: val loss (whole split, median)", fmt(tp["val_loss"], ".4f"),
                     fmt(ng_tr and ng_tr.get("val_loss_full"), ".4f"), "", ""))
        ng_rss = ng_tr and ng_tr["peak_rss_mb"]
        rows.append(("6. peak memory, nanoGPT CPU recipe (MB)", fmt(tp["peak_rss_mb"], ".0f"), fmt(ng_rss, ".0f"),
                     "<= nanoGPT", verdict(ng_rss and tp["peak_rss_mb"] <= ng_rss)))
    for s in t.get("sample", []):
        key = "sample_b1" if s["batch"] == 1 else "sample_b64" if s["batch"] == 64 else None
        ng_s = next((r for r in ng.get("sample", []) if r["batch"] == s["batch"]), None)
        target = TARGETS.get(key)
        rows.append((f"4. sampling tokens/s, lecture model, batch {s['batch']}", fmt(s["tokens_per_s"], ",.0f"),
                     fmt(ng_s and ng_s["tokens_per_s"], ",.1f"), fmt(target, ",.0f", "+"),
                     verdict(target and s["tokens_per_s"] >= target)))
    mj = t.get("mainjob")
    if mj:
        rows.append(("7. the main job, `tinygpt train` (s)", fmt(mj["wall_s"], ".2f"),
                     "", f"<= {TARGETS['mainjob_s']:g}", verdict(mj["wall_s"] <= TARGETS["mainjob_s"])))
        if mj.get("baseline_wall_s") is not None:
            rows.append(("   the same, --baseline-src's code (s)", fmt(mj["baseline_wall_s"], ".2f"), "", "", ""))
    if report.get("matmul") and not tp:
        rows.append(("   float32 matmul peak (GFLOP/s)", f"{report['matmul']['peak_gflops']:.0f}", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Issue 4's speed table: tinygpt (and nanoGPT, given its checkout) "
                                            "on this machine. Prints the table; --json keeps the details.")
    p.add_argument("--nanogpt-dir", default=os.environ.get("NANOGPT_DIR"),
                   help="a nanoGPT checkout outside this repository (default: $NANOGPT_DIR); without it only "
                        "tinygpt is measured")
    p.add_argument("--what", default=",".join(WHAT),
                   help=f"comma-separated figures to measure (default: all of {','.join(WHAT)})")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure; medians are reported (default 3)")
    p.add_argument("--budget", default="3m", help="time budget of figure 2 (default 3m)")
    p.add_argument("--budget-preset", default="speedrun-cpu-3m",
                   help="the recipe figure 2 trains for --budget (default speedrun-cpu-3m)")
    p.add_argument("--budget-versus", default=None, metavar="PRESET",
                   help="figure 2: also train this preset for --budget, taking turns (e.g. speedrun-cpu)")
    p.add_argument("--sample-tokens", type=int, default=200, help="new tokens per generation (default 200)")
    p.add_argument("--nanogpt-sample-repeats", type=int, default=1,
                   help="timed nanoGPT generations per batch size; batch 64 takes minutes each (default 1)")
    p.add_argument("--versus", default=None, metavar="JSON",
                   help="speedrun: also run the preset with these settings changed, taking turns with it (e.g. "
                        "'{\"window_schedule\": \"\", \"max_iters\": 180}': the recipe before shorter windows)")
    p.add_argument("--baseline-src", default=None, metavar="DIR",
                   help="speedrun, mainjob: also time another checkout's src/ (PYTHONPATH), taking turns with "
                        "this one")
    p.add_argument("--threads", type=int, default=0,
                   help="speedrun: train on this many threads, every side (default 0: tinygpt's own choice)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: every figure, a few steps each (the numbers mean nothing)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the full results as JSON here")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # one training run, in its own process (see run_tinygpt)
        child_train(argv[1], json.loads(argv[2]))
        return 0
    args = build_parser().parse_args(argv)
    what = {w.strip() for w in args.what.split(",") if w.strip()}
    unknown = what - set(WHAT)
    if unknown or args.repeats < 1:
        print(f"speed: unknown figure(s) {', '.join(sorted(unknown))}; choose from {', '.join(WHAT)}" if unknown
              else "speed: --repeats must be 1 or more", file=sys.stderr)
        return 2
    os.environ.setdefault("TINYGPT_DATA_DIR", str(HERE.parent.parent / "shared" / "data"))
    import torch

    from tinygpt.core.devices import choose_threads
    from tinygpt.data import shakespeare_path

    shakespeare = shakespeare_path(download=False)
    torch.set_num_threads(choose_threads(0))  # what tinygpt itself would use here (sampling runs in this process)
    report = {"repeats": args.repeats, "budget": args.budget, "quick": args.quick,
              "machine": {"cpu": nanogpt_side._cpu_name(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "load_start": os.getloadavg()[0],
                          "started": time.strftime("%Y-%m-%d %H:%M:%S")},
              "tinygpt": {}, "nanogpt": {}}
    quick = dict(max_iters=30, time_budget="") if args.quick else {}
    work = Path(tempfile.mkdtemp(prefix="tinygpt-speed-"))
    t = report["tinygpt"]
    n = 0

    def out_dir() -> Path:
        nonlocal n
        n += 1
        return work / f"run{n}"

    def measure_matmul(threads: int) -> dict:
        print(f"float32 matmul rate, {threads} thread(s) ...", flush=True)
        mm = matmul_rate.measure(repeats=1 if args.quick else 3, min_time=0.05 if args.quick else 0.2,
                                 threads=threads)
        print(f"  peak {mm['peak_gflops']:.1f} GFLOP/s ({mm['peak_shape'].strip()})", flush=True)
        return {"peak_gflops": mm["peak_gflops"], "peak_shape": mm["peak_shape"], "threads": mm["threads"]}

    if "speedrun" in what:
        print("1. time to val <= 1.88: speedrun-cpu", flush=True)
        versus = json.loads(args.versus) if args.versus else None
        own = dict(quick, **({"threads": args.threads} if args.threads else {}))
        runs, other, baseline = [], [], []
        for i in range(args.repeats):
            # With --versus or --baseline-src, the recipes or the code versions take turns, the first of each
            # round alternating, so that a host whose speed drifts slows them alike.
            pair = [(runs, dict(own), f"run {i + 1}", None)]
            if versus is not None:
                pair.append((other, dict(versus, **own), f"run {i + 1}, versus", None))
            if args.baseline_src:
                pair.append((baseline, dict(own), f"run {i + 1}, baseline", str(Path(args.baseline_src).resolve())))
            for results, overrides, label, src in pair[:: -1 if i % 2 else 1]:
                results.append(run_tinygpt("speedrun-cpu", overrides, out_dir(), label, src))
        t["speedrun"] = {"runs": runs, **{k: median(runs, k) for k in ("wall_s", "cpu_s", "val_loss")}}
        if other:
            t["speedrun_versus"] = {"settings": versus, "runs": other,
                                    **{k: median(other, k) for k in ("wall_s", "cpu_s", "val_loss")}}
        if baseline:
            t["speedrun_baseline"] = {"src": str(Path(args.baseline_src).resolve()), "runs": baseline,
                                      **{k: median(baseline, k) for k in ("wall_s", "cpu_s", "val_loss")}}
    if "budget" in what:
        presets = [args.budget_preset] + ([args.budget_versus] if args.budget_versus else [])
        print(f"2. best val in {args.budget}: {' and '.join(presets)} --time-budget {args.budget}"
              + (", taking turns" if len(presets) > 1 else ""), flush=True)
        over = dict(quick) if args.quick else {"time_budget": args.budget}
        runs = {name: [] for name in presets}
        for i in range(args.repeats):
            for name in presets:
                runs[name].append(run_tinygpt(name, over, out_dir(), f"{name}, run {i + 1}", per_char=True))
        keys = ("wall_s", "cpu_s", "val_loss", "val_loss_per_char")
        t["budget"] = {"preset": args.budget_preset, "runs": runs[args.budget_preset],
                       **{k: median(runs[args.budget_preset], k) for k in keys}}
        if args.budget_versus:
            t["budget_versus"] = {"preset": args.budget_versus, "runs": runs[args.budget_versus],
                                  **{k: median(runs[args.budget_versus], k) for k in keys}}
    if "throughput" in what:
        print("3/6. nanoGPT's CPU recipe shape: preset nanogpt-cpu", flush=True)
        over = dict(quick, eval_interval=250, sample_tokens=0)
        # One seed per run (speed does not depend on it), so the val losses also show the seed spread.
        runs = [run_tinygpt("nanogpt-cpu", dict(over, seed=1337 + i), out_dir(), f"run {i + 1}")
                for i in range(args.repeats)]
        ms = median(runs, "ms_per_step_median")
        tokens_per_s = runs[0]["tokens_per_step"] / (ms / 1000)
        fpt = flops_per_token(n_layer=4, n_embd=128, block_size=64, vocab_size=65)
        tp = {"runs": runs, "ms_per_step_median": ms, "tokens_per_s": tokens_per_s, "flops_per_token": fpt,
              "gflops": tokens_per_s * fpt / 1e9, "wall_s": median(runs, "wall_s"),
              "val_loss": median(runs, "val_loss"), "peak_rss_mb": median(runs, "peak_rss_mb")}
        # The machine's matmul rate with the threads the training runs chose (all cores, unless busy).
        report["matmul"] = measure_matmul(runs[0]["threads"])
        tp["mfu"] = tp["gflops"] / report["matmul"]["peak_gflops"]
        t["throughput"] = tp
    if "matmul" in what and "matmul" not in report:
        report["matmul"] = measure_matmul(torch.get_num_threads())
    if "sample" in what:
        print("4. sampling the lecture-shaped model, KV cache", flush=True)
        t["sample"] = []
        for batch in (1, 64):
            tokens = 16 if args.quick else args.sample_tokens
            r = sample_speed(batch, tokens, args.repeats)
            print(f"  batch {batch}: {r['tokens_per_s']:,.0f} tokens/s ({r['tokens_per_cpu_s']:,.0f} per CPU "
                  f"second, {r['threads']} threads)", flush=True)
            t["sample"].append(r)

    if "mainjob" in what:
        print("7. the main job: tinygpt train", flush=True)
        t["mainjob"] = main_job(args.repeats, out_dir, args.baseline_src)

    if args.nanogpt_dir:
        nanogpt_dir = nanogpt_side._resolve_nanogpt_dir(args.nanogpt_dir)
        ng_args = argparse.Namespace(recipe="cpu", max_iters=50 if args.quick else 2000, quiet=False,
                                     progress_every=500, train_extra=None)
        if what & {"speedrun", "budget", "throughput"}:
            print("nanoGPT: CPU recipe", flush=True)
            data = nanogpt_side.prepare_data(shakespeare, work / "nanogpt-data")
            runs = []
            for i in range(args.repeats):
                r = nanogpt_side.run_train(ng_args, nanogpt_dir, data, work / f"ng-out{i}", work / f"ng{i}.log",
                                           sys.executable)
                full = nanogpt_side.full_val_loss(nanogpt_dir, Path(r["checkpoint"]),
                                                  work / "nanogpt-data" / "val.bin", sys.executable)
                r["val_loss_full"] = full["val_loss_full"]  # its other fields (wall_s) are the pass's own
                print(f"    {r['wall_s']:.1f} s wall, whole-split val {r['val_loss_full']:.4f}, "
                      f"{r['ms_per_iter_median']:.1f} ms/iter, peak {r['peak_rss_mb']:.0f} MB", flush=True)
                runs.append(r)
            report["nanogpt"]["train"] = {"runs": runs, **{k: median(runs, k) for k in (
                "wall_s", "val_loss_full", "ms_per_iter_median", "tokens_per_s_median", "peak_rss_mb")}}
        if "sample" in what:
            print("nanoGPT: sampling (no KV cache)", flush=True)
            report["nanogpt"]["sample"] = []
            for batch in (1, 64):
                tokens = 16 if args.quick else args.sample_tokens
                r = nanogpt_side.run_sample(nanogpt_dir, batch, tokens, args.nanogpt_sample_repeats, sys.executable)
                print(f"  batch {batch}: {r['tokens_per_s']:,.1f} tokens/s", flush=True)
                report["nanogpt"]["sample"].append(r)

    report["machine"]["load_end"] = os.getloadavg()[0]
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
