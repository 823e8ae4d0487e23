"""The nanoGPT side of the tinygpt-vs-nanoGPT benchmark (issue 4), run on this machine.

nanoGPT is not part of this repository and none of its code is copied here: point this script
at a checkout of it (``--nanogpt-dir`` or the ``NANOGPT_DIR`` environment variable). Everything
this script writes (data files, nanoGPT's out_dir and checkpoint, logs) goes to scratch
directories outside this repository.

What is measured
    train   nanoGPT's documented CPU recipe for character-level Tiny Shakespeare, run as a
            subprocess of its own ``train.py``::

                train.py config/train_shakespeare_char.py --device=cpu --compile=False
                  --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4
                  --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

            plus ``--out_dir`` (scratch) and ``--always_save_checkpoint=True`` so the checkpoint
            is the one from the final evaluation. Reported: wall time of the whole process,
            its peak resident memory (``os.wait4`` rusage of that one child), per-iteration
            milliseconds and tokens/s from nanoGPT's own per-iteration log lines (median and mean
            over iterations that do not include an evaluation; iteration 0 is also left out),
            the last train/val loss nanoGPT prints (its val loss is an *estimate*: the mean over
            ``eval_iters`` random batches), and, separately, the loss of the final checkpoint
            over the *whole* validation split: one deterministic pass over consecutive
            non-overlapping windows of ``block_size`` tokens (the short tail window included, so
            every validation target is scored exactly once), token-weighted. That pass runs in
            a subprocess inside the nanoGPT directory using its ``model.py``.

            Note: nanoGPT's loop runs iterations 0..max_iters inclusive, i.e. max_iters + 1
            optimizer steps; the evaluation and checkpoint at ``max_iters`` precede the last one.

            ``--recipe gpu`` runs nanoGPT's GPU recipe instead: its config file as it ships
            (``train.py config/train_shakespeare_char.py``: CUDA, torch.compile, bfloat16, 5000
            iterations, its estimate from 200 batches), on a machine with a GPU.

    sample  Sampling speed of nanoGPT's ``GPT.generate`` (temperature 0.8, top-k 200; it has no
            KV cache, so each new token re-runs the whole context) for a randomly initialised
            model shaped like the full lecture model: 6 layers, 6 heads, 384 wide, block 256,
            vocabulary 65, no biases (nanoGPT's default for this config). Speed does not depend
            on the weights. Each batch size runs in its own subprocess: one short untimed
            warm-up, then ``--repeats`` timed generations of ``--sample-tokens`` new tokens
            from a one-token prompt; tokens/s = batch * new tokens / seconds (median).

Data
    nanoGPT's ``prepare.py`` downloads the text, so this script writes the same files itself
    from a local copy of Tiny Shakespeare: ``train.bin`` / ``val.bin`` (uint16 ids over the
    sorted character vocabulary, first 90% / last 10% of the characters) and ``meta.pkl`` (a
    dict with ``vocab_size``, ``itos``, ``stoi``, as nanoGPT's ``sample.py`` reads it), into
    ``$NANOGPT_DIR/data/shakespeare_char`` unless ``--data-dir`` says otherwise.

How to run
    export NANOGPT_DIR=/path/to/nanoGPT
    python benchmarks/nanogpt_side.py --nanogpt-dir $NANOGPT_DIR                 # everything
    python benchmarks/nanogpt_side.py --what train --max-iters 50                # smoke run
    python benchmarks/nanogpt_side.py --what sample --sample-batches 1 --repeats 3
    python benchmarks/nanogpt_side.py --json nanogpt_side.json

On a 2-core CPU the full recipe takes about 2-3 minutes, batch-1 sampling of 200 tokens about
15 s, and batch-64 sampling of 200 tokens about 5-6 minutes (and ~2.4 GB of memory), per repeat.
Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent

# nanoGPT's CPU recipe (SPEC section 3); --max_iters / --lr_decay_iters are appended separately.
CPU_RECIPE = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
]
# nanoGPT's GPU recipe: its config file exactly as it ships (CUDA, torch.compile, bfloat16 where
# the GPU has it, dropout 0.2, 200 evaluation batches); 5000 iterations.
GPU_RECIPE = ["config/train_shakespeare_char.py"]
RECIPES = {"cpu": (CPU_RECIPE, 2000, 20), "gpu": (GPU_RECIPE, 5000, 200)}  # args, max_iters, eval_iters
RECIPE_EVAL_INTERVAL = 250  # from config/train_shakespeare_char.py
RECIPE_WARMUP_ITERS = 100  # likewise

# Shape of the full lecture-sized model used for the sampling measurement.
SAMPLE_MODEL = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65, dropout=0.0, bias=False)
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_K = 200

RESULT_MARK = "NANOGPT_SIDE_RESULT "

# Run inside NANOGPT_DIR: loss of a checkpoint over the whole of val.bin.
_FULL_VAL_SNIPPET = r"""
import json, sys
import numpy as np
import torch
import torch.nn.functional as F
sys.path.insert(0, ".")
from model import GPT, GPTConfig

ckpt_path, val_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
except Exception:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
model = GPT(GPTConfig(**ckpt["model_args"]))
state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
model.load_state_dict(state)
model.eval()

ids = torch.from_numpy(np.fromfile(val_path, dtype=np.uint16).astype(np.int64))
T = model.config.block_size
n_targets = ids.numel() - 1
n_full = n_targets // T
total, count = 0.0, 0
with torch.no_grad():
    for s in range(0, n_full, batch):
        e = min(n_full, s + batch)
        x = ids[s * T:e * T].view(e - s, T)
        y = ids[s * T + 1:e * T + 1].view(e - s, T)
        logits, _ = model(x, y)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    tail = n_targets - n_full * T
    if tail:
        x = ids[n_full * T:n_full * T + tail].view(1, tail)
        y = ids[n_full * T + 1:n_full * T + 1 + tail].view(1, tail)
        logits, _ = model(x, y)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
out = {
    "val_loss_full": total / count,
    "targets_scored": count,
    "windows": n_full + (1 if tail else 0),
    "block_size": T,
    "ckpt_iter_num": int(ckpt.get("iter_num", -1)),
    "ckpt_best_val_loss": float(ckpt.get("best_val_loss", float("nan"))),
    "n_params": sum(p.numel() for p in model.parameters()),
    "torch_threads": torch.get_num_threads(),
}
print("NANOGPT_SIDE_RESULT " + json.dumps(out), flush=True)
"""

# Run inside NANOGPT_DIR: time GPT.generate for one batch size.
_SAMPLE_SNIPPET = r"""
import json, statistics, sys, time
import torch
sys.path.insert(0, ".")
from model import GPT, GPTConfig

cfg, batch, new_tokens, repeats, temperature, top_k = json.loads(sys.argv[1])
torch.manual_seed(1337)
model = GPT(GPTConfig(**cfg))
model.eval()
prompt = torch.zeros((batch, 1), dtype=torch.long)
model.generate(prompt, min(8, new_tokens), temperature=temperature, top_k=top_k)  # warm-up
seconds = []
for _ in range(repeats):
    t0 = time.perf_counter()
    out = model.generate(prompt, new_tokens, temperature=temperature, top_k=top_k)
    seconds.append(time.perf_counter() - t0)
assert out.shape == (batch, 1 + new_tokens)
med = statistics.median(seconds)
res = {
    "batch": batch,
    "new_tokens": new_tokens,
    "seconds": seconds,
    "seconds_median": med,
    "tokens_per_s": batch * new_tokens / med,
    "ms_per_step": 1000 * med / new_tokens,
    "n_params": sum(p.numel() for p in model.parameters()),
    "n_params_no_wpe": model.get_num_params(),
    "torch_threads": torch.get_num_threads(),
}
print("NANOGPT_SIDE_RESULT " + json.dumps(res), flush=True)
"""


class HarnessError(Exception):
    """A problem to report to the user in one line."""


# --------------------------------------------------------------------------------------------
# helpers


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO_ROOT)
        return True
    except ValueError:
        return False


def _resolve_nanogpt_dir(arg: str | None) -> Path:
    raw = arg or os.environ.get("NANOGPT_DIR")
    if not raw:
        raise HarnessError("no nanoGPT checkout given: pass --nanogpt-dir DIR or set NANOGPT_DIR")
    d = Path(raw).expanduser().resolve()
    if not d.is_dir():
        raise HarnessError(f"nanoGPT directory {d} does not exist")
    for needed in ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py"):
        if not (d / needed).is_file():
            raise HarnessError(f"{d} does not look like a nanoGPT checkout (no {needed})")
    if _inside_repo(d):
        raise HarnessError(f"nanoGPT directory {d} is inside this repository; keep it outside (scratch)")
    return d


def _find_text(arg: str | None, nanogpt_dir: Path) -> Path:
    candidates = [arg] if arg else [
        os.environ.get("TINYSHAKESPEARE"),
        str(nanogpt_dir / "data" / "shakespeare_char" / "input.txt"),
        "/work/shared/data/tinyshakespeare.txt",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    if arg:
        raise HarnessError(f"text file {arg} not found")
    raise HarnessError("Tiny Shakespeare text not found: pass --text FILE or set TINYSHAKESPEARE")


def _git_commit(d: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_child(cmd: list[str], cwd: Path, log_path: Path | None = None, progress=None) -> dict:
    """Run ``cmd`` in ``cwd``; return rc, wall seconds, peak RSS (MB) and its combined output.

    Peak memory comes from ``os.wait4`` on this one child, so earlier children do not leak into
    the figure (as they would with ``getrusage(RUSAGE_CHILDREN)``). ``progress`` is called with
    each output line as it arrives.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    lines: list[str] = []
    logf = open(log_path, "w") if log_path else None
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if logf:
                logf.write(line)
            if progress:
                progress(line)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
    finally:
        if logf:
            logf.close()
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    rss_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return {"rc": proc.returncode, "wall_s": wall, "peak_rss_mb": rss_mb, "output": "".join(lines)}


def _result_from_output(output: str, what: str) -> dict:
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = "\n".join(output.splitlines()[-15:])
    raise HarnessError(f"{what} produced no result; last output:\n{tail}")


# --------------------------------------------------------------------------------------------
# (a) data


def prepare_data(text_path: Path, data_dir: Path) -> dict:
    """Write nanoGPT's shakespeare_char files (train.bin, val.bin, meta.pkl) into ``data_dir``."""
    if _inside_repo(data_dir):
        raise HarnessError(f"data directory {data_dir} is inside this repository; use a scratch directory")
    text = text_path.read_text(encoding="utf-8")
    vocab = sorted(set(text))
    if len(vocab) > 65535:
        raise HarnessError("vocabulary does not fit uint16")
    stoi = {ch: i for i, ch in enumerate(vocab)}
    itos = {i: ch for ch, i in stoi.items()}
    ids = np.fromiter((stoi[ch] for ch in text), dtype=np.uint16, count=len(text))
    cut = int(len(text) * 0.9)
    data_dir.mkdir(parents=True, exist_ok=True)
    ids[:cut].tofile(data_dir / "train.bin")
    ids[cut:].tofile(data_dir / "val.bin")
    with open(data_dir / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(vocab), "itos": itos, "stoi": stoi}, f)
    return {
        "text": str(text_path),
        "data_dir": str(data_dir),
        "chars": len(text),
        "vocab_size": len(vocab),
        "train_tokens": cut,
        "val_tokens": len(text) - cut,
    }


# --------------------------------------------------------------------------------------------
# (b) training

_ITER_RE = re.compile(r"^iter (\d+): loss ([0-9.naif+-]+), time ([0-9.]+)ms")
_EVAL_RE = re.compile(r"^step (\d+): train loss ([0-9.naif+-]+), val loss ([0-9.naif+-]+)")
_TOK_RE = re.compile(r"^tokens per iteration will be: ([0-9,]+)")
_PARAMS_RE = re.compile(r"^number of parameters: ([0-9.]+)M")


def parse_train_log(text: str, eval_interval: int) -> dict:
    iters: list[tuple[int, float, float]] = []
    evals: list[tuple[int, float, float]] = []
    tokens_per_iter = None
    params_m = None
    for line in text.splitlines():
        if m := _ITER_RE.match(line):
            iters.append((int(m[1]), float(m[2]), float(m[3])))
        elif m := _EVAL_RE.match(line):
            evals.append((int(m[1]), float(m[2]), float(m[3])))
        elif m := _TOK_RE.match(line):
            tokens_per_iter = int(m[1].replace(",", ""))
        elif m := _PARAMS_RE.match(line):
            params_m = float(m[1])
    if not iters or tokens_per_iter is None:
        raise HarnessError("could not find nanoGPT's per-iteration log lines (iter N: loss ..., time ...ms)")
    # nanoGPT's dt for iteration k includes the evaluation done at the top of iteration k.
    steady = [ms for it, _, ms in iters if it != 0 and it % eval_interval != 0]
    if not steady:  # extremely short runs
        steady = [ms for it, _, ms in iters if it != 0] or [iters[-1][2]]
    med = statistics.median(steady)
    mean = statistics.fmean(steady)
    out = {
        "iterations_logged": len(iters),
        "last_iter": iters[-1][0],
        "last_train_batch_loss": iters[-1][1],
        "tokens_per_iter": tokens_per_iter,
        "nanogpt_params_M": params_m,
        "ms_per_iter_median": med,
        "ms_per_iter_mean": mean,
        "ms_per_iter_p10": float(np.percentile(steady, 10)),
        "ms_per_iter_p90": float(np.percentile(steady, 90)),
        "tokens_per_s_median": tokens_per_iter / (med / 1000),
        "tokens_per_s_mean": tokens_per_iter / (mean / 1000),
        "loop_s_logged": sum(ms for _, _, ms in iters) / 1000,
        "evals": [{"step": s, "train_loss": tl, "val_loss": vl} for s, tl, vl in evals],
    }
    if evals:
        out["final_eval_step"] = evals[-1][0]
        out["est_train_loss"] = evals[-1][1]
        out["est_val_loss"] = evals[-1][2]
    return out


_SEED_LAUNCHER = (
    "import runpy, sys, torch\n"
    "offset, seed = int(sys.argv[1]), torch.manual_seed\n"
    "torch.manual_seed = lambda s: seed(s + offset)\n"
    "sys.argv = sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def run_train(args, nanogpt_dir: Path, data_info: dict, out_dir: Path, log_path: Path, python: str) -> dict:
    n = args.max_iters
    eval_interval = RECIPE_EVAL_INTERVAL
    cmd = [python, "train.py", *RECIPES[args.recipe][0], f"--max_iters={n}", f"--lr_decay_iters={n}",
           f"--out_dir={out_dir}", "--always_save_checkpoint=True"]
    offset = getattr(args, "seed_offset", 0)
    if offset:
        # train.py seeds with torch.manual_seed(1337 + its DDP rank) and has no seed setting: run it
        # through a launcher that shifts that seed, leaving nanoGPT's files untouched.
        cmd = [python, "-c", _SEED_LAUNCHER, str(offset), *cmd[1:]]
    if n % RECIPE_EVAL_INTERVAL != 0:
        # make sure the last iteration is evaluated and checkpointed (smoke runs)
        eval_interval = n
        cmd.append(f"--eval_interval={n}")
    default_data = nanogpt_dir / "data" / "shakespeare_char"
    if Path(data_info["data_dir"]).resolve() != default_data.resolve():
        # train.py reads os.path.join('data', dataset): an absolute path replaces the prefix
        cmd.append(f"--dataset={data_info['data_dir']}")
    cmd.extend(args.train_extra or [])

    if out_dir.exists():
        shutil.rmtree(out_dir)

    def progress(line: str) -> None:
        if args.quiet:
            return
        if line.startswith("step ") or (line.startswith("iter ") and _every(line, args.progress_every)):
            print("    nanoGPT | " + line.rstrip(), flush=True)

    print(f"  running: (cd {nanogpt_dir} && {' '.join(cmd[1:])})", flush=True)
    child = run_child(cmd, nanogpt_dir, log_path, progress)
    if child["rc"] != 0:
        tail = "\n".join(child["output"].splitlines()[-15:])
        raise HarnessError(f"nanoGPT train.py exited with status {child['rc']} (log: {log_path}):\n{tail}")
    parsed = parse_train_log(child["output"], eval_interval)
    res = {
        "command": cmd,
        "cwd": str(nanogpt_dir),
        "log": str(log_path),
        "recipe": args.recipe,
        "max_iters": n,
        "optimizer_steps": parsed["last_iter"] + 1,
        "eval_interval": eval_interval,
        "wall_s": child["wall_s"],
        "peak_rss_mb": child["peak_rss_mb"],
        "tokens_per_s_wall": (parsed["last_iter"] + 1) * parsed["tokens_per_iter"] / child["wall_s"],
        **parsed,
    }
    ckpt = out_dir / "ckpt.pt"
    if not ckpt.is_file():
        raise HarnessError(f"nanoGPT wrote no checkpoint at {ckpt}")
    res["checkpoint"] = str(ckpt)
    return res


def _every(line: str, k: int) -> bool:
    m = _ITER_RE.match(line)
    return bool(m) and k > 0 and int(m[1]) % k == 0


def full_val_loss(nanogpt_dir: Path, ckpt: Path, val_bin: Path, python: str) -> dict:
    child = run_child([python, "-c", _FULL_VAL_SNIPPET, str(ckpt), str(val_bin), "64"], nanogpt_dir)
    if child["rc"] != 0:
        tail = "\n".join(child["output"].splitlines()[-15:])
        raise HarnessError(f"whole-split validation pass failed (status {child['rc']}):\n{tail}")
    res = _result_from_output(child["output"], "whole-split validation pass")
    res["wall_s"] = child["wall_s"]
    return res


# --------------------------------------------------------------------------------------------
# (c) sampling


def run_sample(nanogpt_dir: Path, batch: int, new_tokens: int, repeats: int, python: str) -> dict:
    spec = json.dumps([SAMPLE_MODEL, batch, new_tokens, repeats, SAMPLE_TEMPERATURE, SAMPLE_TOP_K])
    child = run_child([python, "-c", _SAMPLE_SNIPPET, spec], nanogpt_dir)
    if child["rc"] != 0:
        tail = "\n".join(child["output"].splitlines()[-15:])
        raise HarnessError(f"sampling at batch {batch} failed (status {child['rc']}):\n{tail}")
    res = _result_from_output(child["output"], f"sampling at batch {batch}")
    res["process_wall_s"] = child["wall_s"]
    res["peak_rss_mb"] = child["peak_rss_mb"]
    return res


# --------------------------------------------------------------------------------------------
# reporting


def _summarise_train(runs: list[dict]) -> dict:
    keys = ["wall_s", "peak_rss_mb", "ms_per_iter_median", "ms_per_iter_mean", "tokens_per_s_median",
            "tokens_per_s_wall", "est_val_loss", "val_loss_full"]
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            out[k] = statistics.median(vals)
    return out


def format_report(report: dict) -> str:
    lines = []
    env = report["environment"]
    lines.append("")
    lines.append(f"nanoGPT side  (nanoGPT {str(env.get('nanogpt_commit'))[:10]}, torch {env['torch']}, "
                 f"{env['torch_threads']} thread(s), {env['logical_cpus']} logical CPUs, {env['cpu']})")
    if "train" in report:
        tr = report["train"]
        runs = tr["runs"]
        s = tr["summary"]
        r0 = runs[0]
        lines.append("")
        lines.append(f"train: {r0.get('recipe', 'cpu').upper()} recipe, {r0['max_iters']} iters "
                     f"({r0['optimizer_steps']} optimizer steps), "
                     f"{r0['tokens_per_iter']} tokens/iter, "
                     f"{r0.get('nanogpt_params_M')}M params (nanoGPT count)"
                     + (f", median of {len(runs)} runs" if len(runs) > 1 else ""))
        rows = [
            ("wall time (whole process)", f"{s['wall_s']:.1f} s"),
            ("ms / iteration (median, excl. eval iters)", f"{s['ms_per_iter_median']:.1f} ms"),
            ("ms / iteration (mean, excl. eval iters)", f"{s['ms_per_iter_mean']:.1f} ms"),
            ("tokens / s (from median ms/iter)", f"{s['tokens_per_s_median']:,.0f}"),
            ("tokens / s (all steps / wall time)", f"{s['tokens_per_s_wall']:,.0f}"),
            ("peak resident memory", f"{s['peak_rss_mb']:.0f} MB"),
        ]
        if "est_val_loss" in s:
            rows.append((f"val loss, nanoGPT estimate (step {r0.get('final_eval_step')}, "
                         f"{RECIPES[r0.get('recipe', 'cpu')][2]} random batches)", f"{s['est_val_loss']:.4f}"))
        if "val_loss_full" in s:
            fv = r0["full_val"]
            rows.append((f"val loss, whole split (ckpt step {fv['ckpt_iter_num']}, "
                         f"{fv['targets_scored']:,} targets)", f"{s['val_loss_full']:.4f}"))
        w = max(len(a) for a, _ in rows)
        lines += [f"  {a:<{w}}  {b:>12}" for a, b in rows]
    if "sample" in report:
        sm = report["sample"]
        lines.append("")
        mdl = sm["model"]
        lines.append(f"sample: GPT.generate, {mdl['n_layer']} layers / {mdl['n_head']} heads / "
                     f"{mdl['n_embd']} wide / block {mdl['block_size']}, "
                     f"{sm['runs'][0]['n_params'] / 1e6:.2f}M params, temperature {SAMPLE_TEMPERATURE}, "
                     f"top-k {SAMPLE_TOP_K}, no KV cache")
        lines.append(f"  {'batch':>5} {'new tokens':>10} {'seconds':>9} {'ms/step':>9} {'tokens/s':>10} "
                     f"{'peak RSS':>9}")
        for r in sm["runs"]:
            lines.append(f"  {r['batch']:>5} {r['new_tokens']:>10} {r['seconds_median']:>9.2f} "
                         f"{r['ms_per_step']:>9.1f} {r['tokens_per_s']:>10.1f} {r['peak_rss_mb']:>6.0f} MB")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# main


def _parse_batches(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark nanoGPT (an external checkout) on this machine: its CPU training recipe "
                    "on Tiny Shakespeare and its sampling speed. Nothing is written inside this repository.",
    )
    p.add_argument("--nanogpt-dir", default=None,
                   help="path to a nanoGPT checkout (default: $NANOGPT_DIR)")
    p.add_argument("--what", choices=["train", "sample", "all"], default="all",
                   help="which measurements to run (default all)")
    p.add_argument("--repeats", type=int, default=1,
                   help="training runs, and timed generations per batch size; medians are reported "
                        "(default 1)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the full results as JSON here")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="cpu",
                   help="nanoGPT's CPU recipe (SPEC section 3's command line) or its GPU recipe "
                        "(config/train_shakespeare_char.py as it ships; needs CUDA) (default cpu)")
    p.add_argument("--max-iters", type=int, default=None,
                   help="override the recipe's max_iters (and lr_decay_iters); e.g. 50 for a smoke run "
                        "(default: the recipe's, 2000 on CPU, 5000 on GPU)")
    p.add_argument("--text", default=None,
                   help="Tiny Shakespeare text (default: $TINYSHAKESPEARE, nanoGPT's data/shakespeare_char/"
                        "input.txt, or /work/shared/data/tinyshakespeare.txt)")
    p.add_argument("--data-dir", default=None,
                   help="where to write train.bin/val.bin/meta.pkl "
                        "(default: $NANOGPT_DIR/data/shakespeare_char)")
    p.add_argument("--work-dir", default=None,
                   help="scratch dir for nanoGPT's out_dir and logs (default: a new temp dir, removed "
                        "afterwards unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the temp work dir (checkpoint and logs)")
    p.add_argument("--sample-tokens", type=int, default=200, help="new tokens per generation (default 200)")
    p.add_argument("--sample-batches", type=_parse_batches, default=[1, 64], metavar="B[,B...]",
                   help="batch sizes for sampling (default 1,64)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the nanoGPT subprocesses (default: this one)")
    p.add_argument("--train-extra", action="append", metavar="--key=value",
                   help="extra override passed to nanoGPT's train.py (repeatable; use --train-extra=--x=y)")
    p.add_argument("--seed-offset", type=int, default=0,
                   help="add this to nanoGPT's seed (1337) to measure its seed-to-seed spread; repeat r "
                        "uses seed offset + r (default 0: nanoGPT as it is)")
    p.add_argument("--progress-every", type=int, default=100,
                   help="echo every Nth nanoGPT iteration line while training (0: only evals; default 100)")
    p.add_argument("--quiet", action="store_true", help="do not echo nanoGPT's progress")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except HarnessError as e:
        print(f"nanogpt_side: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nanogpt_side: interrupted", file=sys.stderr)
        return 130


def _main(args) -> int:
    if args.repeats < 1:
        raise HarnessError("--repeats must be >= 1")
    if args.max_iters is None:
        args.max_iters = RECIPES[args.recipe][1]
    if args.max_iters < 1:
        raise HarnessError("--max-iters must be >= 1")
    if args.max_iters == RECIPE_WARMUP_ITERS:
        raise HarnessError(f"--max-iters {RECIPE_WARMUP_ITERS} equals nanoGPT's warmup_iters, which makes "
                           "its cosine schedule divide by zero; pick another value")
    if args.sample_tokens < 1 or args.sample_tokens + 1 > SAMPLE_MODEL["block_size"]:
        raise HarnessError(f"--sample-tokens must be between 1 and {SAMPLE_MODEL['block_size'] - 1} "
                           "(prompt + new tokens must fit the block, so no context is cropped)")

    nanogpt_dir = _resolve_nanogpt_dir(args.nanogpt_dir)
    import torch  # only for reporting the environment; nanoGPT itself runs in subprocesses

    report: dict = {
        "environment": {
            "nanogpt_dir": str(nanogpt_dir),
            "nanogpt_commit": _git_commit(nanogpt_dir),
            "python": args.python,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "logical_cpus": os.cpu_count(),
            "cpu": _cpu_name(),
            "load_avg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    }

    cleanup = None
    if args.work_dir:
        work = Path(args.work_dir).expanduser().resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="nanogpt-side-"))
        cleanup = None if args.keep else work
    if _inside_repo(work):
        raise HarnessError(f"work directory {work} is inside this repository; use a scratch directory")

    try:
        if args.what in ("train", "all"):
            text = _find_text(args.text, nanogpt_dir)
            data_dir = (Path(args.data_dir).expanduser().resolve() if args.data_dir
                        else nanogpt_dir / "data" / "shakespeare_char")
            print(f"preparing data from {text} -> {data_dir}", flush=True)
            data_info = prepare_data(text, data_dir)
            print(f"  {data_info['chars']:,} chars, vocab {data_info['vocab_size']}, "
                  f"train {data_info['train_tokens']:,} / val {data_info['val_tokens']:,} tokens", flush=True)
            runs = []
            for r in range(args.repeats):
                tag = f"run{r + 1}"
                print(f"training ({tag}/{args.repeats}, max_iters={args.max_iters}) ...", flush=True)
                offset = args.seed_offset + r if args.seed_offset else 0  # 0: timing repeats of one seed
                res = run_train(argparse.Namespace(**{**vars(args), "seed_offset": offset}), nanogpt_dir,
                                data_info, work / f"out-{tag}", work / f"train-{tag}.log", args.python)
                res["seed"] = 1337 + offset
                print(f"  done: {res['wall_s']:.1f} s wall, {res['ms_per_iter_median']:.1f} ms/iter, "
                      f"peak {res['peak_rss_mb']:.0f} MB; whole-split validation pass ...", flush=True)
                fv = full_val_loss(nanogpt_dir, Path(res["checkpoint"]), data_dir / "val.bin", args.python)
                res["full_val"] = fv
                res["val_loss_full"] = fv["val_loss_full"]
                if cleanup:
                    res["checkpoint"] = None  # removed with the temp dir
                    res["log"] = None
                runs.append(res)
            report["train"] = {"data": data_info, "runs": runs, "summary": _summarise_train(runs)}

        if args.what in ("sample", "all"):
            sruns = []
            for b in args.sample_batches:
                print(f"sampling: batch {b}, {args.sample_tokens} new tokens, {args.repeats} timed "
                      f"repeat(s) ...", flush=True)
                r = run_sample(nanogpt_dir, b, args.sample_tokens, args.repeats, args.python)
                print(f"  {r['tokens_per_s']:.1f} tokens/s", flush=True)
                sruns.append(r)
            report["sample"] = {"model": SAMPLE_MODEL, "temperature": SAMPLE_TEMPERATURE,
                                "top_k": SAMPLE_TOP_K, "runs": sruns}
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)

    report["environment"]["load_avg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
