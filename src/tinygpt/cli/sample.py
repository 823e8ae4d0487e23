"""`tinygpt sample` (text from a run, streamed as it is generated) and `tinygpt eval` (its exact loss)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from ..core.errors import TinyGPTError
from .args import add_loading, add_quantize, add_run, add_sampling, sampling_knobs


def add_parsers(sub):
    p = sub.add_parser("sample", help="generate text from a trained run",
                       description="Generate text from a trained run, streaming it as it is produced.")
    add_run(p, kind="gpt")
    p.add_argument("--prompt", default="", help="text to continue (default: start of a line)")
    p.add_argument("--prompt-file", default=None, metavar="FILE",
                   help="continue the text of this UTF-8 file instead (long or multi-line prompts)")
    add_sampling(p)
    p.add_argument("--num-samples", type=int, default=1, help="independent samples (default: 1)")
    p.add_argument("--stop", action="append", default=[], metavar="STRING",
                   help="end a sample when this string appears (repeatable)")
    add_loading(p)
    add_quantize(p)
    p.set_defaults(func=sample)

    p = sub.add_parser("eval", help="loss and bits per character over the whole validation split, or the "
                       "lm-evaluation-harness's tasks (--tasks)",
                       description="Exact loss over the whole validation split (or a whole file). On a run of "
                       "`tinygpt sft`: the loss on the assistant's tokens of its held-out conversations; on a run of "
                       "`tinygpt reward`: the pairwise accuracy on its held-out preference pairs; on a run of "
                       "`tinygpt dpo`: the share of held-out pairs whose chosen reply gets the higher implicit "
                       "reward, and the mean margin. With --tasks: "
                       "EleutherAI's lm-evaluation-harness on the run, in this process (pip install lm-eval).")
    add_run(p)
    harness = p.add_argument_group("the lm-evaluation-harness (--tasks)")
    harness.add_argument("--tasks", default=None, metavar="NAMES", help="comma-separated harness tasks or groups "
                         "(e.g. arc_easy,hellaswag,wikitext: downloaded from the Hugging Face Hub; list them with "
                         "`lm-eval ls tasks`), or your own from --include-path")
    harness.add_argument("--include-path", default=None, metavar="DIR", help="a folder of task YAML files of your own")
    harness.add_argument("--limit", type=float, default=None, metavar="N",
                         help="at most N documents per task (a fraction of them if below 1)")
    harness.add_argument("--num-fewshot", type=int, default=None, metavar="N", help="examples before each question "
                         "(default: each task's own)")
    harness.add_argument("--batch-size", type=int, default=16, metavar="N",
                         help="sequences scored at once (default: 16)")
    harness.add_argument("--output", default=None, metavar="FILE", help="also write the harness's results as JSON")
    p.add_argument("--data", default=None, help="evaluate on all of this file instead (conversations for an sft "
                   "run, preference pairs for a reward run)")
    p.add_argument("--max-tokens", type=int, default=0, metavar="N", help="a language model: score a fixed subset "
                   "of at most N tokens, the one a training run's final evaluation scores (default: 0 = all; a "
                   "pass that will take long says so when it starts)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_loading(p)
    add_quantize(p)
    p.set_defaults(func=evaluate)


def sample(args) -> int:
    from ..app.run import load

    prompt = args.prompt
    if args.prompt_file is not None:
        if prompt:
            raise TinyGPTError("give the prompt with --prompt or --prompt-file, not both")
        from ..data import read_text_file

        prompt = read_text_file(args.prompt_file, what="prompt file")
    run = load(args.run, device=args.device, checkpoint=args.checkpoint, quantize=args.quantize)
    knobs = dict(sampling_knobs(args), stop=args.stop)
    if args.num_samples == 1:
        pieces = iter(run.stream(prompt, **knobs))
        # An unknown word or character, or a bad sampling knob, fails at the first piece: before
        # anything is printed.
        first = next(pieces, "")
        sys.stdout.write(prompt + first)
        sys.stdout.flush()
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    for i, text in enumerate(run.generate(prompt, num_samples=args.num_samples, **knobs)):
        print(f"--- sample {i + 1} ---")
        print(prompt + text)
    return 0


def evaluate(args) -> int:
    from ..app.run import load

    if args.tasks is not None:
        return evaluate_tasks(args)
    for flag in ("include_path", "limit", "num_fewshot", "output"):
        if getattr(args, flag) is not None:
            raise TinyGPTError(f"--{flag.replace('_', '-')} is for the lm-evaluation-harness: give --tasks NAMES too")
    run = load(args.run, device=args.device, checkpoint=args.checkpoint, quantize=args.quantize)
    if args.max_tokens < 0:
        raise TinyGPTError(f"--max-tokens must be 0 (all) or more, got {args.max_tokens}")
    result = run.evaluate(data=args.data, max_tokens=args.max_tokens, log=lambda line: print(line, file=sys.stderr))
    verb = run.config.verb  # what kind of run, so what was measured
    arch = run.model_config.arch
    if args.json:
        print(json.dumps(result))
    elif arch == "encoder-decoder":
        print(f"{result['split']} loss {result['loss']:.4f} over {result['tokens']:,} target tokens of "
              f"{result['pairs']:,} pairs; {result['bits_per_char']:.4f} bits per target character; "
              f"exact match {result['exact_match']:.1f}% (greedy)")
    elif arch == "encoder":
        print(f"{result['split']} loss {result['loss']:.4f} over {result['tokens']:,} hidden tokens; "
              f"perplexity {result['perplexity']:.2f}")
    elif verb == "reward":
        print(f"{result['split']} accuracy {result['accuracy']:.4f} over {result['pairs']:,} preference pairs "
              f"(the share whose chosen reply scores higher); loss {result['loss']:.4f}")
    elif verb == "dpo":
        print(f"{result['split']} accuracy {result['accuracy']:.4f} over {result['pairs']:,} preference pairs "
              f"(the share whose chosen reply gets the higher implicit reward), margin {result['margin']:.4f} "
              f"(beta {result['beta']:g}); loss {result['loss']:.4f}")
    elif verb == "sft":
        print(f"{result['split']} loss {result['loss']:.4f} over {result['tokens']:,} assistant tokens in "
              f"{result['conversations']:,} conversations; perplexity {result['perplexity']:.2f}")
    elif verb == "rl":
        print(f"{result['split']} reward {result['reward']:.4f} (mean over {result['prompts']:,} greedy replies, "
              f"{result['reply_tokens']:.1f} tokens each, scored by {result['reward_spec']})")
    else:
        print(f"{result['split']} loss {result['loss']:.4f} over {result['tokens']:,} tokens; "
              f"{result['bits_per_char']:.4f} bits per character; perplexity {result['perplexity']:.2f}")
        cfg = run.config.train
        if cfg.eval_iters and args.data is None and not args.max_tokens:
            block = run.model_config.block_size
            print(f"note: training logged another number, the mean loss of {cfg.eval_iters} random batches of "
                  f"windows; this pass scores each token once, in the window it falls in (tokens 0-{block - 1}, "
                  f"{block}-{2 * block - 1}, ...), and on a short text what a token sees before it depends on where "
                  "the windows fall")
    return 0


def evaluate_tasks(args) -> int:
    """`tinygpt eval RUN --tasks NAMES`: the harness's tasks on the run, its table printed."""
    import importlib.util

    from ..app.run import load

    if args.data is not None or args.max_tokens:
        raise TinyGPTError("--data and --max-tokens measure the run's own loss; --tasks runs the harness's tasks: "
                           "give one or the other")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise TinyGPTError("--tasks names no task: give harness task names separated by commas, e.g. arc_easy,wikitext")
    if args.limit is not None and args.limit <= 0:
        raise TinyGPTError(f"--limit must be more than 0, got {args.limit:g}")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise TinyGPTError(f"--num-fewshot must be 0 or more, got {args.num_fewshot}")
    if args.include_path is not None and not os.path.isdir(args.include_path):
        raise TinyGPTError(f"--include-path {args.include_path}: no such folder (it should hold task YAML files)")
    if importlib.util.find_spec("lm_eval") is None:
        raise TinyGPTError("--tasks runs EleutherAI's lm-evaluation-harness, which is not installed: "
                           "pip install lm-eval (or tinygpt's extra: pip install 'tinygpt[eval]')")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its per-request notes would bury the table
    from ..evaluation.harness import results_table, run_tasks

    run = load(args.run, device=args.device, checkpoint=args.checkpoint, quantize=args.quantize)
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    results = run_tasks(run, tasks, args.include_path, limit, args.num_fewshot, args.batch_size,
                        log=lambda line: print(line, file=sys.stderr))
    if args.output is not None:
        from lm_eval.utils import handle_non_serializable

        from ..store.checkpoint import atomic_write_bytes

        text = json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False)
        atomic_write_bytes(Path(args.output), text.encode("utf-8"))
    if args.json:
        print(json.dumps(results["results"], default=str))
    else:
        print(results_table(results).rstrip("\n"))
    return 0
