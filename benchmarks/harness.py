"""Issue 28's numbers: EleutherAI's lm-evaluation-harness on a tinygpt run, in-process and through the server.

    python benchmarks/harness.py                                # trains a small Shakespeare run first
    python benchmarks/harness.py --run runs/shakespeare         # or measures this run (a char or BPE GPT)
    python benchmarks/harness.py --quick                        # a smoke run (numbers meaningless)
    python benchmarks/harness.py --json benchmarks/results/harness.json

On one run and one text (the first --chars characters of tiny Shakespeare's validation split, the last
10% of the file):

1. Bits per byte. `tinygpt eval RUN --data TEXT` (tinygpt's exact pass: windows of block_size tokens,
   the first token of the text not scored), against the harness's rolling perplexity task on the same
   text as one document: in-process (`TinyGPTLM`), through `tinygpt serve` with the harness's
   `local-completions` client at max_length = block_size + 2 (the same windows: the numbers must be
   equal) and at max_length = block_size (windows two tokens shorter).
2. Throughput. A multiple-choice task of --questions questions with 4 choices each (a line of the
   text, then which of 4 next lines follows it), so 4 loglikelihood requests per question: requests/s
   through the server at the harness's batch size 1 and 16 (prompts per HTTP request; the server
   scores a request's prompts in one batch), and in-process for comparison. Each timing is the median
   of --repeats runs of simple_evaluate (task building included, the task index built once before).

The server is its own process (`tinygpt serve RUN --port P --quiet`), as a user runs it. Load averages
are printed before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # harness_tasks: the tests' task writer

from harness_tasks import write_choice, write_rolling  # noqa: E402


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tinygpt(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinygpt", *args], check=True, capture_output=True, text=True, **kw)


def make_run(out: Path, quick: bool) -> Path:
    steps = "50" if quick else "1500"
    tinygpt("train", "--data", "shakespeare", "--out", str(out), "--max-iters", steps, "--n-layer", "4",
            "--n-head", "4", "--n-embd", "128", "--block-size", "128", "--batch-size", "32", "--lr", "2e-3",
            "--no-progress", "--sample-tokens", "0")
    return out


def validation_text(chars: int) -> str:
    from tinygpt.data import SHAKESPEARE_FILE

    text = (Path(os.environ["TINYGPT_DATA_DIR"]) / SHAKESPEARE_FILE).read_text(encoding="utf-8")
    val = text[int(len(text) * 0.9):]
    return val[:chars]


def questions(text: str, n: int) -> list[tuple[str, list[str], int]]:
    """Which of four lines follows this one? (the right one, and three lines from elsewhere in the text)."""
    lines = [line for line in text.splitlines() if line.strip()]
    rng = random.Random(0)
    out = []
    for i in range(min(n, len(lines) - 1)):
        wrong = rng.sample([j for j in range(len(lines)) if j != i + 1], 3)
        choices = [lines[i + 1]] + [lines[j] for j in wrong]
        order = list(range(4))
        rng.shuffle(order)
        out.append((lines[i] + "\n", [choices[k] for k in order], order.index(0)))
    return out


def evaluate(model, tasks: list[str], manager, batch_size: int, model_args: str | None = None) -> tuple[dict, float]:
    import contextlib

    import lm_eval

    started = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # the harness's progress bars
        results = _evaluate(lm_eval, model, tasks, manager, batch_size, model_args)
    return results, time.perf_counter() - started


def _evaluate(lm_eval, model, tasks, manager, batch_size, model_args) -> dict:
    if model_args is None:
        results = lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=manager, bootstrap_iters=0,
                                          log_samples=False)
    else:
        results = lm_eval.simple_evaluate(model="local-completions", model_args=model_args, tasks=tasks,
                                          task_manager=manager, batch_size=batch_size, bootstrap_iters=0,
                                          log_samples=False)
    return results["results"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="the run to measure (default: train a small Shakespeare GPT)")
    parser.add_argument("--chars", type=int, default=50_000, help="characters of the validation text (50,000)")
    parser.add_argument("--questions", type=int, default=100, help="multiple-choice questions (100: 400 requests)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()
    if args.quick:
        args.chars, args.questions, args.repeats = 3000, 8, 1
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)

    import torch
    from lm_eval.tasks import TaskManager

    import tinygpt as tg
    from tinygpt.evaluation.harness import TinyGPTLM

    torch.set_num_threads(os.cpu_count())
    work = Path(tempfile.mkdtemp(prefix="tinygpt-harness-"))
    run_dir = Path(args.run) if args.run else make_run(work / "run", args.quick)
    run = tg.load(run_dir)
    block = run.model_config.block_size
    load_before = load()
    print(f"run {run_dir}: {run.model.num_params():,} parameters, block_size {block}, {run.tokenizer.kind} tokenizer; "
          f"load before: {load_before}", flush=True)

    text = validation_text(args.chars)
    (work / "text.txt").write_text(text, encoding="utf-8")
    ours = json.loads(tinygpt("eval", str(run_dir), "--data", str(work / "text.txt"), "--json").stdout)
    tasks = work / "tasks"
    rolling = write_rolling(tasks, [text], name="shakespeare_val")
    choice = write_choice(tasks, questions(text, args.questions), name="next_line")
    manager = TaskManager(include_path=str(tasks), include_defaults=False)

    lm = TinyGPTLM(run.model, run.tokenizer, batch_size=16)
    here, _ = evaluate(lm, [rolling], manager, 16)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tinygpt", "serve", str(run_dir), "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.request

        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/v1/completions"
        name = run_dir.resolve().name

        def served(max_length: int) -> str:
            return f"model={name},base_url={url},max_length={max_length},num_concurrent=1"

        there, _ = evaluate(None, [rolling], manager, 16, served(block + 2))
        shorter, _ = evaluate(None, [rolling], manager, 16, served(block))
        bpb = {"tinygpt eval --data (bits per character)": ours["bits_per_char"],
               "harness in-process": here[rolling]["bits_per_byte,none"],
               f"harness through serve, max_length {block + 2}": there[rolling]["bits_per_byte,none"],
               f"harness through serve, max_length {block}": shorter[rolling]["bits_per_byte,none"]}
        print(f"\nbits per byte on {len(text):,} characters of the validation split ({len(text.encode()):,} bytes):")
        for label, value in bpb.items():
            print(f"  {label:46s} {value:.6f}  ({100 * (value / ours['bits_per_char'] - 1):+.3f}% against eval)")

        requests = 4 * len(questions(text, args.questions))
        rates, accuracy = {}, {}
        for label, model, batch, model_args in [("in-process, batch 16", lm, 16, None),
                                                ("server, batch 1", None, 1, served(block + 2)),
                                                ("server, batch 16", None, 16, served(block + 2))]:
            times = []
            for _ in range(args.repeats):
                results, seconds = evaluate(model, [choice], manager, batch, model_args)
                times.append(seconds)
            accuracy[label] = results[choice]["acc,none"]
            rates[label] = {"requests_per_s": requests / statistics.median(times), "seconds": times}
        print(f"\nloglikelihood requests ({requests} per run, median of {args.repeats}):")
        for label, rate in rates.items():
            print(f"  {label:22s} {rate['requests_per_s']:8.1f} requests/s   acc {accuracy[label]:.4f}   "
                  f"runs: {', '.join(f'{s:.2f} s' for s in rate['seconds'])}")
    finally:
        server.terminate()
        server.wait()
    print(f"\nload after: {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "run": str(run_dir), "parameters": run.model.num_params(), "block_size": block, "characters": len(text),
            "eval_data": ours, "bits_per_byte": bpb, "throughput": rates, "accuracy": accuracy,
            "load_before": load_before, "load_after": load(), "quick": args.quick}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
