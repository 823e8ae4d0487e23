"""LoRA against full fine-tuning of a 124M GPT-2-shaped model on the CPU: peak memory and tokens/s (issue 27).

    python benchmarks/lora_memory.py --json benchmarks/results/lora.json      # about 5 minutes on 2 cores

Builds the base locally (no Hub): a byte-level BPE trained on tiny Shakespeare, padded with unused tokens
to GPT-2's 50,257 ids, and GPT-2 small's shape (12 layers, 12 heads, n_embd 768, biases, GELU, tied
head: 124M parameters) with random weights and block_size 256 (GPT-2's 1024 would make every CPU step
four times longer and change nothing of the comparison), written by `tinygpt train --max-iters 0`.
Then fine-tunes it on tiny Shakespeare the same number of steps twice, each in a process of its own:
every weight (AdamW holds two moments of all 124M), and `--lora-rank 8` (the default targets, the
attention's qkv and output projections; the optimizer holds 442,368 adapter numbers). The peak resident
memory is the child's own (os.wait4's ru_maxrss); tokens/s is timed over the steps between the first
and the last (the first allocates, the last evaluates and saves).
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

MARK = "lora_memory worker:"
GPT2_SMALL = ["--n-layer", "12", "--n-head", "12", "--n-embd", "768", "--bias", "--qkv-bias", "--no-head-bias",
              "--activation", "gelu_tanh", "--tie-weights", "--block-size", "256"]
GPT2_VOCAB = 50257


def gpt2_sized_tokenizer(path: Path):
    """A byte-level BPE of tiny Shakespeare (21,527 ids: the text has no more merges to learn), padded with
    tokens the text never holds to GPT-2's 50,257, so the embedding and the tied head have GPT-2's shape."""
    from tinygpt.data.corpus import load_corpus
    from tinygpt.tokenizers.huggingface import HFTokenizer

    tokenizer = HFTokenizer.train(load_corpus("shakespeare"), GPT2_VOCAB)
    learnt = tokenizer.vocab_size
    tokenizer.hf.add_special_tokens([f"<|unused{i}|>" for i in range(GPT2_VOCAB - learnt)])
    path.write_text(tokenizer.hf.to_str(), encoding="utf-8")
    return learnt


def worker(settings: dict) -> int:
    """One fine-tuning run, in this process: the times of its steps (on_step), then a line for the parent."""
    import tinygpt

    times = []
    result = tinygpt.train(**settings, on_step=lambda trainer: times.append(time.perf_counter()))
    steady = len(times) - 2  # the steps from the first's end to the one before the last's evaluation
    tokens_per_step = settings["batch_size"] * 256
    print(MARK, json.dumps({"tokens_per_s": round(tokens_per_step * steady / (times[-2] - times[0]), 1),
                            "step_s": round((times[-2] - times[0]) / steady, 2), "val_loss": result.val_loss,
                            "params": result.num_params}), flush=True)
    return 0


def measure(name: str, settings: dict, folder: Path) -> dict:
    """`settings` trained by a child process; its report, with its peak resident memory (Linux: KB)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(settings)]
    out_path, err_path = folder / f"{name}.out", folder / f"{name}.err"
    start = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its peak resident memory
    wall = time.perf_counter() - start
    out, err = out_path.read_text(), err_path.read_text()
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        raise SystemExit(f"lora_memory: the {name} run failed:\n{out[-2000:]}{err[-3000:]}")
    report = json.loads(lines[0].split(MARK, 1)[1])
    return {"run": name, **report, "peak_rss_mb": round(usage.ru_maxrss / 1024), "wall_s": round(wall, 1),
            "log": [line for line in out.splitlines() if line.startswith(("tinygpt ", "step "))]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="LoRA rank 8 against full fine-tuning of a 124M GPT-2-shaped model.")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps of each run (default 6)")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences of 256 tokens per step (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each run (default 2)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a child: the settings of one run, as JSON
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(json.loads(args.worker))
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tinygpt-lora-") as tmp:
        tmp = Path(tmp)
        learnt = gpt2_sized_tokenizer(tmp / "tokenizer.json")
        base = ["train", "--data", "shakespeare", "--tokenizer", str(tmp / "tokenizer.json"), *GPT2_SMALL,
                "--max-iters", "0", "--eval-iters", "1", "--batch-size", "4", "--threads", str(args.threads),
                "--no-progress", "--sample-tokens", "0", "--out", str(tmp / "base")]
        subprocess.run([sys.executable, "-m", "tinygpt", *base], check=True, capture_output=True)
        common = dict(init_from=str(tmp / "base"), data="shakespeare", max_iters=args.steps, eval_interval=args.steps,
                      eval_iters=1, batch_size=args.batch_size, threads=args.threads, warmup_iters=0, lr=3e-4,
                      progress=False, sample_tokens=0)
        rows = [measure("full fine-tuning", dict(common, out=str(tmp / "full")), tmp),
                measure("--lora-rank 8", dict(common, out=str(tmp / "lora"), lora_rank=8), tmp)]
    load_after = os.getloadavg()
    full, lora = rows
    print(f"| 124M GPT-2 shape, block 256, batch {args.batch_size}, {args.threads} threads | peak memory | tokens/s | "
          f"s/step | val loss after {args.steps} steps |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['run']} | {r['peak_rss_mb']:,} MB | {r['tokens_per_s']:,.0f} | {r['step_s']:.2f} | "
              f"{r['val_loss']:.4f} |")
    print(f"LoRA: {lora['peak_rss_mb'] / full['peak_rss_mb']:.2f}x the memory, "
          f"{lora['tokens_per_s'] / full['tokens_per_s']:.2f}x the tokens/s; load average {load_before[0]:.2f} "
          f"before, {load_after[0]:.2f} after")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "base_command": "tinygpt " + " ".join(base).replace(str(tmp), "TMP"), "bpe_ids_learnt": learnt,
            "fine_tune_settings": {k: v for k, v in common.items() if k != "init_from"}, "rows": rows,
            "load_average_before": load_before, "load_average_after": load_after,
            "seconds": round(time.perf_counter() - started)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
