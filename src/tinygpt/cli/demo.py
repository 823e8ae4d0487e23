"""`tinygpt demo assistant`: the whole pipeline (pretrain, sft, reward, rl; or dpo) on built-in data, graded."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import TinyGPTError
from .args import seed_number


def add_parsers(sub):
    p = sub.add_parser("demo", help="run a whole pipeline on built-in data: `tinygpt demo assistant`",
                       description="Demos that generate their own data, offline, and report what each stage did.")
    demos = p.add_subparsers(dest="demo", metavar="DEMO", parser_class=type(p), required=True)
    a = demos.add_parser(
        "assistant", help="pretrain, sft, reward model and rl on sums, each stage graded on held-out questions",
        description="Turn a document completer into an assistant, offline, in minutes on a CPU: pretrain a small "
        "character-level GPT on statements of sums (\"3 + 4 = 7.\"), fine-tune it (tinygpt sft) to answer \"What is "
        "3 + 4?\" with \"The answer is 7.\", train a reward model (tinygpt reward) on generated preference pairs, and "
        "train the sft model by reinforcement learning (tinygpt rl, GRPO against the grader); then the other road "
        "from the sft model, DPO on the same preference pairs (tinygpt dpo), with each road's wall time. Each stage is "
        "graded "
        "by exact match on held-out questions that no stage trains on; the table and DIR/results.json report it.")
    a.add_argument("--out", default="runs/demo-assistant", metavar="DIR",
                   help="where the runs, the generated data and results.json go (default: runs/demo-assistant)")
    a.add_argument("--seed", type=seed_number, default=0, help="seed of the data split and of every stage (default: 0)")
    a.add_argument("--quick", action="store_true",
                   help="tiny models and a few steps each (seconds; checks the pipeline, learns nothing)")
    p.set_defaults(func=demo)


def demo(args) -> int:
    from ..demo.assistant import run_demo, table

    out = Path(args.out)
    stages = ("base", "sft", "reward", "rl", "dpo")
    if (out / "results.json").exists() or any((out / stage).exists() for stage in stages):
        raise TinyGPTError(f"{out} already holds a demo; remove it or pass another --out")
    results = run_demo(out, seed=args.seed, quick=args.quick, log=lambda m: print(m, flush=True))
    print(table(results))
    samples = results["samples"]
    # A question the stages answer differently shows most; the first one when they all agree.
    q = next((q for q, r in samples.items() if len({r["base"], r["sft"], r["rl"]}) == 3), next(iter(samples)))
    sample = samples[q]
    print(f"\nheld-out question {q!r}:")
    for stage in ("base", "sft", "rl", "dpo"):
        print(f"  {stage:>4}: {json.dumps(sample[stage])}")
    print(f"\nsaved in {out}: results.json; the runs base, sft, reward, rl, dpo (try: tinygpt chat {out / 'rl'})")
    return 0
