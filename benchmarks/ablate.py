"""What each speed lever buys: speedrun-cpu with one lever turned off at a time, under the same budget.

    python benchmarks/ablate.py                      # every variant, 30 CPU-seconds each, 2 at a time
    python benchmarks/ablate.py --budget 60 --only base,adamw,learned-pos
    python benchmarks/ablate.py --clock wall --parallel 1   # a quiet machine: real seconds, all its cores
    python benchmarks/ablate.py --throughput         # the implementation levers: milliseconds per step
    python benchmarks/ablate.py --at-steps 190 --only tried   # equal steps (not time); the levers not kept
    python benchmarks/ablate.py --step-cost --only base,mlp-4,batch-48   # ms per step, and steps at equal cost
    python benchmarks/ablate.py --at-steps 130 --only batch-48           # then each at its equal-cost steps
    python benchmarks/ablate.py --window-cost        # a step's cost at 16, 32 and 64 tokens, 1 thread and all

Recipe levers. Each variant is `tinygpt train --preset speedrun-cpu` with the changes listed in
VARIANTS, trained until its budget is spent; the figure is the final validation loss over the
whole validation split. With `--clock cpu` (the default) the budget is counted in CPU seconds of
the training process on one thread: the comparison then holds on a machine shared with other work,
where wall seconds depend on the neighbours (one CPU-second is one second of a dedicated core).
With `--clock wall` the budget is wall time and the threads are tinygpt's choice.

Implementation levers (--throughput). Milliseconds per training step on nanoGPT's CPU shape
(preset nanogpt-cpu: 4 layers, 128 wide, block 64, batch 12), median over --steps steps after a
warm-up, CPU time on one thread, with each implementation lever undone in turn: the fused AdamW
kernel, glibc keeping freed memory, and the batch size of the evaluation pass. Threads are
reported by benchmarks/speed.py (they need an idle machine to mean anything).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "ABLATE_RESULT "

# name -> (what is turned off, settings changed from speedrun-cpu)
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("speedrun-cpu as it is", {}),
    "adamw": ("Muon -> AdamW for every weight", {"optimizer": "adamw"}),
    "cosine": ("warmup-stable-decay -> cosine decay", {"lr_schedule": "cosine"}),
    "low-lr": ("peak AdamW rate 3e-3 -> nanoGPT's 1e-3", {"lr": 1e-3, "embedding_lr": 1e-2}),
    "learned-pos": ("rotary -> learned position table", {"pos_emb": "learned"}),
    "gelu": ("ReLU squared -> GELU", {"activation": "gelu"}),
    "no-qk-norm": ("QK-norm off", {"qk_norm": False}),
    "no-zero-init": ("zero-initialised projections -> N(0, 0.02) scaled", {"zero_init_proj": False}),
    "layernorm": ("RMSNorm -> LayerNorm", {"norm": "layernorm"}),
    "batch-12": ("batch 32 -> nanoGPT's 12", {"batch_size": 12}),
    "nanogpt-shape": ("2 layers of 96 -> nanoGPT's 4 of 128 (4 heads, 4x feed-forward)",
                      {"n_layer": 4, "n_embd": 128, "n_head": 4, "mlp_ratio": 4}),
    "random-eval": ("rare capped exact evals -> 200 random batches every 250 steps",
                    {"eval_iters": 200, "eval_interval": 250}),
    # The second lap's levers (issue 26), each undone on its own.
    "whole-windows": ("shorter windows first -> 64-token windows from the first step", {"window_schedule": ""}),
    "momentum-0.95": ("Muon momentum 0.85 -> the usual 0.95", {"muon_momentum": 0.95}),
    "no-embedding-lr": ("token table at 10x AdamW's rate -> at lr", {"embedding_lr": 0.0}),
    "mlp-4": ("3x-wide feed-forward -> 4x", {"mlp_ratio": 4}),
    "4-heads": ("2 heads of 48 -> 4 heads of 24", {"n_head": 4}),
    "nanogpt-recipe": ("all of the above at once: nanoGPT's CPU recipe under the same budget",
                       {"optimizer": "adamw", "lr_schedule": "cosine", "lr": 1e-3, "warmup_iters": 100,
                        "pos_emb": "learned", "activation": "gelu", "qk_norm": False, "zero_init_proj": False,
                        "norm": "layernorm", "batch_size": 12, "n_layer": 4, "n_embd": 128, "n_head": 4,
                        "mlp_ratio": 4, "embedding_lr": 0.0, "tie_weights": True, "eval_iters": 20,
                        "eval_interval": 250}),
}

# Levers tried for the second lap and not kept (each a change to speedrun-cpu as it is); `--only tried`
# runs them. benchmarks/README.md has their figures.
TRIED: dict[str, tuple[str, dict]] = {
    "tied": ("the head reads the token table (tied embeddings)", {"tie_weights": True}),
    "block-128": ("windows of 128, batch 16 (as many tokens a step)", {"block_size": 128, "batch_size": 16}),
    "batch-48": ("batch 48", {"batch_size": 48}),
    "wide-128": ("128 wide with a 2x feed-forward", {"n_embd": 128, "mlp_ratio": 2}),
    "mlp-2": ("2x-wide feed-forward", {"mlp_ratio": 2}),
    "1-head": ("1 head of 96", {"n_head": 1}),
    "3-layers": ("3 layers of 80", {"n_layer": 3, "n_embd": 80}),
    "momentum-0.8": ("Muon momentum 0.8", {"muon_momentum": 0.8}),
    "muon-lr-0.04": ("Muon rate 0.04", {"muon_lr": 0.04}),
    "embedding-30x": ("token table at 30x AdamW's rate", {"embedding_lr": 9e-2}),
    "beta2-0.95": ("AdamW beta2 0.99 -> 0.95", {"beta2": 0.95}),
    "no-weight-decay": ("no weight decay", {"weight_decay": 0.0}),
    "warmup-10": ("10 warmup steps", {"warmup_iters": 10}),
    "cooldown-0.5": ("the last half of training decays", {"cooldown_frac": 0.5}),
    "windows-32": ("32-token windows for the first half, then 64", {"window_schedule": "32:0.5"}),
    "windows-16-32": ("16 until a quarter, 32 until half", {"window_schedule": "16:0.25,32:0.5"}),
}
ALL = {**VARIANTS, **TRIED}


# ----------------------------------------------------------------------------- in the child process


def child_recipe(spec: dict) -> dict:
    import tinygpt

    if spec["clock"] == "cpu":
        # The trainer's clock counts this process's CPU seconds, so a busy machine cannot shorten the budget.
        time.perf_counter = time.process_time
    if spec.get("at_steps"):  # a fixed step count: the same numbers on a busy machine as on a quiet one
        settings = dict(spec["settings"], time_budget="", max_iters=spec["at_steps"], progress=False, sample_tokens=0)
    else:
        settings = dict(spec["settings"], time_budget=f"{spec['budget']}s", max_iters=0, progress=False,
                        sample_tokens=0)
    if spec["clock"] == "cpu":
        settings["threads"] = 1
    out = Path(spec["out"])
    result = tinygpt.train(preset="speedrun-cpu", out=str(out), log=lambda message: None, **settings)
    run = tinygpt.load(out, checkpoint="latest")  # the final weights, scored over the whole split
    whole = run.evaluate()
    return {"val_loss": whole["loss"], "steps": result.step, "tokens": result.tokens,
            "trained_s": result.elapsed_s, "params": result.num_params}


def child_throughput(spec: dict) -> dict:
    import torch

    from tinygpt.config import build_configs
    from tinygpt.config.presets import load_preset
    from tinygpt.core import devices
    from tinygpt.data import load_corpus, random_batch, split_ids
    from tinygpt.model import build_model
    from tinygpt.tokenizers import train_tokenizer
    from tinygpt.training import optim
    from tinygpt.training.losses import split_loss
    from tinygpt.training.optim import build_optimizer

    torch.set_num_threads(1)
    if spec["lever"] != "malloc":
        devices.keep_freed_memory()
    if spec["lever"] == "fused-adamw":
        plain = torch.optim.AdamW
        optim.torch.optim.AdamW = lambda *a, fused=None, **k: plain(*a, **k)  # torch's default kernel
    model_cfg, train_cfg = build_configs(load_preset("nanogpt-cpu")["settings"])
    text = load_corpus("shakespeare")
    splits = split_ids(train_tokenizer("char", text, 0, "").encode(text), 0.1, model_cfg.block_size)
    model_cfg.vocab_size = 65
    torch.manual_seed(0)
    model = build_model(model_cfg)
    optimizer = build_optimizer(model, train_cfg, "cpu")
    gen = torch.Generator().manual_seed(0)

    def step():
        x, y = random_batch(splits.train, train_cfg.batch_size, model_cfg.block_size, gen)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(10):
        step()
    times = []
    for _ in range(spec["steps"]):
        t0 = time.process_time()
        step()
        times.append(time.process_time() - t0)
    windows = 4096 // model_cfg.block_size if spec["lever"] == "eval-batch" else 1024 // model_cfg.block_size
    t0 = time.process_time()
    split_loss(model, splits.val, model_cfg.block_size, torch.device("cpu"), windows)
    return {"ms_per_step": 1000 * statistics.median(times), "eval_s": time.process_time() - t0}


# ----------------------------------------------------------------------------- the parent


def run_child(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise SystemExit(f"ablate: {spec.get('name', spec.get('lever'))} failed:\n{proc.stderr[-2000:]}")


def chosen_variants(only: str) -> list[str]:
    """--only's variants, in its order ('tried': every lever tried and not kept, after base); default: VARIANTS."""
    names = [n.strip() for n in only.split(",")] if only else list(VARIANTS)
    if "tried" in names:
        names = [n for n in names if n != "tried"] + [n for n in TRIED if n not in names]
        names = names if "base" in names else ["base", *names]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise SystemExit(f"ablate: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(ALL)}, or tried")
    return names


def recipe_table(args) -> None:
    names = chosen_variants(args.only)
    work = Path(tempfile.mkdtemp(prefix="tinygpt-ablate-"))
    specs = [{"name": n, "settings": ALL[n][1], "budget": args.budget, "clock": args.clock,
              "at_steps": args.at_steps, "out": str(work / f"{n}-{r}")} for r in range(args.repeats) for n in names]
    load0 = os.getloadavg()[0]
    each = f"{args.at_steps} steps" if args.at_steps else f"{args.budget:g} {args.clock} seconds"
    print(f"{len(specs)} runs, {each} each, {args.parallel} at a time; load average {load0:.2f}", flush=True)

    def one(spec):
        res = run_child(spec)
        print(f"  {spec['name']:<15} val {res['val_loss']:.4f}  {res['steps']:>5} steps  {res['tokens']:>9,} tokens",
              flush=True)
        return spec["name"], res

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(one, specs))
    by_name: dict[str, list[dict]] = {}
    for name, res in results:
        by_name.setdefault(name, []).append(res)
    base = statistics.median(r["val_loss"] for r in by_name["base"]) if "base" in by_name else None
    threads = " (1 thread)" if args.clock == "cpu" else ""
    print(f"\nspeedrun-cpu with one lever changed at a time: {each} of training{threads}; whole-split val loss, "
          f"median of {args.repeats}; load average {load0:.2f} -> {os.getloadavg()[0]:.2f}\n")
    print("| variant | what changes | steps | tokens | val loss | vs base |\n|---|---|---:|---:|---:|---:|")
    for name in names:
        runs = by_name[name]
        val = statistics.median(r["val_loss"] for r in runs)
        delta = "" if base is None or name == "base" else f"{val - base:+.3f}"
        print(f"| {name} | {ALL[name][0]} | {statistics.median(r['steps'] for r in runs):,.0f} | "
              f"{statistics.median(r['tokens'] for r in runs):,.0f} | {val:.4f} | {delta} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"budget": args.budget, "clock": args.clock, "at_steps": args.at_steps,
                                               "results": by_name}, indent=2))


def throughput_table(args) -> None:
    levers = {"base": "every implementation lever on", "fused-adamw": "torch's default AdamW kernel (not fused)",
              "malloc": "glibc gives freed memory back to the OS", "eval-batch": "evaluation in 4,096-token batches"}
    print(f"nanoGPT's CPU shape, 1 thread, CPU milliseconds per training step (median of {args.steps}), "
          f"CPU seconds for the whole-split evaluation; load average {os.getloadavg()[0]:.2f}\n")
    print("| variant | ms / step | whole-split eval (s) |\n|---|---:|---:|")
    for lever, what in levers.items():
        runs = [run_child({"lever": lever, "steps": args.steps}) for _ in range(args.repeats)]
        ms = statistics.median(r["ms_per_step"] for r in runs)
        ev = statistics.median(r["eval_s"] for r in runs)
        print(f"| {what} | {ms:.1f} | {ev:.2f} |", flush=True)


def step_ms(model, optimizer, x, clock) -> float:
    """Milliseconds per training step on the batch x (B, T) (as input and target), the mean of 3 steps on `clock`."""
    t0 = clock()
    for _ in range(3):
        model(x, x)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (clock() - t0) / 3 * 1000


def step_cost_table(args) -> None:
    """CPU milliseconds per training step of each variant, one thread, the variants interleaved in one process
    (rounds of 3 steps each, in turn), so that a busy machine slows them all alike; the median round. A variant
    with a window schedule: the mean over its stages, each weighted by its share of the steps."""
    import torch

    from tinygpt.config import build_configs
    from tinygpt.config.presets import load_preset
    from tinygpt.core import devices
    from tinygpt.model import build_model
    from tinygpt.training.optim import build_optimizer

    torch.set_num_threads(1)
    devices.keep_freed_memory()
    names = chosen_variants(args.only)
    setups = []
    for name in names:
        model_cfg, train_cfg = build_configs(load_preset("speedrun-cpu")["settings"], ALL[name][1])
        model_cfg.vocab_size = 65
        torch.manual_seed(0)
        model = build_model(model_cfg)
        optimizer = build_optimizer(model, train_cfg, "cpu")
        # A window schedule's steps cost what their windows cost: each stage's length is timed, weighted by
        # its share of the steps.
        shares, before = {}, 0.0
        for length, until in train_cfg.window_stages():
            shares[min(length, model_cfg.block_size)] = until - before
            before = until
        shares[model_cfg.block_size] = shares.get(model_cfg.block_size, 0.0) + 1.0 - before
        batches = [(share, torch.randint(0, 65, (train_cfg.batch_size, length))) for length, share in shares.items()]
        setups.append((name, model, optimizer, batches, []))
    for _ in range(2 + args.steps // 3):
        for _name, model, optimizer, batches, times in setups:
            times.append(sum(share * step_ms(model, optimizer, x, time.process_time) for share, x in batches))
    base = statistics.median(setups[0][4][2:])
    steps = args.at_steps or load_preset("speedrun-cpu")["settings"]["max_iters"]
    print(f"CPU ms per step, 1 thread, interleaved; load average {os.getloadavg()[0]:.2f}\n")
    print(f"| variant | ms / step | steps at {names[0]}'s cost of {steps} steps |\n|---|---:|---:|")
    for name, *_, times in setups:
        ms = statistics.median(times[2:])
        print(f"| {name} | {ms:.1f} | {round(steps * base / ms)} |")


def window_cost_table(args) -> None:
    """What a step of speedrun-cpu costs at each window length --window-schedule may cut, against a whole
    64-token window: on 1 thread in CPU time and on every core in wall time, the lengths interleaved in one
    process (rounds of 3 steps), the median round."""
    import torch

    from tinygpt.config import build_configs
    from tinygpt.config.presets import load_preset
    from tinygpt.core import devices
    from tinygpt.model import build_model
    from tinygpt.training.optim import build_optimizer

    devices.keep_freed_memory()
    model_cfg, train_cfg = build_configs(load_preset("speedrun-cpu")["settings"])
    model_cfg.vocab_size = 65
    lengths = (16, 32, model_cfg.block_size)
    print(f"speedrun-cpu, ms per training step by window length; load average {os.getloadavg()[0]:.2f}\n")
    header = " | ".join(f"{n} tokens" for n in lengths)
    print(f"| threads | clock | {header} |\n|---|---|" + "---:|" * len(lengths))
    for threads, clock in ((1, time.process_time), (os.cpu_count() or 1, time.perf_counter)):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = build_model(model_cfg)
        optimizer = build_optimizer(model, train_cfg, "cpu")
        times = {n: [] for n in lengths}
        for _ in range(2 + args.steps // 3):
            for n in lengths:
                times[n].append(step_ms(model, optimizer, torch.randint(0, 65, (train_cfg.batch_size, n)), clock))
        ms = {n: statistics.median(t[2:]) for n, t in times.items()}
        whole = ms[model_cfg.block_size]
        name = "CPU" if clock is time.process_time else "wall"
        print(f"| {threads} | {name} | " + " | ".join(f"{ms[n]:.1f} ({ms[n] / whole:.2f})" for n in lengths) + " |")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        spec = json.loads(argv[1])
        os.environ.setdefault("TINYGPT_DATA_DIR", str(ROOT.parent / "shared" / "data"))
        result = child_throughput(spec) if "lever" in spec else child_recipe(spec)
        print(MARK + json.dumps(result), flush=True)
        return 0
    p = argparse.ArgumentParser(description="What each speed lever buys (see the module docstring).")
    p.add_argument("--budget", type=float, default=30.0, help="seconds of training per run (default 30)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="count the budget in CPU seconds on one thread (default), or in wall seconds")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2; use 1 with --clock wall)")
    p.add_argument("--repeats", type=int, default=1, help="runs per variant; medians are reported (default 1)")
    p.add_argument("--only", default="", help="comma-separated variants (default: every lever of the preset; "
                   "'tried': the levers tried and not kept)")
    p.add_argument("--at-steps", type=int, default=0, metavar="N",
                   help="train each variant for N steps instead of a time budget (1 thread: the same losses "
                   "on a busy machine as on a quiet one)")
    p.add_argument("--throughput", action="store_true", help="the implementation levers instead (ms per step)")
    p.add_argument("--step-cost", action="store_true", help="each variant's CPU ms per step, interleaved in one "
                   "process, and the steps that cost as much as --at-steps of the first (default: the preset's)")
    p.add_argument("--window-cost", action="store_true", help="a step's cost at each window length "
                   "--window-schedule cuts (16, 32, 64 tokens), on 1 thread and on every core")
    p.add_argument("--steps", type=int, default=40, help="--throughput, --step-cost, --window-cost: timed steps "
                   "(default 40)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    os.environ.setdefault("TINYGPT_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    if args.window_cost:
        window_cost_table(args)
    elif args.step_cost:
        step_cost_table(args)
    elif args.throughput:
        throughput_table(args)
    else:
        recipe_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
